//! [`DockerDriver`]: hosted edge services as containers on Docker hosts (feature `docker`).
//!
//! Each node ([`DockerNode`]) is a Docker Engine reached over its local socket, plain TCP, or TCP
//! with TLS (client certificate; rustls with aws-lc-rs). The API version is negotiated with each
//! engine on first use, so engines from API 1.41 (Docker 20.10) on work.
//!
//! | operation | what happens |
//! |---|---|
//! | install | create a container from the [`HostedSpec`] (env, args, port, restart policy, network, labels `io.ecp.project`, `io.ecp.service`, `io.ecp.managed-by=ecp-rs`), start it, wait until it answers its probe; a container that fails is removed |
//! | start, stop, restart | the container's |
//! | upgrade | create the new container under `<name>-next` with the same spec and the new image, start it, check it (it keeps running and answers its probe within the health timeout), then stop and remove the old one and rename the new one; a new container that fails a check is removed and the old one left (or put back) in service: [`Error::HostedCheckFailed`] names the check |
//! | uninstall | remove the container (and any leftover `-next`); idempotent |
//! | probe, info sync, configuration | the [`DirectDriver`]'s, against `http://<container ip>:<port>` on the spec's network |
//!
//! The driver keeps no state that matters: the spec lives in the container's labels and config,
//! and containers are found by their labels (also `io.ecp.node`, so that several nodes may share
//! an engine), so a new process manages what an old one installed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RenameContainerOptions, RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use ecp_core::EdgeServiceId;
use ecp_core::edge::EdgeService;
use ecp_core::task::IdempotencyKey;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::{
    HostedInstance, HostedSpec, HostedStatus, LABEL_ARGS, LABEL_ENV_KEYS, LABEL_MANAGED_BY, LABEL_NAME, LABEL_NETWORK, LABEL_PORT,
    LABEL_PROJECT, LABEL_PUBLISH, LABEL_SERVICE, MANAGED_BY, RestartPolicy, RunState, container_name_for, valid_image, valid_name,
};
use crate::direct::{DirectDriver, DirectDriverConfig};
use crate::driver::{Capabilities, EdgeDriver, EdgeInfo, Health};
use crate::error::{Error, Result, UpgradeCheck};
use crate::template::ConfigChange;

/// The label naming the node an instance was installed on (nodes may share an engine).
pub const LABEL_NODE: &str = "io.ecp.node";

/// The suffix of a new instance's name while it is checked during an upgrade.
const CANDIDATE_SUFFIX: &str = "-next";

/// How a node's Docker Engine is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DockerEndpoint {
    /// A unix socket (`/var/run/docker.sock`).
    Socket(PathBuf),
    /// Plain TCP (`tcp://10.0.0.5:2375`).
    Tcp(String),
    /// TCP with TLS and a client certificate (`tcp://10.0.0.5:2376`): PEM files of the CA that
    /// signed the engine's certificate, and of the client certificate and its key.
    Tls {
        /// The engine's address.
        addr: String,
        /// The CA bundle.
        ca: PathBuf,
        /// The client certificate.
        cert: PathBuf,
        /// The client key (read when connecting, never logged).
        key: PathBuf,
    },
}

/// A Docker host edge services run on. Build it with [`DockerNode::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DockerNode {
    /// Its name (what [`HostedSpec::node`] refers to).
    pub name: String,
    /// How its engine is reached.
    pub endpoint: DockerEndpoint,
    /// The time one Engine API request may take (default 120 s).
    pub timeout: Duration,
}

impl DockerNode {
    /// A builder for node `name` on the local engine (`/var/run/docker.sock`).
    pub fn builder(name: impl Into<String>) -> DockerNodeBuilder {
        DockerNodeBuilder(DockerNode {
            name: name.into(),
            endpoint: DockerEndpoint::Socket(PathBuf::from("/var/run/docker.sock")),
            timeout: Duration::from_secs(120),
        })
    }
}

/// Builds a [`DockerNode`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct DockerNodeBuilder(DockerNode);

impl DockerNodeBuilder {
    /// The engine's unix socket.
    #[must_use]
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.endpoint = DockerEndpoint::Socket(path.into());
        self
    }

    /// The engine over plain TCP (`tcp://host:2375`).
    #[must_use]
    pub fn tcp(mut self, addr: impl Into<String>) -> Self {
        self.0.endpoint = DockerEndpoint::Tcp(addr.into());
        self
    }

    /// The engine over TCP with TLS (`tcp://host:2376`) and a client certificate.
    #[must_use]
    pub fn tls(mut self, addr: impl Into<String>, ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.0.endpoint = DockerEndpoint::Tls { addr: addr.into(), ca: ca.into(), cert: cert.into(), key: key.into() };
        self
    }

    /// The time one request may take (1 s ..= 1 h).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    /// Checks and returns the node.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name, an empty address or path, or a timeout out of range.
    pub fn build(self) -> Result<DockerNode> {
        let n = self.0;
        let invalid = |field: &'static str, why: &str| Err(ecp_core::Error::invalid(field, why.to_owned()).into());
        if !valid_name(&n.name) {
            return invalid("node", "must be 1-128 characters of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&n.timeout) {
            return invalid("timeout", "must be 1 s to 1 h");
        }
        let empty = match &n.endpoint {
            DockerEndpoint::Socket(p) => p.as_os_str().is_empty(),
            DockerEndpoint::Tcp(a) => a.trim().is_empty(),
            DockerEndpoint::Tls { addr, ca, cert, key } => {
                addr.trim().is_empty() || ca.as_os_str().is_empty() || cert.as_os_str().is_empty() || key.as_os_str().is_empty()
            }
        };
        if empty {
            return invalid("endpoint", "the address and files must not be empty");
        }
        Ok(n)
    }
}

