//! [`EmqxPoller`]: a [`Collector`] that reads an EMQX 5 cluster's REST API (5.3 to 5.10, open
//! source and Enterprise) through an [`EmqxClient`] and turns it into samples.
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
//! The answers are read into the lenient readings of [`types`](super::types), where a malformed
//! field costs only itself (the client's typed answers refuse the whole answer instead):
//!
//! - Errors are `{"code","message"}`: a refused request becomes [`Error::Api`] whose message is
//!   `CODE: message` (with the configured secret scrubbed out should a server echo it).
//! - Bodies are parsed as JSON whatever their content type (5.3 and 5.6 send `applicatin/json`).
//! - `memory_total`/`memory_used` are strings such as `"7.63G"` (K, M, G, T are powers of 1024,
//!   see [`parse_memory`](super::parse_memory)); an unparseable one is skipped with its reason.
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
//! The client's errors become ecp-telemetry's, which [`Collector::collect`] returns, with all
//! they say: [`Api`](crate::Error::Api) and [`Unauthorized`](crate::Error::Unauthorized) are
//! [`Error::Api`] (status, `CODE: message`), [`Transport`](crate::Error::Transport) is
//! [`Error::Transport`] (the same source), [`Decode`](crate::Error::Decode) and
//! [`Incompatible`](crate::Error::Incompatible) are [`Error::Decode`] (the request named in the
//! reason), [`TooLarge`](crate::Error::TooLarge) is [`Error::TooLarge`] (`emqx answer body`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! use ecp_cluster::emqx::EmqxPollerConfig;
//! use ecp_core::{ClusterId, OrgId, ProjectId, Timestamp};
//! use ecp_telemetry::{Collector, MetricScope};
//!
//! let scope = MetricScope::new(OrgId::new(), ProjectId::new());
//! let poller = EmqxPollerConfig::new("emqx prod-1", "http://10.0.0.1:18083", scope, "ecp-monitor", "s3cret".into())
//!     .cluster(ClusterId::new())
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//! let collection = poller.collect(Timestamp::now()).await?;
//! for sample in &collection.samples {
//!     println!("{} {}", sample.series, sample.value);
//! }
//! # Ok(()) }
//! ```
//!
//! [`Error::Api`]: ecp_telemetry::Error::Api
//! [`Error::Transport`]: ecp_telemetry::Error::Transport
//! [`Error::Decode`]: ecp_telemetry::Error::Decode
//! [`Error::TooLarge`]: ecp_telemetry::Error::TooLarge

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::{ClusterId, Timestamp};
use ecp_telemetry::sample::SOURCE_LABEL;
use ecp_telemetry::{Collection, Collector, Labels, MetricName, MetricScope, Sample, Skipped};
use secrecy::{ExposeSecret, SecretString};

use super::client::{ClientOptions, EmqxClient};
use super::request::{self, Request};
use super::types::{CounterReadings, Element, Field, LicenseReading, MetricsReading, MonitorReading, NodeReadings, Reading};
use crate::driver::ClusterApi;
use crate::error::{Error, Result};
use crate::model::ApiKey;

/// The longest connect timeout used (the request timeout bounds it too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many nodes are read from `/api/v5/nodes` (EMQX clusters have a handful).
const MAX_NODES: usize = 1024;
/// At most this many characters of a server's error message are kept.
const MAX_MESSAGE: usize = 512;
/// What a body over the limit is called in [`ecp_telemetry::Error::TooLarge`].
const ANSWER_BODY: &str = "emqx answer body";

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
    egress: ecp_http::EgressPolicy,
}

