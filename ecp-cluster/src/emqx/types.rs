//! The EMQX 5 REST API's answers, as they are on the wire (5.3 to 5.10), quirks included.
//!
//! Everything but the identifying field of each object is optional or defaulted, since versions
//! add and drop keys; unknown keys are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A limit that EMQX gives as an integer or as the string `"infinity"` (listener
/// `max_connections`, client `subscriptions_max`, an unlimited license).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// At most this many.
    Finite(u64),
    /// No limit (`"infinity"`).
    Infinity,
}

impl Limit {
    /// The number, `None` for `Infinity`.
    pub const fn finite(self) -> Option<u64> {
        match self {
            Limit::Finite(n) => Some(n),
            Limit::Infinity => None,
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "infinity" => Ok(Limit::Infinity),
            Value::Number(n) => n.as_u64().map(Limit::Finite).ok_or_else(|| de::Error::custom(format!("{n} is not a count"))),
            other => Err(de::Error::custom(format!("expected a count or \"infinity\", got {}", kind(&other)))),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Finite(n) => s.serialize_u64(*n),
            Limit::Infinity => s.serialize_str("infinity"),
        }
    }
}

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

/// One object of `/api/v5/stats`: per node (with `node`), or the cluster's with `?aggregate=true`.
/// Keys are `<name>.count` and `<name>.max` (`connections.count`, `subscriptions.shared.max` ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// The node, absent in the aggregate.
    pub node: Option<String>,
    /// Every integer key as sent (`connections.count` -> 12).
    pub values: BTreeMap<String, u64>,
}

impl Stats {
    /// `<name>.count` (`count("connections")`).
    pub fn count(&self, name: &str) -> Option<u64> {
        self.values.get(&format!("{name}.count")).copied()
    }

    /// `<name>.max`.
    pub fn max(&self, name: &str) -> Option<u64> {
        self.values.get(&format!("{name}.max")).copied()
    }
}

impl<'de> Deserialize<'de> for Stats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Counters { node, values } = counters(d)?;
        Ok(Stats { node, values })
    }
}

/// One object of `/api/v5/metrics`: the integer counters (`messages.received` ...) of a node, or
/// of the cluster with `?aggregate=true`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    /// The node, absent in the aggregate.
    pub node: Option<String>,
    /// The counters by name.
    pub counters: BTreeMap<String, u64>,
}

impl Metrics {
    /// A counter (`get("messages.received")`).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Counters { node, values } = counters(d)?;
        Ok(Metrics { node, counters: values })
    }
}

/// The integers of an object, and its `node`.
struct Counters {
    node: Option<String>,
    values: BTreeMap<String, u64>,
}

/// An object of non-negative integers and an optional `node`; other values are passed over.
fn counters<'de, D: Deserializer<'de>>(d: D) -> Result<Counters, D::Error> {
    let map = serde_json::Map::<String, Value>::deserialize(d)?;
    let mut node = None;
    let mut values = BTreeMap::new();
    for (k, v) in map {
        match v {
            Value::String(s) if k == "node" => node = Some(s),
            Value::Number(n) if k != "node" => {
                if let Some(n) = n.as_u64().or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f.round() as u64)) {
                    values.insert(k, n);
                }
            }
            _ => {}
        }
    }
    Ok(Counters { node, values })
}

/// `/api/v5/monitor_current` (the cluster) or `/monitor_current/nodes/{node}`: current gauges and
/// per-second rates. 5.3 sends only the connection, subscription, topic and rate keys: every
/// absent key reads as 0.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MonitorCurrent {
    /// Connections.
    #[serde(deserialize_with = "count")]
    pub connections: u64,
    /// Live connections.
    #[serde(deserialize_with = "count")]
    pub live_connections: u64,
    /// Sessions of the cluster.
    #[serde(deserialize_with = "count")]
    pub cluster_sessions: u64,
    /// Subscriptions.
    #[serde(deserialize_with = "count")]
    pub subscriptions: u64,
    /// Subscriptions in memory.
    #[serde(deserialize_with = "count")]
    pub subscriptions_ram: u64,
    /// Subscriptions of durable sessions.
    #[serde(deserialize_with = "count")]
    pub subscriptions_durable: u64,
    /// Disconnected durable sessions.
    #[serde(deserialize_with = "count")]
    pub disconnected_durable_sessions: u64,
    /// Topics.
    #[serde(deserialize_with = "count")]
    pub topics: u64,
    /// Shared subscriptions.
    #[serde(deserialize_with = "count")]
    pub shared_subscriptions: u64,
    /// Retained messages.
    #[serde(deserialize_with = "count")]
    pub retained_msg_count: u64,
    /// Messages received per second.
    #[serde(deserialize_with = "count")]
    pub received_msg_rate: u64,
    /// Messages sent per second.
    #[serde(deserialize_with = "count")]
    pub sent_msg_rate: u64,
    /// Messages dropped per second.
    #[serde(deserialize_with = "count")]
    pub dropped_msg_rate: u64,
    /// Messages persisted per second.
    #[serde(deserialize_with = "count")]
    pub persisted_rate: u64,
    /// Rules matched per second.
    #[serde(deserialize_with = "count")]
    pub rules_matched_rate: u64,
    /// Actions executed per second.
    #[serde(deserialize_with = "count")]
    pub actions_executed_rate: u64,
    /// The license's connection quota (Enterprise only).
    #[serde(deserialize_with = "opt_count")]
    pub license_quota: Option<u64>,
    /// The node's uptime in milliseconds (the node variant only).
    #[serde(deserialize_with = "opt_count")]
    pub node_uptime: Option<u64>,
}

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

