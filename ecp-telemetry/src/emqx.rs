//! [`EmqxPoller`]: a [`Collector`] that reads an EMQX 5 cluster's REST API (5.3 to 5.10, open
//! source and Enterprise) and turns it into samples.
//!
//! Each collection sends four `GET`s at once, with the API key as HTTP Basic and
//! `Accept: application/json` (without it EMQX answers unknown paths with HTML):
//!
//! | request | samples |
//! |---|---|
//! | `/api/v5/monitor_current` | `emqx_connections`, `emqx_live_connections`, `emqx_sessions`, `emqx_subscriptions`, `emqx_shared_subscriptions`, `emqx_topics`, `emqx_retained_messages`, `emqx_messages_received_per_second`, `emqx_messages_sent_per_second`, `emqx_messages_dropped_per_second`, and `emqx_license_quota` (Enterprise only) |
//! | `/api/v5/nodes` | per node (label `node`): `emqx_node_up` (1 if `node_status` is `running`, else 0), `emqx_node_info` (1, labels `role`, `version`, `edition` where given), `emqx_node_memory_used_bytes`, `emqx_node_memory_total_bytes`, `emqx_node_load1`, `emqx_node_load5`, `emqx_node_load15`, `emqx_node_connections`, `emqx_node_live_connections`, `emqx_node_uptime_seconds`; for the cluster: `emqx_nodes_running`, `emqx_nodes_stopped` (every node not `running`) |
//! | `/api/v5/metrics?aggregate=true` | counters: `emqx_messages_received_total`, `emqx_messages_sent_total`, `emqx_messages_dropped_total`, `emqx_authentication_failure_total`, `emqx_authorization_deny_total`, `emqx_client_connected_total` |
//! | `/api/v5/license` | `emqx_license_max_connections`, `emqx_license_expiry_days` (days from the collection time to the start of `expiry_at`, UTC; negative once expired), `emqx_license_expired` (0/1) |
//!
//! Every sample carries the configured labels (by convention `source=cluster:<id>`, see
//! [`EmqxPollerConfig::cluster`]) and the configured project scope.
//!
//! # The quirks it handles
//!
//! - Errors are `{"code","message"}`: a refused request becomes [`Error::Api`] whose message is
//!   `CODE: message` (with the configured secret scrubbed out should a server echo it).
//! - Bodies are parsed as JSON whatever their content type (5.3 and 5.6 send `applicatin/json`).
//! - `memory_total`/`memory_used` are strings such as `"7.63G"` (K, M, G, T are powers of 1024,
//!   see [`parse_memory`]); an unparseable one is skipped with its reason.
//! - A number given as `"infinity"` (an unlimited license) is skipped: it is not a sample value.
//! - Stopped nodes carry only `node`, `node_status` and `role`: they give `emqx_node_up 0` and
//!   `emqx_node_info` only. Everything but `node` is optional on running nodes too.
//! - `monitor_current` of 5.3 has only the connection, subscription, topic and rate keys; as the
//!   API contract prescribes, the other gauges read as 0 when absent (`emqx_sessions` reads
//!   `cluster_sessions`, else `sessions`, else 0). `license_quota` is only sampled when present.
//! - `/api/v5/license` answers 404 on open-source builds: that gives no license samples and no
//!   error or skip.
//!
//! # When one request fails
//!
//! `/api/v5/nodes` is the one that matters: if it fails (transport, non-2xx, not a JSON array),
//! the whole collection fails with that error, so a runner's `up` series reads 0 and a bad API key
//! (401 `BAD_API_KEY_OR_SECRET`) surfaces as an error. A failure of any of the other three
//! (a 403 of an API key whose 5.10 scopes lack `monitoring` or `license`, a 500, a timeout) only
//! loses that request's samples and is reported in [`Collection::skipped`] with its location set to
//! the request (`GET /api/v5/metrics?aggregate=true`).
//!
//! ```no_run
//! # async fn demo() -> ecp_telemetry::Result<()> {
//! use std::time::Duration;
//!
//! use ecp_telemetry::ecp_core::{ClusterId, OrgId, ProjectId};
//! use ecp_telemetry::emqx::EmqxPollerConfig;
//! use ecp_telemetry::{Collector, MetricScope};
//!
//! let scope = MetricScope::new(OrgId::new(), ProjectId::new());
//! let poller = EmqxPollerConfig::new("emqx prod-1", "http://10.0.0.1:18083", scope, "ecp-monitor", "s3cret".into())
//!     .cluster(ClusterId::new())
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//! let collection = poller.collect(ecp_telemetry::ecp_core::Timestamp::now()).await?;
//! for sample in &collection.samples {
//!     println!("{} {}", sample.series, sample.value);
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::{ClusterId, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::collector::{Collection, Collector, Skipped};
use crate::error::{Error, Result};
use crate::sample::{Labels, MetricName, MetricScope, SOURCE_LABEL, Sample};

/// The longest request timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest connect timeout used (the request timeout bounds it too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many nodes are read from `/api/v5/nodes` (EMQX clusters have a handful).
const MAX_NODES: usize = 1024;
/// At most this many characters of a server's error message are kept.
const MAX_MESSAGE: usize = 512;

const NODES: &str = "/api/v5/nodes";
const MONITOR: &str = "/api/v5/monitor_current";
const METRICS: &str = "/api/v5/metrics?aggregate=true";
const LICENSE: &str = "/api/v5/license";

/// How to reach and label one EMQX cluster: a builder whose setters never fail, checked by
/// [`build`](Self::build).
#[derive(Clone)]
#[non_exhaustive]
pub struct EmqxPollerConfig {
    name: String,
    base_url: String,
    scope: MetricScope,
    api_key: String,
    api_secret: SecretString,
    timeout: Duration,
    max_body: usize,
    labels: Vec<(String, String)>,
}

impl fmt::Debug for EmqxPollerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmqxPollerConfig")
            .field("name", &self.name)
            .field("base_url", &redacted_url(&self.base_url))
            .field("scope", &self.scope)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("labels", &self.labels)
            .finish()
    }
}

