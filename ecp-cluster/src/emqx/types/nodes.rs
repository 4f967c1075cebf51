//! `/status` and `/api/v5/nodes`: a node's health and status.

use std::time::Duration;

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use super::json::{opt_count, opt_memory};

/// What `/status` says: `Node emqx@10.0.0.1 is started\nemqx is running` as text, or the same as
/// JSON with `?format=json` (`cluster` only there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node that answered (`emqx@10.0.0.1`).
    pub node_name: String,
    /// The cluster's name (`emqxcl`), in the JSON form only.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The broker's status (`started`, `starting`, `stopped` ...).
    pub broker_status: String,
    /// The `emqx` application's status (`running`, `not_running`).
    pub app_status: String,
}

impl StatusReport {
    /// Reads a `/status` body: JSON if it parses as such (whatever the content type, 5.3 and 5.6
    /// send `applicatin/json`), else the two-line text form. `None` for anything else.
    pub fn parse(body: &[u8]) -> Option<Self> {
        if let Ok(report) = serde_json::from_slice::<StatusReport>(body) {
            return Some(report);
        }
        let text = std::str::from_utf8(body).ok()?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let (node_name, broker_status) = lines.next()?.strip_prefix("Node ")?.rsplit_once(" is ")?;
        let app_status = lines.next()?.strip_prefix("emqx is ")?;
        if node_name.is_empty() || broker_status.is_empty() || app_status.is_empty() || lines.next().is_some() {
            return None;
        }
        Some(StatusReport {
            node_name: node_name.to_owned(),
            cluster: None,
            broker_status: broker_status.to_owned(),
            app_status: app_status.to_owned(),
        })
    }

    /// Whether the broker is started and the application running.
    pub fn is_running(&self) -> bool {
        self.broker_status == "started" && self.app_status == "running"
    }
}

/// The answer of `/status`: 200, or 503 while the application or the dashboard listener is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeHealth {
    /// 200: the node serves.
    Ready(StatusReport),
    /// 503: not ready; try again after `retry_after` (EMQX sends `retry-after: 15`).
    NotReady {
        /// The `retry-after` header, if any.
        retry_after: Option<Duration>,
        /// The body, if it could be read.
        report: Option<StatusReport>,
    },
}

/// A node's status in `/api/v5/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// `running`.
    Running,
    /// `stopped`.
    Stopped,
    /// Another word.
    Other(String),
}

impl NodeStatus {
    /// The wire word.
    pub fn as_str(&self) -> &str {
        match self {
            NodeStatus::Running => "running",
            NodeStatus::Stopped => "stopped",
            NodeStatus::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for NodeStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "running" => NodeStatus::Running,
            "stopped" => NodeStatus::Stopped,
            _ => NodeStatus::Other(s),
        })
    }
}

/// A node of `/api/v5/nodes` or `/api/v5/nodes/{node}`. Stopped nodes carry only `node`,
/// `node_status` and `role`; `cluster_sessions` is absent before 5.4, `sys_path` before 5.8.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Node {
    /// The Erlang node name (`emqx@10.0.0.1`).
    pub node: String,
    /// `running` or `stopped`.
    #[serde(default = "unknown_status")]
    pub node_status: NodeStatus,
    /// `core` or `replicant`.
    #[serde(default)]
    pub role: Option<String>,
    /// The EMQX version (`5.10.4`).
    #[serde(default)]
    pub version: Option<String>,
    /// `Opensource` or `Enterprise`.
    #[serde(default)]
    pub edition: Option<String>,
    /// The OTP release (`27.2-3/15.2`).
    #[serde(default)]
    pub otp_release: Option<String>,
    /// Uptime in milliseconds.
    #[serde(default, deserialize_with = "opt_count")]
    pub uptime: Option<u64>,
    /// Connections on the node.
    #[serde(default, deserialize_with = "opt_count")]
    pub connections: Option<u64>,
    /// Live connections on the node.
    #[serde(default, deserialize_with = "opt_count")]
    pub live_connections: Option<u64>,
    /// Sessions in the cluster (5.4+).
    #[serde(default, deserialize_with = "opt_count")]
    pub cluster_sessions: Option<u64>,
    /// 1-minute load.
    #[serde(default)]
    pub load1: Option<f64>,
    /// 5-minute load.
    #[serde(default)]
    pub load5: Option<f64>,
    /// 15-minute load.
    #[serde(default)]
    pub load15: Option<f64>,
    /// The file descriptor limit.
    #[serde(default, deserialize_with = "opt_count")]
    pub max_fds: Option<u64>,
    /// Total memory, bytes (from `"7.63G"`: K, M, G, T in powers of 1024; `None` when absent or
    /// not such a size).
    #[serde(default, deserialize_with = "opt_memory")]
    pub memory_total: Option<u64>,
    /// Used memory, bytes (as `memory_total`).
    #[serde(default, deserialize_with = "opt_memory")]
    pub memory_used: Option<u64>,
    /// Erlang processes available.
    #[serde(default, deserialize_with = "opt_count")]
    pub process_available: Option<u64>,
    /// Erlang processes used.
    #[serde(default, deserialize_with = "opt_count")]
    pub process_used: Option<u64>,
    /// The installation directory (5.8+).
    #[serde(default)]
    pub sys_path: Option<String>,
    /// The log directory.
    #[serde(default)]
    pub log_path: Option<String>,
}

fn unknown_status() -> NodeStatus {
    NodeStatus::Other(String::new())
}

impl Node {
    /// Whether the node runs.
    pub fn is_running(&self) -> bool {
        self.node_status == NodeStatus::Running
    }
}
