//! [`PrometheusScraper`]: a [`Collector`] that fetches a Prometheus text body over HTTP(S) and
//! parses it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::{ParseLimits, parse, to_samples};
use crate::collector::{Collection, Collector};
use crate::error::{Error, Result};
use crate::sample::{Labels, MetricScope, SOURCE_LABEL};

/// At most this much of an error answer is read, to find the product's error code in it.
const MAX_ERROR_BODY: usize = 4096;
/// Bodies larger than this are parsed on a blocking thread, off the async workers.
const BLOCKING_PARSE_THRESHOLD: usize = 1024 * 1024;
/// At most this many bytes in a scraper's name.
const MAX_NAME_LEN: usize = 200;
/// What the scraper asks for: the text format (EMQX answers JSON to `Accept: application/json`).
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// How a scrape authenticates.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ScrapeAuth {
    /// No credentials (EMQX's `/api/v5/prometheus/stats` by default, Neuron's `/api/v2/metrics`).
    #[default]
    None,
    /// HTTP Basic (NanoMQ `admin:public`, an EMQX API key and secret).
    Basic {
        /// The user name (an EMQX API key).
        username: String,
        /// The password (an EMQX API secret).
        password: SecretString,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
}

impl fmt::Debug for ScrapeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScrapeAuth::None => f.write_str("None"),
            ScrapeAuth::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"<redacted>").finish()
            }
            ScrapeAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// What and how [`PrometheusScraper`] scrapes: a builder whose setters never fail, checked by
/// [`build`](Self::build).
///
/// ```
/// # fn demo(scope: ecp_telemetry::MetricScope) -> ecp_telemetry::Result<()> {
/// use std::time::Duration;
///
/// use ecp_telemetry::prom::PrometheusScrapeConfig;
/// use secrecy::SecretString;
///
/// let scraper = PrometheusScrapeConfig::new("nanomq edge-7", "http://10.0.0.7:8081/api/v4/prometheus", scope)
///     .basic_auth("admin", SecretString::from("public"))
///     .timeout(Duration::from_secs(5))
///     .source("edge:edge-7")
///     .build()?;
/// # let _ = scraper; Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PrometheusScrapeConfig {
    name: String,
    url: String,
    auth: ScrapeAuth,
    timeout: Duration,
    scope: MetricScope,
    labels: Vec<(String, String)>,
    limits: ParseLimits,
    egress: ecp_http::EgressPolicy,
}

impl fmt::Debug for PrometheusScrapeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusScrapeConfig")
            .field("name", &self.name)
            .field("url", &redacted(&self.url))
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("scope", &self.scope)
            .field("labels", &self.labels)
            .field("limits", &self.limits)
            .field("egress", &self.egress)
            .finish()
    }
}

/// A URL without user info, query or fragment, for Debug (the URL is unchecked until `build`).
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut shown = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(port) = u.port() {
                shown.push_str(&format!(":{port}"));
            }
            shown.push_str(u.path());
            if u.query().is_some() {
                shown.push_str("?…");
            }
            shown
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

impl PrometheusScrapeConfig {
    /// The default time for a whole scrape, from connecting to the body's last byte: 15 s (the
    /// product's default API timeout).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

    /// A scrape named `name` (for logs, metrics and errors) of `url` into `scope`, without
    /// credentials, with the default timeout and [`ParseLimits::default`].
    pub fn new(name: impl Into<String>, url: impl Into<String>, scope: MetricScope) -> Self {
        PrometheusScrapeConfig {
            name: name.into(),
            url: url.into(),
            auth: ScrapeAuth::None,
            timeout: Self::DEFAULT_TIMEOUT,
            scope,
            labels: Vec::new(),
            limits: ParseLimits::default(),
            egress: ecp_http::EgressPolicy::default(),
        }
    }

    /// Where the target may be (default [`EgressPolicy::default`](ecp_http::EgressPolicy): no
    /// loopback, link-local, metadata or other special addresses, judged on the URL, on
    /// resolution and on each connection). A scraper made with
    /// [`build_sharing`](Self::build_sharing) connects under the shared client's policy and
    /// checks its own URL under this one.
    pub fn egress(mut self, policy: ecp_http::EgressPolicy) -> Self {
        self.egress = policy;
        self
    }

    /// HTTP Basic credentials (replaces any earlier credentials).
    pub fn basic_auth(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.auth = ScrapeAuth::Basic { username: username.into(), password };
        self
    }

    /// A bearer token (replaces any earlier credentials).
    pub fn bearer_token(mut self, token: SecretString) -> Self {
        self.auth = ScrapeAuth::Bearer(token);
        self
    }

    /// The credentials (replaces any earlier ones).
    pub fn auth(mut self, auth: ScrapeAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The time for a whole scrape, up to the body's last byte (default 15 s; 1 ms to 1 h).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A label added to every sample, replacing the source's own label of that name.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.labels.retain(|(k, _)| *k != name);
        self.labels.push((name, value.into()));
        self
    }