/// The settings of a [`DockerDriver`]. Build it with [`DockerDriverConfig::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerDriverConfig {
    /// The nodes, by name.
    pub nodes: Vec<DockerNode>,
    /// How long a new instance may take to answer its probe (default 30 s).
    pub health_timeout: Duration,
    /// The pause between probes of a new instance (default 250 ms).
    pub health_interval: Duration,
    /// How long `stop` waits before it kills (default 10 s).
    pub stop_timeout: Duration,
    /// The network of installs whose spec names none (`None`: the engine's default).
    pub default_network: Option<String>,
    /// The settings of the direct driver that probes, syncs and configures the instances.
    pub direct: DirectDriverConfig,
}

impl DockerDriverConfig {
    /// A builder with no node.
    pub fn builder() -> DockerDriverConfigBuilder {
        DockerDriverConfigBuilder(DockerDriverConfig {
            nodes: Vec::new(),
            health_timeout: Duration::from_secs(30),
            health_interval: Duration::from_millis(250),
            stop_timeout: Duration::from_secs(10),
            default_network: None,
            direct: DirectDriverConfig::default().timeouts(Duration::from_secs(2), Duration::from_secs(10)),
        })
    }
}

/// Builds a [`DockerDriverConfig`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct DockerDriverConfigBuilder(DockerDriverConfig);

impl DockerDriverConfigBuilder {
    /// Adds a node.
    #[must_use]
    pub fn node(mut self, node: DockerNode) -> Self {
        self.0.nodes.push(node);
        self
    }

    /// How long a new instance may take to answer, and the pause between probes.
    #[must_use]
    pub fn health(mut self, timeout: Duration, interval: Duration) -> Self {
        self.0.health_timeout = timeout;
        self.0.health_interval = interval;
        self
    }

    /// How long `stop` waits before it kills.
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.0.stop_timeout = timeout;
        self
    }

    /// The network of installs whose spec names none.
    #[must_use]
    pub fn default_network(mut self, network: impl Into<String>) -> Self {
        self.0.default_network = Some(network.into());
        self
    }

    /// The direct driver's settings.
    #[must_use]
    pub fn direct(mut self, direct: DirectDriverConfig) -> Self {
        self.0.direct = direct;
        self
    }

    /// Checks and returns the config.
    ///
    /// # Errors
    /// `InvalidInput` without a node, for two nodes of one name, a health timeout outside
    /// 1 s..=1 h or an interval outside 10 ms..=the timeout, a stop timeout over 10 min, a bad
    /// network name.
    pub fn build(self) -> Result<DockerDriverConfig> {
        let c = self.0;
        let invalid = |field: &'static str, why: &str| Err(ecp_core::Error::invalid(field, why.to_owned()).into());
        if c.nodes.is_empty() {
            return invalid("nodes", "at least one node is needed");
        }
        let mut names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return invalid("nodes", "node names must be unique");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&c.health_timeout) {
            return invalid("health_timeout", "must be 1 s to 1 h");
        }
        if c.health_interval < Duration::from_millis(10) || c.health_interval > c.health_timeout {
            return invalid("health_interval", "must be 10 ms to the health timeout");
        }
        if c.stop_timeout > Duration::from_secs(600) {
            return invalid("stop_timeout", "must be at most 10 min");
        }
        if c.default_network.as_deref().is_some_and(|n| !valid_name(n)) {
            return invalid("default_network", "not a valid network name");
        }
        Ok(c)
    }
}

/// A node and its engine client, connected (and the API version negotiated) on first use.
struct Node {
    config: DockerNode,
    client: OnceCell<Docker>,
}

impl Node {
    async fn docker(&self) -> Result<&Docker> {
        self.client
            .get_or_try_init(|| async {
                let n = &self.config;
                let op = "connect";
                let timeout = n.timeout.as_secs();
                let docker = match &n.endpoint {
                    DockerEndpoint::Socket(path) => {
                        Docker::connect_with_socket(&path.to_string_lossy(), timeout, bollard::API_DEFAULT_VERSION)
                    }
                    DockerEndpoint::Tcp(addr) => Docker::connect_with_http(addr, timeout, bollard::API_DEFAULT_VERSION),
                    DockerEndpoint::Tls { addr, ca, cert, key } => {
                        Docker::connect_with_ssl(addr, key, cert, ca, timeout, bollard::API_DEFAULT_VERSION)
                    }
                }
                // A client that cannot be made (unreadable certificate files, a bad address) stays
                // so: not retryable.
                .map_err(|e| Error::Transport {
                    endpoint: format!("docker node {}: {op}", n.name),
                    retryable: false,
                    source: Box::new(e),
                })?;
                docker.negotiate_version().await.map_err(|e| docker_error(&n.name, "negotiate the API version", e))
            })
            .await
    }
}

