//! `/api/v5/listeners`: listeners and their status.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

use super::common::Limit;
use super::json::{kind, opt_bind, opt_count};

/// Whether a listener runs: on every node, none, or some (`"inconsistent"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerRunning {
    /// `true`.
    Yes,
    /// `false`.
    No,
    /// `"inconsistent"`: running on some nodes only.
    Inconsistent,
}

impl<'de> Deserialize<'de> for ListenerRunning {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(true) => Ok(ListenerRunning::Yes),
            Value::Bool(false) => Ok(ListenerRunning::No),
            Value::String(s) if s == "inconsistent" => Ok(ListenerRunning::Inconsistent),
            other => Err(de::Error::custom(format!("expected true, false or \"inconsistent\", got {}", kind(&other)))),
        }
    }
}

/// A listener's status, cluster-wide or on one node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ListenerStatus {
    /// Whether it runs.
    pub running: ListenerRunning,
    /// Its connections.
    #[serde(default, deserialize_with = "opt_count")]
    pub current_connections: Option<u64>,
    /// Its connection limit.
    #[serde(default)]
    pub max_connections: Option<Limit>,
}

/// A listener's status on one node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct NodeListenerStatus {
    /// The node.
    pub node: String,
    /// Its status there.
    pub status: ListenerStatus,
}

/// A listener of `/api/v5/listeners`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ListenerInfo {
    /// `tcp:default`.
    pub id: String,
    /// `tcp`, `ssl`, `ws`, `wss`, `quic`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `default`.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether it is enabled.
    #[serde(default)]
    pub enable: Option<bool>,
    /// `0.0.0.0:1883`.
    #[serde(default, deserialize_with = "opt_bind")]
    pub bind: Option<String>,
    /// Acceptors.
    #[serde(default, deserialize_with = "opt_count")]
    pub acceptors: Option<u64>,
    /// The cluster-wide status.
    #[serde(default)]
    pub status: Option<ListenerStatus>,
    /// The status per node.
    #[serde(default)]
    pub node_status: Vec<NodeListenerStatus>,
}
