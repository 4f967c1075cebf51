//! `/api/v5/stats`, `/api/v5/metrics` and `/api/v5/monitor_current`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::Value;

use super::json::{count, opt_count};

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
