//! The crate-private lenient variants of the answers that the poller samples.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde_json::Value;

use super::json::{kind, parse_memory};

#[cfg(doc)]
use super::{License, MonitorCurrent, Node};

// The same answers read for monitoring ------------------------------------------------------------
//
// The strict types ([`Node`], [`MonitorCurrent`], [`License`]) refuse an answer with a malformed field (`"load1": "high"`, a node without
// `node`): the driver must not act on half an answer. The poller (`crate::emqx::poller`) must instead
// lose only what is malformed and say why, so it reads the four answers it samples into these
// readings, where every field it samples stands apart: a value, `"infinity"`, absent, or what
// came instead. They model the same wire format and quirks (memory sizes as `"7.63G"`,
// `"infinity"`, stopped nodes of three keys, 5.3's short `monitor_current`, per-node metrics).

/// A number of an answer read for monitoring.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Reading {
    /// Absent, or `null`.
    #[default]
    Absent,
    /// A finite number.
    Value(f64),
    /// `"infinity"` (an unlimited license): not a sample value.
    Infinity,
    /// Anything else, and why it is not a number (`expected a number, got a string`).
    Invalid(String),
}

impl Reading {
    fn of(value: Value) -> Self {
        match value {
            Value::Null => Reading::Absent,
            Value::Number(n) => match n.as_f64() {
                Some(v) if v.is_finite() => Reading::Value(v),
                _ => Reading::Invalid(format!("{n} is not a finite number")),
            },
            Value::String(s) if s == "infinity" => Reading::Infinity,
            other => Reading::Invalid(format!("expected a number, got {}", kind(&other))),
        }
    }
}

impl<'de> Deserialize<'de> for Reading {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Reading::of)
    }
}

/// A memory size read for monitoring: EMQX's notation (`"7.63G"`, see [`parse_memory`]) or a
/// number of bytes.
fn memory_reading<'de, D: Deserializer<'de>>(d: D) -> Result<Reading, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => match parse_memory(&s) {
            Some(bytes) => Reading::Value(bytes as f64),
            None => Reading::Invalid(format!("{:?} is not a byte size such as \"7.63G\"", s.chars().take(40).collect::<String>())),
        },
        other => Reading::of(other),
    })
}

/// A key that is present, `null` included (`Some(Reading::Absent)`); with `#[serde(default)]`, a
/// missing key is `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Reading>, D::Error> {
    Reading::deserialize(d).map(Some)
}

/// A string or a boolean of an answer read for monitoring.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Field<T> {
    /// Absent, or `null`.
    #[default]
    Absent,
    /// The value.
    Value(T),
    /// Something else: what it was (`a number`).
    Other(&'static str),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        if value.is_null() {
            return Ok(Field::Absent);
        }
        let what = kind(&value);
        Ok(T::deserialize(value).map_or(Field::Other(what), Field::Value))
    }
}

/// A body, or an element of an array, read for monitoring: an object read as `T`, or what came
/// instead (`an array`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Element<T> {
    /// An object.
    Object(T),
    /// Something else: what it was.
    Other(&'static str),
}

