//! The messages of the agent protocol and their codec, separate from any I/O.
//!
//! Every MQTT payload is one JSON [`Envelope`]:
//!
//! ```json
//! {"v":1,"kind":"heartbeat","id":"0193…","ts":1764547200000,"body":{…}}
//! ```
//!
//! - `v`: the protocol version; a receiver rejects versions it does not know
//!   ([`DecodeError::UnsupportedVersion`]).
//! - `kind`: which [`Message`] the body is; each kind is only accepted on its own channel.
//! - `id`: the sender's message id (a UUIDv7), for logs and de-duplication.
//! - `ts`: the sender's clock, milliseconds since the Unix epoch.
//!
//! The sender's identity is never in the payload: it is the agent id of the topic, which the
//! broker's ACL ties to the agent's username. Unknown fields are ignored so that a newer peer
//! may add them without a version bump. [`decode`] never panics: malformed, truncated,
//! oversized, unknown-version or unknown-kind payloads are rejected with a [`DecodeError`] whose
//! [`reason`](DecodeError::reason) names a counter of [`CodecStats`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::topics::Channel;
use ecp_edge_api::ConfigChange;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest payload accepted or sent by default: 256 KiB. A tunnelled HTTP body must fit in
/// one message with its base64 overhead, so the largest tunnelled body is about 190 KiB by
/// default; larger ones are refused with a clear error on both sides.
pub const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;

/// The most desired items an agent holds: the hub refuses to set more (`LimitExceeded`), and the
/// agent refuses a set with more. Sets are also bounded in bytes by the payload limit.
pub const MAX_DESIRED_ITEMS: usize = 1024;

/// One message, its envelope fields and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The sender's message id.
    pub id: String,
    /// The sender's clock, ms since the Unix epoch.
    pub ts: i64,
    /// The message.
    pub message: Message,
}

impl Envelope {
    /// Wraps `message` with a fresh id and the current time.
    pub fn new(message: Message) -> Self {
        Envelope { id: uuid::Uuid::now_v7().to_string(), ts: now_ms(), message }
    }
}

/// The current time, ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The messages, one per kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// Agent → hub on every connect (`hello`).
    Hello(Hello),
    /// Agent → hub, retained; the last will says offline (`status`).
    Status(Status),
    /// Agent → hub, periodically (`heartbeat`).
    Heartbeat(Heartbeat),
    /// Agent → hub (`event`).
    Event(Event),
    /// Hub → agent, a request with a response topic and correlation data (`command`).
    Command(Command),
    /// Agent → hub, the answer to a command (`reply`).
    Reply(Reply),
    /// Hub → agent, retained: the configuration the agent should have (`desired`).
    Desired(Desired),
    /// Agent → hub: the outcome of applying desired items (`report`).
    Report(Report),
}

impl Message {
    /// The kind's name on the wire.
    pub const fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Status(_) => "status",
            Message::Heartbeat(_) => "heartbeat",
            Message::Event(_) => "event",
            Message::Command(_) => "command",
            Message::Reply(_) => "reply",
            Message::Desired(_) => "desired",
            Message::Report(_) => "report",
        }
    }

    /// The channel this kind travels on.
    pub const fn channel(&self) -> Channel {
        match self {
            Message::Hello(_) => Channel::Hello,
            Message::Status(_) => Channel::Status,
            Message::Heartbeat(_) => Channel::Heartbeat,
            Message::Event(_) => Channel::Event,
            Message::Command(_) => Channel::Command,
            Message::Reply(_) => Channel::Reply,
            Message::Desired(_) => Channel::Desired,
            Message::Report(_) => Channel::Report,
        }
    }
}

/// A local service the agent fronts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalService {
    /// Its name at the agent.
    pub name: String,
    /// The product (`neuronex`, `neuron`, `ekuiper`, `nanomq`, `custom`).
    pub kind: String,
    /// Where the agent reaches it (`http://127.0.0.1:8085`).
    pub url: String,
    /// Whether the agent may restart it.
    #[serde(default)]
    pub restartable: bool,
}

/// What an agent says on connecting.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Hello {
    /// The agent's software version.
    pub agent_version: String,
    /// Its heartbeat interval, seconds.
    pub heartbeat_secs: u32,
    /// The services it fronts.
    #[serde(default)]
    pub services: Vec<LocalService>,
    /// The desired items it has applied: key → version.
    #[serde(default)]
    pub applied: BTreeMap<String, u64>,
}

/// Presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Whether the agent is connected.
    pub online: bool,
}

