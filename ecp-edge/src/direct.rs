//! [`DirectDriver`]: manages edge services directly over their HTTP APIs (feature `direct`).
//!
//! One driver serves every directly managed service of a process. It keeps one API client per
//! service (so login tokens are cached and renewed per service) over one shared HTTP connection
//! pool, and rebuilds a client when the service's endpoint or credentials change.
//!
//! | kind | probe | info sync | configuration |
//! |---|---|---|---|
//! | NeuronEX | `GET /api/version` | Neuron nodes, states, groups; eKuiper streams, rules | south devices, streams, rules, raw calls |
//! | Neuron | `GET /api/v2/version` | nodes, states, groups | south devices, raw calls |
//! | eKuiper | `GET /` | streams, rules | streams, rules, raw calls |
//! | NanoMQ | `GET /api/v4/brokers` | brokers, nodes, metrics, reloadable settings | configuration, raw calls |
//! | custom | `GET /` answers at all | `Unsupported` | raw calls |
//!
//! Applying a change converges instead of failing on what is already there, so that a retried
//! attempt (or a resumed task) lands in the same state: an existing Neuron node of the same plugin
//! is kept and its settings, groups and tags updated; an existing eKuiper stream is replaced and
//! an existing rule updated. A raw API call carries the attempt's idempotency key in an
//! `Idempotency-Key` header.
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
use crate::error::Result;
use crate::managed::{self, Client, Clients};
use crate::template::ConfigChange;
use crate::transport::{DEFAULT_MAX_BODY, EdgeTransport, HttpTransport, HttpTransportConfig};

/// The settings of a [`DirectDriver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectDriverConfig {
    /// The time to connect to a service (default 5 s).
    pub connect_timeout: Duration,
    /// The time for one request (default 15 s).
    pub request_timeout: Duration,
    /// The largest answer accepted (default 8 MiB).
    pub max_body: usize,
    /// Extra trusted root certificates, PEM, for services with self-signed certificates.
    pub root_ca_pem: Option<Vec<u8>>,
}

impl Default for DirectDriverConfig {
    fn default() -> Self {
        DirectDriverConfig {
            connect_timeout: HttpTransportConfig::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: HttpTransportConfig::DEFAULT_REQUEST_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            root_ca_pem: None,
        }
    }
}

impl DirectDriverConfig {
    /// Sets both timeouts.
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
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
    /// A driver with `config`.
    ///
    /// # Errors
    /// `InvalidInput` for timeouts outside 1 ms..=1 h, a zero body limit, or a root bundle without
    /// a certificate.
    pub fn new(config: DirectDriverConfig) -> Result<Self> {
        let mut http = HttpTransportConfig::new("http://127.0.0.1")
            .connect_timeout(config.connect_timeout)
            .request_timeout(config.request_timeout)
            .max_body(config.max_body);
        if let Some(pem) = config.root_ca_pem {
            http = http.root_ca_pem(pem);
        }
        Ok(DirectDriver { http: http.build()?, clients: Clients::default() })
    }

    /// How many services have a cached client.
    pub fn cached_clients(&self) -> usize {
        self.clients.len()
    }

    fn client(&self, service: &EdgeService) -> Result<Client> {
        self.clients.get(service, || Ok(Arc::new(self.http.with_base_url(&service.endpoint)?) as Arc<dyn EdgeTransport>))
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
        self.clients.forget(service.id);
    }

    async fn probe(&self, service: &EdgeService) -> Result<Health> {
        managed::probe(&self.client(service)?).await
    }

    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo> {
        managed::sync_info(&self.client(service)?, "direct (custom service)").await
    }

    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
        change.validate()?;
        managed::apply(&self.client(service)?, service.kind, change, key).await
    }
}
