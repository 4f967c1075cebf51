//! Simulated edge services: small, real HTTP servers on loopback that speak the API subset of
//! NeuronEX, Neuron, eKuiper and NanoMQ that ecp-rs uses, with the products' wire quirks (see
//! `shared/reference/api-contracts.md` §3–§5 and §8).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ecp_testkit::sim::SimError> {
//! use ecp_testkit::sim::{SimConfig, SimKind, SimService};
//!
//! let neuron = SimService::start(SimConfig::new(SimKind::Neuron)).await?;
//! println!("Neuron API at {}/api/v2", neuron.base_url());
//! neuron.fail_next(2); // the next two requests answer 500 {"error":1001}
//! neuron.go_offline().await; // connections refused until...
//! neuron.go_online().await?; // ...the same port answers again
//! neuron.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! State is real and in memory: a node created over HTTP is listed afterwards, starting a rule
//! changes its status, and tests can read or change it directly with [`SimHandle::with_neuron`],
//! [`SimHandle::with_ekuiper`] and [`SimHandle::with_nanomq`] (NanoMQ has no MQTT side here, so its
//! clients and subscriptions are seeded that way).
//!
//! What each kind serves:
//! - [`SimKind::Neuron`]: `/api/v2` login (`{"name","pass"}`), ping, version, nodes, node
//!   settings, control and state, groups, tags, plugins, read/write and Prometheus metrics; errors
//!   `{"error":N}` with Neuron's status mapping (including errors under HTTP 200), JWT checks with
//!   codes 1004–1007, HTML pages for unknown routes.
//! - [`SimKind::NeuronEx`]: `POST /api/login` (`{"name","password"}` → `{"token","role"}`),
//!   `/api/version`, `/api/system`, and the two APIs it proxies: Neuron under `/api/neuron/*` and
//!   eKuiper under `/api/ekuiper/*`, behind its own Bearer token. The body of its 401 is not
//!   confirmed (reference §7): this simulator answers Neuron-style `{"error":1004|1005|1006|1007}`
//!   with status 401, and `{"error":1009}` for a bad login.
//! - [`SimKind::Ekuiper`]: ping, `GET /` info, streams and tables, rules with status, start, stop
//!   and restart; errors as `text/plain` JSON with a trailing newline; optional auth
//!   (`Authorization: <token>`, no `Bearer`; mint tokens with [`SimHandle::issue_token`]).
//! - [`SimKind::NanoMq`]: `/api/v4` with HTTP Basic: brokers, nodes, clients, subscriptions, topic
//!   tree, metrics, Prometheus text, reload, configuration and publish; errors `{"code":N}`.
//!
//! Every kind shares the plumbing: request counters per (method, path), added latency, failing the
//! next N requests with a 500 in the product's error shape, going offline (the listener closes and
//! open connections are reset) and back on the same port, a body limit (1 MiB by default; larger
//! or broken bodies get the product's "bad body" error), and token lifetimes with
//! [`SimHandle::expire_tokens`].

// Handlers return `Result<Response, Response>` so that `?` can answer with the product's error
// reply; a response is big, but these are cold paths of a test server.
#![allow(clippy::result_large_err)]

mod ekuiper;
mod nanomq;
mod neuron;
mod neuronex;
mod plumbing;
mod reply;
mod server;
mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use ekuiper::{EkuiperRule, EkuiperState, EkuiperStream};
pub use nanomq::{NanomqClient, NanomqState, NanomqSubscription, PublishedMessage};
pub use neuron::{NeuronGroup, NeuronNode, NeuronState, NeuronTag, NodeRunState, NodeType};

use server::Shared;
use token::lock;

/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Which product a simulated service imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SimKind {
    /// NeuronEX 3.x (:8085): its own login, version and system endpoints, Neuron under
    /// `/api/neuron`, eKuiper under `/api/ekuiper`.
    NeuronEx,
    /// Standalone Neuron 2.15 (:7000, `/api/v2`).
    Neuron,
    /// eKuiper 2.x (:9081).
    Ekuiper,
    /// NanoMQ 0.25 HTTP API v4 (:8081).
    NanoMq,
}

impl SimKind {
    /// Every kind, in a fixed order.
    pub const ALL: [SimKind; 4] = [SimKind::NeuronEx, SimKind::Neuron, SimKind::Ekuiper, SimKind::NanoMq];