/// A client of `/api/v5/clients`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client id.
    pub clientid: String,
    /// The username (`null` when the client gave none).
    #[serde(default)]
    pub username: Option<String>,
    /// The node it is on.
    #[serde(default)]
    pub node: Option<String>,
    /// Whether it is connected.
    #[serde(default)]
    pub connected: Option<bool>,
    /// `MQTT`.
    #[serde(default)]
    pub proto_name: Option<String>,
    /// 3, 4 or 5.
    #[serde(default, deserialize_with = "opt_count")]
    pub proto_ver: Option<u64>,
    /// Its address.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// Its port.
    #[serde(default, deserialize_with = "opt_count")]
    pub port: Option<u64>,
    /// Keep-alive, seconds.
    #[serde(default, deserialize_with = "opt_count")]
    pub keepalive: Option<u64>,
    /// Clean start.
    #[serde(default)]
    pub clean_start: Option<bool>,
    /// Session expiry interval, seconds.
    #[serde(default, deserialize_with = "opt_count")]
    pub expiry_interval: Option<u64>,
    /// When the session was created (RFC 3339 with offset).
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it connected.
    #[serde(default)]
    pub connected_at: Option<String>,
    /// Subscriptions.
    #[serde(default, deserialize_with = "opt_count")]
    pub subscriptions_cnt: Option<u64>,
    /// Subscription limit (`"infinity"` or a number).
    #[serde(default)]
    pub subscriptions_max: Option<Limit>,
    /// In-flight messages.
    #[serde(default, deserialize_with = "opt_count")]
    pub inflight_cnt: Option<u64>,
    /// Queued messages.
    #[serde(default, deserialize_with = "opt_count")]
    pub mqueue_len: Option<u64>,
    /// Messages received.
    #[serde(default, deserialize_with = "opt_count")]
    pub recv_msg: Option<u64>,
    /// Messages sent.
    #[serde(default, deserialize_with = "opt_count")]
    pub send_msg: Option<u64>,
    /// The listener (`tcp:default`).
    #[serde(default)]
    pub listener: Option<String>,
    /// Whether its session is durable.
    #[serde(default)]
    pub durable: Option<bool>,
}

/// An alarm of `/api/v5/alarms`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Alarm {
    /// The node that raised it.
    #[serde(default)]
    pub node: Option<String>,
    /// `high_system_memory_usage`.
    pub name: String,
    /// Its message.
    #[serde(default)]
    pub message: Option<String>,
    /// Its details (free-form).
    #[serde(default)]
    pub details: Value,
    /// How long it has been (or was) active, milliseconds.
    #[serde(default, deserialize_with = "opt_count")]
    pub duration: Option<u64>,
    /// When it was activated (RFC 3339 with offset).
    #[serde(default)]
    pub activate_at: Option<String>,
    /// When it was deactivated (deactivated alarms only).
    #[serde(default)]
    pub deactivate_at: Option<String>,
}

impl Alarm {
    /// `duration` as a `Duration`.
    pub fn duration(&self) -> Option<Duration> {
        self.duration.map(Duration::from_millis)
    }
}

/// The `meta` of a paged answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PageMeta {
    /// The page (from 1).
    #[serde(default = "one")]
    pub page: u32,
    /// Its size.
    #[serde(default)]
    pub limit: u32,
    /// Whether a next page exists.
    pub hasnext: bool,
    /// The total, absent when EMQX cannot compute it (fuzzy searches).
    #[serde(default, deserialize_with = "opt_count")]
    pub count: Option<u64>,
}

const fn one() -> u32 {
    1
}

/// A paged answer: `{"data":[...],"meta":{"page","limit","hasnext","count"?}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Where this page is.
    pub meta: PageMeta,
}

/// A license's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LicenseType {
    /// `community`.
    Community,
    /// `official`.
    Official,
    /// `trial`.
    Trial,
    /// Another word.
    Other(String),
}