impl fmt::Debug for EmqxPollerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmqxPollerConfig")
            .field("name", &self.name)
            .field("base_url", &ecp_http::redact_url(&self.base_url))
            .field("scope", &self.scope)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("labels", &self.labels)
            .field("egress", &self.egress)
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
            egress: ecp_http::EgressPolicy::default(),
        }
    }

    /// Where the cluster's API may be reached (default
    /// [`EgressPolicy::default`](ecp_http::EgressPolicy): no loopback, link-local, metadata or
    /// other special addresses).
    pub fn egress(mut self, policy: ecp_http::EgressPolicy) -> Self {
        self.egress = policy;
        self
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

    /// Checks the settings and makes the poller, with an [`EmqxClient`] of its own.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty or overlong name; a base URL that is not
    /// `http`/`https` with a host, or holds credentials, a query or a fragment; an empty API key or
    /// one with `:` or control characters; an empty or overlong secret; a timeout outside
    /// 1 ms..=1 h; a zero body limit; invalid, repeated or reserved labels. [`Error::Backend`] for
    /// an HTTP client that cannot be set up.
    pub fn build(self) -> Result<EmqxPoller> {
        if self.name.is_empty() || self.name.len() > 200 || self.name.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must be 1 to 200 bytes without control characters"));
        }
        // Checked as given (the client forgives blanks around a URL; a poller's config does not).
        let base_url = ecp_http::check_base_url(&self.base_url).map_err(|e| match e {
            ecp_http::Error::InvalidInput { reason, .. } => Error::invalid("base_url", reason),
            other => Error::invalid("base_url", other.to_string()),
        })?;
        if self.api_key.is_empty() || self.api_key.len() > 256 || self.api_key.contains(':') || self.api_key.chars().any(char::is_control) {
            return Err(Error::invalid("api_key", "must be 1 to 256 bytes without `:` or control characters"));
        }
        let secret_len = self.api_secret.expose_secret().len();
        if secret_len == 0 || secret_len > 1024 {
            return Err(Error::invalid("api_secret", "must be 1 to 1024 bytes"));
        }
        let options = ClientOptions::builder()
            .timeout(self.timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .max_body(self.max_body)
            .egress(self.egress.clone())
            .build()?;
        if let Some((k, _)) = self.labels.iter().find(|(k, _)| RESERVED_LABELS.contains(&k.as_str())) {
            return Err(Error::invalid("labels", format!("{k} is set by the poller")));
        }
        let labels = Labels::new(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| match e {
            ecp_telemetry::Error::Core(e) => Error::Core(e),
            other => Error::invalid("labels", other.to_string()),
        })?;
        // The poller's own rules for the key (any EMQX key, not only those the Operator bootstraps).
        let key = ApiKey { key: self.api_key.clone(), secret: self.api_secret.clone() };
        let client = EmqxClient::new(&ClusterApi { base_url: base_url.as_str().to_owned(), key }, &options)?;
        let requests = Requests {
            nodes: request::nodes(),
            monitor: request::monitor_current(None)?,
            metrics: request::metrics(true, None),
            license: request::license(),
        };
        let base_url = base_url.as_str().trim_end_matches('/').to_owned();
        Ok(EmqxPoller { config: EmqxPollerConfig { base_url, ..self }, labels, client, requests })
    }
}

const RESERVED_LABELS: [&str; 4] = ["node", "role", "version", "edition"];

/// The four requests of a collection.
#[derive(Debug, Clone)]
struct Requests {
    nodes: Request,
    monitor: Request,
    metrics: Request,
    license: Request,
}

/// Polls one EMQX cluster's REST API; see the [module docs](self) for what it samples.
///
/// Cheap to clone (the HTTP connection pool is shared).
#[derive(Clone)]
pub struct EmqxPoller {
    config: EmqxPollerConfig,
    labels: Labels,
    client: EmqxClient,
    requests: Requests,
}