    /// The lowercase name used on the command line: `neuronex`, `neuron`, `ekuiper`, `nanomq`.
    pub fn name(self) -> &'static str {
        match self {
            SimKind::NeuronEx => "neuronex",
            SimKind::Neuron => "neuron",
            SimKind::Ekuiper => "ekuiper",
            SimKind::NanoMq => "nanomq",
        }
    }

    /// The port the real product listens on by default (8085, 7000, 9081, 8081). Tests should
    /// bind port 0 instead; this is for images that imitate the real layout.
    pub fn product_port(self) -> u16 {
        match self {
            SimKind::NeuronEx => 8085,
            SimKind::Neuron => 7000,
            SimKind::Ekuiper => 9081,
            SimKind::NanoMq => 8081,
        }
    }

    /// The product's default user name and password (eKuiper has none).
    pub fn default_credentials(self) -> Option<(&'static str, &'static str)> {
        match self {
            SimKind::NeuronEx | SimKind::Neuron => Some(("admin", "0000")),
            SimKind::NanoMq => Some(("admin", "public")),
            SimKind::Ekuiper => None,
        }
    }

    fn default_auth(self) -> bool {
        !matches!(self, SimKind::Ekuiper)
    }

    fn default_token_lifetime(self) -> Duration {
        match self {
            // NeuronEX's English docs say 24 h (reference §7); Neuron signs `exp = iat + 3600`.
            SimKind::NeuronEx => Duration::from_secs(24 * 3600),
            _ => Duration::from_secs(3600),
        }
    }
}

impl fmt::Display for SimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimKind {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SimKind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(s)).ok_or_else(|| SimError::UnknownKind { name: s.to_owned() })
    }
}

/// Errors of the simulator itself (not the simulated products' replies).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot bind simulated service to {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid simulator config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A kind name that is not one of `neuronex`, `neuron`, `ekuiper`, `nanomq`.
    #[error("unknown simulated service kind {name:?} (expected neuronex, neuron, ekuiper or nanomq)")]
    UnknownKind {
        /// The name given.
        name: String,
    },
    /// The handle was shut down.
    #[error("the simulated service was shut down")]
    ShutDown,
}

/// How to run one simulated service. Build it with [`SimConfig::builder`] or take the defaults with
/// [`SimConfig::new`].
#[derive(Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// The product imitated.
    pub kind: SimKind,
    /// Where to listen; the default is `127.0.0.1:0` (a free port chosen by the OS).
    pub listen: SocketAddr,
    /// The user name logins (Neuron, NeuronEX) and HTTP Basic (NanoMQ) accept.
    pub username: String,
    /// The password that goes with [`SimConfig::username`].
    pub password: String,
    /// Whether requests must authenticate: JWT for Neuron and NeuronEX (default on; Neuron's
    /// `--disable_auth` when off), Basic for NanoMQ (default on), JWT for eKuiper (default off).
    pub auth: bool,
    /// The lifetime of tokens issued from the start (1 h; 24 h for NeuronEX).
    pub token_lifetime: Duration,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Latency added to every request from the start.
    pub latency: Duration,
    /// The product version the service reports (NeuronEX `/api/version`, Neuron
    /// `/api/v2/version`, eKuiper `GET /`, NanoMQ brokers and nodes) instead of the simulated
    /// product's own; tells images of one simulator apart.
    pub version: Option<String>,
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("kind", &self.kind)
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("auth", &self.auth)
            .field("token_lifetime", &self.token_lifetime)
            .field("body_limit", &self.body_limit)
            .field("latency", &self.latency)
            .field("version", &self.version)
            .finish()
    }
}

impl SimConfig {
    /// The product's defaults on `127.0.0.1:0`.
    pub fn new(kind: SimKind) -> Self {
        let (username, password) = kind.default_credentials().unwrap_or(("", ""));
        SimConfig {
            kind,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            username: username.to_owned(),
            password: password.to_owned(),
            auth: kind.default_auth(),
            token_lifetime: kind.default_token_lifetime(),
            body_limit: DEFAULT_BODY_LIMIT,
            latency: Duration::ZERO,
            version: None,
        }
    }

    /// A builder starting from [`SimConfig::new`].
    pub fn builder(kind: SimKind) -> SimConfigBuilder {
        SimConfigBuilder { config: SimConfig::new(kind) }
    }
}

/// Builds a [`SimConfig`]; [`SimConfigBuilder::build`] checks the values.
#[derive(Debug, Clone)]
pub struct SimConfigBuilder {
    config: SimConfig,
}