    /// The `source` label of every sample (`edge:<id>`, `cluster:<id>`). Without one, the
    /// scraper's name is used.
    pub fn source(self, value: impl Into<String>) -> Self {
        self.label(SOURCE_LABEL, value)
    }

    /// The largest body accepted (default 8 MiB; at least 1 byte): a larger one is refused with
    /// [`Error::TooLarge`] while it is read, never buffered whole.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// The parse limits (the body limit included).
    pub fn limits(mut self, limits: ParseLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks the settings and makes the scraper, with an HTTP client of its own.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty or overlong name; a URL that is not
    /// `http`/`https` with a host, or holds credentials or a fragment (the error never repeats
    /// the URL); a timeout outside 1 ms..=1 h; a zero body limit; an invalid label; or an HTTP
    /// client that cannot be set up.
    pub fn build(self) -> Result<PrometheusScraper> {
        // No timeouts on the client: `collect` bounds the whole scrape with its own.
        let client = ecp_http::ClientConfig::new(concat!("ecp-telemetry/", env!("CARGO_PKG_VERSION")))
            .egress(self.egress.clone())
            .build()
            .map_err(|e| {
                tracing::debug!(error = %e, "cannot build the HTTP client");
                Error::invalid("http_client", "cannot be set up")
            })?;
        self.build_with_client(client)
    }

    /// Checks the settings and makes the scraper, sharing `other`'s HTTP client (one connection
    /// pool and TLS setup for many scrapers).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_sharing(self, other: &PrometheusScraper) -> Result<PrometheusScraper> {
        self.build_with_client(other.client.clone())
    }

    fn build_with_client(self, client: reqwest::Client) -> Result<PrometheusScraper> {
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_LEN || self.name.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must be 1 to 200 bytes without control characters"));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|_| Error::invalid("url", "is not a valid URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(Error::invalid("url", "must be an http:// or https:// URL with a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid("url", "must not hold credentials (use basic_auth)"));
        }
        if url.fragment().is_some() {
            return Err(Error::invalid("url", "must not have a fragment"));
        }
        self.egress.check_url(&url).map_err(|e| Error::invalid("url", e.to_string()))?;
        ecp_http::check_timeout("timeout", self.timeout).map_err(|e| match e {
            ecp_http::Error::InvalidInput { field, reason } => Error::invalid(field, reason),
            other => Error::invalid("timeout", other.to_string()),
        })?;
        if self.limits.max_body_bytes == 0 {
            return Err(Error::invalid("max_body_bytes", "must be at least 1 byte"));
        }
        let mut pairs = self.labels.clone();
        if !pairs.iter().any(|(k, _)| k == SOURCE_LABEL) {
            pairs.push((SOURCE_LABEL.to_owned(), self.name.clone()));
        }
        let extra_labels = Labels::new(pairs)?;
        let endpoint = format!("GET {}", url.path());
        Ok(PrometheusScraper { client, url, endpoint, extra_labels, config: self })
    }
}

/// Scrapes one Prometheus text endpoint: a [`Collector`].
///
/// Each [`collect`](Collector::collect) fetches the body (redirects are not followed, no proxy is
/// used), refuses it with [`Error::TooLarge`] as soon as it passes the limit, parses it leniently
/// ([`parse`](super::parse)) and converts it with [`to_samples`](super::to_samples): the scope and
/// the configured labels (at least `source`) are on every sample; lines that could not be used
/// are in [`Collection::skipped`].
///
/// Errors name the request as `GET path` only, never with the host, query or credentials:
/// [`Error::Api`] for an answer other than 2xx (with the product's error code when the body has
/// one: NanoMQ `{"code":103}`, Neuron `{"error":1004}`, EMQX `{"code","message"}`),
/// [`Error::Transport`] (retryable) for connection failures and timeouts.
#[derive(Clone)]
pub struct PrometheusScraper {
    client: reqwest::Client,
    url: reqwest::Url,
    endpoint: String,
    extra_labels: Labels,
    config: PrometheusScrapeConfig,
}

impl fmt::Debug for PrometheusScraper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusScraper").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The error of a scrape that outlived its timeout.
#[derive(Debug, thiserror::Error)]
#[error("no complete answer within {0:?}")]
struct TimedOut(Duration);

impl PrometheusScraper {
    /// A scraper with `config`; the same as [`PrometheusScrapeConfig::build`].
    ///
    /// # Errors
    /// As [`PrometheusScrapeConfig::build`].
    pub fn new(config: PrometheusScrapeConfig) -> Result<Self> {
        config.build()
    }

    /// The project the samples belong to.
    pub fn scope(&self) -> MetricScope {
        self.config.scope
    }