impl EmqxPollerConfig {
    /// The default time for each request, from connecting to the answer's last byte: 10 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default largest answer body: 4 MiB.
    pub const DEFAULT_MAX_BODY: usize = 4 << 20;

    /// The cluster whose dashboard listener is at `base_url` (`http://10.0.0.1:18083`, or with a
    /// path prefix behind a proxy), read with an API key (`api_key`, `api_secret`), its samples in
    /// `scope`. `name` names the source in errors and logs (`"emqx prod-1"`).
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        scope: MetricScope,
        api_key: impl Into<String>,
        api_secret: SecretString,
    ) -> Self {
        EmqxPollerConfig {
            name: name.into(),
            base_url: base_url.into(),
            scope,
            api_key: api_key.into(),
            api_secret,
            timeout: Self::DEFAULT_TIMEOUT,
            max_body: Self::DEFAULT_MAX_BODY,
            labels: Vec::new(),
        }
    }

    /// The time for each request (default 10 s; 1 ms to 1 h).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest answer body, bytes (default 4 MiB; at least 1).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// One more label on every sample (checked by `build`; `node`, `role`, `version` and
    /// `edition` are the poller's own and refused).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// The conventional `source=cluster:<id>` label.
    pub fn cluster(self, id: ClusterId) -> Self {
        self.label(SOURCE_LABEL, format!("cluster:{id}"))
    }

    /// Checks the settings and makes the poller.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty or overlong name; a base URL that is not
    /// `http`/`https` with a host, or holds credentials, a query or a fragment; an empty API key or
    /// one with `:` or control characters; an empty or overlong secret; a timeout outside
    /// 1 ms..=1 h; a zero body limit; invalid, repeated or reserved labels; or an HTTP client that
    /// cannot be set up.
    pub fn build(self) -> Result<EmqxPoller> {
        if self.name.is_empty() || self.name.len() > 200 || self.name.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must be 1 to 200 bytes without control characters"));
        }
        let base_url = check_base_url(&self.base_url)?;
        if self.api_key.is_empty() || self.api_key.len() > 256 || self.api_key.contains(':') || self.api_key.chars().any(char::is_control) {
            return Err(Error::invalid("api_key", "must be 1 to 256 bytes without `:` or control characters"));
        }
        let secret_len = self.api_secret.expose_secret().len();
        if secret_len == 0 || secret_len > 1024 {
            return Err(Error::invalid("api_secret", "must be 1 to 1024 bytes"));
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > MAX_TIMEOUT {
            return Err(Error::invalid("timeout", "must be between 1 ms and 1 hour"));
        }
        if self.max_body == 0 {
            return Err(Error::invalid("max_body", "must be at least 1 byte"));
        }
        if let Some((k, _)) = self.labels.iter().find(|(k, _)| RESERVED_LABELS.contains(&k.as_str())) {
            return Err(Error::invalid("labels", format!("{k} is set by the poller")));
        }
        let labels = Labels::new(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let client = reqwest::Client::builder()
            .connect_timeout(self.timeout.min(CONNECT_TIMEOUT))
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("ecp-telemetry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                tracing::debug!(error = %e, "cannot build the HTTP client");
                Error::invalid("http_client", "cannot be set up with this configuration")
            })?;
        let scrub = [self.api_secret.expose_secret().to_owned(), basic_credentials(&self.api_key, self.api_secret.expose_secret())];
        Ok(EmqxPoller { config: EmqxPollerConfig { base_url, ..self }, labels, client, scrub: Scrub(scrub) })
    }
}

