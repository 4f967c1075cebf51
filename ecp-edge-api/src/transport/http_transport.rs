//! [`HttpTransport`]: requests sent over HTTP(S) with reqwest (rustls, aws-lc-rs), with timeouts, a
//! body limit enforced while reading, and errors free of credentials.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{DEFAULT_MAX_BODY, EdgeTransport};
use crate::error::{Error, Result};

/// Where and how [`HttpTransport`] sends requests: a builder whose setters never fail, checked by
/// [`build`](Self::build).
///
/// ```
/// # fn demo() -> ecp_edge_api::Result<()> {
/// use std::time::Duration;
///
/// use ecp_edge_api::HttpTransportConfig;
///
/// let transport = HttpTransportConfig::new("https://10.0.0.5:8085")
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(10))
///     .max_body(1 << 20)
///     .build()?;
/// # let _ = transport; Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct HttpTransportConfig {
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_body: usize,
    root_ca_pem: Option<Vec<u8>>,
    egress: ecp_http::EgressPolicy,
}

impl fmt::Debug for HttpTransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransportConfig")
            .field("base_url", &ecp_http::redact_url(&self.base_url))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_body", &self.max_body)
            .field("root_ca_pem", &self.root_ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())))
            .field("egress", &self.egress)
            .finish()
    }
}

impl HttpTransportConfig {
    /// The default time to establish a connection (TCP and TLS): 5 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default time for a whole exchange, from connecting to the answer's last byte: 15 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

    /// The service at `base_url` (`http://10.0.0.5:8085`, or with a path prefix such as
    /// `https://gateway/edge-7`), with the default timeouts and body limit.
    pub fn new(base_url: impl Into<String>) -> Self {
        HttpTransportConfig {
            base_url: base_url.into(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            root_ca_pem: None,
            egress: ecp_http::EgressPolicy::default(),
        }
    }

    /// Where requests may go (default [`EgressPolicy::default`](ecp_http::EgressPolicy): no
    /// loopback, link-local, metadata or other special addresses, in any spelling, checked on the
    /// URL, on resolution and on each connection). Tests and single-machine demos opt in to
    /// loopback with [`EgressPolicy::allow_loopback`](ecp_http::EgressPolicy::allow_loopback).
    pub fn egress(mut self, policy: ecp_http::EgressPolicy) -> Self {
        self.egress = policy;
        self
    }

    /// The time to establish a connection (default 5 s; 1 ms to 1 h).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The time for a whole exchange, up to the answer's last byte (default 15 s; 1 ms to 1 h).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The largest request or response body (default [`DEFAULT_MAX_BODY`]; at least 1).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Extra trusted root certificates, PEM (one or more), for edges with self-signed certificates.
    /// The system's roots stay trusted.
    pub fn root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_ca_pem = Some(pem.into());
        self
    }

    /// Checks the settings and makes the transport.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for a base URL that is not `http`/`https` with a host, or
    /// holds credentials, a query or a fragment; a timeout outside 1 ms..=1 h; a zero body limit; a
    /// root certificate bundle without a PEM certificate; or an HTTP client that cannot be set up.
    pub fn build(mut self) -> Result<HttpTransport> {
        self.base_url = check_base_url(&self.base_url)?;
        if self.max_body == 0 {
            return Err(invalid("max_body", "must be at least 1 byte"));
        }
        let mut client = ecp_http::ClientConfig::new(concat!("ecp-edge-api/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .egress(self.egress.clone());
        if let Some(pem) = &self.root_ca_pem {
            client = client.root_ca_pem(pem.clone());
        }
        let client = client.build().map_err(from_http)?;
        Ok(HttpTransport { client, config: self })
    }
}

fn invalid(field: &'static str, reason: &'static str) -> Error {
    Error::invalid(field, reason)
}

/// A settings error of ecp-http as ours (timeouts are named as this config names them).
fn from_http(e: ecp_http::Error) -> Error {
    match e {
        ecp_http::Error::InvalidInput { field: "timeout", reason } => Error::invalid("request_timeout", reason),
        ecp_http::Error::InvalidInput { field: "base_url", reason } => Error::invalid("endpoint", reason),
        ecp_http::Error::InvalidInput { field, reason } => Error::invalid(field, reason),
        other => Error::invalid("http_client", other.to_string()),
    }
}

/// The normalised base URL (no trailing `/`), or an error that never repeats the URL (it may hold
/// a password).
fn check_base_url(raw: &str) -> Result<String> {
    let url = ecp_http::check_base_url(raw).map_err(from_http)?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Sends requests to one edge service over HTTP(S).
///
/// Redirects are not followed (the answer is returned as is), no proxy is used, bodies over the
/// limit are refused with [`Error::TooLarge`](crate::Error::TooLarge) (answers are read chunk by chunk and dropped as soon
/// as they pass it), and errors name the call as `METHOD path` only.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    config: HttpTransportConfig,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport").field("config", &self.config).finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport with `config`; the same as [`HttpTransportConfig::build`].
    ///
    /// # Errors
    /// As [`HttpTransportConfig::build`].
    pub fn new(config: HttpTransportConfig) -> Result<Self> {
        config.build()
    }

    /// The same settings and connection pool for the service at another base URL: thousands of
    /// services share one HTTP client (one pool, one TLS setup) this way.
    ///
    /// # Errors
    /// As [`HttpTransportConfig::build`] for the URL.
    pub fn with_base_url(&self, base_url: &str) -> Result<HttpTransport> {
        let mut config = self.config.clone();
        config.base_url = check_base_url(base_url)?;
        Ok(HttpTransport { client: self.client.clone(), config })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }

    /// The timeout of a whole exchange.
    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }

    /// The largest request or response body, bytes.
    pub fn max_body(&self) -> usize {
        self.config.max_body
    }

    /// The absolute URL of an origin-form request URI (`/path?query`).
    fn url(&self, uri: &http::Uri) -> Result<url::Url> {
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Err(invalid("uri", "must be a path and query relative to the base URL"));
        }
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        if !pq.starts_with('/') {
            return Err(invalid("uri", "must start with `/`"));
        }
        // Every request, over HTTP or through an agent's tunnel, stays under the base path: the
        // URL parser would resolve `%2e%2e` (and `..`) into a path above it.
        crate::call::check_request_path(pq)?;
        url::Url::parse(&format!("{}{pq}", self.config.base_url)).map_err(|_| invalid("uri", "does not make a valid URL"))
    }