/// The health of one local service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// The service's name at the agent.
    pub name: String,
    /// Whether it answered.
    pub up: bool,
    /// How long it took, ms.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

/// A periodic heartbeat.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increments per heartbeat since the agent started.
    pub seq: u64,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
    /// Its services' health.
    #[serde(default)]
    pub services: Vec<ServiceHealth>,
    /// Metrics (`rss_bytes`, `buffered`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Severity of an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Informational.
    Info,
    /// Something to look at.
    Warning,
    /// Something failed.
    Error,
}

/// Something that happened at the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its severity.
    pub level: Level,
    /// What happened.
    pub message: String,
    /// Details.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

/// An HTTP request to tunnel to a local service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// The local service, as `host:port`: it must be on the agent's allow-list.
    pub target: String,
    /// The method.
    pub method: String,
    /// The path and query, relative to the service's URL.
    pub path: String,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// An HTTP answer from a local service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// The status.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, base64.
    #[serde(default)]
    pub body: String,
}

/// Encodes a body for [`HttpRequest::body`] / [`HttpResponse::body`].
pub fn encode_body(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(body)
}

/// Decodes a base64 body.
///
/// # Errors
/// The base64 error as text.
pub fn decode_body(body: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| e.to_string())
}

/// What the hub asks of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Call a local service's API.
    Http(HttpRequest),
    /// Report the agent's status now (answered with its latest heartbeat).
    Status,
    /// Restart a local service the agent is allowed to restart.
    Restart {
        /// The local service, as `host:port`.
        target: String,
    },
    /// Apply one desired item now (at most once per key and version) and answer with the outcome.
    Apply(DesiredItem),
}

/// Why an agent refused or failed a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The command was malformed.
    BadRequest,
    /// The target is not on the agent's allow-list.
    Forbidden,
    /// The agent does not do that (restart of a service without a restart command ...).
    Unsupported,
    /// The local service could not be reached.
    Unreachable,
    /// A body exceeded the payload limit.
    TooLarge,
    /// The command failed.
    Failed,
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reply {
    /// It worked.
    Ok {
        /// The result (an [`HttpResponse`] for `http`, a [`Heartbeat`] for `status` ...).
        result: Value,
    },
    /// It did not.
    Error {
        /// Why.
        code: ErrorCode,
        /// A message for people.
        message: String,
    },
}

/// One piece of desired configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredItem {
    /// What it configures (`stream:demo`, `node:modbus-1`); a newer version replaces an older one.
    pub key: String,
    /// Its version, increasing per agent.
    pub version: u64,
    /// The local service it applies to, as `host:port`.
    pub target: String,
    /// The change.
    pub change: ConfigChange,
}

/// The configuration an agent should have: every item, each at its latest version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Desired {
    /// The highest item version.
    pub version: u64,
    /// The items.
    pub items: Vec<DesiredItem>,
}

/// The outcome of one desired item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Its key.
    pub key: String,
    /// Its version.
    pub version: u64,
    /// Whether it was applied.
    pub ok: bool,
    /// The service's answer, or why it failed.
    pub detail: Value,
}

/// What an agent applied.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// The outcomes.
    pub items: Vec<Applied>,
}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than the limit.
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a JSON envelope (truncated, not UTF-8, missing fields ...).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// A protocol version this side does not speak.
    #[error("protocol version {0} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u64),
    /// A kind this side does not know.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// A known kind on another kind's channel.
    #[error("a {kind} message is not accepted on the {channel} channel")]
    WrongChannel {
        /// The kind.
        kind: &'static str,
        /// The channel.
        channel: &'static str,
    },
    /// The body does not fit its kind.
    #[error("bad {kind} body: {reason}")]
    BadBody {
        /// The kind.
        kind: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The counter this rejection increments.
    pub const fn reason(&self) -> RejectReason {
        match self {
            DecodeError::TooLarge { .. } => RejectReason::TooLarge,
            DecodeError::Malformed(_) => RejectReason::Malformed,
            DecodeError::UnsupportedVersion(_) => RejectReason::UnsupportedVersion,
            DecodeError::UnknownKind(_) => RejectReason::UnknownKind,
            DecodeError::WrongChannel { .. } => RejectReason::WrongChannel,
            DecodeError::BadBody { .. } => RejectReason::BadBody,
        }
    }
}

