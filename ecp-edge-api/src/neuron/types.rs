//! The wire types of neuron's API, as the product really sends them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::{self};

/// A node's role: south driver or north app (`?type=1|2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A south device driver (`1`).
    Driver,
    /// A north application (`2`).
    App,
}

impl NodeType {
    /// Neuron's code.
    pub const fn code(self) -> u8 {
        match self {
            NodeType::Driver => 1,
            NodeType::App => 2,
        }
    }
}

/// A node's run state (`running`: 1 init, 2 ready, 3 running, 4 stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
#[non_exhaustive]
pub enum RunningState {
    /// `1`.
    Init,
    /// `2`.
    Ready,
    /// `3`.
    Running,
    /// `4`.
    Stopped,
    /// A code this SDK does not know.
    Other(i64),
}

impl From<i64> for RunningState {
    fn from(code: i64) -> Self {
        match code {
            1 => RunningState::Init,
            2 => RunningState::Ready,
            3 => RunningState::Running,
            4 => RunningState::Stopped,
            n => RunningState::Other(n),
        }
    }
}

impl From<RunningState> for i64 {
    fn from(s: RunningState) -> i64 {
        match s {
            RunningState::Init => 1,
            RunningState::Ready => 2,
            RunningState::Running => 3,
            RunningState::Stopped => 4,
            RunningState::Other(n) => n,
        }
    }
}

impl RunningState {
    /// `init`, `ready`, `running`, `stopped`, or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunningState::Init => "init",
            RunningState::Ready => "ready",
            RunningState::Running => "running",
            RunningState::Stopped => "stopped",
            RunningState::Other(_) => "unknown",
        }
    }
}

/// A node's link state (`link`: 0 disconnected, 1 connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
#[non_exhaustive]
pub enum LinkState {
    /// `0`.
    Disconnected,
    /// `1`.
    Connected,
    /// A code this SDK does not know.
    Other(i64),
}

impl From<i64> for LinkState {
    fn from(code: i64) -> Self {
        match code {
            0 => LinkState::Disconnected,
            1 => LinkState::Connected,
            n => LinkState::Other(n),
        }
    }
}

impl From<LinkState> for i64 {
    fn from(s: LinkState) -> i64 {
        match s {
            LinkState::Disconnected => 0,
            LinkState::Connected => 1,
            LinkState::Other(n) => n,
        }
    }
}

/// Filters of the node list (`GET /node`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeFilter {
    /// Only nodes of this plugin.
    pub plugin: Option<String>,
    /// Only nodes whose name contains this.
    pub node: Option<String>,
    /// Only nodes with this group.
    pub group: Option<String>,
    /// Only nodes in this state.
    pub state: Option<RunningState>,
    /// Only nodes with this link state.
    pub link: Option<LinkState>,
}

impl NodeFilter {
    /// Only nodes of `plugin`.
    pub fn plugin(mut self, plugin: impl Into<String>) -> Self {
        self.plugin = Some(plugin.into());
        self
    }

    /// Only nodes whose name contains `node`.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Only nodes with group `group`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Only nodes in `state`.
    pub fn state(mut self, state: RunningState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only nodes with `link`.
    pub fn link(mut self, link: LinkState) -> Self {
        self.link = Some(link);
        self
    }
}

/// A node of `GET /node`: `{"name","plugin","support_import_tags","tags"}` (the last two are new).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its plugin (`Modbus TCP`, `MQTT` ...).
    pub plugin: String,
    /// Whether tags can be imported into it (Neuron 2.15+).
    #[serde(default)]
    pub support_import_tags: Option<bool>,
    /// Neuron 2.15's `tags` string (usually empty).
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub tags: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NodesReply {
    pub(super) nodes: Vec<Node>,
}

/// A node's settings (`GET /node/setting?node=`): `{"node","params":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeSetting {
    /// The node.
    pub node: String,
    /// The plugin's parameters.
    #[serde(default)]
    pub params: Value,
}

/// A start or stop command (`POST /node/ctl {"node","cmd"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeCommand {
    /// `0`.
    Start,
    /// `1`.
    Stop,
}

/// A node's state, as `GET /node/state?node=` answers it (flat, without the node's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeState {
    /// Init, ready, running or stopped.
    pub running: RunningState,
    /// Connected or not.
    pub link: LinkState,
    /// The last round trip to the device, ms.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub rtt: Option<i64>,
    /// The node's log level.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub log_level: Option<String>,
    /// How many groups it subscribes to (north apps) or has (south drivers).
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub sub_group_count: Option<i64>,
}

/// One entry of `GET /node/state`: the node's name and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NamedNodeState {
    /// The node.
    pub node: String,
    /// Its state.
    #[serde(flatten)]
    pub state: NodeState,
}

/// `GET /node/state` without `?node=`: `{"states":[…],"neuron_core":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStates {
    /// Every node's state.
    #[serde(default)]
    pub states: Vec<NamedNodeState>,
    /// The core's own state (its fields are not documented).
    #[serde(default)]
    pub neuron_core: Option<Value>,
}