/// An Engine API error as this crate's: the engine's answers as `Api` (404 is `is_not_found`),
/// the rest (connection, timeout, TLS) as a retryable `Transport`.
fn docker_error(node: &str, op: &str, e: bollard::errors::Error) -> Error {
    let endpoint = format!("docker node {node}: {op}");
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            Error::Api { endpoint, status: status_code, code: None, message: Some(message) }
        }
        other => Error::Transport { endpoint, retryable: true, source: Box::new(other) },
    }
}

/// Whether an error is the engine's 404.
fn is_404(e: &Error) -> bool {
    matches!(e, Error::Api { status: 404, .. })
}

/// Whether an error is the engine's 304 (already started / stopped).
fn is_304(e: &Error) -> bool {
    matches!(e, Error::Api { status: 304, .. })
}

/// A container of a service found on a node.
#[derive(Debug, Clone)]
struct Found {
    node: String,
    id: String,
    /// Its current name.
    name: String,
    /// The name it has once in service (`io.ecp.name`).
    final_name: String,
}

impl Found {
    fn is_current(&self) -> bool {
        self.name == self.final_name
    }
}

/// The driver of hosted services on Docker hosts; see the [module docs](self).
pub struct DockerDriver {
    nodes: BTreeMap<String, Node>,
    /// The first node, for specs that name none.
    default_node: String,
    config: DockerDriverConfig,
    direct: DirectDriver,
    specs: std::sync::Mutex<HashMap<EdgeServiceId, HostedSpec>>,
}

impl std::fmt::Debug for DockerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerDriver")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("health_timeout", &self.config.health_timeout)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

impl DockerDriver {
    /// A driver over `config`'s nodes (connected on first use).
    ///
    /// # Errors
    /// `InvalidInput` from the direct driver's settings.
    pub fn new(config: DockerDriverConfig) -> Result<Self> {
        let direct = DirectDriver::new(config.direct.clone())?;
        let default_node = config.nodes.first().map(|n| n.name.clone()).unwrap_or_default();
        let nodes = config.nodes.iter().map(|n| (n.name.clone(), Node { config: n.clone(), client: OnceCell::new() })).collect();
        Ok(DockerDriver { nodes, default_node, config, direct, specs: std::sync::Mutex::new(HashMap::new()) })
    }