impl SimConfigBuilder {
    /// Listens on `addr` (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Listens on `127.0.0.1:port`.
    pub fn port(self, port: u16) -> Self {
        self.listen(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// The accepted user name and password.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.username = username.into();
        self.config.password = password.into();
        self
    }

    /// Turns authentication on or off (see [`SimConfig::auth`]).
    pub fn auth(mut self, on: bool) -> Self {
        self.config.auth = on;
        self
    }

    /// The lifetime of issued tokens.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.token_lifetime = lifetime;
        self
    }

    /// The largest request body accepted, in bytes.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// Latency added to every request.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }

    /// The product version reported instead of the simulated product's own (see
    /// [`SimConfig::version`]).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.config.version = Some(version.into());
        self
    }

    /// Checks and returns the config.
    ///
    /// # Errors
    /// [`SimError::InvalidConfig`] when the body limit is below 1 KiB, or when authentication is on
    /// for a product with credentials and the user name is empty, or (Neuron, NeuronEX) the
    /// password is not 4–16 characters long, which Neuron's login would refuse with 1012.
    pub fn build(self) -> Result<SimConfig, SimError> {
        let c = self.config;
        let invalid = |reason: &str| Err(SimError::InvalidConfig { reason: reason.to_owned() });
        if c.version.as_deref().is_some_and(|v| v.is_empty() || v.len() > 64) {
            return invalid("version must be 1 to 64 bytes long");
        }
        if c.body_limit < 1024 {
            return invalid("body_limit must be at least 1024 bytes");
        }
        if c.auth && c.kind.default_credentials().is_some() && c.username.is_empty() {
            return invalid("username must not be empty when auth is on");
        }
        if c.auth && matches!(c.kind, SimKind::Neuron | SimKind::NeuronEx) && !(4..=16).contains(&c.password.chars().count()) {
            return invalid("Neuron passwords are 4 to 16 characters long");
        }
        Ok(c)
    }
}

/// Starts simulated services.
#[derive(Debug)]
#[non_exhaustive]
pub struct SimService {}

impl SimService {
    /// Binds `config.listen` and serves until the returned handle is shut down or dropped.
    ///
    /// Must be called inside a Tokio runtime (the server runs on spawned tasks).
    ///
    /// # Errors
    /// [`SimError::Bind`] when the address cannot be bound.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let listener = server::bind(config.listen).await?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind { addr: config.listen, source })?;
        let shared = Arc::new(Shared::new(config, addr));
        let task = server::spawn_serve(Arc::clone(&shared), listener);
        shared.online.store(true, Ordering::SeqCst);
        Ok(SimHandle { shared, task: Mutex::new(Some(task)), lifecycle: tokio::sync::Mutex::new(false) })
    }
}

/// A running simulated service: its address, counters, state and fault switches.
///
/// Dropping the handle stops the service (the listener closes and connections are reset).
pub struct SimHandle {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Serializes going offline, online and shutting down; `true` once shut down.
    lifecycle: tokio::sync::Mutex<bool>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("kind", &self.shared.config.kind)
            .field("addr", &self.shared.addr)
            .field("online", &self.is_online())
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The product imitated.
    pub fn kind(&self) -> SimKind {
        self.shared.config.kind
    }

    /// The config the service runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The bound address (the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// `http://<ip>:<port>`, without a trailing slash; an unspecified listen address
    /// (`0.0.0.0`, `::`) is reported as loopback.
    pub fn base_url(&self) -> String {
        let mut addr = self.shared.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        format!("http://{addr}")
    }

    /// How many requests arrived for `method` and `path` (the path without its query), including
    /// failed ones.
    pub fn request_count(&self, method: &str, path: &str) -> u64 {
        self.shared.counters.get(method, path)
    }

