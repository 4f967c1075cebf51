//! # ecp-http
//!
//! The HTTP client plumbing the crates of ecp-rs share, so that every outbound HTTP connection the
//! control plane makes (to an edge service, an EMQX cluster's REST API, a Prometheus target, a
//! webhook) is set up one way:
//!
//! - [`ClientConfig`] builds the one kind of [`reqwest::Client`]: rustls on aws-lc-rs (the only
//!   crypto provider of the tree), connect and request timeouts checked to lie in 1 ms..=1 h,
//!   redirects never followed, no proxy from the environment unless asked, extra trusted roots
//!   from PEM, a user agent naming the crate.
//! - [`check_base_url`] checks and normalises the base URL of an API: `http`/`https`, a host, no
//!   credentials, query or fragment, at most 2048 bytes, no whitespace; its errors never repeat
//!   the URL (it may hold a password).
//! - [`read_limited`] reads an answer's body under a size limit, refusing it as soon as the limit is
//!   known to be passed (from `Content-Length`, or while streaming), never buffering more.
//!
//! Host applications do not need this crate: it is the shared layer under `ecp-edge-api`,
//! `ecp-cluster` and `ecp-telemetry`, and the place where an outbound connection policy belongs.
//!
//! ```
//! # fn demo() -> Result<(), ecp_http::Error> {
//! use std::time::Duration;
//!
//! let client = ecp_http::ClientConfig::new(concat!("my-crate/", env!("CARGO_PKG_VERSION")))
//!     .connect_timeout(Duration::from_secs(2))
//!     .timeout(Duration::from_secs(10))
//!     .build()?;
//! let base = ecp_http::check_base_url("https://emqx.example:18083/")?;
//! assert_eq!(base.as_str(), "https://emqx.example:18083/");
//! # let _ = client; Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod egress;

pub use egress::{AddressClass, EgressDenied, EgressPolicy, EgressPolicyBuilder, egress_refusal};

/// The longest timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The largest PEM bundle accepted as extra root certificates.
pub const MAX_PEM: usize = 1024 * 1024;
/// The longest base URL accepted, bytes.
pub const MAX_URL_LEN: usize = 2048;

/// What went wrong setting up a client or reading an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is malformed or out of range; the reason never repeats a URL.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// An answer's body is (at least) `size` bytes, over the limit.
    #[error("the body of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The body's size, or a lower bound.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The transport failed while reading; the source carries no URL.
    #[error("the transport failed{}", if *retryable { " (retryable)" } else { "" })]
    Transport {
        /// Whether the same request may succeed later.
        retryable: bool,
        /// reqwest's error, without its URL.
        #[source]
        source: reqwest::Error,
    },
}

impl Error {
    fn invalid(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput { field, reason: reason.into() }
    }

    /// A transport error of reqwest's, without the URL (it may hold credentials), retryable for
    /// connection failures and timeouts.
    pub fn transport(e: reqwest::Error) -> Self {
        Error::Transport { retryable: is_retryable(&e), source: e.without_url() }
    }
}

/// Whether a request that failed with `e` may succeed if sent again: timeouts, connection
/// failures, and failures while sending or reading a body.
/// A refusal of the egress policy is not retryable.
pub fn is_retryable(e: &reqwest::Error) -> bool {
    (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()) && egress_refusal(e).is_none()
}

/// Checks that `timeout` lies in 1 ms..=1 h.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field` otherwise.
pub fn check_timeout(field: &'static str, timeout: Duration) -> Result<(), Error> {
    if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
        return Err(Error::invalid(field, "must be between 1 ms and 1 hour"));
    }
    Ok(())
}

/// How to set up a [`reqwest::Client`]; setters never fail, [`build`](Self::build) checks.
#[derive(Clone)]
pub struct ClientConfig {
    user_agent: Cow<'static, str>,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    root_ca_pem: Option<Vec<u8>>,
    env_proxy: bool,
    egress: EgressPolicy,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("user_agent", &self.user_agent)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("root_ca_pem", &self.root_ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())))
            .field("env_proxy", &self.env_proxy)
            .field("egress", &self.egress)
            .finish()
    }
}

