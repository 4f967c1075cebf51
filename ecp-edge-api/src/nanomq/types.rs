//! The wire types of nanomq's API, as the product really sends them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::call::{self};

/// An entry of `GET /brokers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Broker {
    /// The broker's local time, `2022-06-07 10:02:24`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub datetime: Option<String>,
    /// Always the literal `Running`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub node_status: Option<String>,
    /// `NanoMQ Broker`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub sysdescr: Option<String>,
    /// `15 Hours, 1 minutes, 38 seconds`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub uptime: Option<String>,
    /// `0.25.6`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub version: Option<String>,
}

/// An entry of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Node {
    /// Connected clients.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub connections: Option<i64>,
    /// Always the literal `Running`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub node_status: Option<String>,
    /// Uptime, as text.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub uptime: Option<String>,
    /// The version.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub version: Option<String>,
}

/// A client (`GET /clients`): note **`client_id`**, where subscriptions say `clientid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Client {
    /// Its client id.
    pub client_id: String,
    /// Its user name.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub username: Option<String>,
    /// Keep-alive, seconds.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub keepalive: Option<i64>,
    /// `connected` ...
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub conn_state: Option<String>,
    /// Whether it asked for a clean start.
    #[serde(default)]
    pub clean_start: Option<bool>,
    /// `MQTT`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub proto_name: Option<String>,
    /// 3, 4 or 5.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub proto_ver: Option<i64>,
    /// Its will topic, if any.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub will_topic: Option<String>,
    /// Its will message, if any.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub will_msg: Option<String>,
}

/// Filters of `GET /clients`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientFilter {
    /// Only this client id (`clientid=`).
    pub client_id: Option<String>,
    /// Only this user name.
    pub username: Option<String>,
    /// Only clients in this connection state.
    pub conn_state: Option<String>,
    /// Only clients with this clean-start flag.
    pub clean_start: Option<bool>,
    /// Only this protocol name.
    pub proto_name: Option<String>,
    /// Only this protocol version.
    pub proto_ver: Option<u8>,
}

impl ClientFilter {
    /// Only client id `id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Only user `username`.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Only clients in `state` (`connected` ...).
    pub fn conn_state(mut self, state: impl Into<String>) -> Self {
        self.conn_state = Some(state.into());
        self
    }

    /// Only clients with this clean-start flag.
    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = Some(clean_start);
        self
    }

    /// Only protocol `name`.
    pub fn proto_name(mut self, name: impl Into<String>) -> Self {
        self.proto_name = Some(name.into());
        self
    }

    /// Only protocol version `version`.
    pub fn proto_ver(mut self, version: u8) -> Self {
        self.proto_ver = Some(version);
        self
    }
}

/// A subscription (`GET /subscriptions`): note **`clientid`**.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Subscription {
    /// The subscriber (`clientid` on the wire).
    #[serde(rename = "clientid")]
    pub client_id: String,
    /// The topic filter.
    pub topic: String,
    /// The granted QoS.
    #[serde(default)]
    pub qos: u8,
}

/// A node of the topic tree (`GET /topic-tree`, one array per level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicNode {
    /// The level's topic piece (`""` at the root).
    #[serde(default)]
    pub topic: String,
    /// How many children it has.
    #[serde(default)]
    pub cld_cnt: u64,
    /// The subscribers at this node (`clientid` on the wire).
    #[serde(default, rename = "clientid")]
    pub client_ids: Vec<String>,
}

/// `GET /metrics`: `{"metrics":[…],"cpuinfo":"0.00%","memory":"20049920","connections":0}` (no
/// `code`; `memory` is a string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metrics {
    /// Per-bridge counters (`{"bridge name":…,"tx_msgs":…}`).
    #[serde(default)]
    pub metrics: Vec<Map<String, Value>>,
    /// CPU usage, as NanoMQ formats it.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub cpuinfo: Option<String>,
    /// Resident memory, bytes, as a string.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub memory: Option<String>,
    /// Connected clients.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub connections: Option<i64>,
}

impl Metrics {
    /// [`memory`](Self::memory) as a number, if it is one.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.as_deref()?.trim().parse().ok()
    }
}

/// The hot-reloadable settings (`GET|POST /reload`; sizes in KB). In a `POST`, only the fields set
/// are sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReloadConfig {
    /// MQTT property size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_size: Option<u64>,
    /// The largest packet the broker accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_packet_size: Option<u64>,
    /// The largest packet sent to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_max_packet_size: Option<u64>,
    /// The per-client queue length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msq_len: Option<u64>,
    /// The QoS retry interval, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_duration: Option<u64>,
    /// The keep-alive backoff factor (`1.25`). NanoMQ 0.25 sends it as a JSON float; older
    /// documentation showed an integer ×1000 (`1250`): both are read, and it is written as the
    /// float.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "keepalive_backoff")]
    pub keepalive_backoff: Option<f64>,
    /// Whether anonymous clients are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Whether bridging is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_mode: Option<bool>,
    /// Any other key.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// MQTT v5 properties of an HTTP publish.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublishProperties {
    /// The Response Topic of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// The Correlation Data of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    /// User properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_properties: Option<Map<String, Value>>,
    /// Any other property (`message_expiry_interval`, `content_type` ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `POST /mqtt/publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Publish {
    /// The topic (NanoMQ answers 200 `{"code":108}` without one).
    pub topic: String,
    /// The payload.
    pub payload: String,
    /// `plain` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// 0, 1 or 2.
    pub qos: u8,
    /// Whether to retain it.
    pub retain: bool,
    /// The client id it is published as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clientid: Option<String>,
    /// MQTT v5 properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<PublishProperties>,
}

impl Publish {
    /// A QoS 0, non-retained message.
    pub fn new(topic: impl Into<String>, payload: impl Into<String>) -> Self {
        Publish { topic: topic.into(), payload: payload.into(), encoding: None, qos: 0, retain: false, clientid: None, properties: None }
    }
}

/// Reads `keepalive_backoff` as the factor: a float as is, an integer of 100 or more as ×1000
/// (no backoff factor is that large), a smaller integer as is.
fn keepalive_backoff<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    use serde::de::Error as _;
    let Some(v) = Option::<Value>::deserialize(d)? else { return Ok(None) };
    let factor = match &v {
        Value::Number(n) if n.is_f64() => n.as_f64(),
        Value::Number(n) => n.as_u64().map(|i| if i >= 100 { i as f64 / 1000.0 } else { i as f64 }),
        Value::Null => return Ok(None),
        _ => None,
    };
    match factor {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
        _ => Err(D::Error::custom(format!("keepalive_backoff must be a non-negative number, not {v}"))),
    }
}