const RESERVED_LABELS: [&str; 4] = ["node", "role", "version", "edition"];

/// The `user:password` of HTTP Basic, base64 (standard alphabet, padded), to scrub from messages.
fn basic_credentials(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.as_bytes().chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strings never to repeat (the secret, and the Basic credentials), held out of `Debug`.
#[derive(Clone)]
struct Scrub([String; 2]);

impl Scrub {
    fn apply(&self, mut text: String) -> String {
        for s in &self.0 {
            if !s.is_empty() && text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "<redacted>");
            }
        }
        text
    }
}

/// A URL without its user info, for `Debug` of an unchecked config.
fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// The normalised base URL (no trailing `/`); errors never repeat the URL (it may hold a password).
fn check_base_url(raw: &str) -> Result<String> {
    if raw.len() > 2048 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid("base_url", "must be at most 2048 bytes without whitespace"));
    }
    let url = reqwest::Url::parse(raw).map_err(|_| Error::invalid("base_url", "is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::invalid("base_url", "must be an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid("base_url", "must not hold credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid("base_url", "must not have a query or a fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Polls one EMQX cluster's REST API; see the [module docs](self) for what it samples.
///
/// Cheap to clone (the HTTP connection pool is shared).
#[derive(Clone)]
pub struct EmqxPoller {
    config: EmqxPollerConfig,
    labels: Labels,
    client: reqwest::Client,
    scrub: Scrub,
}

impl fmt::Debug for EmqxPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmqxPoller").field("config", &self.config).finish_non_exhaustive()
    }
}

/// One answer: its status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// The error of an exchange that outlived the timeout.
#[derive(Debug, thiserror::Error)]
#[error("no complete answer within {0:?}")]
struct TimedOut(Duration);

impl EmqxPoller {
    /// A poller with `config`; the same as [`EmqxPollerConfig::build`].
    ///
    /// # Errors
    /// As [`EmqxPollerConfig::build`].
    pub fn new(config: EmqxPollerConfig) -> Result<Self> {
        config.build()
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// The project the samples belong to.
    pub fn scope(&self) -> MetricScope {
        self.config.scope
    }

    /// The labels on every sample.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The timeout of each request.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    fn endpoint(path: &str) -> String {
        format!("GET {path}")
    }

    async fn get(&self, path: &'static str) -> Result<Answer> {
        let endpoint = Self::endpoint(path);
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.exchange(&endpoint, path)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Transport {
                source_name: self.config.name.clone(),
                endpoint,
                retryable: true,
                source: Box::new(TimedOut(timeout)),
            }),
        }
    }

    async fn exchange(&self, endpoint: &str, path: &str) -> Result<Answer> {
        let url = format!("{}{path}", self.config.base_url);
        let request = self
            .client
            .get(url)
            .basic_auth(&self.config.api_key, Some(self.config.api_secret.expose_secret()))
            .header(reqwest::header::ACCEPT, "application/json");
        let mut response = request.send().await.map_err(|e| self.transport_error(endpoint, e))?;
        let limit = self.config.max_body;
        let status = response.status().as_u16();
        let body = crate::body::read_limited(&mut response, limit).await.map_err(|e| match e {
            crate::body::BodyError::TooLarge(size) => Error::TooLarge { what: "emqx answer body", size, limit },
            crate::body::BodyError::Transport(e) => self.transport_error(endpoint, e),
        })?;
        Ok(Answer { status, body })
    }

    fn transport_error(&self, endpoint: &str, e: reqwest::Error) -> Error {
        let retryable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
        Error::Transport {
            source_name: self.config.name.clone(),
            endpoint: endpoint.to_owned(),
            retryable,
            source: Box::new(e.without_url()),
        }
    }

    /// The JSON of a 2xx answer, whatever its content type, or the API error.
    fn json(&self, path: &str, answer: Answer) -> Result<Value> {
        if !(200..300).contains(&answer.status) {
            return Err(Error::Api {
                source_name: self.config.name.clone(),
                endpoint: Self::endpoint(path),
                status: answer.status,
                message: error_message(&answer.body).map(|m| self.scrub.apply(m)),
            });
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| Error::Decode { source_name: self.config.name.clone(), reason: format!("GET {path}: not JSON: {e}") })
    }
}