/// The counted reasons of rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// [`DecodeError::TooLarge`].
    TooLarge,
    /// [`DecodeError::Malformed`].
    Malformed,
    /// [`DecodeError::UnsupportedVersion`].
    UnsupportedVersion,
    /// [`DecodeError::UnknownKind`].
    UnknownKind,
    /// [`DecodeError::WrongChannel`].
    WrongChannel,
    /// [`DecodeError::BadBody`].
    BadBody,
    /// A message on a topic outside the layout, or from an agent that is not allowed.
    BadTopic,
    /// A reply nobody waits for (unknown or expired correlation data).
    UnknownCorrelation,
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::TooLarge,
        RejectReason::Malformed,
        RejectReason::UnsupportedVersion,
        RejectReason::UnknownKind,
        RejectReason::WrongChannel,
        RejectReason::BadBody,
        RejectReason::BadTopic,
        RejectReason::UnknownCorrelation,
    ];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::Malformed => "malformed",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::UnknownKind => "unknown_kind",
            RejectReason::WrongChannel => "wrong_channel",
            RejectReason::BadBody => "bad_body",
            RejectReason::BadTopic => "bad_topic",
            RejectReason::UnknownCorrelation => "unknown_correlation",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of rejected messages, by reason.
#[derive(Debug, Default)]
pub struct CodecStats {
    counts: [AtomicU64; 8],
}

impl CodecStats {
    /// Counts one rejection.
    pub fn count(&self, reason: RejectReason) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The rejections of `reason` so far.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.counts[reason.index()].load(Ordering::Relaxed)
    }

    /// Every counter.
    pub fn snapshot(&self) -> BTreeMap<RejectReason, u64> {
        RejectReason::ALL.iter().map(|r| (*r, self.get(*r))).collect()
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        RejectReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

#[derive(Serialize)]
struct WireOut<'a, B: Serialize> {
    v: u16,
    kind: &'static str,
    id: &'a str,
    ts: i64,
    body: &'a B,
}

