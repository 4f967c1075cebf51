//! The cluster model: what a hosted EMQX cluster is made of, and the statuses every backend reports.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The product's largest number of core or replicant nodes (the default [`ClusterLimits`]).
pub const DEFAULT_MAX_REPLICAS: u32 = 7;

/// Which backend runs (or fronts) a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterBackend {
    /// The EMQX Operator's `EMQX` custom resource on Kubernetes.
    Kubernetes,
    /// EMQX containers on a Docker host.
    Docker,
    /// A running EMQX 5 cluster onboarded by its REST API.
    Existing,
}

impl ClusterBackend {
    /// Every backend.
    pub const ALL: [ClusterBackend; 3] = [ClusterBackend::Kubernetes, ClusterBackend::Docker, ClusterBackend::Existing];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClusterBackend::Kubernetes => "kubernetes",
            ClusterBackend::Docker => "docker",
            ClusterBackend::Existing => "existing",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// Whether the platform runs the cluster (and so can create, scale, upgrade, stop it).
    pub const fn is_hosted(self) -> bool {
        !matches!(self, ClusterBackend::Existing)
    }
}

impl fmt::Display for ClusterBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a cluster is in its life, as every backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", content = "cause", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterStatus {
    /// Being created: not every node is up yet.
    Creating,
    /// A change (scale, resize, upgrade, network) is rolling out.
    Updating,
    /// Every node runs and the cluster serves.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped on purpose (no node runs).
    Stopped,
    /// Something is wrong; the cause says what.
    Error(String),
}

impl ClusterStatus {
    /// The stable name (`"running"`), without the cause.
    pub const fn as_str(&self) -> &'static str {
        match self {
            ClusterStatus::Creating => "creating",
            ClusterStatus::Updating => "updating",
            ClusterStatus::Running => "running",
            ClusterStatus::Stopping => "stopping",
            ClusterStatus::Stopped => "stopped",
            ClusterStatus::Error(_) => "error",
        }
    }

    /// Parses a stable name and, for `error`, its cause.
    pub fn parse(name: &str, cause: Option<&str>) -> Option<Self> {
        Some(match name {
            "creating" => ClusterStatus::Creating,
            "updating" => ClusterStatus::Updating,
            "running" => ClusterStatus::Running,
            "stopping" => ClusterStatus::Stopping,
            "stopped" => ClusterStatus::Stopped,
            "error" => ClusterStatus::Error(cause.unwrap_or("unknown").to_owned()),
            _ => return None,
        })
    }

    /// The cause of an `Error`.
    pub fn cause(&self) -> Option<&str> {
        match self {
            ClusterStatus::Error(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterStatus::Error(cause) => write!(f, "error: {cause}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// How clients outside the orchestrator reach the cluster's listeners and dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NetworkMode {
    /// Inside the cluster network only (Kubernetes `ClusterIP`; Docker: the user network only).
    #[default]
    ClusterIP,
    /// A port on every node (Kubernetes `NodePort`; Docker: ports published on the host).
    NodePort,
    /// An external load balancer (Kubernetes `LoadBalancer`; not available on Docker).
    LoadBalancer,
}

impl NetworkMode {
    /// The Kubernetes Service type it maps to.
    pub const fn as_str(self) -> &'static str {
        match self {
            NetworkMode::ClusterIP => "ClusterIP",
            NetworkMode::NodePort => "NodePort",
            NetworkMode::LoadBalancer => "LoadBalancer",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        [NetworkMode::ClusterIP, NetworkMode::NodePort, NetworkMode::LoadBalancer].into_iter().find(|m| m.as_str() == s)
    }
}

/// The protocol of an MQTT listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ListenerProtocol {
    /// MQTT over TCP (default port 1883).
    Tcp,
    /// MQTT over TLS (8883).
    Ssl,
    /// MQTT over WebSocket (8083).
    Ws,
    /// MQTT over secure WebSocket (8084).
    Wss,
}

impl ListenerProtocol {
    /// Every protocol.
    pub const ALL: [ListenerProtocol; 4] = [ListenerProtocol::Tcp, ListenerProtocol::Ssl, ListenerProtocol::Ws, ListenerProtocol::Wss];

    /// EMQX's listener type name (`tcp`, `ssl`, `ws`, `wss`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::Ssl => "ssl",
            ListenerProtocol::Ws => "ws",
            ListenerProtocol::Wss => "wss",
        }
    }

    /// The product's default port.
    pub const fn default_port(self) -> u16 {
        match self {
            ListenerProtocol::Tcp => 1883,
            ListenerProtocol::Ssl => 8883,
            ListenerProtocol::Ws => 8083,
            ListenerProtocol::Wss => 8084,
        }
    }
}