/// `CODE: message` of an EMQX error body `{"code","message"}`, or a short printable excerpt of
/// another body (a proxy's `502 Bad Gateway` page), or nothing for an empty one.
fn error_message(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            let code = map.get("code").and_then(Value::as_str);
            let message = map.get("message").map(|m| match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            match (code, message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                (None, Some(m)) => m,
                (None, None) => String::from_utf8_lossy(body).into_owned(),
            }
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_MESSAGE).collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_owned())
}

/// Bytes from EMQX's memory notation: a plain number of bytes (`"512"`), or a decimal with a
/// `K`, `M`, `G` or `T` suffix in powers of 1024 (`"7.63G"`), case-insensitive, an optional
/// trailing `B` allowed. `None` for anything else, negative numbers, or more than `u64::MAX`.
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || t.len() > 32 {
        return None;
    }
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let (number, multiplier) = match t.as_bytes().last()?.to_ascii_uppercase() {
        b'K' => (&t[..t.len() - 1], 1024f64),
        b'M' => (&t[..t.len() - 1], 1024f64.powi(2)),
        b'G' => (&t[..t.len() - 1], 1024f64.powi(3)),
        b'T' => (&t[..t.len() - 1], 1024f64.powi(4)),
        _ => (t, 1.0),
    };
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let bytes = (value * multiplier).round();
    // 2^64 as f64 is exact; anything at or above it does not fit.
    if !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
        return None;
    }
    Some(bytes as u64)
}

/// A number field as read.
enum Num {
    Absent,
    Value(f64),
    Infinity,
    Bad(String),
}

