//! The `docker` backend: an EMQX cluster as containers on one Docker host, on a user-defined bridge
//! network of its own, discovering each other through static seeds.
//!
//! For a cluster whose [`ClusterRef::resource_name`] is `R`:
//!
//! | thing | name | what |
//! |---|---|---|
//! | network | `R` | a user-defined bridge; containers reach each other by name |
//! | core node `i` | `R-core-i` | `EMQX_NODE__NAME=emqx@R-core-i`, `EMQX_NODE__ROLE=core` |
//! | replicant node `i` | `R-replicant-i` | `EMQX_NODE__ROLE=replicant` |
//!
//! Every node gets `EMQX_CLUSTER__DISCOVERY_STRATEGY=static` with the core nodes as seeds, one
//! cookie per cluster, the listener and dashboard binds of the spec, CPU and memory limits, the
//! restart policy `unless-stopped`, and the labels `io.ecp.managed-by=ecp-rs`, `io.ecp.cluster`,
//! `io.ecp.project`, `io.ecp.role`, `io.ecp.index`. The spec's API key goes into
//! `/opt/emqx/etc/ecp_api_keys` (`api_key.bootstrap_file`), its extra HOCON into
//! `/opt/emqx/etc/base.hocon`, both copied into the container before it starts (never in its env).
//!
//! | operation | how |
//! |---|---|
//! | create | network, then every node; existing nodes are kept (a retried create converges) |
//! | scale | new nodes cloned from an existing one; extra nodes stopped and removed, highest index first |
//! | resize | `docker update` of every node (live) |
//! | set_network | `ClusterIP`: nothing published; `NodePort`: every listener and the dashboard published on an ephemeral host port of each node (rolling re-creation); `LoadBalancer`: `Unsupported` |
//! | set_image | rolling re-creation, replicants first; a node that does not run within the timeout is re-created from the old image and the change stops with an error |
//! | stop / start | every node, replicants first / cores first |
//! | delete | every node and the network; a cluster already gone is fine |
//!
//! State: no node → `NotFound`; every node running → `Running`; none running and all exited →
//! `Stopped`; some created or restarting → `Updating` (`Creating` if none ever ran); a node exited or
//! dead beside running ones → `Error` naming it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum, ContainerUpdateBody,
    EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, InspectContainerOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, StartContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use secrecy::ExposeSecret;

use crate::driver::{ClusterDriver, ClusterOperation, ClusterRef, unsupported};
use crate::error::{Error, Result};
use crate::model::{
    ClusterBackend, ClusterSpec, ClusterState, ClusterStatus, Listener, ListenerProtocol, NetworkMode, NodeSummary, ReplicaCount, Resources,
};

/// The label every container and network of this backend carries.
pub const LABEL_MANAGED_BY: &str = "io.ecp.managed-by";
/// The label naming the cluster id.
pub const LABEL_CLUSTER: &str = "io.ecp.cluster";
/// The label naming the project id.
pub const LABEL_PROJECT: &str = "io.ecp.project";
/// The label naming a node's role (`core`, `replicant`).
pub const LABEL_ROLE: &str = "io.ecp.role";
/// The label naming a node's index within its role.
pub const LABEL_INDEX: &str = "io.ecp.index";
const MANAGED_BY: &str = "ecp-rs";
/// Where the bootstrap files go inside a node.
pub const FILES_DIR: &str = "/opt/emqx/etc";
const API_KEYS_FILE: &str = "ecp_api_keys";
const BASE_HOCON: &str = "base.hocon";
const BACKEND: &str = "docker";

/// How to reach the Docker engine.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DockerHost {
    /// The local engine's default socket (`DOCKER_HOST` or `/var/run/docker.sock`).
    Local,
    /// A Unix socket.
    Socket(PathBuf),
    /// Plain HTTP (`tcp://10.0.0.5:2375`), for a trusted network only.
    Http(String),
    /// HTTPS with client certificates (`tcp://10.0.0.5:2376`).
    Tls {
        /// The address.
        addr: String,
        /// The CA certificate file.
        ca: PathBuf,
        /// The client certificate file.
        cert: PathBuf,
        /// The client key file.
        key: PathBuf,
    },
}

impl fmt::Debug for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerHost::Local => f.write_str("Local"),
            DockerHost::Socket(p) => f.debug_tuple("Socket").field(p).finish(),
            DockerHost::Http(a) => f.debug_tuple("Http").field(a).finish(),
            DockerHost::Tls { addr, ca, cert, .. } => {
                f.debug_struct("Tls").field("addr", addr).field("ca", ca).field("cert", cert).field("key", &"[path]").finish()
            }
        }
    }
}