impl fmt::Debug for EmqxPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmqxPoller").field("config", &self.config).finish_non_exhaustive()
    }
}

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

    /// The client's error as ecp-telemetry's, keeping what it says; the source is this poller.
    fn error(&self, e: Error) -> ecp_telemetry::Error {
        let source_name = self.config.name.clone();
        match e {
            Error::Api { endpoint, status, code, message } | Error::Unauthorized { endpoint, status, code, message } => {
                ecp_telemetry::Error::Api { source_name, endpoint, status, message: api_message(code, message) }
            }
            Error::Transport { endpoint, retryable, source } => {
                ecp_telemetry::Error::Transport { source_name, endpoint, retryable, source }
            }
            Error::Decode { endpoint, reason } => ecp_telemetry::Error::Decode { source_name, reason: format!("{endpoint}: {reason}") },
            Error::Incompatible { endpoint, reason } => {
                ecp_telemetry::Error::Decode { source_name, reason: format!("{endpoint}: incompatible cluster: {reason}") }
            }
            // Only a request of `/api/v5/nodes` fails a collection: it names the endpoint.
            Error::TooLarge { size, limit, .. } => ecp_telemetry::Error::TooLarge { what: ANSWER_BODY, size, limit },
            Error::Core(e) => ecp_telemetry::Error::Core(e),
            // Not an answer of the cluster (the client's setup): the whole error is the source.
            e @ Error::Backend { backend, operation, .. } => ecp_telemetry::Error::Transport {
                source_name,
                endpoint: format!("{backend} {operation}"),
                retryable: e.is_retryable(),
                source: Box::new(e),
            },
            // Not made by the REST client; kept whole all the same.
            #[cfg(any(feature = "docker", feature = "kubernetes"))]
            Error::Hosting(e) => ecp_telemetry::Error::Transport {
                source_name,
                endpoint: format!("{} {}", e.backend(), e.operation()),
                retryable: e.is_retryable(),
                source: Box::new(e),
            },
        }
    }
}

/// `CODE: message` of an EMQX error (either alone if the other is missing), at most 512
/// characters.
fn api_message(code: Option<String>, message: Option<String>) -> Option<String> {
    let text = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => return None,
    };
    let text: String = text.chars().take(MAX_MESSAGE).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
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

    /// Samples the reading of `key` (at `path`) as `name`; `Absent` gives `absent` if some, else
    /// nothing.
    fn reading(&mut self, path: &str, key: &str, reading: &Reading, name: &'static str, labels: &Labels, absent: Option<f64>) {
        match reading {
            Reading::Value(v) => self.push(name, labels, *v),
            Reading::Absent => {
                if let Some(v) = absent {
                    self.push(name, labels, v);
                }
            }
            Reading::Infinity => self.skip(format!("{path}.{key}"), "\"infinity\" is not a sample value"),
            Reading::Invalid(reason) => self.skip(format!("{path}.{key}"), reason.clone()),
        }
    }
}

/// `metrics?aggregate=true` keys and their counters.
const METRIC_COUNTERS: [(&str, &str); 6] = [
    ("messages.received", "emqx_messages_received_total"),
    ("messages.sent", "emqx_messages_sent_total"),
    ("messages.dropped", "emqx_messages_dropped_total"),
    ("authentication.failure", "emqx_authentication_failure_total"),
    ("authorization.deny", "emqx_authorization_deny_total"),
    ("client.connected", "emqx_client_connected_total"),
];

/// `monitor_current` at `path`: absent gauges read as 0 (5.3 lacks most of them).
fn monitor_current(out: &mut Out<'_>, path: &str, body: &Element<MonitorReading>) {
    let m = match body {
        Element::Object(m) => m,
        Element::Other(kind) => return out.skip(path, format!("expected an object, got {kind}")),
    };
    let base = out.base.clone();
    for (key, name, reading) in [
        ("connections", "emqx_connections", &m.connections),
        ("live_connections", "emqx_live_connections", &m.live_connections),
        ("subscriptions", "emqx_subscriptions", &m.subscriptions),
        ("shared_subscriptions", "emqx_shared_subscriptions", &m.shared_subscriptions),
        ("topics", "emqx_topics", &m.topics),
        ("retained_msg_count", "emqx_retained_messages", &m.retained_msg_count),
        ("received_msg_rate", "emqx_messages_received_per_second", &m.received_msg_rate),
        ("sent_msg_rate", "emqx_messages_sent_per_second", &m.sent_msg_rate),
        ("dropped_msg_rate", "emqx_messages_dropped_per_second", &m.dropped_msg_rate),
    ] {
        out.reading(path, key, reading, name, &base, Some(0.0));
    }
    let (key, sessions) = match &m.cluster_sessions {
        Some(reading) => ("cluster_sessions", reading),
        None => ("sessions", &m.sessions),
    };
    out.reading(path, key, sessions, "emqx_sessions", &base, Some(0.0));
    out.reading(path, "license_quota", &m.license_quota, "emqx_license_quota", &base, None);
}