fn read_num(map: &Map<String, Value>, key: &str) -> Num {
    match map.get(key) {
        None | Some(Value::Null) => Num::Absent,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Num::Value(v),
            _ => Num::Bad(format!("{n} is not a finite number")),
        },
        Some(Value::String(s)) if s == "infinity" => Num::Infinity,
        Some(other) => Num::Bad(format!("expected a number, got {}", kind(other))),
    }
}

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

/// Samples and skips of one collection in the making.
struct Out<'a> {
    scope: MetricScope,
    base: &'a Labels,
    now: Timestamp,
    collection: Collection,
}

impl Out<'_> {
    fn push(&mut self, name: &'static str, labels: &Labels, value: f64) {
        match MetricName::new(name) {
            Ok(n) => self.collection.samples.push(Sample::new(self.scope, n, labels.clone(), self.now, value)),
            // Unreachable: every name given is a constant `emqx_[a-z0-9_]+`.
            Err(e) => self.skip(name, e.to_string()),
        }
    }

    fn skip(&mut self, location: impl Into<String>, reason: impl Into<String>) {
        self.collection.skipped.push(Skipped { location: location.into(), reason: reason.into() });
    }

    /// Samples `map[key]` as `name`; `Absent` gives `absent` if some, else nothing.
    fn field(&mut self, path: &str, map: &Map<String, Value>, key: &str, name: &'static str, labels: &Labels, absent: Option<f64>) {
        match read_num(map, key) {
            Num::Value(v) => self.push(name, labels, v),
            Num::Absent => {
                if let Some(v) = absent {
                    self.push(name, labels, v);
                }
            }
            Num::Infinity => self.skip(format!("{path}.{key}"), "\"infinity\" is not a sample value"),
            Num::Bad(reason) => self.skip(format!("{path}.{key}"), reason),
        }
    }
}

/// `monitor_current` keys and their gauges; absent keys read as 0 (5.3 lacks most of them).
const MONITOR_GAUGES: [(&str, &str); 9] = [
    ("connections", "emqx_connections"),
    ("live_connections", "emqx_live_connections"),
    ("subscriptions", "emqx_subscriptions"),
    ("shared_subscriptions", "emqx_shared_subscriptions"),
    ("topics", "emqx_topics"),
    ("retained_msg_count", "emqx_retained_messages"),
    ("received_msg_rate", "emqx_messages_received_per_second"),
    ("sent_msg_rate", "emqx_messages_sent_per_second"),
    ("dropped_msg_rate", "emqx_messages_dropped_per_second"),
];

/// `metrics?aggregate=true` keys and their counters.
const METRIC_COUNTERS: [(&str, &str); 6] = [
    ("messages.received", "emqx_messages_received_total"),
    ("messages.sent", "emqx_messages_sent_total"),
    ("messages.dropped", "emqx_messages_dropped_total"),
    ("authentication.failure", "emqx_authentication_failure_total"),
    ("authorization.deny", "emqx_authorization_deny_total"),
    ("client.connected", "emqx_client_connected_total"),
];

fn monitor_current(out: &mut Out<'_>, body: &Value) {
    let Value::Object(map) = body else {
        out.skip(MONITOR, format!("expected an object, got {}", kind(body)));
        return;
    };
    let base = out.base.clone();
    for (key, name) in MONITOR_GAUGES {
        out.field(MONITOR, map, key, name, &base, Some(0.0));
    }
    let sessions_key = if map.contains_key("cluster_sessions") { "cluster_sessions" } else { "sessions" };
    out.field(MONITOR, map, sessions_key, "emqx_sessions", &base, Some(0.0));
    out.field(MONITOR, map, "license_quota", "emqx_license_quota", &base, None);
}