#[derive(Deserialize)]
struct WireIn {
    v: u64,
    kind: String,
    id: String,
    ts: i64,
    #[serde(default)]
    body: Value,
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded payload is over the limit.
    #[error("a {kind} message of {size} bytes exceeds the payload limit of {limit}")]
    TooLarge {
        /// The kind.
        kind: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A desired configuration with more items than an agent takes ([`MAX_DESIRED_ITEMS`]):
    /// refused where it is sent, so no agent drops a set the hub believes delivered.
    #[error("a desired configuration of {count} items exceeds the limit of {limit}")]
    TooManyItems {
        /// Its items.
        count: usize,
        /// The limit both ends hold to.
        limit: usize,
    },
    /// Serialization failed (a map with non-string keys ...).
    #[error("cannot encode a {kind} message: {reason}")]
    Invalid {
        /// The kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

/// Encodes `envelope`, refusing payloads over `limit` bytes.
///
/// # Errors
/// [`EncodeError::TooLarge`] over the limit, [`EncodeError::TooManyItems`] for a desired
/// configuration that [`decode`] would refuse.
pub fn encode(envelope: &Envelope, limit: usize) -> Result<Vec<u8>, EncodeError> {
    if let Message::Desired(d) = &envelope.message
        && d.items.len() > MAX_DESIRED_ITEMS
    {
        return Err(EncodeError::TooManyItems { count: d.items.len(), limit: MAX_DESIRED_ITEMS });
    }
    let kind = envelope.message.kind();
    let (id, ts) = (envelope.id.as_str(), envelope.ts);
    let bytes = match &envelope.message {
        Message::Hello(b) => to_vec(kind, id, ts, b),
        Message::Status(b) => to_vec(kind, id, ts, b),
        Message::Heartbeat(b) => to_vec(kind, id, ts, b),
        Message::Event(b) => to_vec(kind, id, ts, b),
        Message::Command(b) => to_vec(kind, id, ts, b),
        Message::Reply(b) => to_vec(kind, id, ts, b),
        Message::Desired(b) => to_vec(kind, id, ts, b),
        Message::Report(b) => to_vec(kind, id, ts, b),
    }
    .map_err(|e| EncodeError::Invalid { kind, reason: e.to_string() })?;
    if bytes.len() > limit {
        return Err(EncodeError::TooLarge { kind, size: bytes.len(), limit });
    }
    Ok(bytes)
}

fn to_vec<B: Serialize>(kind: &'static str, id: &str, ts: i64, body: &B) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&WireOut { v: PROTOCOL_VERSION, kind, id, ts, body })
}

/// Decodes a payload received on `channel`, refusing payloads over `limit` bytes.
///
/// # Errors
/// A [`DecodeError`]; never panics.
pub fn decode(channel: Channel, payload: &[u8], limit: usize) -> Result<Envelope, DecodeError> {
    if payload.len() > limit {
        return Err(DecodeError::TooLarge { size: payload.len(), limit });
    }
    let wire: WireIn = serde_json::from_slice(payload).map_err(|e| DecodeError::Malformed(ecp_edge_api::error::redacted(&e)))?;
    if wire.v != u64::from(PROTOCOL_VERSION) {
        return Err(DecodeError::UnsupportedVersion(wire.v));
    }
    if wire.id.is_empty() || wire.id.len() > 64 {
        return Err(DecodeError::Malformed("the id must be 1 to 64 characters".into()));
    }
    let message = match wire.kind.as_str() {
        "hello" => Message::Hello(body("hello", wire.body)?),
        "status" => Message::Status(body("status", wire.body)?),
        "heartbeat" => Message::Heartbeat(body("heartbeat", wire.body)?),
        "event" => Message::Event(body("event", wire.body)?),
        "command" => Message::Command(body("command", wire.body)?),
        "reply" => Message::Reply(body("reply", wire.body)?),
        "desired" => Message::Desired(body("desired", wire.body)?),
        "report" => Message::Report(body("report", wire.body)?),
        // Named only if it looks like a kind: the field may hold anything, a secret included.
        other if other.len() <= 32 && other.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            return Err(DecodeError::UnknownKind(other.to_owned()));
        }
        _ => return Err(DecodeError::UnknownKind("…".to_owned())),
    };
    if message.channel() != channel {
        return Err(DecodeError::WrongChannel { kind: message.kind(), channel: channel.as_str() });
    }
    if let Message::Desired(d) = &message
        && d.items.len() > MAX_DESIRED_ITEMS
    {
        return Err(DecodeError::BadBody { kind: "desired", reason: format!("more than {MAX_DESIRED_ITEMS} items") });
    }
    Ok(Envelope { id: wire.id, ts: wire.ts, message })
}

fn body<T: serde::de::DeserializeOwned>(kind: &'static str, value: Value) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|e| DecodeError::BadBody { kind, reason: ecp_edge_api::error::redacted(&e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: Message) {
        let env = Envelope::new(message);
        let bytes = encode(&env, DEFAULT_MAX_PAYLOAD).unwrap();
        let back = decode(env.message.channel(), &bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Message::Hello(Hello {
            agent_version: "0.1.0".into(),
            heartbeat_secs: 10,
            services: vec![LocalService {
                name: "nx".into(),
                kind: "neuronex".into(),
                url: "http://127.0.0.1:8085".into(),
                restartable: false,
            }],
            applied: [("stream:s".to_owned(), 3)].into(),
        }));
        round_trip(Message::Status(Status { online: false }));
        round_trip(Message::Heartbeat(Heartbeat {
            seq: 4,
            uptime_secs: 40,
            services: vec![],
            metrics: [("rss_bytes".into(), 1.0e6)].into(),
        }));
        round_trip(Message::Event(Event { level: Level::Warning, message: "x".into(), fields: BTreeMap::new() }));
        round_trip(Message::Command(Command::Http(HttpRequest {
            target: "127.0.0.1:8085".into(),
            method: "GET".into(),
            path: "/api/version".into(),
            headers: vec![("accept".into(), "application/json".into())],
            body: Some(encode_body(b"{}")),
        })));
        round_trip(Message::Command(Command::Restart { target: "127.0.0.1:8085".into() }));
        round_trip(Message::Reply(Reply::Error { code: ErrorCode::Forbidden, message: "no".into() }));
        round_trip(Message::Desired(Desired {
            version: 2,
            items: vec![DesiredItem {
                key: "stream:s".into(),
                version: 2,
                target: "127.0.0.1:8085".into(),
                change: ConfigChange::EkuiperStream { name: "s".into(), sql: "CREATE STREAM s () WITH (TYPE=\"memory\")".into() },
            }],
        }));
        round_trip(Message::Report(Report { items: vec![Applied { key: "k".into(), version: 1, ok: true, detail: Value::Null }] }));
    }

    #[test]
    fn rejections_are_typed() {
        let limit = DEFAULT_MAX_PAYLOAD;
        let hb = encode(&Envelope::new(Message::Heartbeat(Heartbeat::default())), limit).unwrap();
        assert_eq!(decode(Channel::Heartbeat, &hb, 10).unwrap_err().reason(), RejectReason::TooLarge);
        assert_eq!(decode(Channel::Heartbeat, &hb[..hb.len() - 1], limit).unwrap_err().reason(), RejectReason::Malformed);
        assert_eq!(decode(Channel::Hello, &hb, limit).unwrap_err().reason(), RejectReason::WrongChannel);
        let v2 = br#"{"v":2,"kind":"heartbeat","id":"a","ts":0,"body":{}}"#;
        assert_eq!(decode(Channel::Heartbeat, v2, limit).unwrap_err().reason(), RejectReason::UnsupportedVersion);
        let unknown = br#"{"v":1,"kind":"gossip","id":"a","ts":0,"body":{}}"#;
        assert_eq!(decode(Channel::Heartbeat, unknown, limit).unwrap_err().reason(), RejectReason::UnknownKind);
        let bad = br#"{"v":1,"kind":"heartbeat","id":"a","ts":0,"body":{"seq":-1}}"#;
        assert_eq!(decode(Channel::Heartbeat, bad, limit).unwrap_err().reason(), RejectReason::BadBody);
        // Unknown fields are ignored.
        let extra = br#"{"v":1,"kind":"status","id":"a","ts":0,"body":{"online":true,"since":5},"trace":"x"}"#;
        assert!(decode(Channel::Status, extra, limit).is_ok());
        let stats = CodecStats::default();
        stats.count(RejectReason::BadBody);
        assert_eq!(stats.total(), 1);
    }

    #[test]
    fn refusals_quote_no_values() {
        let limit = DEFAULT_MAX_PAYLOAD;
        let payloads = [
            (
                Channel::Command,
                r#"{"v":1,"kind":"command","id":"a","ts":0,"body":{"op":"http","target":"t","method":"GET","path":"/","headers":"Bearer tok-1"}}"#,
            ),
            (
                Channel::Command,
                r#"{"v":1,"kind":"command","id":"a","ts":0,"body":{"op":"apply","key":"k","version":1,"target":"t","change":{"kind":"tok-1"}}}"#,
            ),
            (Channel::Command, r#"{"v":1,"kind":"command","id":"a","ts":0,"body":{"op":"tok-1\"`, expected"}}"#),
            (Channel::Status, r#"{"v":"tok-1","kind":"status","id":"a","ts":0}"#),
            (Channel::Status, r#"{"v":1,"kind":"tok-1","id":"a","ts":0}"#),
        ];
        for (channel, payload) in payloads {
            let e = decode(channel, payload.as_bytes(), limit).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("tok-1"), "{shown}");
        }
        // What was wrong still shows.
        let e = decode(Channel::Command, payloads[0].1.as_bytes(), limit).unwrap_err();
        assert_eq!(e.to_string(), "bad command body: invalid type: string \"…\", expected a sequence");
        let e = decode(Channel::Command, payloads[1].1.as_bytes(), limit).unwrap_err();
        assert!(e.to_string().starts_with("bad command body: unknown variant `…`, expected one of `neuron_south_device`"), "{e}");
        let gossip = br#"{"v":1,"kind":"gossip","id":"a","ts":0,"body":{}}"#;
        assert_eq!(decode(Channel::Status, gossip, limit).unwrap_err(), DecodeError::UnknownKind("gossip".into()));
    }

    #[test]
    fn oversized_messages_are_refused_on_encode() {
        let big = Message::Event(Event { level: Level::Info, message: "x".repeat(1000), fields: BTreeMap::new() });
        let err = encode(&Envelope::new(big), 512).unwrap_err();
        assert!(matches!(err, EncodeError::TooLarge { kind: "event", .. }), "{err}");
    }

    #[test]
    fn a_desired_set_the_agent_would_refuse_is_refused_on_encode() {
        let set = |n: usize| {
            let items = (0..n)
                .map(|i| DesiredItem {
                    key: format!("stream:s{i}"),
                    version: 1,
                    target: "127.0.0.1:8085".into(),
                    change: ConfigChange::EkuiperStream { name: format!("s{i}"), sql: "CREATE STREAM s () WITH (TYPE=\"memory\")".into() },
                })
                .collect();
            Envelope::new(Message::Desired(Desired { version: 1, items }))
        };
        let full = encode(&set(MAX_DESIRED_ITEMS), DEFAULT_MAX_PAYLOAD).unwrap();
        assert!(decode(Channel::Desired, &full, DEFAULT_MAX_PAYLOAD).is_ok(), "what is sent is taken");
        let err = encode(&set(MAX_DESIRED_ITEMS + 1), DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert_eq!(err, EncodeError::TooManyItems { count: MAX_DESIRED_ITEMS + 1, limit: MAX_DESIRED_ITEMS });
    }
}