/// The dashboard's (and REST API's) default port.
pub const DASHBOARD_PORT: u16 = 18083;

/// An MQTT listener a cluster exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    /// Its protocol.
    pub protocol: ListenerProtocol,
    /// Its port (inside the container or pod).
    pub port: u16,
}

impl Listener {
    /// The protocol on its default port.
    pub const fn default_for(protocol: ListenerProtocol) -> Self {
        Self { protocol, port: protocol.default_port() }
    }

    /// The four default listeners: 1883, 8883, 8083, 8084.
    pub fn defaults() -> Vec<Listener> {
        ListenerProtocol::ALL.into_iter().map(Listener::default_for).collect()
    }
}

/// CPU and memory of each node (requests = limits, the product's quotas such as "1C1G").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one core), if limited.
    pub cpu_millis: Option<u32>,
    /// Memory in MiB, if limited.
    pub memory_mib: Option<u32>,
}

impl Resources {
    /// `cpu_millis` millicores and `memory_mib` MiB.
    pub const fn new(cpu_millis: u32, memory_mib: u32) -> Self {
        Self { cpu_millis: Some(cpu_millis), memory_mib: Some(memory_mib) }
    }

    /// The Kubernetes quantity of the CPU (`"250m"`).
    pub fn cpu_quantity(&self) -> Option<String> {
        self.cpu_millis.map(|m| format!("{m}m"))
    }

    /// The Kubernetes quantity of the memory (`"512Mi"`).
    pub fn memory_quantity(&self) -> Option<String> {
        self.memory_mib.map(|m| format!("{m}Mi"))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.cpu_millis == Some(0) {
            return Err(Error::invalid("resources.cpu_millis", "must be at least 1 millicore"));
        }
        if self.memory_mib.is_some_and(|m| m < 64) {
            return Err(Error::invalid("resources.memory_mib", "must be at least 64 MiB"));
        }
        Ok(())
    }
}

/// How many nodes a cluster may have. Build with [`ClusterLimits::builder`]; `build()` validates.
/// The default is what `ClusterLimits::builder().build()` gives, the product's: 1 to 7 core nodes
/// and 0 to 7 replicants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ClusterLimitsWire")]
#[non_exhaustive]
pub struct ClusterLimits {
    max_core_replicas: u32,
    max_replicant_replicas: u32,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        Self { max_core_replicas: DEFAULT_MAX_REPLICAS, max_replicant_replicas: DEFAULT_MAX_REPLICAS }
    }
}

/// Builds [`ClusterLimits`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClusterLimitsBuilder(ClusterLimits);

impl ClusterLimitsBuilder {
    /// The most core nodes (default 7, the product's; 1 to 1,000).
    pub fn max_core_replicas(mut self, n: u32) -> Self {
        self.0.max_core_replicas = n;
        self
    }

    /// The most replicant nodes (default 7, the product's; 0 to 1,000).
    pub fn max_replicant_replicas(mut self, n: u32) -> Self {
        self.0.max_replicant_replicas = n;
        self
    }

    /// The limits.
    ///
    /// # Errors
    /// `InvalidInput` on `limits.max_core_replicas` when it is 0 or above 1,000, on
    /// `limits.max_replicant_replicas` when it is above 1,000.
    pub fn build(self) -> Result<ClusterLimits> {
        let l = self.0;
        if l.max_core_replicas == 0 || l.max_core_replicas > 1000 {
            return Err(Error::invalid("limits.max_core_replicas", "must be 1..=1000"));
        }
        if l.max_replicant_replicas > 1000 {
            return Err(Error::invalid("limits.max_replicant_replicas", "must be 0..=1000"));
        }
        Ok(l)
    }
}

