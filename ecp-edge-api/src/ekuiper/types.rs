//! The wire types of ekuiper's API, as the product really sends them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::call::{self};

/// `GET /`: `{"version","os","arch","upTimeSeconds","cpuUsage","memoryUsed","memoryTotal"}`; the
/// last three are strings, and `cpuUsage`/`memoryUsed` are left out when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Info {
    /// `2.4.0`.
    #[serde(default)]
    pub version: String,
    /// `linux`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub os: Option<String>,
    /// `amd64`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub arch: Option<String>,
    /// Seconds since start.
    #[serde(default, rename = "upTimeSeconds", deserialize_with = "call::lenient::opt_i64")]
    pub up_time_seconds: Option<i64>,
    /// CPU usage, as eKuiper formats it.
    #[serde(default, rename = "cpuUsage", deserialize_with = "call::lenient::opt_string")]
    pub cpu_usage: Option<String>,
    /// Memory used, bytes, as a string.
    #[serde(default, rename = "memoryUsed", deserialize_with = "call::lenient::opt_string")]
    pub memory_used: Option<String>,
    /// Memory total, bytes, as a string.
    #[serde(default, rename = "memoryTotal", deserialize_with = "call::lenient::opt_string")]
    pub memory_total: Option<String>,
}

impl Info {
    /// [`memory_used`](Self::memory_used) as a number, if it is one.
    pub fn memory_used_bytes(&self) -> Option<u64> {
        self.memory_used.as_deref()?.trim().parse().ok()
    }

    /// [`memory_total`](Self::memory_total) as a number, if it is one.
    pub fn memory_total_bytes(&self) -> Option<u64> {
        self.memory_total.as_deref()?.trim().parse().ok()
    }
}

/// `GET /streams/{name}`: the untagged Go struct `{"Name","StreamFields","Options","StreamType"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamDescription {
    /// The stream's name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Its fields (`null` for schemaless streams).
    #[serde(rename = "StreamFields", default)]
    pub fields: Option<Vec<Value>>,
    /// Its `WITH (…)` options.
    #[serde(rename = "Options", default)]
    pub options: Option<Map<String, Value>>,
    /// 0 stream, 1 table.
    #[serde(rename = "StreamType", default, deserialize_with = "call::lenient::opt_i64")]
    pub stream_type: Option<i64>,
}

/// What eKuiper's rule status string says (`internal/topo/rule/machine/state_machine.go`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleState {
    /// `running`.
    Running,
    /// `starting`.
    Starting,
    /// `stopping`.
    Stopping,
    /// `stopped` (also 1.x's `stopped: canceled manually.`).
    Stopped,
    /// `stopped: waiting for next schedule.`
    WaitingForSchedule,
    /// `stopped by error`.
    StoppedByError,
    /// `error: …`, with the message.
    Error(String),
    /// Anything else, as sent.
    Other(String),
}

impl RuleState {
    /// Reads a status string (case-insensitively: eKuiper 1.x's docs say `Running`).
    pub fn parse(status: &str) -> RuleState {
        let s = status.trim();
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "running" => RuleState::Running,
            "starting" => RuleState::Starting,
            "stopping" => RuleState::Stopping,
            "stopped" => RuleState::Stopped,
            l if l.starts_with("stopped: canceled") => RuleState::Stopped,
            l if l.starts_with("stopped: waiting for next schedule") => RuleState::WaitingForSchedule,
            l if l.starts_with("stopped by error") => RuleState::StoppedByError,
            l if l.starts_with("error") => RuleState::Error(s.get(5..).unwrap_or_default().trim_start_matches(':').trim().to_owned()),
            _ => RuleState::Other(s.to_owned()),
        }
    }

    /// Whether the rule is running.
    pub fn is_running(&self) -> bool {
        matches!(self, RuleState::Running)
    }
}

/// An entry of `GET /rules`: `{"id","name","status","version","trace","tags"}` (1.x: the first
/// three).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuleSummary {
    /// Its id.
    pub id: String,
    /// Its name.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub name: Option<String>,
    /// Its status, as sent (see [`state`](Self::state)).
    #[serde(default)]
    pub status: String,
    /// Its version.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub version: Option<String>,
    /// Whether tracing is on.
    #[serde(default)]
    pub trace: Option<bool>,
    /// Its tags (`null` when none).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl RuleSummary {
    /// The status, read.
    pub fn state(&self) -> RuleState {
        RuleState::parse(&self.status)
    }
}

/// A rule: what `POST /rules` and `PUT /rules/{id}` take and `GET /rules/{id}` returns
/// (`{"id","name"?,"sql","actions":[…],"tags"?,"options"?}`, other keys kept in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rule {
    /// Its id.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its SQL (absent for graph rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Its sinks, `[{"log":{}}]`.
    #[serde(default)]
    pub actions: Vec<Value>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Its options (`{"qos":1,"sendError":false}` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    /// Any other key (`graph`, `triggered` ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Rule {
    /// A SQL rule.
    pub fn new(id: impl Into<String>, sql: impl Into<String>, actions: Vec<Value>) -> Self {
        Rule { id: id.into(), name: None, sql: Some(sql.into()), actions, tags: None, options: None, extra: Map::new() }
    }
}

/// `GET /rules/{id}/status`: `status`, `message`, timestamps, and metrics with dynamic keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuleStatus {
    /// The status string (see [`state`](Self::state)).
    #[serde(default)]
    pub status: String,
    /// Why it stopped (`canceled manually`), empty while running.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub message: Option<String>,
    /// When it last started, ms since the epoch (0 if never).
    #[serde(default, rename = "lastStartTimestamp", deserialize_with = "call::lenient::opt_i64")]
    pub last_start_timestamp: Option<i64>,
    /// When it last stopped, ms since the epoch.
    #[serde(default, rename = "lastStopTimestamp", deserialize_with = "call::lenient::opt_i64")]
    pub last_stop_timestamp: Option<i64>,
    /// When a scheduled rule starts next, ms since the epoch.
    #[serde(default, rename = "nextStartTimestamp", deserialize_with = "call::lenient::opt_i64")]
    pub next_start_timestamp: Option<i64>,
    /// Every other key: `<op>_<instance>_<metric>` metrics (`source_demo_0_records_in_total`).
    #[serde(flatten)]
    pub metrics: BTreeMap<String, Value>,
}

impl RuleStatus {
    /// The status, read.
    pub fn state(&self) -> RuleState {
        RuleState::parse(&self.status)
    }
}