impl<T: DeserializeOwned> Element<T> {
    fn of(value: Value) -> Result<Self, serde_json::Error> {
        match value {
            Value::Object(_) => T::deserialize(value).map(Element::Object),
            other => Ok(Element::Other(kind(&other))),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Element<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Element::of(Value::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A node of `/api/v5/nodes` read for monitoring (the fields of [`Node`] a poller samples).
/// Stopped nodes carry only `node`, `node_status` and `role`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NodeReading {
    /// The Erlang node name.
    pub(crate) node: Field<String>,
    /// `running`, `stopped` ...
    pub(crate) node_status: Field<String>,
    /// `core` or `replicant`.
    pub(crate) role: Field<String>,
    /// The EMQX version.
    pub(crate) version: Field<String>,
    /// `Opensource` or `Enterprise`.
    pub(crate) edition: Field<String>,
    /// Used memory, bytes (from `"3.10G"`).
    #[serde(deserialize_with = "memory_reading")]
    pub(crate) memory_used: Reading,
    /// Total memory, bytes (from `"7.63G"`).
    #[serde(deserialize_with = "memory_reading")]
    pub(crate) memory_total: Reading,
    /// 1-minute load.
    pub(crate) load1: Reading,
    /// 5-minute load.
    pub(crate) load5: Reading,
    /// 15-minute load.
    pub(crate) load15: Reading,
    /// Connections on the node.
    pub(crate) connections: Reading,
    /// Live connections on the node.
    pub(crate) live_connections: Reading,
    /// Uptime, milliseconds.
    pub(crate) uptime: Reading,
}

/// `/api/v5/nodes` read for monitoring: an array (anything else is refused), each element an
/// object or not.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct NodeReadings(pub(crate) Vec<Element<NodeReading>>);

impl<'de> Deserialize<'de> for NodeReadings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => {
                items.into_iter().map(Element::of).collect::<Result<_, _>>().map(NodeReadings).map_err(de::Error::custom)
            }
            other => Err(de::Error::custom(format!("expected an array, got {}", kind(&other)))),
        }
    }
}

/// `/api/v5/monitor_current` read for monitoring (the gauges of [`MonitorCurrent`] a poller
/// samples). 5.3 sends only the connection, subscription, topic and rate keys.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MonitorReading {
    /// Connections.
    pub(crate) connections: Reading,
    /// Live connections.
    pub(crate) live_connections: Reading,
    /// Subscriptions.
    pub(crate) subscriptions: Reading,
    /// Shared subscriptions.
    pub(crate) shared_subscriptions: Reading,
    /// Topics.
    pub(crate) topics: Reading,
    /// Retained messages.
    pub(crate) retained_msg_count: Reading,
    /// Messages received per second.
    pub(crate) received_msg_rate: Reading,
    /// Messages sent per second.
    pub(crate) sent_msg_rate: Reading,
    /// Messages dropped per second.
    pub(crate) dropped_msg_rate: Reading,
    /// The cluster's sessions, `None` when the key is missing (even `null` is `Some`).
    #[serde(deserialize_with = "present")]
    pub(crate) cluster_sessions: Option<Reading>,
    /// Sessions, as versions without `cluster_sessions` may call them.
    pub(crate) sessions: Reading,
    /// The license's connection quota (Enterprise only).
    pub(crate) license_quota: Reading,
}

/// The counters of one `/api/v5/metrics` object read for monitoring, by name: every key present,
/// `null` included.
pub(crate) type CounterReadings = BTreeMap<String, Reading>;

/// `/api/v5/metrics?aggregate=true` read for monitoring: the aggregate object, or one object per
/// node (as without `aggregate`), or something else.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MetricsReading {
    /// One object: the cluster's counters.
    Aggregate(CounterReadings),
    /// An array: each node's counters, or what came instead of an object.
    PerNode(Vec<Element<CounterReadings>>),
    /// Neither: what it was.
    Other(&'static str),
}

impl<'de> Deserialize<'de> for MetricsReading {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            value @ Value::Object(_) => CounterReadings::deserialize(value).map(MetricsReading::Aggregate).map_err(de::Error::custom),
            Value::Array(items) => {
                items.into_iter().map(Element::of).collect::<Result<_, _>>().map(MetricsReading::PerNode).map_err(de::Error::custom)
            }
            other => Ok(MetricsReading::Other(kind(&other))),
        }
    }
}

/// `/api/v5/license` read for monitoring (the fields of [`License`] a poller samples).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LicenseReading {
    /// The connection limit (a number or `"infinity"`).
    pub(crate) max_connections: Reading,
    /// The session limit, the older name of the same.
    pub(crate) max_sessions: Reading,
    /// The expiry date (`2295-10-27`).
    pub(crate) expiry_at: Field<String>,
    /// Whether it has expired.
    pub(crate) expiry: Field<bool>,
}
