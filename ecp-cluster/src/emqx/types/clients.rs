//! `/api/v5/clients` and `/api/v5/alarms`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::common::Limit;
use super::json::opt_count;

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