    fn specs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<EdgeServiceId, HostedSpec>> {
        // One insert or remove at a time: a poisoned map is still consistent.
        self.specs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The node names.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Registers the spec [`EdgeDriver::install`] uses for `service` (its image is replaced by
    /// the one given to `install`).
    pub fn set_spec(&self, service: EdgeServiceId, spec: HostedSpec) {
        self.specs_lock().insert(service, spec);
    }

    fn node(&self, name: Option<&str>) -> Result<(&str, &Node)> {
        let name = name.unwrap_or(&self.default_node);
        self.nodes.get_key_value(name).map(|(k, v)| (k.as_str(), v)).ok_or_else(|| ecp_core::Error::not_found("docker node", name).into())
    }

    async fn docker(&self, node: &str) -> Result<&Docker> {
        self.node(Some(node))?.1.docker().await
    }

    /// The containers of `service` on `node` (current and leftover candidates).
    async fn list_on(&self, node: &str, service: &EdgeService) -> Result<Vec<Found>> {
        let docker = self.docker(node).await?;
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_SERVICE}={}", service.id), format!("{LABEL_MANAGED_BY}={MANAGED_BY}"), format!("{LABEL_NODE}={node}")],
        )]);
        let list = docker
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(|e| docker_error(node, "list containers", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c.names.unwrap_or_default().into_iter().next()?.trim_start_matches('/').to_owned();
                let final_name = c.labels.unwrap_or_default().remove(LABEL_NAME).unwrap_or_else(|| name.clone());
                Some(Found { node: node.to_owned(), id, name, final_name })
            })
            .collect())
    }

    /// Every container of `service` on every node.
    async fn find_all(&self, service: &EdgeService) -> Result<Vec<Found>> {
        let mut all = Vec::new();
        for node in self.nodes.keys() {
            all.extend(self.list_on(node, service).await?);
        }
        Ok(all)
    }

    /// The container in service, or `NotFound`.
    async fn current(&self, service: &EdgeService) -> Result<Found> {
        self.find_all(service)
            .await?
            .into_iter()
            .find(Found::is_current)
            .ok_or_else(|| ecp_core::Error::not_found("hosted instance of edge service", service.id).into())
    }

    async fn inspect(&self, node: &str, container: &str) -> Result<ContainerInspectResponse> {
        self.docker(node)
            .await?
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| docker_error(node, "inspect container", e))
    }

    async fn remove(&self, node: &str, container: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker(node).await?.remove_container(container, Some(opts)).await.map_err(|e| docker_error(node, "remove container", e))
        {
            Err(e) if is_404(&e) => Ok(()),
            other => other,
        }
    }

    async fn start_container(&self, node: &str, container: &str) -> Result<()> {
        match self
            .docker(node)
            .await?
            .start_container(container, None::<StartContainerOptions>)
            .await
            .map_err(|e| docker_error(node, "start container", e))
        {
            Err(e) if is_304(&e) => Ok(()),
            other => other,
        }
    }

    async fn stop_container(&self, node: &str, container: &str) -> Result<()> {
        let t = i32::try_from(self.config.stop_timeout.as_secs()).unwrap_or(600);
        match self
            .docker(node)
            .await?
            .stop_container(container, Some(StopContainerOptions { t: Some(t), signal: None }))
            .await
            .map_err(|e| docker_error(node, "stop container", e))
        {
            Err(e) if is_304(&e) => Ok(()),
            other => other,
        }
    }

    /// Creates a container, pulling its image when the engine does not have it.
    async fn create(&self, node: &str, name: &str, body: ContainerCreateBody) -> Result<String> {
        let docker = self.docker(node).await?;
        let opts = || CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
        match docker.create_container(Some(opts()), body.clone()).await {
            Ok(r) => Ok(r.id),
            Err(e) => {
                let e = docker_error(node, "create container", e);
                if !is_404(&e) {
                    return Err(e);
                }
                let image = body.image.clone().unwrap_or_default();
                self.pull(node, &image).await?;
                docker.create_container(Some(opts()), body).await.map(|r| r.id).map_err(|e| docker_error(node, "create container", e))
            }
        }
    }

    async fn pull(&self, node: &str, image: &str) -> Result<()> {
        let docker = self.docker(node).await?;
        let (from_image, tag) = split_image(image);
        let opts = CreateImageOptions { from_image: Some(from_image), tag, ..Default::default() };
        let mut stream = docker.create_image(Some(opts), None, None);
        while let Some(step) = stream.next().await {
            step.map_err(|e| docker_error(node, "pull image", e))?;
        }
        Ok(())
    }

    /// The last `tail` lines the service's instance printed (stdout and stderr, in order).
    ///
    /// # Errors
    /// `NotFound` when it is not installed; the engine's error.
    pub async fn logs(&self, service: &EdgeService, tail: usize) -> Result<Vec<String>> {
        let found = self.current(service).await?;
        self.logs_of(&found.node, &found.id, tail).await
    }

    async fn logs_of(&self, node: &str, container: &str, tail: usize) -> Result<Vec<String>> {
        let docker = self.docker(node).await?;
        let opts = LogsOptions { stdout: true, stderr: true, tail: tail.to_string(), ..Default::default() };
        let mut stream = docker.logs(container, Some(opts));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| docker_error(node, "read logs", e))?;
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        Ok(lines[lines.len().saturating_sub(tail)..].to_vec())
    }

    /// The service's instance and its run state.
    ///
    /// # Errors
    /// `NotFound` when it is not installed; the engine's error.
    pub async fn status(&self, service: &EdgeService) -> Result<HostedStatus> {
        let found = self.current(service).await?;
        let inspect = self.inspect(&found.node, &found.id).await?;
        Ok(status_of(&found, &inspect))
    }

    /// The service's instance (where it is, its endpoint while it runs).
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub async fn instance(&self, service: &EdgeService) -> Result<HostedInstance> {
        Ok(self.status(service).await?.instance)
    }

    /// `service` as the direct driver must see it: at its instance's endpoint.
    async fn reachable(&self, service: &EdgeService) -> Result<EdgeService> {
        let status = self.status(service).await?;
        match status.instance.endpoint {
            Some(endpoint) if status.state == RunState::Running => Ok(EdgeService { endpoint, ..service.clone() }),
            _ => Err(Error::Transport {
                endpoint: format!("hosted instance {}", status.instance.name),
                retryable: true,
                source: format!("the container is not running ({:?}, exit code {:?})", status.state, status.exit_code).into(),
            }),
        }
    }

    /// The spec `install` uses: the registered one, else the service endpoint's port (or the
    /// product's) on the default network; with `image`.
    fn spec_for(&self, service: &EdgeService, image: &str) -> Result<HostedSpec> {
        let mut spec = match self.specs_lock().get(&service.id) {
            Some(s) => s.clone(),
            None => {
                let port = url::Url::parse(&service.endpoint).ok().and_then(|u| u.port_or_known_default()).unwrap_or(80);
                let mut b = HostedSpec::builder(image, port);
                if let Some(n) = &self.config.default_network {
                    b = b.network(n.clone());
                }
                b.build()?
            }
        };
        spec.image = image.to_owned();
        spec.validate()?;
        Ok(spec)
    }

    /// Installs `service` as a container from `spec` and waits until it answers its probe.
    /// Installing again what is installed with the same image is a no-op (it is started if it was
    /// stopped), so retried install tasks converge.
    ///
    /// # Errors
    /// `InvalidInput` for a bad spec, `NotFound` for an unknown node, `Conflict` when the service
    /// is installed with another image, [`Error::HostedCheckFailed`] when the container does not
    /// start, exits, or does not answer in time (it is removed), the engine's error.
    pub async fn install_with(&self, service: &EdgeService, spec: &HostedSpec) -> Result<HostedInstance> {
        let mut spec = spec.clone();
        if spec.network.is_none() {
            spec.network.clone_from(&self.config.default_network);
        }
        spec.validate()?;
        let (node, _) = self.node(spec.node.as_deref())?;
        let node = node.to_owned();
        let name = spec.container_name.clone().unwrap_or_else(|| container_name_for(&service.name, &service.id.to_string()));
        for found in self.find_all(service).await? {
            if !found.is_current() {
                self.remove(&found.node, &found.id).await?;
                continue;
            }
            let inspect = self.inspect(&found.node, &found.id).await?;
            let image = inspect.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_default();
            if image != spec.image || found.node != node {
                return Err(ecp_core::Error::conflict(
                    "edge service",
                    service.id,
                    format!("it is installed on node {} with image {image}: upgrade or uninstall it", found.node),
                )
                .into());
            }
            self.start_container(&found.node, &found.id).await?;
            return Ok(self.status(service).await?.instance);
        }
        let body = create_body(service, &spec, &node, &name);
        let fail = |check: UpgradeCheck, reason: String| Error::HostedCheckFailed {
            operation: "install",
            service: service.name.clone(),
            image: spec.image.clone(),
            check,
            reason,
            rolled_back: true,
        };
        let id = match self.create(&node, &name, body).await {
            Ok(id) => id,
            Err(e) if is_404(&e) || matches!(e, Error::Api { status: 409, .. }) => return Err(fail(UpgradeCheck::Create, e.to_string())),
            Err(e) => return Err(e),
        };
        if let Err((check, reason)) = self.bring_up(&node, &id, service, &spec).await {
            self.remove(&node, &id).await?;
            return Err(fail(check, reason));
        }
        self.status(service).await.map(|s| s.instance)
    }

    /// Starts a created container and waits until it answers its probe; on failure, which check
    /// failed and what it saw.
    async fn bring_up(&self, node: &str, id: &str, service: &EdgeService, spec: &HostedSpec) -> Result<String, (UpgradeCheck, String)> {
        if let Err(e) = self.start_container(node, id).await {
            return Err((UpgradeCheck::Start, e.to_string()));
        }
        self.wait_healthy(node, id, service, spec).await
    }

    /// Polls the container until it answers its probe, it stops running, or the health timeout.
    async fn wait_healthy(&self, node: &str, id: &str, service: &EdgeService, spec: &HostedSpec) -> Result<String, (UpgradeCheck, String)> {
        let deadline = tokio::time::Instant::now() + self.config.health_timeout;
        let mut last = String::from("no probe answered yet");
        loop {
            let inspect = self.inspect(node, id).await.map_err(|e| (UpgradeCheck::Running, e.to_string()))?;
            let state = inspect.state.clone().unwrap_or_default();
            let restarts = inspect.restart_count.unwrap_or(0);
            let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
            if matches!(status, ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
                || status == ContainerStateStatusEnum::RESTARTING
                || restarts > 0
            {
                let logs = self.logs_of(node, id, 5).await.unwrap_or_default().join(" | ");
                return Err((
                    UpgradeCheck::Running,
                    format!(
                        "the container stopped running ({status}, exit code {}, {restarts} restarts); last log lines: {logs}",
                        state.exit_code.unwrap_or(-1)
                    ),
                ));
            }
            if let Some(endpoint) = endpoint_of(&inspect, spec.network.as_deref(), &spec.scheme, spec.port) {
                let probed = EdgeService { endpoint: endpoint.clone(), ..service.clone() };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, self.direct.probe(&probed)).await {
                    Ok(Ok(_)) => return Ok(endpoint),
                    Ok(Err(e)) => last = crate::fleet::with_causes(&e),
                    Err(_) => last = "the probe did not answer in time".into(),
                }
            }
            if tokio::time::Instant::now() + self.config.health_interval >= deadline {
                return Err((UpgradeCheck::Probe, format!("no answer within {:?}: {last}", self.config.health_timeout)));
            }
            tokio::time::sleep(self.config.health_interval).await;
        }
    }

    /// Upgrades `service` to `image` (see the [module docs](self)); returns the new instance.
    ///
    /// # Errors
    /// `NotFound` when it is not installed, `InvalidInput` for a bad image,
    /// [`Error::HostedCheckFailed`] when the new instance fails a check (it is removed; the old
    /// one keeps serving when `rolled_back`), the engine's error.
    pub async fn upgrade_to(&self, service: &EdgeService, image: &str) -> Result<HostedInstance> {
        if !valid_image(image) {
            return Err(ecp_core::Error::invalid("image", "not an image reference").into());
        }
        let mut old = None;
        for found in self.find_all(service).await? {
            if found.is_current() {
                old = Some(found);
            } else {
                self.remove(&found.node, &found.id).await?;
            }
        }
        let old = old.ok_or_else(|| Error::from(ecp_core::Error::not_found("hosted instance of edge service", service.id)))?;
        let old_inspect = self.inspect(&old.node, &old.id).await?;
        let mut spec = spec_of(&old, &old_inspect);
        spec.image = image.to_owned();
        let was_running = old_inspect.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let node = old.node.clone();
        let candidate = format!("{}{CANDIDATE_SUFFIX}", old.final_name);
        // A published host port cannot be bound twice: the old instance stops first.
        let stop_first = spec.publish.is_some();

        let outcome: Result<String, (UpgradeCheck, String)> = async {
            if stop_first {
                self.stop_container(&node, &old.id).await.map_err(|e| (UpgradeCheck::Switch, e.to_string()))?;
            }
            let body = create_body(service, &spec, &node, &old.final_name);
            let id = self.create(&node, &candidate, body).await.map_err(|e| (UpgradeCheck::Create, e.to_string()))?;
            if let Err(failed) = self.bring_up(&node, &id, service, &spec).await {
                let _ = self.remove(&node, &id).await;
                return Err(failed);
            }
            Ok(id)
        }
        .await;
        let new_id = match outcome {
            Ok(id) => id,
            Err((check, reason)) => {
                let _ = self.remove(&node, &candidate).await;
                let mut rolled_back = true;
                if was_running {
                    rolled_back = self.start_container(&node, &old.id).await.is_ok();
                }
                return Err(Error::HostedCheckFailed {
                    operation: "upgrade",
                    service: service.name.clone(),
                    image: image.to_owned(),
                    check,
                    reason,
                    rolled_back,
                });
            }
        };
        // Switch over: the old instance goes, the new one takes its name.
        let switched: Result<()> = async {
            self.stop_container(&node, &old.id).await?;
            self.remove(&node, &old.id).await?;
            let docker = self.docker(&node).await?;
            docker
                .rename_container(&new_id, RenameContainerOptions { name: old.final_name.clone() })
                .await
                .map_err(|e| docker_error(&node, "rename container", e))
        }
        .await;
        if let Err(e) = switched {
            // Still there: the old one serves again and the new one goes.
            let old_left = self.inspect(&node, &old.id).await.is_ok();
            let mut rolled_back = false;
            if old_left {
                let _ = self.remove(&node, &new_id).await;
                rolled_back = !was_running || self.start_container(&node, &old.id).await.is_ok();
            }
            return Err(Error::HostedCheckFailed {
                operation: "upgrade",
                service: service.name.clone(),
                image: image.to_owned(),
                check: UpgradeCheck::Switch,
                reason: e.to_string(),
                rolled_back,
            });
        }
        self.instance(service).await
    }

    /// Removes every container of `service` on every node; nothing to remove is fine.
    ///
    /// # Errors
    /// The engine's error.
    pub async fn remove_all(&self, service: &EdgeService) -> Result<usize> {
        let found = self.find_all(service).await?;
        for f in &found {
            self.remove(&f.node, &f.id).await?;
        }
        Ok(found.len())
    }
}