impl<'de> Deserialize<'de> for LicenseType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "community" => LicenseType::Community,
            "official" => LicenseType::Official,
            "trial" => LicenseType::Trial,
            _ => LicenseType::Other(s),
        })
    }
}

/// `/api/v5/license` (Enterprise; open source answers 404).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct License {
    /// The customer.
    #[serde(default)]
    pub customer: Option<String>,
    /// The customer's email.
    #[serde(default)]
    pub email: Option<String>,
    /// The deployment.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The customer type code (10 for evaluation; 3 is business-critical).
    #[serde(default)]
    pub customer_type: Option<i64>,
    /// `community`, `official`, `trial`.
    #[serde(rename = "type", default)]
    pub license_type: Option<LicenseType>,
    /// Start date (`2022-01-11`).
    #[serde(default)]
    pub start_at: Option<String>,
    /// Expiry date (`2295-10-27`).
    #[serde(default)]
    pub expiry_at: Option<String>,
    /// Whether it has expired.
    #[serde(default)]
    pub expiry: Option<bool>,
    /// The session limit.
    #[serde(default)]
    pub max_sessions: Option<Limit>,
    /// The connection limit (an alias of `max_sessions`).
    #[serde(default)]
    pub max_connections: Option<Limit>,
}

impl License {
    /// The connection limit: `max_connections`, else `max_sessions`.
    pub fn connection_limit(&self) -> Option<Limit> {
        self.max_connections.or(self.max_sessions)
    }
}

/// `/api/v5/license/setting` (Enterprise, 5.7+): the usage alarm watermarks and, for
/// business-critical licenses only, `dynamic_max_connections`, the connection limit the cluster
/// takes from its license (the product's "Update Connect Limit"). EMQX merges a `PUT` into the
/// current setting and silently drops `dynamic_max_connections` for other licenses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LicenseSetting {
    /// Below this usage the quota alarm clears (`"75%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_low_watermark: Option<String>,
    /// Above this usage the quota alarm fires (`"80%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_high_watermark: Option<String>,
    /// The connection limit in force (business-critical licenses only).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_count")]
    pub dynamic_max_connections: Option<u64>,
}

impl LicenseSetting {
    /// A setting that changes only the connection limit.
    pub fn connection_limit(max_connections: u64) -> Self {
        Self { dynamic_max_connections: Some(max_connections), ..Self::default() }
    }
}

/// The body of an EMQX error: `{"code","message"}` (extra keys ignored). Both are optional, since
/// a proxy or a 405 may answer with something else or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// The code (`BAD_API_KEY_OR_SECRET`, `NODE_DOWN` ...): an open string.
    pub code: Option<String>,
    /// The message, or a printable excerpt of a body that is not EMQX's JSON.
    pub message: Option<String>,
}

/// At most this many characters of an error message are kept.
const MAX_MESSAGE: usize = 512;

impl ErrorBody {
    /// Reads any body: EMQX's JSON, other JSON, text, bytes, nothing. Never fails or panics;
    /// control characters become spaces and the message is cut to 512 characters.
    pub fn parse(body: &[u8]) -> Self {
        let clean = |s: &str| -> Option<String> {
            let t: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_MESSAGE).collect();
            let t = t.trim();
            (!t.is_empty()).then(|| t.to_owned())
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) if map.contains_key("code") || map.contains_key("message") => ErrorBody {
                code: map.get("code").and_then(Value::as_str).and_then(|c| clean(&c.chars().take(64).collect::<String>())),
                message: map.get("message").and_then(|m| match m {
                    Value::String(s) => clean(s),
                    Value::Null => None,
                    other => clean(&other.to_string()),
                }),
            },
            _ => ErrorBody { code: None, message: clean(&String::from_utf8_lossy(&body[..body.len().min(4 * MAX_MESSAGE)])) },
        }
    }
}

/// What a JSON value is, for error messages (never the value itself).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A non-negative integer (an integral float is accepted), or null/absent.
fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < 1.8e19).map(|f| f.round() as u64))
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("{n} is not a count"))),
        other => Err(de::Error::custom(format!("expected a count, got {}", kind(&other)))),
    }
}

/// As [`opt_count`], null reading as 0.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_count(d).map(Option::unwrap_or_default)
}

/// EMQX's memory notation (`"7.63G"`) or a number of bytes; `None` for anything else.
fn opt_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => parse_memory(&s),
        Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

/// A listener's `bind`: `"0.0.0.0:1883"`, or a bare port number (`1883`).
fn opt_bind<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Bytes from EMQX's memory notation (`"7.63G"`: K, M, G, T in powers of 1024), the parser of
/// the telemetry poller.
pub use ecp_telemetry::emqx::parse_memory;

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Finite(n) => write!(f, "{n}"),
            Limit::Infinity => f.write_str("infinity"),
        }
    }
}