    /// Every (method, path) seen, with its count.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.shared.counters.snapshot()
    }

    /// All requests seen.
    pub fn total_requests(&self) -> u64 {
        self.shared.counters.total()
    }

    /// Forgets the counts.
    pub fn reset_request_counts(&self) {
        self.shared.counters.reset()
    }

    /// Latency added to every request from now on (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.set_latency(latency)
    }

    /// The next `n` requests answer HTTP 500 in the product's error shape (Neuron
    /// `{"error":1001}`, eKuiper `{"error":1001,…}` text, NanoMQ `{"code":101}`). Replaces any
    /// failures still pending; 0 cancels them.
    pub fn fail_next(&self, n: u64) {
        self.shared.faults.fail_next(n)
    }

    /// Injected failures not yet used up.
    pub fn pending_failures(&self) -> u64 {
        self.shared.faults.pending_failures()
    }

    /// Whether the service accepts connections.
    pub fn is_online(&self) -> bool {
        self.shared.online.load(Ordering::SeqCst)
    }

    /// Stops answering: the listener closes (new connections are refused) and open connections
    /// are reset, in-flight requests included. State, counters and tokens are kept. Returns once
    /// the port is released; does nothing when already offline.
    pub async fn go_offline(&self) {
        let _guard = self.lifecycle.lock().await;
        self.stop_serving().await;
    }

    /// Starts answering again on the same address and port.
    ///
    /// # Errors
    /// [`SimError::Bind`] when the port was taken meanwhile; [`SimError::ShutDown`] after
    /// [`SimHandle::shutdown`].
    pub async fn go_online(&self) -> Result<(), SimError> {
        let guard = self.lifecycle.lock().await;
        if *guard {
            return Err(SimError::ShutDown);
        }
        if self.is_online() {
            return Ok(());
        }
        let listener = server::bind(self.shared.addr).await?;
        let task = server::spawn_serve(Arc::clone(&self.shared), listener);
        *lock(&self.task) = Some(task);
        self.shared.online.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Sets the lifetime of tokens issued from now on (tokens already issued keep theirs).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.tokens.set_lifetime(lifetime)
    }

    /// Expires every token issued so far: Neuron then answers 403 `{"error":1006}`, NeuronEX 401,
    /// eKuiper 401 `validate token error: …expired`.
    pub fn expire_tokens(&self) {
        self.shared.tokens.expire_all()
    }

    /// A token the service accepts, as if logged in (for eKuiper, which has no login endpoint: a
    /// token with audience `eKuiper`). NanoMQ ignores tokens.
    pub fn issue_token(&self) -> String {
        let audience = match self.kind() {
            SimKind::NeuronEx => token::AUD_NEURONEX,
            SimKind::Ekuiper => token::AUD_EKUIPER,
            SimKind::Neuron | SimKind::NanoMq => token::AUD_NEURON,
        };
        self.shared.tokens.issue(audience, &self.shared.config.username)
    }

    /// Reads or changes the Neuron state (Neuron, and NeuronEX's proxied Neuron); `None` for other
    /// kinds.
    pub fn with_neuron<R>(&self, f: impl FnOnce(&mut NeuronState) -> R) -> Option<R> {
        self.shared.neuron.as_ref().map(|m| f(&mut lock(m)))
    }

    /// Reads or changes the eKuiper state (eKuiper, and NeuronEX's proxied eKuiper); `None` for
    /// other kinds.
    pub fn with_ekuiper<R>(&self, f: impl FnOnce(&mut EkuiperState) -> R) -> Option<R> {
        self.shared.ekuiper.as_ref().map(|m| f(&mut lock(m)))
    }

    /// Reads or changes the NanoMQ state; `None` for other kinds.
    pub fn with_nanomq<R>(&self, f: impl FnOnce(&mut NanomqState) -> R) -> Option<R> {
        self.shared.nanomq.as_ref().map(|m| f(&mut lock(m)))
    }

    /// Stops the service for good and waits until its port is released.
    pub async fn shutdown(self) {
        let mut guard = self.lifecycle.lock().await;
        *guard = true;
        self.stop_serving().await;
    }

    async fn stop_serving(&self) {
        self.shared.online.store(false, Ordering::SeqCst);
        self.shared.generation.send_modify(|g| *g += 1);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            server::stop_task(task).await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.online.store(false, Ordering::SeqCst);
        self.shared.generation.send_modify(|g| *g += 1);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_configs_validate() {
        for kind in SimKind::ALL {
            assert_eq!(kind.name().parse::<SimKind>().unwrap(), kind);
            assert!(SimConfig::builder(kind).build().is_ok());
        }
        assert!("NeuronEX".parse::<SimKind>().is_ok());
        assert!(matches!("emqx".parse::<SimKind>(), Err(SimError::UnknownKind { .. })));
        assert!(SimConfig::builder(SimKind::Neuron).credentials("admin", "123").build().is_err());
        assert!(SimConfig::builder(SimKind::Neuron).credentials("admin", "123").auth(false).build().is_ok());
        assert!(SimConfig::builder(SimKind::NanoMq).body_limit(10).build().is_err());
        let debug = format!("{:?}", SimConfig::builder(SimKind::NanoMq).credentials("u", "sentinel-secret").build().unwrap());
        assert!(!debug.contains("sentinel-secret"));
    }
}
