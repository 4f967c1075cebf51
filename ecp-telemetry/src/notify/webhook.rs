//! The webhook notifier: an HTTP `POST` of a JSON body rendered from a template.
//!
//! The template must hold `${name}`, `${contents}` and `${alerttime}` (as the product requires),
//! and may hold `${level}`, `${link}`, `${address}` and `${systemtime}`; times are RFC 3339.
//! Placeholders belong inside JSON strings: their values are JSON-string-escaped, so a body is
//! valid JSON whatever an alarm's message holds, and [`WebhookNotifierBuilder::build`] refuses a
//! template that does not render to valid JSON.
//!
//! Header values are secrets (they often carry tokens) and so is the URL's path and query (chat
//! webhooks put their token there): `Debug` shows the URL's origin only, and errors show neither.
//! Each request also carries `X-ECP-Notification-Id` (the notification's id, for deduplication).
//! Redirects are not followed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::{Clock, SystemClock};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::{Notification, Notifier, Placeholder, RetryPolicy, Template, error_chain, sample_notification};
use crate::error::{Error, Result};

/// The template used when none is set.
pub const DEFAULT_TEMPLATE: &str = r#"{"name": "${name}", "level": "${level}", "contents": "${contents}", "alertTime": "${alerttime}", "address": "${address}", "link": "${link}", "systemTime": "${systemtime}"}"#;
/// The placeholders a template must hold.
pub const REQUIRED_PLACEHOLDERS: [Placeholder; 3] = [Placeholder::Name, Placeholder::Contents, Placeholder::AlertTime];
/// The default timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many custom headers.
pub const MAX_HEADERS: usize = 32;
/// The header carrying the notification's id.
pub const NOTIFICATION_ID_HEADER: &str = "x-ecp-notification-id";

/// Builds a [`WebhookNotifier`]; see [`WebhookNotifier::builder`].
#[must_use]
pub struct WebhookNotifierBuilder {
    name: String,
    url: String,
    headers: Vec<(String, SecretString)>,
    template: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    egress: ecp_http::EgressPolicy,
}

impl fmt::Debug for WebhookNotifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifierBuilder")
            .field("name", &self.name)
            .field("url", &origin_of(&self.url))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifierBuilder {
    /// Where the webhook may be (default [`EgressPolicy::default`](ecp_http::EgressPolicy): no
    /// loopback, link-local, metadata or other special addresses, judged on the URL, on
    /// resolution and on each connection; behind the environment's proxy, the proxy's address
    /// and the URL's IP host are judged, the proxy resolves names).
    pub fn egress(mut self, policy: ecp_http::EgressPolicy) -> Self {
        self.egress = policy;
        self
    }

    /// Adds a header (its value is a secret).
    pub fn header(mut self, name: impl Into<String>, value: SecretString) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    /// The JSON body template (default [`DEFAULT_TEMPLATE`]).
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// The timeout of one attempt (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts in all, 1 to [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS) (default 3).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.retry.attempts = attempts;
        self
    }

    /// The wait before the first retry, doubled for each next one (default 500 ms).
    pub fn base_delay(mut self, base_delay: Duration) -> Self {
        self.retry.base_delay = base_delay;
        self
    }

    /// The whole retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The clock of `${systemtime}` (default the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The notifier.
    ///
    /// # Errors
    /// An invalid-input error for: an empty name; a URL that is not `http(s)://host...` or holds
    /// credentials; an invalid header name or value, or more than [`MAX_HEADERS`]; a template
    /// without `${name}`, `${contents}` or `${alerttime}`, with an unknown placeholder, or that
    /// does not render to valid JSON; a timeout outside 1 ms to 5 minutes; a retry policy out of
    /// range.
    pub fn build(self) -> Result<WebhookNotifier> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("webhook.name", "must not be empty"));
        }
        let url = check_url(&self.url)?;
        self.egress.check_url(&url).map_err(|e| Error::invalid("webhook.url", e.to_string()))?;
        if self.headers.len() > MAX_HEADERS {
            return Err(Error::invalid("webhook.headers", format!("at most {MAX_HEADERS} headers")));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| Error::invalid("webhook.headers", "holds an invalid header name"))?;
            if matches!(name.as_str(), "host" | "content-length" | "transfer-encoding" | "connection" | NOTIFICATION_ID_HEADER) {
                return Err(Error::invalid("webhook.headers", format!("must not set `{name}`")));
            }
            let mut value = HeaderValue::from_str(value.expose_secret())
                .map_err(|_| Error::invalid("webhook.headers", format!("the value of `{name}` is not a valid header value")))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let template = Template::parse("webhook.template", self.template.as_deref().unwrap_or(DEFAULT_TEMPLATE))?;
        template.require("webhook.template", &REQUIRED_PLACEHOLDERS)?;
        let rendered = template.render_json(&sample_notification(), self.clock.now());
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&rendered) {
            return Err(Error::invalid(
                "webhook.template",
                format!("does not render to valid JSON ({e}); placeholders belong inside JSON strings"),
            ));
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(300) {
            return Err(Error::invalid("webhook.timeout", "must be between 1 ms and 5 minutes"));
        }
        self.retry.check()?;
        // A webhook may sit behind the host's outbound proxy: the environment's proxy is used.
        let client = ecp_http::ClientConfig::new(concat!("ecp-telemetry/", env!("CARGO_PKG_VERSION")))
            .timeout(self.timeout)
            .env_proxy(true)
            .egress(self.egress.clone())
            .build()
            .map_err(|e| {
                tracing::debug!(error = %e, "cannot build the HTTP client");
                Error::invalid("webhook", "the HTTP client cannot be set up (TLS roots?)")
            })?;
        Ok(WebhookNotifier {
            name: self.name,
            origin: origin_of(&self.url),
            url,
            headers,
            template,
            timeout: self.timeout,
            retry: self.retry,
            clock: self.clock,
            client,
        })
    }
}

