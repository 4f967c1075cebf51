//! [`DirectDriver`]: manages edge services directly over their HTTP APIs (feature `direct`).
//!
//! One driver serves every directly managed service of a process. It keeps one [`ServiceClient`]
//! per service (so login tokens are cached and renewed per service) over one shared HTTP
//! connection pool, and rebuilds a client when the service's endpoint or credentials change. What
//! each kind of service supports, and how applying a change converges, is in `ServiceClient`'s
//! documentation: a retried attempt (or a resumed task) lands in the same state, and a raw API
//! call carries the attempt's idempotency key in an `Idempotency-Key` header.
//!
//! Directly managed services cannot be installed, upgraded, started or stopped: those answer
//! `Unsupported`, as the [`driver`](crate::driver) table says.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::edge::EdgeService;
use ecp_core::task::IdempotencyKey;
use serde_json::Value;

use crate::driver::{Capabilities, EdgeDriver, EdgeInfo, Health};
pub use ecp_edge_api::EgressPolicy;
use ecp_edge_api::{DEFAULT_MAX_BODY, EdgeTransport, HttpTransport, HttpTransportConfig, ServiceClient};

use crate::error::Result;
use crate::managed::Clients;
use crate::template::ConfigChange;

/// The settings of a [`DirectDriver`]. Build them with [`DirectDriverConfig::builder`];
/// [`Default`] gives the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectDriverConfig {
    connect_timeout: Duration,
    request_timeout: Duration,
    max_body: usize,
    root_ca_pem: Option<Vec<u8>>,
    egress: EgressPolicy,
}

impl Default for DirectDriverConfig {
    /// The defaults: connect within 5 s, answer within 15 s, bodies up to 8 MiB, the system's
    /// roots only, the strict egress policy (what `DirectDriverConfig::builder().build()` gives).
    fn default() -> Self {
        DirectDriverConfig {
            connect_timeout: HttpTransportConfig::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: HttpTransportConfig::DEFAULT_REQUEST_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            root_ca_pem: None,
            egress: EgressPolicy::default(),
        }
    }
}

impl DirectDriverConfig {
    /// A builder starting from the defaults (see each setter).
    pub fn builder() -> DirectDriverConfigBuilder {
        DirectDriverConfigBuilder(DirectDriverConfig::default())
    }

    /// The time to connect to a service.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The time for one request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The largest answer accepted.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The extra trusted root certificates, PEM, if any.
    pub fn root_ca_pem(&self) -> Option<&[u8]> {
        self.root_ca_pem.as_deref()
    }

    /// Where services may be reached.
    pub fn egress(&self) -> &EgressPolicy {
        &self.egress
    }

    /// The defaults with both timeouts set (the hosted drivers' probe settings; checked when the
    /// driver is made, as every setting).
    #[must_use]
    #[cfg(feature = "docker")]
    pub(crate) fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The HTTP transport settings every service's transport is made from.
    fn transport(&self) -> HttpTransportConfig {
        let mut http = HttpTransportConfig::new("http://127.0.0.1")
            .connect_timeout(self.connect_timeout)
            .request_timeout(self.request_timeout)
            .max_body(self.max_body)
            .egress(self.egress.clone());
        if let Some(pem) = &self.root_ca_pem {
            http = http.root_ca_pem(pem.clone());
        }
        http
    }
}

/// Builds a [`DirectDriverConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct DirectDriverConfigBuilder(DirectDriverConfig);

impl DirectDriverConfigBuilder {
    /// The time to connect to a service (default 5 s; 1 ms to 1 h).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// The time for one request (default 15 s; 1 ms to 1 h).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.0.request_timeout = timeout;
        self
    }

    /// Both timeouts: [`connect_timeout`](Self::connect_timeout) and
    /// [`request_timeout`](Self::request_timeout).
    pub fn timeouts(self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout(connect).request_timeout(request)
    }

    /// The largest answer accepted (default 8 MiB, [`DEFAULT_MAX_BODY`]; at least 1 byte).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.0.max_body = bytes;
        self
    }

    /// Extra trusted root certificates, PEM, for services with self-signed certificates
    /// (default none; the system's roots stay trusted).
    pub fn root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.0.root_ca_pem = Some(pem.into());
        self
    }

    /// Where services may be reached (default [`EgressPolicy::default`]: no loopback,
    /// link-local, metadata or other special addresses; private ranges allowed). An endpoint a
    /// project editor points at the control plane's own host is refused on every request.
    pub fn egress(mut self, policy: EgressPolicy) -> Self {
        self.0.egress = policy;
        self
    }

    /// The settings, checked by setting up the HTTP client the driver will use.
    ///
    /// # Errors
    /// `InvalidInput` for timeouts outside 1 ms..=1 h, a zero body limit, or a root bundle over
    /// 1 MiB or without a certificate.
    pub fn build(self) -> Result<DirectDriverConfig> {
        self.0.transport().build()?;
        Ok(self.0)
    }
}

/// The driver of directly managed services; see the [module docs](self).
pub struct DirectDriver {
    /// The template every service's transport is made from (one shared connection pool).
    http: HttpTransport,
    clients: Clients,
}

impl std::fmt::Debug for DirectDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.clients.len();
        f.debug_struct("DirectDriver").field("http", &self.http).field("cached_clients", &cached).finish()
    }
}

impl DirectDriver {
    /// A driver with `config`: sets up the HTTP connection pool its services share.
    ///
    /// # Errors
    /// `InvalidInput` if the HTTP client cannot be set up (the checks of
    /// [`DirectDriverConfigBuilder::build`]).
    pub fn new(config: DirectDriverConfig) -> Result<Self> {
        Ok(DirectDriver { http: config.transport().build()?, clients: Clients::default() })
    }

    /// How many services have a cached client.
    pub fn cached_clients(&self) -> usize {
        self.clients.len()
    }

    fn client(&self, service: &EdgeService) -> Result<ServiceClient> {
        self.clients.get(service, || Ok(Arc::new(self.http.with_base_url(service.endpoint())?) as Arc<dyn EdgeTransport>))
    }
}

#[async_trait]
impl EdgeDriver for DirectDriver {
    fn backend(&self) -> &'static str {
        "direct"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::managed()
    }

    /// Drops the service's cached client and login token ([`Fleet`](crate::fleet) calls this on
    /// deregistration).
    fn forget(&self, service: &EdgeService) {
        self.clients.forget(service.id());
    }

    async fn probe(&self, service: &EdgeService) -> Result<Health> {
        Ok(self.client(service)?.probe().await?)
    }

    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo> {
        Ok(self.client(service)?.sync_info().await?)
    }

    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
        change.validate()?;
        Ok(self.client(service)?.apply(change, &key.0).await?)
    }
}