/// The serialized form of [`ClusterLimits`], deserialized through its builder.
#[derive(Deserialize)]
struct ClusterLimitsWire {
    max_core_replicas: u32,
    max_replicant_replicas: u32,
}

impl TryFrom<ClusterLimitsWire> for ClusterLimits {
    type Error = Error;

    fn try_from(w: ClusterLimitsWire) -> Result<Self> {
        ClusterLimits::builder().max_core_replicas(w.max_core_replicas).max_replicant_replicas(w.max_replicant_replicas).build()
    }
}

impl ClusterLimits {
    /// A builder starting from the defaults: at most 7 core and 7 replicant nodes (the product's).
    pub fn builder() -> ClusterLimitsBuilder {
        ClusterLimitsBuilder(Self::default())
    }

    /// The most core nodes.
    pub fn max_core_replicas(&self) -> u32 {
        self.max_core_replicas
    }

    /// The most replicant nodes.
    pub fn max_replicant_replicas(&self) -> u32 {
        self.max_replicant_replicas
    }

    /// Checks a core and replicant count.
    ///
    /// # Errors
    /// `InvalidInput` naming the count out of range.
    pub fn check(&self, core: u32, replicant: u32) -> Result<()> {
        if core == 0 || core > self.max_core_replicas {
            return Err(Error::invalid("core_replicas", format!("must be 1..={}, got {core}", self.max_core_replicas)));
        }
        if replicant > self.max_replicant_replicas {
            return Err(Error::invalid("replicant_replicas", format!("must be 0..={}, got {replicant}", self.max_replicant_replicas)));
        }
        Ok(())
    }
}

/// An API key the platform bootstraps into a hosted cluster (the Operator's `bootstrapAPIKeys`, EMQX's
/// `api_key.bootstrap_file`) so it can call the cluster's REST API. The secret is redacted in `Debug`.
#[derive(Clone)]
pub struct ApiKey {
    /// The key (`^[a-zA-Z\d-_]+$`).
    pub key: String,
    /// The secret (3–128 characters).
    pub secret: SecretString,
}

impl ApiKey {
    /// A key and its secret, validated as the Operator validates them.
    ///
    /// # Errors
    /// `InvalidInput` for a key outside `[a-zA-Z0-9_-]+` or a secret not 3–128 characters long.
    pub fn new(key: impl Into<String>, secret: SecretString) -> Result<Self> {
        let key = key.into();
        if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(Error::invalid("api_key.key", "must be 1..=128 of [a-zA-Z0-9_-]"));
        }
        let n = secret.expose_secret().chars().count();
        if !(3..=128).contains(&n) {
            return Err(Error::invalid("api_key.secret", "must be 3..=128 characters"));
        }
        Ok(Self { key, secret })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey").field("key", &self.key).field("secret", &"[REDACTED]").finish()
    }
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.secret.expose_secret() == other.secret.expose_secret()
    }
}