/// The configuration of a [`DockerClusterDriver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerClusterConfig {
    /// The engine.
    pub host: DockerHost,
    /// How long a request to the engine may take (default 60 s).
    pub request_timeout: Duration,
    /// How long a node has to stop before it is killed (default 30 s).
    pub stop_timeout: Duration,
    /// How long a re-created node has to run before the change is rolled back (default 60 s).
    pub ready_timeout: Duration,
    /// How long a re-created node must stay running to count (default 2 s).
    pub settle: Duration,
}

impl DockerClusterConfig {
    /// A configuration for `host` with the defaults.
    pub fn builder(host: DockerHost) -> DockerClusterConfigBuilder {
        DockerClusterConfigBuilder(DockerClusterConfig {
            host,
            request_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(60),
            settle: Duration::from_secs(2),
        })
    }
}

/// Builds a [`DockerClusterConfig`].
#[derive(Debug, Clone)]
pub struct DockerClusterConfigBuilder(DockerClusterConfig);

impl DockerClusterConfigBuilder {
    /// The request timeout.
    #[must_use]
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.0.request_timeout = t;
        self
    }
    /// The stop timeout.
    #[must_use]
    pub fn stop_timeout(mut self, t: Duration) -> Self {
        self.0.stop_timeout = t;
        self
    }
    /// The time a re-created node has to run.
    #[must_use]
    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.0.ready_timeout = t;
        self
    }
    /// How long a re-created node must stay running.
    #[must_use]
    pub fn settle(mut self, t: Duration) -> Self {
        self.0.settle = t;
        self
    }
    /// The configuration.
    ///
    /// # Errors
    /// `InvalidInput` for a zero request or ready timeout, or a settle time not shorter than it.
    pub fn build(self) -> Result<DockerClusterConfig> {
        let c = self.0;
        if c.request_timeout.is_zero() || c.ready_timeout.is_zero() || c.settle >= c.ready_timeout {
            return Err(Error::invalid("docker config", "timeouts must be positive and settle shorter than ready_timeout"));
        }
        Ok(c)
    }
}

/// EMQX clusters as containers on a Docker host.
pub struct DockerClusterDriver {
    docker: Docker,
    config: DockerClusterConfig,
}

impl fmt::Debug for DockerClusterDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerClusterDriver").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Core,
    Replicant,
}

impl Role {
    const fn as_str(self) -> &'static str {
        match self {
            Role::Core => "core",
            Role::Replicant => "replicant",
        }
    }
}

/// What every node of a cluster shares: the input of the container plan.
#[derive(Debug, Clone, PartialEq)]
struct Template {
    image: String,
    cookie: String,
    core_count_for_seeds: u32,
    resources: Resources,
    listeners: Vec<Listener>,
    dashboard_port: u16,
    publish: bool,
    has_api_key: bool,
    labels: HashMap<String, String>,
}

/// A node found on the engine.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    role: Role,
    index: u32,
    state: ContainerSummaryStateEnum,
    image: Option<String>,
}

fn node_name(cluster: &ClusterRef, role: Role, index: u32) -> String {
    format!("{}-{}-{index}", cluster.resource_name(), role.as_str())
}

/// The EMQX environment variable of a listener's bind.
fn listener_env(l: &Listener) -> String {
    let kind = match l.protocol {
        ListenerProtocol::Tcp => "TCP",
        ListenerProtocol::Ssl => "SSL",
        ListenerProtocol::Ws => "WS",
        ListenerProtocol::Wss => "WSS",
    };
    format!("EMQX_LISTENERS__{kind}__DEFAULT__BIND=0.0.0.0:{}", l.port)
}