/// A notifier that `POST`s a JSON body to a URL, retrying with backoff.
///
/// Retried: connection failures, timeouts, `5xx`, `408` and `429`. Not retried: other answers
/// (a `400` will not get better).
#[derive(Clone)]
pub struct WebhookNotifier {
    name: String,
    url: reqwest::Url,
    origin: String,
    headers: HeaderMap,
    template: Template,
    timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("url", &self.origin)
            .field("headers", &self.headers.keys().map(HeaderName::as_str).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed.
struct Failure {
    retryable: bool,
    reason: String,
}

impl WebhookNotifier {
    /// A builder for a webhook named `name` (in reports and errors) that posts to `url`.
    pub fn builder(name: impl Into<String>, url: impl Into<String>) -> WebhookNotifierBuilder {
        WebhookNotifierBuilder {
            name: name.into(),
            url: url.into(),
            headers: Vec::new(),
            template: None,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            egress: ecp_http::EgressPolicy::default(),
        }
    }

    /// The body this notifier would send for `n` now.
    pub fn render(&self, n: &Notification) -> String {
        self.template.render_json(n, self.clock.now())
    }

    async fn attempt(&self, n: &Notification, body: &str) -> std::result::Result<(), Failure> {
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(NOTIFICATION_ID_HEADER, n.id.to_string())
            .body(body.to_owned());
        match request.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Ok(());
                }
                let code = status.as_u16();
                let retryable = status.is_server_error() || code == 408 || code == 429;
                let reason = if status.is_redirection() {
                    format!("the webhook answered {status} (redirects are not followed)")
                } else {
                    format!("the webhook answered {status}")
                };
                Err(Failure { retryable, reason })
            }
            Err(e) => {
                let retryable = ecp_http::is_retryable(&e);
                let reason = if e.is_timeout() { format!("no answer within {:?}", self.timeout) } else { error_chain(&e.without_url()) };
                Err(Failure { retryable, reason })
            }
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, n: &Notification) -> Result<()> {
        let body = self.render(n);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(n, &body).await {
                Ok(()) => return Ok(()),
                Err(f) if f.retryable && attempt < self.retry.attempts => {
                    let wait = self.retry.delay(attempt);
                    tracing::debug!(notifier = %self.name, attempt, reason = %f.reason, ?wait, "webhook attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(f) => return Err(Error::Notify { notifier: self.name.clone(), attempts: attempt, reason: f.reason }),
            }
        }
    }
}

/// The URL, checked; errors never repeat it (its path or query may hold a token).
fn check_url(raw: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw).map_err(|_| Error::invalid("webhook.url", "is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::invalid("webhook.url", "must be an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid("webhook.url", "must not hold credentials (use an Authorization header)"));
    }
    Ok(url)
}

/// `scheme://host[:port]` of a URL, or `"<invalid>"`.
fn origin_of(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => "<invalid>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_checks_the_template() {
        let b = || WebhookNotifier::builder("hook", "http://127.0.0.1:1/x").egress(ecp_http::EgressPolicy::allow_loopback());
        b().build().unwrap();
        let e = b().template(r#"{"n": "${name}", "c": "${contents}"}"#).build().unwrap_err().to_string();
        assert!(e.contains("${alerttime}"), "{e}");
        let e = b().template(r#"{"n": ${name}, "c": "${contents}", "t": "${alerttime}"}"#).build().unwrap_err().to_string();
        assert!(e.contains("valid JSON"), "{e}");
        assert!(b().template(r#"{"n": "${name}", "c": "${contents}", "t": "${alerttime}", "x": "${nope}"}"#).build().is_err());
    }

    #[test]
    fn build_checks_url_headers_and_timeouts() {
        for url in ["ftp://h/x", "not a url", "http://user:pw@h/x", "mailto:a@b", "http://"] {
            let e = WebhookNotifier::builder("hook", url).build().unwrap_err().to_string();
            assert!(!e.contains("pw@"), "{e}");
        }
        let b = || WebhookNotifier::builder("hook", "https://h.example/x?token=t0k");
        assert!(b().header("bad name", "v".into()).build().is_err());
        let e = b().header("X-Token", "line\nbreak-SENTINEL".into()).build().unwrap_err().to_string();
        assert!(!e.contains("SENTINEL"), "{e}");
        assert!(b().header("Host", "v".into()).build().is_err());
        assert!(b().timeout(Duration::ZERO).build().is_err());
        assert!(b().attempts(0).build().is_err());
        assert!(WebhookNotifier::builder(" ", "https://h.example/x").build().is_err());
        let hook = b().build().unwrap();
        let d = format!("{hook:?}");
        assert!(d.contains("https://h.example") && !d.contains("t0k"), "{d}");
    }
}