/// What a hosted cluster should look like: the input of create, and of every change after it.
/// Serializes without its API key (the store keeps the secret apart, and never in the spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// The EMQX image (`emqx/emqx-enterprise:5.10.0`).
    pub image: String,
    /// Core nodes (1..=limit).
    pub core_replicas: u32,
    /// Replicant nodes (0..=limit).
    pub replicant_replicas: u32,
    /// CPU and memory per node.
    pub resources: Resources,
    /// How the listeners and the dashboard are exposed.
    pub network: NetworkMode,
    /// The MQTT listeners.
    pub listeners: Vec<Listener>,
    /// The dashboard (REST API) port.
    pub dashboard_port: u16,
    /// The API key bootstrapped into the cluster, if any.
    #[serde(skip)]
    pub api_key: Option<ApiKey>,
    /// Extra HOCON merged into the nodes' configuration.
    #[serde(default)]
    pub config: Option<String>,
    /// Labels put on everything the backend creates (besides its own).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl ClusterSpec {
    /// A spec builder for `image`: one core node, no replicant, the default listeners and dashboard
    /// port, ClusterIP.
    pub fn builder(image: impl Into<String>) -> ClusterSpecBuilder {
        ClusterSpecBuilder {
            spec: ClusterSpec {
                image: image.into(),
                core_replicas: 1,
                replicant_replicas: 0,
                resources: Resources::default(),
                network: NetworkMode::default(),
                listeners: Listener::defaults(),
                dashboard_port: DASHBOARD_PORT,
                api_key: None,
                config: None,
                labels: BTreeMap::new(),
            },
            limits: ClusterLimits::default(),
        }
    }

    /// The image's tag (`5.10.0` of `emqx/emqx-enterprise:5.10.0`), if it has one.
    pub fn image_tag(&self) -> Option<&str> {
        image_tag(&self.image)
    }

    /// Checks the spec against `limits`.
    ///
    /// # Errors
    /// `InvalidInput` naming the first bad field.
    pub fn validate(&self, limits: &ClusterLimits) -> Result<()> {
        validate_image(&self.image)?;
        limits.check(self.core_replicas, self.replicant_replicas)?;
        self.resources.validate()?;
        let mut ports = vec![self.dashboard_port];
        for l in &self.listeners {
            ports.push(l.port);
        }
        if ports.contains(&0) {
            return Err(Error::invalid("listeners", "port 0"));
        }
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() != n {
            return Err(Error::invalid("listeners", "two listeners (or a listener and the dashboard) share a port"));
        }
        if self.config.as_ref().is_some_and(|c| c.len() > 256 * 1024) {
            return Err(Error::invalid("config", "longer than 256 KiB"));
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > 253 || v.len() > 63 {
                return Err(Error::invalid("labels", format!("label {k:?} too long or empty")));
            }
        }
        Ok(())
    }
}

/// Builds a [`ClusterSpec`]; [`build`](Self::build) validates it.
#[derive(Debug, Clone)]
pub struct ClusterSpecBuilder {
    spec: ClusterSpec,
    limits: ClusterLimits,
}

impl ClusterSpecBuilder {
    /// Core and replicant nodes.
    #[must_use]
    pub fn replicas(mut self, core: u32, replicant: u32) -> Self {
        self.spec.core_replicas = core;
        self.spec.replicant_replicas = replicant;
        self
    }

    /// CPU and memory per node.
    #[must_use]
    pub fn resources(mut self, resources: Resources) -> Self {
        self.spec.resources = resources;
        self
    }

    /// The network mode.
    #[must_use]
    pub fn network(mut self, mode: NetworkMode) -> Self {
        self.spec.network = mode;
        self
    }

    /// The MQTT listeners (replacing the defaults).
    #[must_use]
    pub fn listeners(mut self, listeners: Vec<Listener>) -> Self {
        self.spec.listeners = listeners;
        self
    }

    /// The dashboard port.
    #[must_use]
    pub fn dashboard_port(mut self, port: u16) -> Self {
        self.spec.dashboard_port = port;
        self
    }

    /// The API key to bootstrap.
    #[must_use]
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.spec.api_key = Some(key);
        self
    }

    /// Extra HOCON configuration.
    #[must_use]
    pub fn config(mut self, hocon: impl Into<String>) -> Self {
        self.spec.config = Some(hocon.into());
        self
    }

    /// A label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.labels.insert(key.into(), value.into());
        self
    }

    /// The limits to validate against (default: the product's 1..=7).
    #[must_use]
    pub fn limits(mut self, limits: ClusterLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The spec.
    ///
    /// # Errors
    /// `InvalidInput` naming the first bad field.
    pub fn build(self) -> Result<ClusterSpec> {
        self.spec.validate(&self.limits)?;
        Ok(self.spec)
    }
}

/// Checks an image reference: non-empty, at most 255 bytes, no whitespace or control characters.
///
/// # Errors
/// `InvalidInput`.
pub fn validate_image(image: &str) -> Result<()> {
    if image.is_empty() || image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid("image", "must be 1..=255 characters without whitespace"));
    }
    if image.starts_with(['/', ':', '@']) || image.ends_with([':', '/', '@']) {
        return Err(Error::invalid("image", format!("{image:?} is not an image reference")));
    }
    Ok(())
}