/// The container of one node: a pure function of the template (unit-tested without an engine).
fn node_body(cluster: &ClusterRef, t: &Template, role: Role, index: u32) -> ContainerCreateBody {
    let name = node_name(cluster, role, index);
    let seeds: Vec<String> =
        (0..t.core_count_for_seeds.max(1)).map(|i| format!("\"emqx@{}\"", node_name(cluster, Role::Core, i))).collect();
    let mut env = vec![
        format!("EMQX_NODE__NAME=emqx@{name}"),
        format!("EMQX_NODE__ROLE={}", role.as_str()),
        format!("EMQX_NODE__COOKIE={}", t.cookie),
        "EMQX_CLUSTER__DISCOVERY_STRATEGY=static".to_owned(),
        format!("EMQX_CLUSTER__STATIC__SEEDS=[{}]", seeds.join(",")),
        format!("EMQX_DASHBOARD__LISTENERS__HTTP__BIND={}", t.dashboard_port),
    ];
    env.extend(t.listeners.iter().map(listener_env));
    if t.has_api_key {
        env.push(format!("EMQX_API_KEY__BOOTSTRAP_FILE={FILES_DIR}/{API_KEYS_FILE}"));
    }
    let mut labels = t.labels.clone();
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    labels.insert(LABEL_CLUSTER.into(), cluster.id.to_string());
    labels.insert(LABEL_PROJECT.into(), cluster.project.to_string());
    labels.insert(LABEL_ROLE.into(), role.as_str().into());
    labels.insert(LABEL_INDEX.into(), index.to_string());
    let ports: Vec<u16> = t.listeners.iter().map(|l| l.port).chain([t.dashboard_port]).collect();
    let exposed: HashMap<String, HashMap<(), ()>> = ports.iter().map(|p| (format!("{p}/tcp"), HashMap::new())).collect();
    let bindings = t.publish.then(|| {
        ports
            .iter()
            .map(|p| (format!("{p}/tcp"), Some(vec![PortBinding { host_ip: None, host_port: Some(String::new()) }])))
            .collect::<HashMap<_, _>>()
    });
    let network = cluster.resource_name();
    ContainerCreateBody {
        image: Some(t.image.clone()),
        hostname: Some(name),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(exposed.into_keys().collect()),
        host_config: Some(HostConfig {
            network_mode: Some(network.clone()),
            nano_cpus: t.resources.cpu_millis.map(|m| i64::from(m) * 1_000_000),
            memory: t.resources.memory_mib.map(|m| i64::from(m) * 1024 * 1024),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            port_bindings: bindings,
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig { endpoints_config: Some(HashMap::from([(network, EndpointSettings::default())])) }),
        ..Default::default()
    }
}

/// The template of a spec (a new cluster).
fn template_of(spec: &ClusterSpec, cookie: String) -> Result<Template> {
    if spec.network == NetworkMode::LoadBalancer {
        return Err(unsupported(ClusterOperation::SetNetwork, ClusterBackend::Docker));
    }
    Ok(Template {
        image: spec.image.clone(),
        cookie,
        core_count_for_seeds: spec.core_replicas,
        resources: spec.resources,
        listeners: spec.listeners.clone(),
        dashboard_port: spec.dashboard_port,
        publish: spec.network == NetworkMode::NodePort,
        has_api_key: spec.api_key.is_some(),
        labels: spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}

/// The template of a running cluster, read back from one of its nodes.
fn template_from(inspect: &ContainerInspectResponse, cores: u32) -> Result<Template> {
    let bad = |what: &str| Error::Decode { endpoint: "docker: inspect container".into(), reason: format!("node without {what}") };
    let config = inspect.config.as_ref().ok_or_else(|| bad("config"))?;
    let host = inspect.host_config.as_ref().ok_or_else(|| bad("host config"))?;
    let env = config.env.clone().unwrap_or_default();
    let var = |k: &str| env.iter().find_map(|e| e.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_owned);
    let mut listeners = Vec::new();
    for p in ListenerProtocol::ALL {
        let l = Listener::default_for(p);
        let key = listener_env(&l);
        let key = key.split('=').next().unwrap_or_default();
        if let Some(bind) = var(key) {
            let port = bind.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("a listener port"))?;
            listeners.push(Listener { protocol: p, port });
        }
    }
    let labels = config.labels.clone().unwrap_or_default();
    Ok(Template {
        image: config.image.clone().ok_or_else(|| bad("image"))?,
        cookie: var("EMQX_NODE__COOKIE").ok_or_else(|| bad("cookie"))?,
        core_count_for_seeds: cores,
        resources: Resources {
            cpu_millis: host.nano_cpus.filter(|n| *n > 0).and_then(|n| u32::try_from(n / 1_000_000).ok()),
            memory_mib: host.memory.filter(|n| *n > 0).and_then(|n| u32::try_from(n / (1024 * 1024)).ok()),
        },
        listeners,
        dashboard_port: var("EMQX_DASHBOARD__LISTENERS__HTTP__BIND").and_then(|p| p.parse().ok()).ok_or_else(|| bad("dashboard port"))?,
        publish: host.port_bindings.as_ref().is_some_and(|b| !b.is_empty()),
        has_api_key: var("EMQX_API_KEY__BOOTSTRAP_FILE").is_some(),
        labels: labels
            .into_iter()
            .filter(|(k, _)| ![LABEL_MANAGED_BY, LABEL_CLUSTER, LABEL_PROJECT, LABEL_ROLE, LABEL_INDEX].contains(&k.as_str()))
            .collect(),
    })
}

/// A tar archive of the bootstrap files (relative to `/`), or `None` when there is none.
fn files_of(spec: &ClusterSpec) -> Result<Option<Bytes>> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(key) = &spec.api_key {
        files.push((API_KEYS_FILE.into(), format!("{}:{}:administrator\n", key.key, key.secret.expose_secret()).into_bytes()));
    }
    if let Some(hocon) = &spec.config {
        files.push((BASE_HOCON.into(), hocon.clone().into_bytes()));
    }
    tar_of(files)
}

/// A tar archive of `(path, body)` files, readable by their owner only; `None` for no file.
fn tar_of(files: Vec<(String, Vec<u8>)>) -> Result<Option<Bytes>> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, name, body.as_slice()).map_err(|e| Error::invalid("files", e.to_string()))?;
    }
    tar.into_inner().map(|v| Some(Bytes::from(v))).map_err(|e| Error::invalid("files", e.to_string()))
}