fn nodes(out: &mut Out<'_>, source_name: &str, body: &Value) -> Result<()> {
    let Value::Array(list) = body else {
        return Err(Error::Decode {
            source_name: source_name.to_owned(),
            reason: format!("GET {NODES}: expected an array, got {}", kind(body)),
        });
    };
    if list.len() > MAX_NODES {
        out.skip(format!("{NODES}[{MAX_NODES}..]"), format!("{} nodes past the first {MAX_NODES} ignored", list.len() - MAX_NODES));
    }
    let (mut running, mut stopped) = (0u32, 0u32);
    for (i, item) in list.iter().take(MAX_NODES).enumerate() {
        let path = format!("{NODES}[{i}]");
        let Value::Object(map) = item else {
            out.skip(path, format!("expected an object, got {}", kind(item)));
            continue;
        };
        let Some(node) = map.get("node").and_then(Value::as_str) else {
            out.skip(format!("{path}.node"), "absent or not a string");
            continue;
        };
        let labels = match out.base.with("node", node) {
            Ok(l) => l,
            Err(e) => {
                out.skip(format!("{path}.node"), e.to_string());
                continue;
            }
        };
        let up = map.get("node_status").and_then(Value::as_str) == Some("running");
        if up {
            running += 1;
        } else {
            stopped += 1;
        }
        out.push("emqx_node_up", &labels, if up { 1.0 } else { 0.0 });

        let mut info = labels.clone();
        for key in ["role", "version", "edition"] {
            if let Some(v) = map.get(key).and_then(Value::as_str) {
                match info.with(key, v) {
                    Ok(l) => info = l,
                    Err(e) => out.skip(format!("{path}.{key}"), e.to_string()),
                }
            }
        }
        out.push("emqx_node_info", &info, 1.0);

        for (key, name) in [("memory_used", "emqx_node_memory_used_bytes"), ("memory_total", "emqx_node_memory_total_bytes")] {
            match map.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => match parse_memory(s) {
                    Some(bytes) => out.push(name, &labels, bytes as f64),
                    None => out.skip(
                        format!("{path}.{key}"),
                        format!("{:?} is not a byte size such as \"7.63G\"", s.chars().take(40).collect::<String>()),
                    ),
                },
                Some(_) => out.field(&path, map, key, name, &labels, None),
            }
        }
        for (key, name) in [
            ("load1", "emqx_node_load1"),
            ("load5", "emqx_node_load5"),
            ("load15", "emqx_node_load15"),
            ("connections", "emqx_node_connections"),
            ("live_connections", "emqx_node_live_connections"),
        ] {
            out.field(&path, map, key, name, &labels, None);
        }
        match read_num(map, "uptime") {
            Num::Value(ms) => out.push("emqx_node_uptime_seconds", &labels, ms / 1000.0),
            Num::Absent => {}
            Num::Infinity => out.skip(format!("{path}.uptime"), "\"infinity\" is not a sample value"),
            Num::Bad(reason) => out.skip(format!("{path}.uptime"), reason),
        }
    }
    let base = out.base.clone();
    out.push("emqx_nodes_running", &base, f64::from(running));
    out.push("emqx_nodes_stopped", &base, f64::from(stopped));
    Ok(())
}

fn metrics(out: &mut Out<'_>, body: &Value) {
    // `aggregate=true` gives one object; should a version answer per node, sum the nodes.
    let summed;
    let map = match body {
        Value::Object(map) => map,
        Value::Array(list) => {
            let mut sum = Map::new();
            for (key, _) in METRIC_COUNTERS {
                let mut total = 0.0;
                let mut seen = false;
                for item in list {
                    if let Some(v) = item.get(key).and_then(Value::as_f64) {
                        total += v;
                        seen = true;
                    }
                }
                if seen && let Some(n) = serde_json::Number::from_f64(total) {
                    sum.insert(key.to_owned(), Value::Number(n));
                }
            }
            summed = sum;
            &summed
        }
        other => {
            out.skip(METRICS, format!("expected an object, got {}", kind(other)));
            return;
        }
    };
    let base = out.base.clone();
    for (key, name) in METRIC_COUNTERS {
        if map.contains_key(key) {
            out.field(METRICS, map, key, name, &base, None);
        } else {
            out.skip(format!("{METRICS}.{key}"), "absent");
        }
    }
}