impl ClientConfig {
    /// A client sending `user_agent`, without timeouts (each request may set its own), extra
    /// roots or proxy, under the default (strict) [`EgressPolicy`].
    pub fn new(user_agent: impl Into<Cow<'static, str>>) -> Self {
        ClientConfig {
            user_agent: user_agent.into(),
            connect_timeout: None,
            timeout: None,
            root_ca_pem: None,
            env_proxy: false,
            egress: EgressPolicy::default(),
        }
    }

    /// Where the client may connect (default [`EgressPolicy::default`]: no loopback, link-local,
    /// metadata or other special addresses). Applied on resolution and to every connection.
    #[must_use]
    pub fn egress(mut self, policy: EgressPolicy) -> Self {
        self.egress = policy;
        self
    }

    /// The time to establish a connection, TCP and TLS (1 ms to 1 h).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The time of a whole exchange, up to the answer's last byte (1 ms to 1 h).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Extra trusted root certificates, PEM (one or more, at most 1 MiB); the platform's roots
    /// stay trusted.
    #[must_use]
    pub fn root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_ca_pem = Some(pem.into());
        self
    }

    /// Whether the proxy of the environment (`HTTPS_PROXY` ...) is used; off by default.
    #[must_use]
    pub fn env_proxy(mut self, on: bool) -> Self {
        self.env_proxy = on;
        self
    }

    /// Checks the settings and builds the client: rustls on aws-lc-rs, redirects never followed,
    /// host names resolved and connections checked under the egress policy.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a timeout outside 1 ms..=1 h, a root bundle over 1 MiB or
    /// without a PEM certificate, or a client that cannot be set up (`http_client`).
    pub fn build(&self) -> Result<reqwest::Client, Error> {
        let policy = Arc::new(self.egress.clone());
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent.as_ref())
            .dns_resolver(egress::PolicyResolver(policy.clone()))
            .connector_layer(egress::PolicyLayer(policy));
        if !self.env_proxy {
            builder = builder.no_proxy();
        }
        if let Some(t) = self.connect_timeout {
            check_timeout("connect_timeout", t)?;
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = self.timeout {
            check_timeout("timeout", t)?;
            builder = builder.timeout(t);
        }
        if let Some(pem) = &self.root_ca_pem {
            builder = builder.tls_certs_merge(root_certificates(pem)?);
        }
        builder.build().map_err(|_| Error::invalid("http_client", "cannot be set up with this configuration (TLS roots?)"))
    }
}

fn root_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, Error> {
    if pem.len() > MAX_PEM {
        return Err(Error::invalid("root_ca_pem", "larger than 1 MiB"));
    }
    match reqwest::Certificate::from_pem_bundle(pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(Error::invalid("root_ca_pem", "holds no PEM certificate")),
    }
}