/// The `(path, body)` files of a tar archive.
fn untar(archive: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in tar::Archive::new(archive).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body)?;
        out.push((path, body));
    }
    Ok(out)
}

fn engine_error(operation: &'static str, e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            Error::Backend { backend: BACKEND, operation, status: Some(status_code), source: message.into() }
        }
        other => Error::Transport { endpoint: format!("docker: {operation}"), retryable: true, source: Box::new(other) },
    }
}

fn status_of(e: &Error) -> Option<u16> {
    match e {
        Error::Backend { status, .. } => *status,
        _ => None,
    }
}

impl DockerClusterDriver {
    /// A driver for the engine of `config`.
    ///
    /// # Errors
    /// `Backend` when the client cannot be made (a bad address or certificate file).
    pub fn new(config: DockerClusterConfig) -> Result<Self> {
        let t = config.request_timeout.as_secs().max(1);
        let v = bollard::API_DEFAULT_VERSION;
        let docker = match &config.host {
            DockerHost::Local => Docker::connect_with_local_defaults().map(|d| d.with_timeout(config.request_timeout)),
            DockerHost::Socket(p) => Docker::connect_with_socket(&p.to_string_lossy(), t, v),
            DockerHost::Http(a) => Docker::connect_with_http(a, t, v),
            DockerHost::Tls { addr, ca, cert, key } => Docker::connect_with_ssl(addr, key, cert, ca, t, v),
        }
        .map_err(|e| Error::Backend { backend: BACKEND, operation: "connect", status: None, source: Box::new(e) })?;
        Ok(Self { docker, config })
    }