/// `nodes` at `path`: per node, then the cluster's running and stopped counts.
fn nodes(out: &mut Out<'_>, path: &str, nodes: &NodeReadings) {
    let list = &nodes.0;
    if list.len() > MAX_NODES {
        out.skip(format!("{path}[{MAX_NODES}..]"), format!("{} nodes past the first {MAX_NODES} ignored", list.len() - MAX_NODES));
    }
    let (mut running, mut stopped) = (0u32, 0u32);
    for (i, item) in list.iter().take(MAX_NODES).enumerate() {
        let path = format!("{path}[{i}]");
        let node = match item {
            Element::Object(node) => node,
            Element::Other(kind) => {
                out.skip(path, format!("expected an object, got {kind}"));
                continue;
            }
        };
        let Field::Value(name) = &node.node else {
            out.skip(format!("{path}.node"), "absent or not a string");
            continue;
        };
        let labels = match out.base.with("node", name) {
            Ok(l) => l,
            Err(e) => {
                out.skip(format!("{path}.node"), e.to_string());
                continue;
            }
        };
        let up = matches!(&node.node_status, Field::Value(s) if s == "running");
        if up {
            running += 1;
        } else {
            stopped += 1;
        }
        out.push("emqx_node_up", &labels, if up { 1.0 } else { 0.0 });

        let mut info = labels.clone();
        for (key, field) in [("role", &node.role), ("version", &node.version), ("edition", &node.edition)] {
            if let Field::Value(v) = field {
                match info.with(key, v) {
                    Ok(l) => info = l,
                    Err(e) => out.skip(format!("{path}.{key}"), e.to_string()),
                }
            }
        }
        out.push("emqx_node_info", &info, 1.0);

        for (key, name, reading) in [
            ("memory_used", "emqx_node_memory_used_bytes", &node.memory_used),
            ("memory_total", "emqx_node_memory_total_bytes", &node.memory_total),
            ("load1", "emqx_node_load1", &node.load1),
            ("load5", "emqx_node_load5", &node.load5),
            ("load15", "emqx_node_load15", &node.load15),
            ("connections", "emqx_node_connections", &node.connections),
            ("live_connections", "emqx_node_live_connections", &node.live_connections),
        ] {
            out.reading(&path, key, reading, name, &labels, None);
        }
        match &node.uptime {
            Reading::Value(ms) => out.push("emqx_node_uptime_seconds", &labels, ms / 1000.0),
            other => out.reading(&path, "uptime", other, "emqx_node_uptime_seconds", &labels, None),
        }
    }
    let base = out.base.clone();
    out.push("emqx_nodes_running", &base, f64::from(running));
    out.push("emqx_nodes_stopped", &base, f64::from(stopped));
}

/// `metrics?aggregate=true` at `path`: one object; should a version answer per node, the nodes
/// are summed.
fn metrics(out: &mut Out<'_>, path: &str, body: &MetricsReading) {
    let summed;
    let counters = match body {
        MetricsReading::Aggregate(counters) => counters,
        MetricsReading::PerNode(items) => {
            summed = sum(items);
            &summed
        }
        MetricsReading::Other(kind) => return out.skip(path, format!("expected an object, got {kind}")),
    };
    let base = out.base.clone();
    for (key, name) in METRIC_COUNTERS {
        match counters.get(key) {
            Some(reading) => out.reading(path, key, reading, name, &base, None),
            None => out.skip(format!("{path}.{key}"), "absent"),
        }
    }
}