    /// The egress policy this transport's requests are under.
    pub fn egress(&self) -> &ecp_http::EgressPolicy {
        &self.config.egress
    }

    async fn exchange(&self, endpoint: &str, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let (parts, body) = request.into_parts();
        let limit = self.config.max_body;
        if body.len() > limit {
            return Err(Error::TooLarge { endpoint: endpoint.to_owned(), size: body.len(), limit });
        }
        let url = self.url(&parts.uri)?;
        // An IP host (in whatever spelling) is judged before a connection is tried; names are
        // judged on resolution, and every connection's peer once more by the client.
        self.config.egress.check_url(&url).map_err(|e| Error::Transport {
            endpoint: endpoint.to_owned(),
            retryable: false,
            source: Box::new(e),
        })?;
        let mut req = reqwest::Request::new(parts.method, url);
        *req.headers_mut() = parts.headers;
        *req.body_mut() = Some(body.into());

        let mut response = self.client.execute(req).await.map_err(|e| transport_error(endpoint, e))?;
        if let Some(len) = response.content_length().and_then(|l| usize::try_from(l).ok()).filter(|l| *l > limit) {
            return Err(Error::TooLarge { endpoint: endpoint.to_owned(), size: len, limit });
        }
        let mut buf = BytesMut::with_capacity(response.content_length().map_or(0, |l| l.min(64 * 1024) as usize));
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(endpoint, e))? {
            if buf.len() + chunk.len() > limit {
                return Err(Error::TooLarge { endpoint: endpoint.to_owned(), size: buf.len() + chunk.len(), limit });
            }
            buf.extend_from_slice(&chunk);
        }

        let mut out = http::Response::new(buf.freeze());
        *out.status_mut() = response.status();
        *out.version_mut() = response.version();
        *out.headers_mut() = std::mem::take(response.headers_mut());
        Ok(out)
    }
}

/// A transport error without the URL; retryable for connection failures and timeouts.
fn transport_error(endpoint: &str, e: reqwest::Error) -> Error {
    Error::Transport { endpoint: endpoint.to_owned(), retryable: ecp_http::is_retryable(&e), source: Box::new(e.without_url()) }
}

/// The error of an exchange that outlived the request timeout.
#[derive(Debug, thiserror::Error)]
#[error("no complete answer within {0:?}")]
struct TimedOut(Duration);

#[async_trait]
impl EdgeTransport for HttpTransport {
    async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let endpoint = format!("{} {}", request.method(), request.uri().path());
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(&endpoint, request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Transport { endpoint, retryable: true, source: Box::new(TimedOut(timeout)) }),
        }
    }

    fn describe(&self) -> String {
        self.config.base_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(HttpTransportConfig::new("http://10.0.0.5:8085/").build().unwrap().base_url(), "http://10.0.0.5:8085");
        assert_eq!(HttpTransportConfig::new("https://gw/edge-7/").build().unwrap().base_url(), "https://gw/edge-7");
        for bad in ["ftp://x", "http://", "http://u:pw-sentinel@host", "http://host/?q=1", "http://host/#f", "host:80", "http://a b"] {
            let config = HttpTransportConfig::new(bad);
            assert!(!format!("{config:?}").contains("sentinel"));
            let err = config.build().unwrap_err();
            assert!(!format!("{err} {err:?}").contains("sentinel"), "{err}");
        }
    }

    #[test]
    fn limits_are_checked() {
        let b = || HttpTransportConfig::new("http://h");
        assert!(b().connect_timeout(Duration::ZERO).build().is_err());
        assert!(b().request_timeout(Duration::from_secs(7200)).build().is_err());
        assert!(b().max_body(0).build().is_err());
        assert!(b().root_ca_pem("not a pem").build().is_err());
        let t = b().connect_timeout(Duration::from_secs(1)).max_body(10).build().unwrap();
        assert_eq!(
            (t.connect_timeout(), t.request_timeout(), t.max_body()),
            (Duration::from_secs(1), HttpTransportConfig::DEFAULT_REQUEST_TIMEOUT, 10)
        );
        assert_eq!(t.describe(), "http://h");
    }
}