fn license(out: &mut Out<'_>, body: &Value) {
    let Value::Object(map) = body else {
        out.skip(LICENSE, format!("expected an object, got {}", kind(body)));
        return;
    };
    let base = out.base.clone();
    match read_num(map, "max_connections") {
        Num::Value(v) => out.push("emqx_license_max_connections", &base, v),
        Num::Absent => out.field(LICENSE, map, "max_sessions", "emqx_license_max_connections", &base, None),
        Num::Infinity => out.skip(format!("{LICENSE}.max_connections"), "\"infinity\" (unlimited) is not a sample value"),
        Num::Bad(reason) => out.skip(format!("{LICENSE}.max_connections"), reason),
    }
    match map.get("expiry_at") {
        None | Some(Value::Null) => {}
        Some(Value::String(date)) => match expiry_days(date, out.now) {
            Some(days) => out.push("emqx_license_expiry_days", &base, days),
            None => out
                .skip(format!("{LICENSE}.expiry_at"), format!("{:?} is not a date YYYY-MM-DD", date.chars().take(40).collect::<String>())),
        },
        Some(other) => out.skip(format!("{LICENSE}.expiry_at"), format!("expected a string, got {}", kind(other))),
    }
    match map.get("expiry") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => out.push("emqx_license_expired", &base, if *b { 1.0 } else { 0.0 }),
        Some(other) => out.skip(format!("{LICENSE}.expiry"), format!("expected a boolean, got {}", kind(other))),
    }
}

/// Days from `now` to the start (UTC) of `date` (`YYYY-MM-DD`).
fn expiry_days(date: &str, now: Timestamp) -> Option<f64> {
    let b = date.as_bytes();
    let shaped = b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    let expiry: Timestamp = format!("{date}T00:00:00Z").parse().ok()?;
    Some((expiry.as_second() - now.as_second()) as f64 / 86_400.0)
}

#[async_trait]
impl Collector for EmqxPoller {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn collect(&self, now: Timestamp) -> Result<Collection> {
        let (nodes_answer, monitor_answer, metrics_answer, license_answer) =
            tokio::join!(self.get(NODES), self.get(MONITOR), self.get(METRICS), self.get(LICENSE));
        let mut out = Out { scope: self.config.scope, base: &self.labels, now, collection: Collection::default() };

        let body = self.json(NODES, nodes_answer?)?;
        nodes(&mut out, &self.config.name, &body)?;

