//! What a cluster's containers look like: roles, names, bodies, templates, files and cookies, as
//! pure functions of the spec.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummaryStateEnum, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use bytes::Bytes;
use ecp_hosting::Backend;
use secrecy::ExposeSecret;

use crate::driver::{ClusterOperation, ClusterRef, unsupported};
use crate::error::{Error, Result};

use super::{API_KEYS_FILE, BASE_HOCON, FILES_DIR, LABEL_CLUSTER, LABEL_INDEX, LABEL_MANAGED_BY, LABEL_PROJECT, LABEL_ROLE, MANAGED_BY};
use crate::model::{ClusterBackend, ClusterSpec, Listener, ListenerProtocol, NetworkMode, Resources};

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Role {
    Core,
    Replicant,
}

impl Role {
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            Role::Core => "core",
            Role::Replicant => "replicant",
        }
    }
}

/// What every node of a cluster shares: the input of the container plan.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Template {
    pub(super) image: String,
    pub(super) cookie: String,
    pub(super) core_count_for_seeds: u32,
    pub(super) resources: Resources,
    pub(super) listeners: Vec<Listener>,
    pub(super) dashboard_port: u16,
    pub(super) publish: bool,
    pub(super) has_api_key: bool,
    pub(super) labels: HashMap<String, String>,
}

/// A node found on the engine.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) index: u32,
    pub(super) state: ContainerSummaryStateEnum,
    pub(super) image: Option<String>,
}

pub(super) fn node_name(cluster: &ClusterRef, role: Role, index: u32) -> String {
    format!("{}-{}-{index}", cluster.resource_name(), role.as_str())
}

/// The EMQX environment variable of a listener's bind.
pub(super) fn listener_env(l: &Listener) -> String {
    let kind = match l.protocol {
        ListenerProtocol::Tcp => "TCP",
        ListenerProtocol::Ssl => "SSL",
        ListenerProtocol::Ws => "WS",
        ListenerProtocol::Wss => "WSS",
    };
    format!("EMQX_LISTENERS__{kind}__DEFAULT__BIND=0.0.0.0:{}", l.port)
}

/// The container of one node: a pure function of the template (unit-tested without an engine).
pub(super) fn node_body(cluster: &ClusterRef, t: &Template, role: Role, index: u32) -> ContainerCreateBody {
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
pub(super) fn template_of(spec: &ClusterSpec, cookie: String) -> Result<Template> {
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
pub(super) fn template_from(inspect: &ContainerInspectResponse, cores: u32) -> Result<Template> {
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
pub(super) fn files_of(spec: &ClusterSpec) -> Result<Option<Bytes>> {
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
pub(super) fn tar_of(files: Vec<(String, Vec<u8>)>) -> Result<Option<Bytes>> {
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
pub(super) fn untar(archive: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
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

/// Moves the entries of a tar archive under `dir` (without its leading `/`).
pub(super) fn reroot(files: &Bytes, dir: &str) -> Result<Bytes> {
    let entries = untar(files).map_err(|e| Error::invalid("files", e.to_string()))?;
    let rooted = entries.into_iter().map(|(path, body)| (format!("{}/{path}", dir.trim_start_matches('/')), body)).collect();
    Ok(tar_of(rooted)?.unwrap_or_default())
}

/// A fresh random cookie (32 hex digits).
pub(super) fn cookie() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ecp_hosting::Error::new(Backend::Docker, "create", e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