/// A group of one node (`GET /group?node=`): `{"name","interval","tag_count"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its polling interval, ms.
    pub interval: u64,
    /// How many tags it has.
    #[serde(default)]
    pub tag_count: u64,
}

/// A group of any node (`GET /group` without `?node=`): `{"driver","group","interval","tag_count"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DriverGroup {
    /// The node it belongs to.
    pub driver: String,
    /// Its name.
    pub group: String,
    /// Its polling interval, ms.
    pub interval: u64,
    /// How many tags it has.
    #[serde(default)]
    pub tag_count: u64,
}

#[derive(Deserialize)]
pub(super) struct GroupsReply<G> {
    pub(super) groups: Vec<G>,
}

/// A tag's attribute bits: 1 read, 2 write, 4 subscribe, 8 static.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TagAttribute(pub u8);

impl TagAttribute {
    /// Readable.
    pub const READ: TagAttribute = TagAttribute(1);
    /// Writable.
    pub const WRITE: TagAttribute = TagAttribute(2);
    /// Reported on change.
    pub const SUBSCRIBE: TagAttribute = TagAttribute(4);
    /// A static value (the tag needs a `value`).
    pub const STATIC: TagAttribute = TagAttribute(8);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: TagAttribute) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TagAttribute {
    type Output = TagAttribute;

    fn bitor(self, rhs: TagAttribute) -> TagAttribute {
        TagAttribute(self.0 | rhs.0)
    }
}

/// A tag's data type (`include/neuron/type.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataType(pub u8);

impl DataType {
    /// `1`.
    pub const INT8: DataType = DataType(1);
    /// `2`.
    pub const UINT8: DataType = DataType(2);
    /// `3`.
    pub const INT16: DataType = DataType(3);
    /// `4`.
    pub const UINT16: DataType = DataType(4);
    /// `5`.
    pub const INT32: DataType = DataType(5);
    /// `6`.
    pub const UINT32: DataType = DataType(6);
    /// `7`.
    pub const INT64: DataType = DataType(7);
    /// `8`.
    pub const UINT64: DataType = DataType(8);
    /// `9`.
    pub const FLOAT: DataType = DataType(9);
    /// `10`.
    pub const DOUBLE: DataType = DataType(10);
    /// `11`.
    pub const BIT: DataType = DataType(11);
    /// `12`.
    pub const BOOL: DataType = DataType(12);
    /// `13`.
    pub const STRING: DataType = DataType(13);
    /// `14`.
    pub const BYTES: DataType = DataType(14);
}

/// A tag (data point) of a group: `{"name","address","attribute","type","precision","decimal",
/// "bias","description","unit"}`, plus `value` for static tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tag {
    /// Its name, unique in the group.
    pub name: String,
    /// The driver-specific address (`1!400001`).
    #[serde(default)]
    pub address: String,
    /// Read, write, subscribe, static bits.
    pub attribute: TagAttribute,
    /// Its data type.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Decimal places of floats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<i64>,
    /// A factor applied to read values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<f64>,
    /// An offset added to read values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<f64>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The value of a static tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Tag {
    /// A tag with the required fields; the others are left out of requests.
    pub fn new(name: impl Into<String>, address: impl Into<String>, attribute: TagAttribute, data_type: DataType) -> Self {
        Tag {
            name: name.into(),
            address: address.into(),
            attribute,
            data_type,
            precision: None,
            decimal: None,
            bias: None,
            description: None,
            unit: None,
            value: None,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct TagsReply {
    pub(super) tags: Vec<Tag>,
}

/// One entry of `results` of a tag change: a tag that failed, by index in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagResult {
    /// The tag's index in the request.
    pub index: u64,
    /// Neuron's error code for it (0 for success).
    pub error: i64,
}

/// The answer of `POST|PUT /tags`: `{"index":N,"error":0}`, plus `results` on partial failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagsOutcome {
    /// How many tags were processed.
    #[serde(default)]
    pub index: u64,
    /// Per-tag results, when some tags failed.
    #[serde(default)]
    pub results: Vec<TagResult>,
}

impl TagsOutcome {
    /// The tags that failed (non-zero `error`).
    pub fn failures(&self) -> impl Iterator<Item = &TagResult> {
        self.results.iter().filter(|r| r.error != 0)
    }
}

/// `GET /version`: `{"version","revision","build_date"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Version {
    /// `2.15.0`.
    pub version: String,
    /// The source revision.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub revision: Option<String>,
    /// The build date.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub build_date: Option<String>,
}

/// The category of `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricsCategory {
    /// Neuron-wide metrics.
    Global,
    /// Metrics of south drivers.
    Driver,
    /// Metrics of north apps.
    App,
}

impl MetricsCategory {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MetricsCategory::Global => "global",
            MetricsCategory::Driver => "driver",
            MetricsCategory::App => "app",
        }
    }
}
