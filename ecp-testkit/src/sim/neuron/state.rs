//! What a simulated Neuron holds: nodes, their groups and tags, and the installed plugins.

use std::collections::BTreeMap;

use serde_json::Value;

/// Whether a node is a southbound driver or a northbound application (`type=1|2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A southbound driver (`type=1`): it has groups and tags.
    Driver,
    /// A northbound application (`type=2`).
    App,
}

impl NodeType {
    /// The wire code: 1 for drivers, 2 for apps.
    pub fn code(self) -> u8 {
        match self {
            NodeType::Driver => 1,
            NodeType::App => 2,
        }
    }
}

/// A node's running state (`running` in `/node/state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRunState {
    /// Created without settings (1).
    Init,
    /// Configured, not started (2).
    Ready,
    /// Running (3).
    Running,
    /// Stopped (4).
    Stopped,
}

impl NodeRunState {
    /// The wire code, 1–4.
    pub fn code(self) -> u8 {
        match self {
            NodeRunState::Init => 1,
            NodeRunState::Ready => 2,
            NodeRunState::Running => 3,
            NodeRunState::Stopped => 4,
        }
    }
}

/// One tag of a group.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NeuronTag {
    /// Unique within its group.
    pub name: String,
    /// Driver-specific address, e.g. `1!400001` for Modbus.
    pub address: String,
    /// Bits: 1 read, 2 write, 4 subscribe, 8 static.
    pub attribute: u8,
    /// Neuron's data type code (1 int8 … 9 float, 10 double, 11 bit, 12 bool, 13 string, 14 bytes…).
    pub data_type: u8,
    /// Decimal places reported.
    pub precision: u64,
    /// Scale factor (0 means none).
    pub decimal: f64,
    /// Offset added to readings.
    pub bias: f64,
    /// Free text.
    pub description: String,
    /// Unit of measure.
    pub unit: String,
    /// The static value, or the last value written; reads report it (0 when unset).
    pub value: Option<Value>,
}

impl NeuronTag {
    /// A tag with no precision, scaling, description, unit or value.
    pub fn new(name: impl Into<String>, address: impl Into<String>, attribute: u8, data_type: u8) -> Self {
        NeuronTag {
            name: name.into(),
            address: address.into(),
            attribute,
            data_type,
            precision: 0,
            decimal: 0.0,
            bias: 0.0,
            description: String::new(),
            unit: String::new(),
            value: None,
        }
    }
}

/// A group of tags polled at one interval.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct NeuronGroup {
    /// Polling interval in milliseconds.
    pub interval: u64,
    /// The group's tags, in insertion order.
    pub tags: Vec<NeuronTag>,
}

impl NeuronGroup {
    /// An empty group polled every `interval_ms` milliseconds.
    pub fn new(interval_ms: u64) -> Self {
        NeuronGroup { interval: interval_ms, tags: Vec::new() }
    }
}

/// A driver or app node.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NeuronNode {
    /// The node's unique name.
    pub name: String,
    /// The plugin it instantiates.
    pub plugin: String,
    /// Driver or app (from the plugin).
    pub node_type: NodeType,
    /// The settings (`params`), once given.
    pub params: Option<Value>,
    /// Running state.
    pub state: NodeRunState,
    /// Whether the device (or broker) is connected (`link` 1); reads and writes fail while not.
    pub connected: bool,
    /// Last round-trip time reported, in milliseconds.
    pub rtt_ms: u64,
    /// The node's log level.
    pub log_level: String,
    /// Groups by name (drivers only).
    pub groups: BTreeMap<String, NeuronGroup>,
}

impl NeuronNode {
    /// A node in state `Init`, disconnected, without settings or groups.
    pub fn new(name: impl Into<String>, plugin: impl Into<String>, node_type: NodeType) -> Self {
        NeuronNode {
            name: name.into(),
            plugin: plugin.into(),
            node_type,
            params: None,
            state: NodeRunState::Init,
            connected: false,
            rtt_ms: 0,
            log_level: "notice".to_owned(),
            groups: BTreeMap::new(),
        }
    }

    pub(super) fn start(&mut self) {
        self.state = NodeRunState::Running;
        self.connected = true;
        self.rtt_ms = 100;
    }
}

/// Everything a simulated Neuron holds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NeuronState {
    /// Nodes by name.
    pub nodes: BTreeMap<String, NeuronNode>,
    /// Installed plugins by name, with the kind of node each makes.
    pub plugins: BTreeMap<String, NodeType>,
}

impl NeuronState {
    /// No nodes; the plugins of a stock Neuron (Modbus TCP/RTU, OPC UA, Siemens S7ISOTCP, File,
    /// MQTT, eKuiper, WebSocket, Monitor).
    pub fn new() -> Self {
        let plugins = [
            ("Modbus TCP", NodeType::Driver),
            ("Modbus RTU", NodeType::Driver),
            ("OPC UA", NodeType::Driver),
            ("Siemens S7ISOTCP", NodeType::Driver),
            ("File", NodeType::Driver),
            ("MQTT", NodeType::App),
            ("eKuiper", NodeType::App),
            ("WebSocket", NodeType::App),
            ("Monitor", NodeType::App),
        ];
        NeuronState { nodes: BTreeMap::new(), plugins: plugins.into_iter().map(|(n, t)| (n.to_owned(), t)).collect() }
    }
}

impl Default for NeuronState {
    fn default() -> Self {
        Self::new()
    }
}