    /// The labels added to every sample (`source` among them).
    pub fn extra_labels(&self) -> &Labels {
        &self.extra_labels
    }

    /// The timeout of a whole scrape.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The parse limits (the body limit included).
    pub fn limits(&self) -> &ParseLimits {
        &self.config.limits
    }

    /// Fetches the body, within the limit; no timeout of its own.
    async fn fetch(&self) -> Result<Vec<u8>> {
        let mut request = self.client.get(self.url.clone()).header(reqwest::header::ACCEPT, ACCEPT);
        match &self.config.auth {
            ScrapeAuth::None => {}
            ScrapeAuth::Basic { username, password } => request = request.basic_auth(username, Some(password.expose_secret())),
            ScrapeAuth::Bearer(token) => request = request.bearer_auth(token.expose_secret()),
        }
        let mut response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(&mut response, MAX_ERROR_BODY).await;
            return Err(Error::Api {
                source_name: self.config.name.clone(),
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                message: body.as_deref().and_then(error_message),
            });
        }
        let limit = self.config.limits.max_body_bytes;
        let body = ecp_http::read_limited(&mut response, limit).await.map_err(|e| match e {
            ecp_http::Error::TooLarge { size, limit } => Error::TooLarge { what: "scrape body", size, limit },
            other => self.http_error(other),
        })?;
        Ok(body)
    }

    /// A transport error without the URL; retryable for connection failures and timeouts.
    fn transport_error(&self, e: reqwest::Error) -> Error {
        self.http_error(ecp_http::Error::transport(e))
    }

    /// An error of ecp-http reading the answer, as a transport error of this scrape.
    fn http_error(&self, e: ecp_http::Error) -> Error {
        let (retryable, source): (bool, ecp_core::BoxError) = match e {
            ecp_http::Error::Transport { retryable, source } => (retryable, Box::new(source)),
            other => (false, Box::new(other)),
        };
        Error::Transport { source_name: self.config.name.clone(), endpoint: self.endpoint.clone(), retryable, source }
    }
}

/// Up to `cap` bytes of a body (for error answers); `None` if it cannot be read.
async fn read_capped(response: &mut reqwest::Response, cap: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(cap - out.len())]),
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    Some(out)
}

/// The product's error from a JSON error body: EMQX `{"code":"BAD_API_KEY_OR_SECRET","message":…}`,
/// NanoMQ `{"code":103}`, Neuron `{"error":1004}`. Other bodies give nothing (they may be long
/// HTML pages).
fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let short = |v: &serde_json::Value| -> Option<String> {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(s.chars().take(200).collect())
    };
    let code = object.get("code").and_then(short).or_else(|| object.get("error").and_then(short).map(|e| format!("error {e}")));
    let message = object.get("message").and_then(short);
    match (code, message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c),
        (None, Some(m)) => Some(m),
        (None, None) => None,
    }
}

#[async_trait]
impl Collector for PrometheusScraper {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn collect(&self, now: Timestamp) -> Result<Collection> {
        let timeout = self.config.timeout;
        let body = match tokio::time::timeout(timeout, self.fetch()).await {
            Ok(body) => body?,
            Err(_) => {
                return Err(Error::Transport {
                    source_name: self.config.name.clone(),
                    endpoint: self.endpoint.clone(),
                    retryable: true,
                    source: Box::new(TimedOut(timeout)),
                });
            }
        };
        let limits = self.config.limits;
        let parsed = if body.len() > BLOCKING_PARSE_THRESHOLD {
            tokio::task::spawn_blocking(move || parse(&body, &limits)).await.map_err(|_| Error::Decode {
                source_name: self.config.name.clone(),
                reason: "the parser task did not finish".to_owned(),
            })??
        } else {
            parse(&body, &limits)?
        };
        if parsed.skipped_lines > 0 {
            tracing::debug!(scraper = %self.config.name, samples = parsed.samples.len(), skipped = parsed.skipped_lines, "scrape had lines that were skipped");
        }
        Ok(to_samples(&parsed, self.config.scope, &self.extra_labels, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_of_the_products() {
        assert_eq!(error_message(br#"{"code":103}"#).as_deref(), Some("103"));
        assert_eq!(error_message(br#"{"error":1004}"#).as_deref(), Some("error 1004"));
        assert_eq!(
            error_message(br#"{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}"#).as_deref(),
            Some("BAD_API_KEY_OR_SECRET: Check api_key/api_secret")
        );
        assert_eq!(error_message(b"<html>404</html>"), None);
        assert_eq!(error_message(b"[1]"), None);
    }

    #[test]
    fn urls_are_shown_without_query_or_credentials() {
        assert_eq!(redacted("http://u:pw@h:8081/api/v4/prometheus?token=x"), "http://h:8081/api/v4/prometheus?…");
        assert_eq!(redacted("not a url"), "<not a URL>");
    }
}