/// The sampled counters summed over the nodes that give them as numbers; a counter no node
/// gives (or whose sum is not finite) is absent.
fn sum(items: &[Element<CounterReadings>]) -> CounterReadings {
    let mut sum = CounterReadings::new();
    for (key, _) in METRIC_COUNTERS {
        let values = items.iter().filter_map(|item| match item {
            Element::Object(counters) => match counters.get(key) {
                Some(Reading::Value(v)) => Some(*v),
                _ => None,
            },
            Element::Other(_) => None,
        });
        let (total, seen) = values.fold((0.0, false), |(total, _), v| (total + v, true));
        if seen && total.is_finite() {
            sum.insert(key.to_owned(), Reading::Value(total));
        }
    }
    sum
}

/// `license` at `path`.
fn license(out: &mut Out<'_>, path: &str, body: &Element<LicenseReading>) {
    let l = match body {
        Element::Object(l) => l,
        Element::Other(kind) => return out.skip(path, format!("expected an object, got {kind}")),
    };
    let base = out.base.clone();
    match &l.max_connections {
        Reading::Value(v) => out.push("emqx_license_max_connections", &base, *v),
        Reading::Absent => out.reading(path, "max_sessions", &l.max_sessions, "emqx_license_max_connections", &base, None),
        Reading::Infinity => out.skip(format!("{path}.max_connections"), "\"infinity\" (unlimited) is not a sample value"),
        Reading::Invalid(reason) => out.skip(format!("{path}.max_connections"), reason.clone()),
    }
    match &l.expiry_at {
        Field::Absent => {}
        Field::Value(date) => match expiry_days(date, out.now) {
            Some(days) => out.push("emqx_license_expiry_days", &base, days),
            None => {
                out.skip(format!("{path}.expiry_at"), format!("{:?} is not a date YYYY-MM-DD", date.chars().take(40).collect::<String>()))
            }
        },
        Field::Other(kind) => out.skip(format!("{path}.expiry_at"), format!("expected a string, got {kind}")),
    }
    match &l.expiry {
        Field::Absent => {}
        Field::Value(expired) => out.push("emqx_license_expired", &base, if *expired { 1.0 } else { 0.0 }),
        Field::Other(kind) => out.skip(format!("{path}.expiry"), format!("expected a boolean, got {kind}")),
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

    async fn collect(&self, now: Timestamp) -> ecp_telemetry::Result<Collection> {
        let Requests { nodes: nodes_req, monitor: monitor_req, metrics: metrics_req, license: license_req } = &self.requests;
        let (nodes_answer, monitor_answer, metrics_answer, license_answer) = futures::join!(
            self.client.read::<NodeReadings>(nodes_req),
            self.client.read::<Element<MonitorReading>>(monitor_req),
            self.client.read::<MetricsReading>(metrics_req),
            self.client.read_optional::<Element<LicenseReading>>(license_req),
        );
        let mut out = Out { scope: self.config.scope, base: &self.labels, now, collection: Collection::default() };

        nodes(&mut out, &nodes_req.target(), &nodes_answer.map_err(|e| self.error(e))?);
        match monitor_answer {
            Ok(body) => monitor_current(&mut out, &monitor_req.target(), &body),
            Err(e) => out.skip(monitor_req.endpoint(), self.error(e).to_string()),
        }
        match metrics_answer {
            Ok(body) => metrics(&mut out, &metrics_req.target(), &body),
            Err(e) => out.skip(metrics_req.endpoint(), self.error(e).to_string()),
        }
        match license_answer {
            Ok(Some(body)) => license(&mut out, &license_req.target(), &body),
            // 404: an open-source build has no license.
            Ok(None) => {}
            Err(e) => out.skip(license_req.endpoint(), self.error(e).to_string()),
        }
        Ok(out.collection)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::super::types::ErrorBody;
    use super::*;

    const NODES: &str = "/api/v5/nodes";
    const MONITOR: &str = "/api/v5/monitor_current";
    const METRICS: &str = "/api/v5/metrics?aggregate=true";
    const LICENSE: &str = "/api/v5/license";

    /// The message a refused request's error carries, from its body as the client reads it.
    fn error_message(body: &[u8]) -> Option<String> {
        let ErrorBody { code, message } = ErrorBody::parse(body);
        api_message(code, message)
    }

    #[test]
    fn locations_are_the_requests() {
        assert_eq!(
            [request::nodes().target(), request::monitor_current(None).unwrap().target(), request::metrics(true, None).target()],
            [NODES, MONITOR, METRICS]
        );
        assert_eq!(request::license().target(), LICENSE);
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

    /// Samples `body` as each of the four answers would be, as far as it reads as them.
    fn sample_all(out: &mut Out<'_>, body: &Value) {
        if let Ok(readings) = serde_json::from_value::<NodeReadings>(body.clone()) {
            nodes(out, NODES, &readings);
        }
        if let Ok(m) = serde_json::from_value::<Element<MonitorReading>>(body.clone()) {
            monitor_current(out, MONITOR, &m);
        }
        if let Ok(m) = serde_json::from_value::<MetricsReading>(body.clone()) {
            metrics(out, METRICS, &m);
        }
        if let Ok(l) = serde_json::from_value::<Element<LicenseReading>>(body.clone()) {
            license(out, LICENSE, &l);
        }
    }

    proptest! {
        #[test]
        fn bodies_never_panic(body in "\\PC{0,200}") {
            let scope = MetricScope::new(ecp_core::OrgId::new(), ecp_core::ProjectId::new());
            let labels = Labels::empty();
            let now = Timestamp::UNIX_EPOCH;
            let mut out = Out { scope, base: &labels, now, collection: Collection::default() };
            let _ = error_message(body.as_bytes());
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                sample_all(&mut out, &v);
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
            let readings = serde_json::from_value::<NodeReadings>(body);
            prop_assert!(readings.is_ok());
            nodes(&mut out, NODES, &readings.unwrap());
            // An object always reads as each of the other three answers.
            let monitor = serde_json::from_value::<Element<MonitorReading>>(object.clone());
            let metrics_body = serde_json::from_value::<MetricsReading>(object.clone());
            let license_body = serde_json::from_value::<Element<LicenseReading>>(object);
            prop_assert!(monitor.is_ok() && metrics_body.is_ok() && license_body.is_ok());
            monitor_current(&mut out, MONITOR, &monitor.unwrap());
            metrics(&mut out, METRICS, &metrics_body.unwrap());
            license(&mut out, LICENSE, &license_body.unwrap());
            prop_assert!(out.collection.samples.iter().all(|s| s.value.is_finite()));
        }
    }

    /// Mutations of EMQX's answers (the samples of the client's properties) read as each of the
    /// four answers the poller reads: never a panic, every sample a finite value, every skip
    /// located under the request it is about.
    fn check_mutated(m: &ecp_testkit::mutate::Mutated) -> Result<(), TestCaseError> {
        let scope = MetricScope::new(ecp_core::OrgId::new(), ecp_core::ProjectId::new());
        let labels = Labels::empty();
        let mut out = Out { scope, base: &labels, now: Timestamp::UNIX_EPOCH, collection: Collection::default() };
        let _ = error_message(&m.bytes);
        if let Ok(v) = serde_json::from_slice::<Value>(&m.bytes) {
            sample_all(&mut out, &v);
        }
        prop_assert!(out.collection.samples.iter().all(|s| s.value.is_finite()), "{:?}", out.collection.samples);
        let located = |l: &str| [NODES, MONITOR, METRICS, LICENSE].iter().any(|p| l.starts_with(p));
        prop_assert!(out.collection.skipped.iter().all(|s| located(&s.location)), "{:?}", out.collection.skipped);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// See [`check_mutated`]: any mutation (bytes, splices of two answers, values).
        #[test]
        fn mutated_answers_sample_finite_values(m in ecp_testkit::mutate::mutated(super::super::client::props::bodies())) {
            check_mutated(&m)?;
        }

        /// See [`check_mutated`]: only JSON values moved, replaced or removed.
        #[test]
        fn answers_with_moved_values_sample_finite_values(m in ecp_testkit::mutate::json_mutated(super::super::client::props::bodies())) {
            check_mutated(&m)?;
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