/// `repo[:tag]` split for a pull (a digest reference is pulled whole).
fn split_image(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), Some(tag.to_owned())),
        _ => (image.to_owned(), Some("latest".to_owned())),
    }
}

/// The labels of a service's instance (pure).
pub(crate) fn labels_for(service: &EdgeService, spec: &HostedSpec, node: &str, name: &str) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_PROJECT.to_owned(), service.project.to_string()),
        (LABEL_SERVICE.to_owned(), service.id.to_string()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_NAME.to_owned(), name.to_owned()),
        (LABEL_NODE.to_owned(), node.to_owned()),
        (LABEL_PORT.to_owned(), spec.port.to_string()),
        (LABEL_ENV_KEYS.to_owned(), spec.env.keys().cloned().collect::<Vec<_>>().join(",")),
    ]);
    if let Some(n) = &spec.network {
        labels.insert(LABEL_NETWORK.to_owned(), n.clone());
    }
    if let Some(a) = &spec.args {
        labels.insert(LABEL_ARGS.to_owned(), serde_json::to_string(a).unwrap_or_default());
    }
    if let Some(p) = spec.publish {
        labels.insert(LABEL_PUBLISH.to_owned(), p.to_string());
    }
    if spec.scheme == "https" {
        labels.insert("io.ecp.scheme".to_owned(), "https".to_owned());
    }
    labels
}