        match monitor_answer.and_then(|a| self.json(MONITOR, a)) {
            Ok(body) => monitor_current(&mut out, &body),
            Err(e) => out.skip(Self::endpoint(MONITOR), e.to_string()),
        }
        match metrics_answer.and_then(|a| self.json(METRICS, a)) {
            Ok(body) => metrics(&mut out, &body),
            Err(e) => out.skip(Self::endpoint(METRICS), e.to_string()),
        }
        match license_answer {
            Ok(Answer { status: 404, .. }) => {}
            other => match other.and_then(|a| self.json(LICENSE, a)) {
                Ok(body) => license(&mut out, &body),
                Err(e) => out.skip(Self::endpoint(LICENSE), e.to_string()),
            },
        }
        Ok(out.collection)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn memory_notation() {
        assert_eq!(parse_memory("7.63G"), Some((7.63 * 1024f64.powi(3)).round() as u64));
        assert_eq!(parse_memory("3.10G"), Some((3.10 * 1024f64.powi(3)).round() as u64));
        assert_eq!(parse_memory("512"), Some(512));
        assert_eq!(parse_memory("1K"), Some(1024));
        assert_eq!(parse_memory("1.5m"), Some(1_572_864));
        assert_eq!(parse_memory("2T"), Some(2 << 40));
        assert_eq!(parse_memory("10KB"), Some(10_240));
        assert_eq!(parse_memory(" 1G "), Some(1 << 30));
        for bad in
            ["", "G", "lots", "-1G", "1.G", ".5G", "1e3", "1,5G", "7.63X", "NaNG", "infG", "1 G", "99999999999999999999999T", "1..2K"]
        {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }

    #[test]
    fn basic_credentials_are_base64() {
        // RFC 7617's example.
        assert_eq!(basic_credentials("Aladdin", "open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_credentials("a", "b"), "YTpi");
        assert_eq!(basic_credentials("ab", "c"), "YWI6Yw==");
    }

    #[test]
    fn error_messages() {
        assert_eq!(error_message(br#"{"code":"NODE_DOWN","message":"bad rpc call"}"#).as_deref(), Some("NODE_DOWN: bad rpc call"));
        assert_eq!(error_message(br#"{"code":"X"}"#).as_deref(), Some("X"));
        assert_eq!(error_message(b"<html>\n502 Bad Gateway</html>").as_deref(), Some("<html> 502 Bad Gateway</html>"));
        assert_eq!(error_message(b""), None);
        assert_eq!(error_message(&vec![b'x'; 10_000]).map(|m| m.len()), Some(MAX_MESSAGE));
    }

    #[test]
    fn expiry() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(expiry_days("2026-01-31", now), Some(30.0));
        assert_eq!(expiry_days("2025-12-31", now), Some(-1.0));
        for bad in ["2026-1-31", "2026-13-01", "tomorrow", "2026-01-31T00:00:00Z", "２０２６-01-01"] {
            assert_eq!(expiry_days(bad, now), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_memory_never_panics(s in "\\PC{0,40}") {
            let _ = parse_memory(&s);
        }

        #[test]
        fn parse_memory_reads_emqx_notation(v in 0.0f64..1000.0, unit in 0usize..5) {
            let suffix = ["", "K", "M", "G", "T"][unit];
            let text = format!("{v:.2}{suffix}");
            let expected = text.trim_end_matches(suffix).parse::<f64>().unwrap() * 1024f64.powi(unit as i32);
            let got = parse_memory(&text).unwrap() as f64;
            prop_assert!((got - expected).abs() <= 0.5 + expected * 1e-12, "{text}: {got} vs {expected}");
        }

        #[test]
        fn bodies_never_panic(body in "\\PC{0,200}") {
            let scope = MetricScope::new(ecp_core::OrgId::new(), ecp_core::ProjectId::new());
            let labels = Labels::empty();
            let now = Timestamp::UNIX_EPOCH;
            let mut out = Out { scope, base: &labels, now, collection: Collection::default() };
            let _ = error_message(body.as_bytes());
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                let _ = nodes(&mut out, "t", &v);
                monitor_current(&mut out, &v);
                metrics(&mut out, &v);
                license(&mut out, &v);
            }
        }

        #[test]
        fn node_objects_never_panic(fields in proptest::collection::btree_map("[a-z_]{1,16}", any_json(), 0..12)) {
            let scope = MetricScope::new(ecp_core::OrgId::new(), ecp_core::ProjectId::new());
            let labels = Labels::empty();
            let mut out = Out { scope, base: &labels, now: Timestamp::UNIX_EPOCH, collection: Collection::default() };
            let mut map: Map<String, Value> = fields.into_iter().collect();
            let object = Value::Object(map.clone());
            map.insert("node".into(), Value::String("emqx@h".into()));
            let body = Value::Array(vec![Value::Object(map), object.clone()]);
            prop_assert!(nodes(&mut out, "t", &body).is_ok());
            monitor_current(&mut out, &object);
            metrics(&mut out, &object);
            license(&mut out, &object);
            prop_assert!(out.collection.samples.iter().all(|s| s.value.is_finite()));
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            "\\PC{0,12}".prop_map(Value::String),
            Just(Value::String("infinity".into())),
            "[0-9]{1,4}\\.[0-9]{2}[KMGT]".prop_map(Value::String),
            Just(Value::Array(vec![])),
        ]
    }
}