    async fn nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_CLUSTER}={}", cluster.id), format!("{LABEL_MANAGED_BY}={MANAGED_BY}")],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(|e| engine_error("list containers", e))?;
        let mut nodes: Vec<Node> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let role = match labels.get(LABEL_ROLE).map(String::as_str) {
                    Some("core") => Role::Core,
                    Some("replicant") => Role::Replicant,
                    _ => return None,
                };
                let index = labels.get(LABEL_INDEX)?.parse().ok()?;
                let name = c.names?.into_iter().next()?.trim_start_matches('/').to_owned();
                Some(Node { name, role, index, state: c.state.unwrap_or(ContainerSummaryStateEnum::EMPTY), image: c.image })
            })
            .collect();
        nodes.sort_by_key(|n| (n.role, n.index));
        Ok(nodes)
    }

    async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse> {
        self.docker.inspect_container(name, None::<InspectContainerOptions>).await.map_err(|e| engine_error("inspect container", e))
    }

    /// The ids of the cluster's networks (the engine allows several with one name; there should
    /// be one).
    async fn networks(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_CLUSTER}={}", cluster.id)])]);
        let list = self
            .docker
            .list_networks(Some(ListNetworksOptions { filters: Some(filters) }))
            .await
            .map_err(|e| engine_error("list networks", e))?;
        Ok(list.into_iter().filter_map(|n| n.id).collect())
    }

    async fn ensure_network(&self, cluster: &ClusterRef) -> Result<()> {
        if !self.networks(cluster).await?.is_empty() {
            return Ok(());
        }
        let labels = HashMap::from([
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (LABEL_CLUSTER.to_owned(), cluster.id.to_string()),
            (LABEL_PROJECT.to_owned(), cluster.project.to_string()),
        ]);
        let req = NetworkCreateRequest {
            name: cluster.resource_name(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(req).await.map_err(|e| engine_error("create network", e)) {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates (if missing), fills and starts one node.
    async fn create_node(&self, cluster: &ClusterRef, t: &Template, role: Role, index: u32, files: Option<&Bytes>) -> Result<()> {
        let name = node_name(cluster, role, index);
        let body = node_body(cluster, t, role, index);
        let created = self
            .docker
            .create_container(Some(CreateContainerOptions { name: Some(name.clone()), ..Default::default() }), body)
            .await
            .map_err(|e| engine_error("create container", e));
        match created {
            Ok(_) => {
                if let Some(files) = files {
                    let opts = UploadToContainerOptions { path: FILES_DIR.into(), ..Default::default() };
                    if let Err(e) = self.upload(&name, files.clone(), opts).await {
                        let _ = self.remove(&name).await;
                        return Err(e);
                    }
                }
            }
            Err(e) if status_of(&e) == Some(409) => {}
            Err(e) => return Err(e),
        }
        self.start_node(&name).await
    }

    async fn upload(&self, name: &str, files: Bytes, opts: UploadToContainerOptions) -> Result<()> {
        // The destination directory may not exist in the image: upload at `/` with full paths.
        let rooted = reroot(&files, FILES_DIR)?;
        let opts = UploadToContainerOptions { path: "/".into(), ..opts };
        self.docker.upload_to_container(name, Some(opts), bollard::body_full(rooted)).await.map_err(|e| engine_error("copy files", e))
    }

    /// The bootstrap files of a node, as a tar archive relative to [`FILES_DIR`] (`None` if it has none).
    async fn download(&self, name: &str) -> Result<Option<Bytes>> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for file in [API_KEYS_FILE, BASE_HOCON] {
            let path = format!("{FILES_DIR}/{file}");
            let mut stream = self.docker.download_from_container(name, Some(DownloadFromContainerOptions { path }));
            let mut archive = Vec::new();
            let mut missing = false;
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(|e| engine_error("copy files", e)) {
                    Ok(b) => archive.extend_from_slice(&b),
                    Err(e) if status_of(&e) == Some(404) => {
                        missing = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if missing {
                continue;
            }
            let entries = untar(&archive).map_err(|e| Error::Decode { endpoint: "docker: copy files".into(), reason: e.to_string() })?;
            out.extend(entries.into_iter().map(|(_, body)| (file.to_owned(), body)));
        }
        tar_of(out)
    }

    async fn start_node(&self, name: &str) -> Result<()> {
        match self.docker.start_container(name, None::<StartContainerOptions>).await.map_err(|e| engine_error("start container", e)) {
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            other => other,
        }
    }

    async fn stop_node(&self, name: &str) -> Result<()> {
        let t = i32::try_from(self.config.stop_timeout.as_secs()).unwrap_or(600);
        match self
            .docker
            .stop_container(name, Some(StopContainerOptions { t: Some(t), signal: None }))
            .await
            .map_err(|e| engine_error("stop container", e))
        {
            Err(e) if status_of(&e) == Some(304) || status_of(&e) == Some(404) => Ok(()),
            other => other,
        }
    }

    async fn remove(&self, name: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(name, Some(opts)).await.map_err(|e| engine_error("remove container", e)) {
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            other => other,
        }
    }

    /// Waits until a node has run for the settle time (`true`), or fails: exits, dies, is restarted
    /// by its policy, or the ready timeout passes (`false`).
    async fn wait_running(&self, name: &str) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + self.config.ready_timeout;
        let mut since: Option<tokio::time::Instant> = None;
        while tokio::time::Instant::now() < deadline {
            let inspect = self.inspect(name).await?;
            // A node that exited, died or was restarted by its policy has failed: no need to wait.
            if inspect.restart_count.unwrap_or(0) > 0 {
                return Ok(false);
            }
            let state = inspect.state.and_then(|s| s.status);
            if matches!(state, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)) {
                return Ok(false);
            }
            if state == Some(ContainerStateStatusEnum::RUNNING) {
                let start = *since.get_or_insert_with(tokio::time::Instant::now);
                if start.elapsed() >= self.config.settle {
                    return Ok(true);
                }
            } else {
                since = None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(false)
    }

    /// The template and files of a running cluster, read from its first node.
    async fn current(&self, cluster: &ClusterRef) -> Result<(Vec<Node>, Template, Option<Bytes>)> {
        let nodes = self.nodes(cluster).await?;
        let first = nodes.first().ok_or_else(|| Error::Core(ecp_core::Error::not_found("cluster", cluster.id)))?;
        let cores = u32::try_from(nodes.iter().filter(|n| n.role == Role::Core).count()).unwrap_or(u32::MAX);
        let template = template_from(&self.inspect(&first.name).await?, cores)?;
        let files = self.download(&first.name).await?;
        Ok((nodes, template, files))
    }

    /// Re-creates every node from `new`, replicants first, highest index first; a node that does
    /// not run is re-created from `old` and the change stops.
    async fn roll(&self, cluster: &ClusterRef, nodes: &[Node], old: &Template, new: &Template, files: Option<&Bytes>) -> Result<()> {
        let mut order: Vec<&Node> = nodes.iter().collect();
        order.sort_by_key(|n| (std::cmp::Reverse(n.role), std::cmp::Reverse(n.index)));
        for node in order {
            self.remove(&node.name).await?;
            self.create_node(cluster, new, node.role, node.index, files).await?;
            if !self.wait_running(&node.name).await? {
                self.remove(&node.name).await?;
                self.create_node(cluster, old, node.role, node.index, files).await?;
                return Err(Error::Backend {
                    backend: BACKEND,
                    operation: "rolling update",
                    status: None,
                    source: format!("node {} did not stay running with image {}; it was re-created as before", node.name, new.image).into(),
                });
            }
        }
        Ok(())
    }
}

/// Moves the entries of a tar archive under `dir` (without its leading `/`).
fn reroot(files: &Bytes, dir: &str) -> Result<Bytes> {
    let entries = untar(files).map_err(|e| Error::invalid("files", e.to_string()))?;
    let rooted = entries.into_iter().map(|(path, body)| (format!("{}/{path}", dir.trim_start_matches('/')), body)).collect();
    Ok(tar_of(rooted)?.unwrap_or_default())
}

/// A fresh random cookie (32 hex digits).
fn cookie() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Backend {
        backend: BACKEND,
        operation: "create",
        status: None,
        source: e.to_string().into(),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[async_trait]
impl ClusterDriver for DockerClusterDriver {
    fn backend(&self) -> ClusterBackend {
        ClusterBackend::Docker
    }

    async fn state(&self, cluster: &ClusterRef) -> Result<ClusterState> {
        let nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        let running = |n: &&Node| n.state == ContainerSummaryStateEnum::RUNNING;
        let count = |role: Role| ReplicaCount {
            desired: u32::try_from(nodes.iter().filter(|n| n.role == role).count()).unwrap_or(u32::MAX),
            ready: u32::try_from(nodes.iter().filter(|n| n.role == role).filter(running).count()).unwrap_or(u32::MAX),
        };
        let broken: Vec<&str> = nodes
            .iter()
            .filter(|n| matches!(n.state, ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD))
            .map(|n| n.name.as_str())
            .collect();
        let pending = nodes.iter().any(|n| matches!(n.state, ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::RESTARTING));
        let up = nodes.iter().filter(running).count();
        let status = if up == nodes.len() {
            ClusterStatus::Running
        } else if up == 0 && broken.len() == nodes.len() {
            ClusterStatus::Stopped
        } else if nodes.iter().any(|n| n.state == ContainerSummaryStateEnum::STOPPING) {
            ClusterStatus::Stopping
        } else if !broken.is_empty() && up > 0 {
            ClusterStatus::Error(format!("nodes not running: {}", broken.join(", ")))
        } else if pending && up == 0 && broken.is_empty() {
            ClusterStatus::Creating
        } else {
            ClusterStatus::Updating
        };
        Ok(ClusterState {
            status,
            core: count(Role::Core),
            replicant: count(Role::Replicant),
            image: nodes.first().and_then(|n| n.image.clone()),
            nodes: nodes
                .iter()
                .map(|n| NodeSummary {
                    name: format!("emqx@{}", n.name),
                    role: n.role.as_str().into(),
                    running: n.state == ContainerSummaryStateEnum::RUNNING,
                    version: n.image.as_deref().and_then(crate::model::image_tag).map(str::to_owned),
                })
                .collect(),
        })
    }

    async fn create(&self, cluster: &ClusterRef, spec: &ClusterSpec) -> Result<()> {
        // A retried create keeps the cookie of the nodes already there.
        let existing = self.nodes(cluster).await?;
        let cookie = match existing.first() {
            Some(n) => template_from(&self.inspect(&n.name).await?, spec.core_replicas)?.cookie,
            None => cookie()?,
        };
        let template = template_of(spec, cookie)?;
        let files = files_of(spec)?;
        self.ensure_network(cluster).await?;
        for i in 0..spec.core_replicas {
            self.create_node(cluster, &template, Role::Core, i, files.as_ref()).await?;
        }
        for i in 0..spec.replicant_replicas {
            self.create_node(cluster, &template, Role::Replicant, i, files.as_ref()).await?;
        }
        Ok(())
    }

    async fn scale(&self, cluster: &ClusterRef, core: u32, replicant: u32) -> Result<()> {
        if core == 0 {
            return Err(Error::invalid("core_replicas", "a cluster needs at least one core node"));
        }
        let (nodes, mut template, files) = self.current(cluster).await?;
        template.core_count_for_seeds = core;
        for (role, want) in [(Role::Core, core), (Role::Replicant, replicant)] {
            for i in 0..want {
                if !nodes.iter().any(|n| n.role == role && n.index == i) {
                    self.create_node(cluster, &template, role, i, files.as_ref()).await?;
                }
            }
        }
        let mut extra: Vec<&Node> = nodes.iter().filter(|n| n.index >= if n.role == Role::Core { core } else { replicant }).collect();
        extra.sort_by_key(|n| (std::cmp::Reverse(n.role), std::cmp::Reverse(n.index)));
        for n in extra {
            self.stop_node(&n.name).await?;
            self.remove(&n.name).await?;
        }
        Ok(())
    }

    async fn resize(&self, cluster: &ClusterRef, resources: Resources) -> Result<()> {
        let nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        let memory = resources.memory_mib.map(|m| i64::from(m) * 1024 * 1024);
        let update = ContainerUpdateBody {
            nano_cpus: Some(resources.cpu_millis.map_or(0, |m| i64::from(m) * 1_000_000)),
            memory: Some(memory.unwrap_or(0)),
            // Swap as large as the memory (no swap beyond it); -1 (unlimited) when memory is.
            memory_swap: Some(memory.unwrap_or(-1)),
            ..Default::default()
        };
        for n in &nodes {
            self.docker.update_container(&n.name, update.clone()).await.map_err(|e| engine_error("update container", e))?;
        }
        Ok(())
    }

    async fn set_network(&self, cluster: &ClusterRef, mode: NetworkMode, listeners: &[Listener]) -> Result<()> {
        if mode == NetworkMode::LoadBalancer {
            return Err(unsupported(ClusterOperation::SetNetwork, ClusterBackend::Docker));
        }
        let (nodes, old, files) = self.current(cluster).await?;
        let new = Template { publish: mode == NetworkMode::NodePort, listeners: listeners.to_vec(), ..old.clone() };
        if new == old {
            return Ok(());
        }
        self.roll(cluster, &nodes, &old, &new, files.as_ref()).await
    }

    async fn set_image(&self, cluster: &ClusterRef, image: &str) -> Result<()> {
        crate::model::validate_image(image)?;
        let (nodes, old, files) = self.current(cluster).await?;
        if old.image == image && nodes.iter().all(|n| n.state == ContainerSummaryStateEnum::RUNNING) {
            return Ok(());
        }
        let new = Template { image: image.to_owned(), ..old.clone() };
        self.roll(cluster, &nodes, &old, &new, files.as_ref()).await
    }

    async fn stop(&self, cluster: &ClusterRef) -> Result<()> {
        let mut nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        nodes.sort_by_key(|n| (std::cmp::Reverse(n.role), std::cmp::Reverse(n.index)));
        for n in &nodes {
            self.stop_node(&n.name).await?;
        }
        Ok(())
    }

    async fn start(&self, cluster: &ClusterRef) -> Result<()> {
        let nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        for n in &nodes {
            self.start_node(&n.name).await?;
        }
        Ok(())
    }

    async fn delete(&self, cluster: &ClusterRef) -> Result<()> {
        for n in self.nodes(cluster).await? {
            self.remove(&n.name).await?;
        }
        for id in self.networks(cluster).await? {
            match self.docker.remove_network(&id).await.map_err(|e| engine_error("remove network", e)) {
                Err(e) if status_of(&e) == Some(404) => {}
                other => other?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::model::ApiKey;

    fn cluster() -> ClusterRef {
        ClusterRef::new(ecp_core::ClusterId::new(), ecp_core::ProjectId::new(), "mqtt")
    }

    #[test]
    fn the_container_plan() {
        let c = cluster();
        let spec = ClusterSpec::builder("emqx/emqx-enterprise:5.10.0")
            .replicas(3, 2)
            .resources(Resources::new(500, 1024))
            .network(NetworkMode::NodePort)
            .api_key(ApiKey::new("ecp", SecretString::from("plan-secret-sentinel")).unwrap())
            .label("team", "iot")
            .build()
            .unwrap();
        let t = template_of(&spec, "c00kie".into()).unwrap();
        let body = node_body(&c, &t, Role::Replicant, 1);
        let r = c.resource_name();
        let env = body.env.clone().unwrap();
        for want in [
            format!("EMQX_NODE__NAME=emqx@{r}-replicant-1"),
            "EMQX_NODE__ROLE=replicant".to_owned(),
            "EMQX_NODE__COOKIE=c00kie".to_owned(),
            "EMQX_CLUSTER__DISCOVERY_STRATEGY=static".to_owned(),
            format!("EMQX_CLUSTER__STATIC__SEEDS=[\"emqx@{r}-core-0\",\"emqx@{r}-core-1\",\"emqx@{r}-core-2\"]"),
            "EMQX_DASHBOARD__LISTENERS__HTTP__BIND=18083".to_owned(),
            "EMQX_LISTENERS__TCP__DEFAULT__BIND=0.0.0.0:1883".to_owned(),
            "EMQX_LISTENERS__WSS__DEFAULT__BIND=0.0.0.0:8084".to_owned(),
            format!("EMQX_API_KEY__BOOTSTRAP_FILE={FILES_DIR}/{API_KEYS_FILE}"),
        ] {
            assert!(env.contains(&want), "{want} missing from {env:?}");
        }
        assert!(!format!("{body:?}").contains("sentinel"), "the API secret must not be in the container's config");
        let host = body.host_config.clone().unwrap();
        assert_eq!((host.nano_cpus, host.memory), (Some(500_000_000), Some(1024 * 1024 * 1024)));
        assert_eq!(host.network_mode.as_deref(), Some(r.as_str()));
        assert_eq!(host.port_bindings.as_ref().unwrap().len(), 5);
        let labels = body.labels.clone().unwrap();
        assert_eq!((labels[LABEL_ROLE].as_str(), labels[LABEL_INDEX].as_str(), labels["team"].as_str()), ("replicant", "1", "iot"));
        // The template reads back from what the engine would hold.
        let inspect = ContainerInspectResponse {
            config: Some(bollard::models::ContainerConfig {
                image: body.image.clone(),
                env: body.env.clone(),
                labels: body.labels.clone(),
                ..Default::default()
            }),
            host_config: body.host_config.clone(),
            ..Default::default()
        };
        let mut back = template_from(&inspect, 3).unwrap();
        back.listeners.sort();
        let mut t2 = t.clone();
        t2.listeners.sort();
        assert_eq!(back, t2);
        // Load balancers are not Docker's.
        let lb = ClusterSpec::builder("emqx:5").network(NetworkMode::LoadBalancer).build().unwrap();
        assert!(template_of(&lb, "c".into()).unwrap_err().is_unsupported());
    }

    #[test]
    fn bootstrap_files_round_trip_through_tar() {
        let spec = ClusterSpec::builder("emqx:5")
            .api_key(ApiKey::new("ecp", SecretString::from("s3cret")).unwrap())
            .config("log.console.level = debug")
            .build()
            .unwrap();
        let files = files_of(&spec).unwrap().unwrap();
        let rooted = reroot(&files, FILES_DIR).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(rooted.as_ref()).entries().unwrap() {
            let mut e = e.unwrap();
            let mut body = String::new();
            std::io::Read::read_to_string(&mut e, &mut body).unwrap();
            names.push((e.path().unwrap().to_string_lossy().into_owned(), body));
        }
        assert_eq!(
            names,
            vec![
                ("opt/emqx/etc/ecp_api_keys".to_owned(), "ecp:s3cret:administrator\n".to_owned()),
                ("opt/emqx/etc/base.hocon".to_owned(), "log.console.level = debug".to_owned()),
            ]
        );
        assert!(files_of(&ClusterSpec::builder("emqx:5").build().unwrap()).unwrap().is_none());
    }
}