/// The Engine API body that creates a service's instance (pure).
pub(crate) fn create_body(service: &EdgeService, spec: &HostedSpec, node: &str, name: &str) -> ContainerCreateBody {
    let port_key = format!("{}/tcp", spec.port);
    let restart = match spec.restart {
        RestartPolicy::No => DockerRestart { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None },
        RestartPolicy::Always => DockerRestart { name: Some(RestartPolicyNameEnum::ALWAYS), maximum_retry_count: None },
        RestartPolicy::UnlessStopped => DockerRestart { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None },
        RestartPolicy::OnFailure { max_retries } => {
            DockerRestart { name: Some(RestartPolicyNameEnum::ON_FAILURE), maximum_retry_count: Some(i64::from(max_retries)) }
        }
    };
    let port_bindings = spec
        .publish
        .map(|p| HashMap::from([(port_key.clone(), Some(vec![PortBinding { host_ip: None, host_port: Some(p.to_string()) }]))]));
    let networking_config = spec
        .network
        .as_ref()
        .map(|n| NetworkingConfig { endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])) });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: spec.args.clone(),
        labels: Some(labels_for(service, spec, node, name)),
        exposed_ports: Some(vec![port_key]),
        host_config: Some(HostConfig {
            restart_policy: Some(restart),
            port_bindings,
            network_mode: spec.network.clone(),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

/// The spec an instance runs with, from its labels and config (pure; the inverse of
/// [`create_body`] for what the spec set).
fn spec_of(found: &Found, inspect: &ContainerInspectResponse) -> HostedSpec {
    let config = inspect.config.clone().unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let env_keys: Vec<&str> = labels.get(LABEL_ENV_KEYS).map(|k| k.split(',').filter(|k| !k.is_empty()).collect()).unwrap_or_default();
    let env = config
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .filter(|(k, _)| env_keys.contains(&k.as_str()))
        .collect();
    let restart = inspect.host_config.as_ref().and_then(|h| h.restart_policy.clone()).unwrap_or_default();
    let restart = match restart.name {
        Some(RestartPolicyNameEnum::ALWAYS) => RestartPolicy::Always,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => RestartPolicy::UnlessStopped,
        Some(RestartPolicyNameEnum::ON_FAILURE) => {
            RestartPolicy::OnFailure { max_retries: u32::try_from(restart.maximum_retry_count.unwrap_or(0)).unwrap_or(0) }
        }
        _ => RestartPolicy::No,
    };
    HostedSpec {
        image: config.image.unwrap_or_default(),
        port: labels.get(LABEL_PORT).and_then(|p| p.parse().ok()).unwrap_or(80),
        scheme: labels.get("io.ecp.scheme").cloned().unwrap_or_else(|| "http".into()),
        env,
        args: labels.get(LABEL_ARGS).and_then(|a| serde_json::from_str(a).ok()),
        restart,
        network: labels.get(LABEL_NETWORK).cloned(),
        publish: labels.get(LABEL_PUBLISH).and_then(|p| p.parse().ok()),
        node: Some(found.node.clone()),
        container_name: Some(found.final_name.clone()),
    }
}

/// `<scheme>://<ip>:<port>` on `network` (else the first network with an address), while the
/// container has an address (pure).
fn endpoint_of(inspect: &ContainerInspectResponse, network: Option<&str>, scheme: &str, port: u16) -> Option<String> {
    let networks = inspect.network_settings.as_ref()?.networks.as_ref()?;
    let ip = match network {
        Some(n) => networks.get(n).and_then(|e| e.ip_address.clone()),
        None => {
            let mut names: Vec<&String> = networks.keys().collect();
            names.sort();
            names.into_iter().find_map(|n| networks[n].ip_address.clone().filter(|ip| !ip.is_empty()))
        }
    }
    .filter(|ip| !ip.is_empty())?;
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
    Some(format!("{scheme}://{host}:{port}"))
}

fn status_of(found: &Found, inspect: &ContainerInspectResponse) -> HostedStatus {
    let config = inspect.config.clone().unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let port = labels.get(LABEL_PORT).and_then(|p| p.parse().ok()).unwrap_or(80);
    let scheme = labels.get("io.ecp.scheme").map(String::as_str).unwrap_or("http");
    let state = inspect.state.clone().unwrap_or_default();
    let run = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => RunState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        _ => RunState::Unknown,
    };
    HostedStatus {
        instance: HostedInstance {
            node: found.node.clone(),
            container_id: found.id.clone(),
            name: inspect.name.as_deref().map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_else(|| found.name.clone()),
            image: config.image.unwrap_or_default(),
            endpoint: endpoint_of(inspect, labels.get(LABEL_NETWORK).map(String::as_str), scheme, port),
        },
        state: run,
        exit_code: state.exit_code,
        restart_count: u64::try_from(inspect.restart_count.unwrap_or(0)).unwrap_or(0),
    }
}

#[async_trait]
impl EdgeDriver for DockerDriver {
    fn backend(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted()
    }

    fn forget(&self, service: &EdgeService) {
        self.specs_lock().remove(&service.id);
        self.direct.forget(service);
    }

    async fn probe(&self, service: &EdgeService) -> Result<Health> {
        self.direct.probe(&self.reachable(service).await?).await
    }

    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo> {
        self.direct.sync_info(&self.reachable(service).await?).await
    }

    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
        self.direct.apply(&self.reachable(service).await?, change, key).await
    }

    async fn install(&self, service: &EdgeService, image: &str) -> Result<()> {
        let spec = self.spec_for(service, image)?;
        self.install_with(service, &spec).await.map(|_| ())
    }

    async fn upgrade(&self, service: &EdgeService, image: &str) -> Result<()> {
        self.upgrade_to(service, image).await.map(|_| ())
    }

    async fn start(&self, service: &EdgeService) -> Result<()> {
        let found = self.current(service).await?;
        self.start_container(&found.node, &found.id).await
    }

    async fn stop(&self, service: &EdgeService) -> Result<()> {
        let found = self.current(service).await?;
        self.stop_container(&found.node, &found.id).await
    }

    async fn restart(&self, service: &EdgeService) -> Result<()> {
        let found = self.current(service).await?;
        let t = i32::try_from(self.config.stop_timeout.as_secs()).unwrap_or(600);
        self.docker(&found.node)
            .await?
            .restart_container(&found.id, Some(RestartContainerOptions { t: Some(t), signal: None }))
            .await
            .map_err(|e| docker_error(&found.node, "restart container", e))
    }

    async fn uninstall(&self, service: &EdgeService) -> Result<()> {
        self.remove_all(service).await?;
        self.direct.forget(service);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_core::edge::{Credentials, EdgeKind, ManagementMode};

    fn service() -> EdgeService {
        EdgeService::new(
            ecp_core::ProjectId::new(),
            "line 1",
            EdgeKind::NeuronEx,
            ManagementMode::Docker,
            "http://line-1:8085",
            Credentials::None,
            vec![],
            ecp_core::Timestamp::now(),
        )
        .unwrap()
    }

    #[test]
    fn create_body_carries_the_spec_and_labels() {
        let s = service();
        let spec = HostedSpec::builder("img:1", 8085)
            .env("A", "1")
            .args(["--x", "y"])
            .network("net")
            .publish(18085)
            .restart(RestartPolicy::OnFailure { max_retries: 2 })
            .build()
            .unwrap();
        let body = create_body(&s, &spec, "n1", "line-1");
        assert_eq!(body.image.as_deref(), Some("img:1"));
        assert_eq!(body.env, Some(vec!["A=1".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["--x".to_owned(), "y".to_owned()]));
        let labels = body.labels.clone().unwrap();
        assert_eq!(labels[LABEL_SERVICE], s.id.to_string());
        assert_eq!(labels[LABEL_PROJECT], s.project.to_string());
        assert_eq!(labels[LABEL_MANAGED_BY], "ecp-rs");
        assert_eq!(labels[LABEL_NAME], "line-1");
        assert_eq!(labels[LABEL_NODE], "n1");
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("net"));
        assert_eq!(host.restart_policy.unwrap().maximum_retry_count, Some(2));
        assert_eq!(host.port_bindings.unwrap()["8085/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some("18085"));
        // What the engine gets: exposed ports as a map.
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["ExposedPorts"], serde_json::json!({ "8085/tcp": {} }));

        // The spec comes back from the container, with the image's own env left out.
        let config = bollard::models::ContainerConfig {
            image: body.image.clone(),
            labels: body.labels.clone(),
            env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
            ..Default::default()
        };
        let inspect = ContainerInspectResponse { config: Some(config), host_config: body.host_config.clone(), ..Default::default() };
        let found = Found { node: "n1".into(), id: "c".into(), name: "line-1".into(), final_name: "line-1".into() };
        let back = spec_of(&found, &inspect);
        assert_eq!(back, HostedSpec { node: Some("n1".into()), container_name: Some("line-1".into()), ..spec });
    }

    #[tokio::test]
    async fn unreachable_nodes_are_typed_errors() {
        let s = service();
        // TLS with certificate files that are not there: the client cannot be made.
        let tls =
            DockerNode::builder("tls").tls("tcp://127.0.0.1:1", "/nonexistent/ca.pem", "/nonexistent/cert.pem", "/nonexistent/key.pem");
        let d = DockerDriver::new(DockerDriverConfig::builder().node(tls.build().unwrap()).build().unwrap()).unwrap();
        let e = d.status(&s).await.unwrap_err();
        assert!(
            matches!(&e, Error::Transport { retryable: false, endpoint, .. } if endpoint.contains("docker node tls: connect")),
            "{e:?}"
        );
        // Plain TCP to a closed port: retryable.
        let tcp = DockerNode::builder("tcp").tcp("tcp://127.0.0.1:1").timeout(Duration::from_secs(2));
        let d = DockerDriver::new(DockerDriverConfig::builder().node(tcp.build().unwrap()).build().unwrap()).unwrap();
        let e = d.start(&s).await.unwrap_err();
        assert!(matches!(&e, Error::Transport { retryable: true, .. }), "{e:?}");
        // A spec naming an unknown node.
        let spec = HostedSpec::builder("img", 80).node("elsewhere").build().unwrap();
        assert!(d.install_with(&s, &spec).await.unwrap_err().is_not_found());
        assert!(d.upgrade_to(&s, "bad image").await.is_err());
    }

    proptest::proptest! {
        /// Whatever labels and env an engine reports, reading the spec and endpoint back does not
        /// panic, and container names made from any service name are valid.
        #[test]
        fn engine_answers_never_panic(
            labels in proptest::collection::hash_map("[a-z.\\-]{1,20}", ".{0,40}", 0..8),
            port in ".{0,8}",
            env in proptest::collection::vec(".{0,30}", 0..6),
            ip in proptest::option::of(".{0,40}"),
            name in ".{1,200}",
        ) {
            let mut labels = labels;
            labels.insert(LABEL_PORT.to_owned(), port);
            labels.insert(LABEL_ENV_KEYS.to_owned(), env.iter().filter_map(|e| e.split_once('=')).map(|(k, _)| k).collect::<Vec<_>>().join(","));
            let network = labels.get(LABEL_NETWORK).cloned().unwrap_or_else(|| "n".into());
            let inspect = ContainerInspectResponse {
                config: Some(bollard::models::ContainerConfig { labels: Some(labels), env: Some(env), ..Default::default() }),
                network_settings: Some(bollard::models::NetworkSettings {
                    networks: Some(HashMap::from([(network, EndpointSettings { ip_address: ip, ..Default::default() })])),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let found = Found { node: "n".into(), id: "c".into(), name: "x".into(), final_name: "x".into() };
            let _ = spec_of(&found, &inspect);
            let _ = status_of(&found, &inspect);
            let _ = endpoint_of(&inspect, None, "http", 1);
            proptest::prop_assert!(valid_name(&container_name_for(&name, &uuid::Uuid::now_v7().to_string())));
        }
    }

    #[test]
    fn images_split_for_pulls() {
        assert_eq!(split_image("a/b:1.2"), ("a/b".into(), Some("1.2".into())));
        assert_eq!(split_image("reg:5000/a"), ("reg:5000/a".into(), Some("latest".into())));
        assert_eq!(split_image("a@sha256:ab"), ("a@sha256:ab".into(), None));
    }

    #[test]
    fn nodes_and_configs_validate() {
        assert!(DockerNode::builder("n1").build().is_ok());
        assert!(DockerNode::builder("bad name").build().is_err());
        assert!(DockerNode::builder("n1").tcp("").build().is_err());
        assert!(DockerNode::builder("n1").tls("tcp://h:2376", "ca.pem", "cert.pem", "").build().is_err());
        let n = DockerNode::builder("n1").build().unwrap();
        assert!(DockerDriverConfig::builder().build().is_err());
        assert!(DockerDriverConfig::builder().node(n.clone()).node(n.clone()).build().is_err());
        assert!(DockerDriverConfig::builder().node(n.clone()).health(Duration::from_secs(5), Duration::from_secs(6)).build().is_err());
        assert!(DockerDriverConfig::builder().node(n).default_network("net").build().is_ok());
    }
}
