//! What a probe and an information sync find on an edge service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Health {
    /// The version the service reported.
    pub version: Option<String>,
}

/// A south driver or north app of a Neuron/NeuronEX service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Its plugin.
    pub plugin: String,
    /// `init`, `ready`, `running`, `stopped` (Neuron's `running` 1..4), if known.
    pub state: Option<String>,
    /// Whether its link is up, if known.
    pub connected: Option<bool>,
    /// Its groups (south drivers).
    pub groups: Vec<GroupInfo>,
}

/// A group of a south driver.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its polling interval, ms.
    pub interval: u64,
    /// Its tag points.
    pub tag_count: u64,
}

/// An eKuiper rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RuleInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its status as eKuiper says it (`running`, `stopped`, `stopped by error`, `error: ...`).
    pub status: String,
}

/// What an information sync pulled from a service (the product's "info sync").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// The version.
    pub version: Option<String>,
    /// South drivers.
    pub drivers: Vec<NodeInfo>,
    /// North apps.
    pub apps: Vec<NodeInfo>,
    /// Stream names.
    pub streams: Vec<String>,
    /// Rules.
    pub rules: Vec<RuleInfo>,
    /// Anything else worth keeping (NanoMQ's broker and client counts ...).
    pub extra: BTreeMap<String, serde_json::Value>,
}