/// The tag of an image reference, if it has one (a digest is not a tag).
pub fn image_tag(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, tag)| tag)
}

/// A node of a cluster as a backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    /// The Erlang node name (`emqx@10.0.0.1`) or the container/pod name.
    pub name: String,
    /// `core` or `replicant`.
    pub role: String,
    /// Whether it runs.
    pub running: bool,
    /// Its EMQX version, if known.
    pub version: Option<String>,
}

/// What a backend reports about a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The status.
    pub status: ClusterStatus,
    /// Core nodes wanted and ready.
    pub core: ReplicaCount,
    /// Replicant nodes wanted and ready.
    pub replicant: ReplicaCount,
    /// The image the nodes run (or are rolling out to), if known.
    pub image: Option<String>,
    /// The nodes.
    pub nodes: Vec<NodeSummary>,
}

/// Wanted and ready nodes of one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicaCount {
    /// Wanted.
    pub desired: u32,
    /// Ready.
    pub ready: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_and_limits() {
        let s = ClusterSpec::builder("emqx/emqx-enterprise:5.10.0").replicas(3, 2).build().unwrap();
        assert_eq!(s.listeners.iter().map(|l| l.port).collect::<Vec<_>>(), [1883, 8883, 8083, 8084]);
        assert_eq!(s.dashboard_port, 18083);
        assert_eq!(s.image_tag(), Some("5.10.0"));
        assert!(ClusterSpec::builder("emqx:5").replicas(0, 0).build().is_err());
        assert!(ClusterSpec::builder("emqx:5").replicas(8, 0).build().is_err());
        assert!(ClusterSpec::builder("emqx:5").replicas(7, 8).build().is_err());
        let limits = ClusterLimits::builder().max_core_replicas(20).max_replicant_replicas(20).build().unwrap();
        assert_eq!((limits.max_core_replicas(), limits.max_replicant_replicas()), (20, 20));
        ClusterSpec::builder("emqx:5").replicas(20, 20).limits(limits).build().unwrap();
        assert_eq!(ClusterLimits::builder().build().unwrap(), ClusterLimits::default());
        assert!(ClusterLimits::builder().max_core_replicas(0).build().is_err());
        assert!(ClusterLimits::builder().max_core_replicas(1001).build().is_err());
        assert!(ClusterLimits::builder().max_replicant_replicas(1001).build().is_err());
        ClusterLimits::builder().max_replicant_replicas(0).build().unwrap();
        let json = serde_json::to_value(limits).unwrap();
        assert_eq!(serde_json::from_value::<ClusterLimits>(json).unwrap(), limits);
        assert!(serde_json::from_value::<ClusterLimits>(serde_json::json!({"max_core_replicas": 0, "max_replicant_replicas": 0})).is_err());
        assert!(ClusterSpec::builder("emqx:5").dashboard_port(1883).build().is_err());
        assert!(ClusterSpec::builder("").build().is_err());
        assert!(ClusterSpec::builder("emqx 5").build().is_err());
        assert!(ClusterSpec::builder("emqx:5").resources(Resources::new(0, 512)).build().is_err());
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("registry:5000/emqx/emqx:5.8.1"), Some("5.8.1"));
        assert_eq!(image_tag("registry:5000/emqx/emqx"), None);
        assert_eq!(image_tag("emqx@sha256:abc"), None);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            ClusterStatus::Creating,
            ClusterStatus::Updating,
            ClusterStatus::Running,
            ClusterStatus::Stopping,
            ClusterStatus::Stopped,
            ClusterStatus::Error("core nodes not ready".into()),
        ] {
            assert_eq!(ClusterStatus::parse(s.as_str(), s.cause()), Some(s.clone()));
        }
        assert_eq!(ClusterStatus::Error("x".into()).to_string(), "error: x");
    }

    #[test]
    fn api_key_validates_and_redacts() {
        let k = ApiKey::new("ecp", SecretString::from("s3cr3t-sentinel")).unwrap();
        assert!(!format!("{k:?}").contains("sentinel"));
        assert!(ApiKey::new("bad key", SecretString::from("secret")).is_err());
        assert!(ApiKey::new("ok", SecretString::from("ab")).is_err());
    }
}