/// Checks and parses the base URL of an API: an absolute `http` or `https` URL with a host, at
/// most [`MAX_URL_LEN`] bytes, without whitespace or control characters, credentials, query or
/// fragment. A path prefix (an API behind a proxy) is kept.
///
/// # Errors
/// [`Error::InvalidInput`] on the field `base_url`; the reason never repeats the URL.
pub fn check_base_url(raw: &str) -> Result<url::Url, Error> {
    const FIELD: &str = "base_url";
    if raw.len() > MAX_URL_LEN {
        return Err(Error::invalid(FIELD, "longer than 2048 bytes"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(FIELD, "must not contain whitespace or control characters"));
    }
    let url = url::Url::parse(raw).map_err(|_| Error::invalid(FIELD, "is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(FIELD, "must be an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(FIELD, "must not hold credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(FIELD, "must not have a query or a fragment"));
    }
    Ok(url)
}

/// `url` without its user info, for `Debug` output of settings not checked yet.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// The whole body of `response`, refused as soon as it is known to exceed `limit` bytes (from its
/// `Content-Length`, or while streaming).
///
/// # Errors
/// [`Error::TooLarge`] over the limit, [`Error::Transport`] when reading fails.
pub async fn read_limited(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, Error> {
    if let Some(len) = response.content_length().and_then(|l| usize::try_from(l).ok()).filter(|l| *l > limit) {
        return Err(Error::TooLarge { size: len, limit });
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(0, |l| l.min(64 * 1024) as usize));
    while let Some(chunk) = response.chunk().await.map_err(Error::transport)? {
        if body.len() + chunk.len() > limit {
            return Err(Error::TooLarge { size: body.len() + chunk.len(), limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_without_repeating_them() {
        assert_eq!(check_base_url("http://10.0.0.5:8085/").unwrap().as_str(), "http://10.0.0.5:8085/");
        assert_eq!(check_base_url("https://gw/edge-7/").unwrap().path(), "/edge-7/");
        let long = format!("http://{}", "a".repeat(3000));
        for bad in
            ["ftp://x", "http://", "http://u:pw-sentinel@host", "http://host/?q=1", "http://host/#f", "host:80", "http://a b", "", &long]
        {
            let err = check_base_url(bad).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("sentinel"), "{err}");
            assert!(matches!(err, Error::InvalidInput { field: "base_url", .. }), "{bad}: {err}");
        }
        assert_eq!(redact_url("http://u:pw-sentinel@h/x"), "http://h/x");
    }

    #[test]
    fn client_settings_are_checked() {
        let c = || ClientConfig::new("test");
        assert!(c().build().is_ok());
        assert!(c().connect_timeout(Duration::ZERO).build().is_err());
        assert!(c().timeout(Duration::from_secs(7200)).build().is_err());
        assert!(c().root_ca_pem("not a pem").build().is_err());
        assert!(c().root_ca_pem(vec![b'x'; MAX_PEM + 1]).build().is_err());
        assert!(c().connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(2)).env_proxy(true).build().is_ok());
        assert!(format!("{:?}", c().root_ca_pem("abc")).contains("<3 bytes>"));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for chunked in [false, true] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let reply: &[u8] = if chunked {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nabcdefghijkl"
                };
                s.write_all(reply).await.unwrap();
            }
        });
        let client = ClientConfig::new("test").timeout(Duration::from_secs(5)).egress(EgressPolicy::allow_loopback()).build().unwrap();
        for _ in 0..2 {
            let mut r = client.get(format!("http://{addr}/")).send().await.unwrap();
            let err = read_limited(&mut r, 8).await.unwrap_err();
            assert!(matches!(err, Error::TooLarge { limit: 8, size } if size >= 9), "{err}");
        }
    }

    /// A loopback server that counts the bytes it was sent and answers with a redirect to the
    /// metadata service.
    async fn counting_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = received.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await.unwrap_or(Ok(0)).unwrap_or(0);
                    count.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    if n > 0 {
                        let reply =
                            b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\n\r\n";
                        let _ = s.write_all(reply).await;
                    }
                });
            }
        });
        (addr, received)
    }

    #[tokio::test]
    async fn the_default_policy_sends_nothing_to_loopback_in_any_spelling() {
        let (addr, received) = counting_server().await;
        let port = addr.port();
        let client = ClientConfig::new("test").timeout(Duration::from_secs(5)).build().unwrap();
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://127.1:{port}/"),
            format!("http://0x7f000001:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://localhost.:{port}/"),
        ] {
            let e = client.get(&url).send().await.unwrap_err();
            assert!(egress_refusal(&e).is_some(), "{url}: {e:?}");
            assert!(!is_retryable(&e), "{url}: a refusal is final");
        }
        // [::1] and [::ffff:127.0.0.1] reach nothing listening on 127.0.0.1 but must be refused too.
        for url in [format!("http://[::ffff:127.0.0.1]:{port}/"), format!("http://[::1]:{port}/")] {
            let e = client.get(&url).send().await.unwrap_err();
            assert!(egress_refusal(&e).is_some() || e.is_connect(), "{url}: {e:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0, "a request byte reached a refused address");
    }

    #[tokio::test]
    async fn redirects_are_answers_never_followed() {
        let (addr, received) = counting_server().await;
        let client = ClientConfig::new("test").egress(EgressPolicy::allow_loopback()).timeout(Duration::from_secs(5)).build().unwrap();
        let r = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::FOUND);
        assert!(received.load(std::sync::atomic::Ordering::SeqCst) > 0);
    }
}
