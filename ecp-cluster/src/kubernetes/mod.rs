//! The `kubernetes` backend: EMQX clusters as the EMQX Operator's `EMQX` custom resource
//! (`apps.emqx.io/v2beta1`, plural `emqxes`), through kube-rs.
//!
//! # What each operation does
//!
//! | operation | requests |
//! |---|---|
//! | create | `POST` a Secret `<name>-ecp-api-key` (keys `key`, `secret`) when the spec has an API key, then `POST` the `EMQX` resource whose `bootstrapAPIKeys` references it by `secretRef` (the secret is never inline in the resource). A 409 on either is read back (`GET`) and accepted when it matches what would have been created, so a retried create converges; otherwise it is a `Conflict` |
//! | scale | `GET`, then a JSON merge patch of `coreTemplate.spec.replicas` and `replicantTemplate.spec.replicas` (of the remembered counts when stopped). The CRD's scale subresource is not used: its status path points at `.status.replicantNodeReplicas`, which does not exist |
//! | resize | merge patch of both templates' `resources`, requests = limits (`null` removes a limit) |
//! | set_network | merge patch of `listenersServiceTemplate` (`type` and the listener ports) and `dashboardServiceTemplate` (`type`) |
//! | set_image | merge patch of `spec.image` (upgrade and downgrade alike; the Operator rolls out a blue-green update) |
//! | stop | `GET`, then one merge patch setting both replica counts to 0 and remembering the old counts in the annotation `io.ecp/stopped-replicas` (`{"core":3,"replicant":2}`), with `metadata.resourceVersion` as precondition. The CRD puts no minimum on `coreTemplate.spec.replicas` (the Go field is a pointer, so an explicit 0 is kept and not defaulted), so 0 core nodes is a valid spec: the core StatefulSet is scaled to 0. Stopping a stopped cluster does nothing |
//! | start | `GET`, then a merge patch restoring the remembered counts and removing the annotation (same precondition). Starting a running cluster does nothing |
//! | delete | `DELETE` the resource and the Secret; 404 means already gone, which is success |
//! | state | `GET`, mapped as below |
//!
//! Every request is built by a pure function of this module (the objects and patches), executed
//! by kube-rs on the API server of a [`KubeConnection`]. A failed request is
//! [`Error::Hosting`] with the API server's status (404 is `is_not_found`; 409, 429 and 5xx are
//! retryable), the API key cut out of the server's message on writes that carry it. All objects carry the labels `io.ecp.project` and `io.ecp.cluster` (and the spec's own
//! labels), and the node and Service templates pass them on to the pods and Services.
//!
//! # From status to [`ClusterStatus`]
//!
//! The Operator's conditions are sorted newest first, a reset (an update) removes the later stages,
//! and there is no `Failed` type. In order:
//!
//! | the resource shows | status |
//! |---|---|
//! | the annotation `io.ecp/stopped-replicas`, no ready pod and no running node | `Stopped` |
//! | the annotation, some pod still ready or node running | `Stopping` |
//! | `Ready` = `True`, every node reported `running` (lowercase) | `Running` |
//! | `Ready` = `True`, a node whose `node_status` is not `running` | `Error("node … is …")` |
//! | not ready, the newest condition (or, without any, the creation) older than the progress deadline | `Error("no progress …")` naming the newest condition, or the first node not `running` |
//! | not ready (`Initialized`, `CoreNodesProgressing`, `ReplicantNodesProgressing`, `…Ready`, `Available`, `Ready` = `False`, or no status yet), within the deadline, never updated | `Creating` |
//! | the same, after a spec change (`metadata.generation` > 1), a revision rolling out (`currentRevision` ≠ `updateRevision`) or node evacuations under way | `Updating` |
//!
//! The deadline is [`KubernetesConfigBuilder::progress_deadline`] (10 minutes by default), measured
//! with the configured [`Clock`].

mod crd;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::{Clock, SystemClock, Timestamp};
use ecp_hosting::kubernetes::{KubeConnection, error as kube_error, error_redacting, validate_field_manager, validate_namespace};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ResourceRequirements, Secret, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::driver::{ClusterDriver, ClusterRef};
use crate::error::{Error, Result};
use crate::model::{
    ApiKey, ClusterBackend, ClusterSpec, ClusterState, ClusterStatus, Listener, NetworkMode, NodeSummary, ReplicaCount, Resources,
    validate_image,
};
use crd::{BootstrapApiKey, BootstrapSecretRef, Emqx, EmqxConfig, EmqxSpec, NodeSpec, NodeTemplate, SecretKeyRef, ServiceTemplate};

/// The label naming the project of everything the driver creates.
pub const LABEL_PROJECT: &str = "io.ecp.project";
/// The label naming the cluster (its id) of everything the driver creates.
pub const LABEL_CLUSTER: &str = "io.ecp.cluster";
/// The annotation remembering the replica counts of a stopped cluster (`{"core":3,"replicant":2}`).
pub const ANNOTATION_STOPPED: &str = "io.ecp/stopped-replicas";

/// The suffix of the Secret holding a cluster's bootstrap API key (`<resource name>-ecp-api-key`;
/// the Operator's own is `<name>-bootstrap-api-key`).
const SECRET_SUFFIX: &str = "-ecp-api-key";

/// How the [`KubernetesDriver`] works: its namespace, field manager and progress deadline.
#[derive(Clone)]
#[non_exhaustive]
pub struct KubernetesConfig {
    namespace: String,
    field_manager: String,
    progress_deadline: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for KubernetesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesConfig")
            .field("namespace", &self.namespace)
            .field("field_manager", &self.field_manager)
            .field("progress_deadline", &self.progress_deadline)
            .finish_non_exhaustive()
    }
}

impl KubernetesConfig {
    /// A builder: namespace `default`, field manager `ecp`, progress deadline 10 minutes.
    pub fn builder() -> KubernetesConfigBuilder {
        KubernetesConfigBuilder {
            namespace: "default".to_owned(),
            field_manager: "ecp".to_owned(),
            progress_deadline: Duration::from_secs(600),
            clock: Arc::new(SystemClock),
        }
    }

    /// The namespace of the clusters.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The field manager named in writes.
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// How long a cluster may show no progress before its state is an error.
    pub fn progress_deadline(&self) -> Duration {
        self.progress_deadline
    }
}

/// Builds a [`KubernetesConfig`]; [`build`](Self::build) validates it.
#[derive(Clone)]
pub struct KubernetesConfigBuilder {
    namespace: String,
    field_manager: String,
    progress_deadline: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for KubernetesConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesConfigBuilder").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl KubernetesConfigBuilder {
    /// The namespace of the clusters (a DNS-1123 label).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The field manager named in writes (1..=128 printable ASCII characters).
    #[must_use]
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = manager.into();
        self
    }

    /// How long a cluster that is not ready may show no new condition before its state is an
    /// error (more than zero).
    #[must_use]
    pub fn progress_deadline(mut self, deadline: Duration) -> Self {
        self.progress_deadline = deadline;
        self
    }

    /// The clock the deadline is measured with.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The config.
    ///
    /// # Errors
    /// `InvalidInput` for a namespace that is not a DNS-1123 label, an empty or odd field manager, or
    /// a zero deadline.
    pub fn build(self) -> Result<KubernetesConfig> {
        validate_namespace(&self.namespace)?;
        validate_field_manager(&self.field_manager)?;
        if self.progress_deadline.is_zero() {
            return Err(Error::invalid("progress_deadline", "must be more than zero"));
        }
        Ok(KubernetesConfig {
            namespace: self.namespace,
            field_manager: self.field_manager,
            progress_deadline: self.progress_deadline,
            clock: self.clock,
        })
    }
}

/// The [`ClusterDriver`] of the EMQX Operator (see the [module docs](self) for what each operation
/// sends and how the status is mapped).
#[derive(Clone)]
pub struct KubernetesDriver {
    client: kube::Client,
    config: KubernetesConfig,
}

impl fmt::Debug for KubernetesDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesDriver").field("config", &self.config).finish_non_exhaustive()
    }
}

impl KubernetesDriver {
    /// A driver on the API server of `connection` (see [`KubeConnection`]: inferred from the
    /// environment, a kubeconfig file and context, or the host's client). No request is sent.
    ///
    /// # Errors
    /// [`Error::Hosting`] (operation `connect`) when no configuration is found or it is unusable.
    pub async fn connect(connection: &KubeConnection, config: KubernetesConfig) -> Result<Self> {
        Ok(Self { client: connection.client().await?, config })
    }

    /// A driver over a `kube::Client` the host already has (or a scripted one in tests). This is the
    /// one public signature with a kube type: it ties the caller to this crate's kube version.
    pub fn from_client(client: kube::Client, config: KubernetesConfig) -> Self {
        Self { client, config }
    }

    /// The config.
    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    fn emqxes(&self) -> Api<Emqx> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn post_params(&self) -> PostParams {
        PostParams { dry_run: false, field_manager: Some(self.config.field_manager.clone()) }
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams { field_manager: Some(self.config.field_manager.clone()), ..PatchParams::default() }
    }

    async fn get(&self, op: &'static str, name: &str) -> Result<Emqx> {
        Ok(self.emqxes().get(name).await.map_err(|e| kube_error(op, e))?)
    }

    async fn merge(&self, op: &'static str, name: &str, patch: &Value) -> Result<()> {
        self.emqxes().patch(name, &self.patch_params(), &Patch::Merge(patch)).await.map_err(|e| kube_error(op, e))?;
        Ok(())
    }
}

fn to_i32(field: &'static str, n: u32) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::invalid(field, "too large"))
}

/// The Secret holding a cluster's bootstrap API key.
pub(crate) fn secret_name(cluster: &ClusterRef) -> String {
    format!("{}{SECRET_SUFFIX}", cluster.resource_name())
}

/// The labels of everything created for `cluster`: the spec's, then ours (which win).
fn labels(cluster: &ClusterRef, spec_labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = spec_labels.clone();
    l.insert(LABEL_PROJECT.to_owned(), cluster.project.to_string());
    l.insert(LABEL_CLUSTER.to_owned(), cluster.id.to_string());
    l
}

/// The Secret of `key` (`stringData`: the API server encodes it).
fn api_key_secret(cluster: &ClusterRef, key: &ApiKey, labels: &BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(secret_name(cluster)), labels: Some(labels.clone()), ..ObjectMeta::default() },
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([
            ("key".to_owned(), key.key.clone()),
            ("secret".to_owned(), key.secret.expose_secret().to_owned()),
        ])),
        ..Secret::default()
    }
}

/// Whether a Secret read back holds `key`.
fn secret_holds(secret: &Secret, key: &ApiKey) -> bool {
    let entry = |k: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|ByteString(b)| b.clone())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(k)).map(|s| s.as_bytes().to_vec()))
    };
    entry("key").as_deref() == Some(key.key.as_bytes()) && entry("secret").as_deref() == Some(key.secret.expose_secret().as_bytes())
}

fn quantity_map(r: &Resources) -> BTreeMap<String, Quantity> {
    let mut m = BTreeMap::new();
    if let Some(c) = r.cpu_quantity() {
        m.insert("cpu".to_owned(), Quantity(c));
    }
    if let Some(mem) = r.memory_quantity() {
        m.insert("memory".to_owned(), Quantity(mem));
    }
    m
}

fn resource_requirements(r: &Resources) -> Option<ResourceRequirements> {
    let m = quantity_map(r);
    (!m.is_empty()).then(|| ResourceRequirements { requests: Some(m.clone()), limits: Some(m), ..ResourceRequirements::default() })
}

/// The listener names: the first of each protocol is `default` (EMQX's own), the others `ecp<port>`.
fn listener_names(listeners: &[Listener]) -> Vec<(Listener, String)> {
    let mut seen = Vec::new();
    listeners
        .iter()
        .map(|l| {
            let name = if seen.contains(&l.protocol) { format!("ecp{}", l.port) } else { "default".to_owned() };
            seen.push(l.protocol);
            (*l, name)
        })
        .collect()
}

/// The Service ports of the listeners (`tcp-default`, as the Operator names them).
fn listener_ports(listeners: &[Listener]) -> Vec<ServicePort> {
    listener_names(listeners)
        .into_iter()
        .map(|(l, name)| ServicePort {
            name: Some(format!("{}-{name}", l.protocol.as_str())),
            port: i32::from(l.port),
            protocol: Some("TCP".to_owned()),
            target_port: Some(IntOrString::Int(i32::from(l.port))),
            ..ServicePort::default()
        })
        .collect()
}

fn dashboard_ports(port: u16) -> Vec<ServicePort> {
    vec![ServicePort {
        name: Some("dashboard".to_owned()),
        port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        target_port: Some(IntOrString::Int(i32::from(port))),
        ..ServicePort::default()
    }]
}

/// The HOCON of the ports (binds, disabled protocols), then the spec's own configuration.
fn config_data(spec: &ClusterSpec) -> String {
    use crate::model::ListenerProtocol;
    let mut out = format!("dashboard.listeners.http.bind = {}\n", spec.dashboard_port);
    let named = listener_names(&spec.listeners);
    for (l, name) in &named {
        out.push_str(&format!("listeners.{}.{name}.bind = \"0.0.0.0:{}\"\n", l.protocol.as_str(), l.port));
    }
    for p in ListenerProtocol::ALL {
        if !named.iter().any(|(l, _)| l.protocol == p) {
            out.push_str(&format!("listeners.{}.default.enable = false\n", p.as_str()));
        }
    }
    if let Some(extra) = &spec.config {
        out.push_str(extra);
        if !extra.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn template_meta(labels: &BTreeMap<String, String>) -> Option<ObjectMeta> {
    Some(ObjectMeta { labels: Some(labels.clone()), ..ObjectMeta::default() })
}

/// The `EMQX` resource of `cluster` with `spec`.
fn emqx_for(cluster: &ClusterRef, spec: &ClusterSpec) -> Result<Emqx> {
    let labels = labels(cluster, &spec.labels);
    let node = |replicas: u32, field: &'static str| -> Result<NodeTemplate> {
        Ok(NodeTemplate {
            metadata: template_meta(&labels),
            spec: Some(NodeSpec {
                replicas: Some(to_i32(field, replicas)?),
                resources: resource_requirements(&spec.resources),
                ..NodeSpec::default()
            }),
        })
    };
    let service = |ports: Vec<ServicePort>| ServiceTemplate {
        enabled: Some(true),
        metadata: template_meta(&labels),
        spec: Some(ServiceSpec { type_: Some(spec.network.as_str().to_owned()), ports: Some(ports), ..ServiceSpec::default() }),
    };
    let secret = secret_name(cluster);
    let emqx_spec = EmqxSpec {
        image: spec.image.clone(),
        bootstrap_api_keys: spec.api_key.as_ref().map(|_| {
            vec![BootstrapApiKey {
                secret_ref: Some(BootstrapSecretRef {
                    key: SecretKeyRef { secret_name: secret.clone(), secret_key: "key".to_owned() },
                    secret: SecretKeyRef { secret_name: secret.clone(), secret_key: "secret".to_owned() },
                }),
                ..BootstrapApiKey::default()
            }]
        }),
        config: Some(EmqxConfig { mode: Some("Merge".to_owned()), data: Some(config_data(spec)) }),
        core_template: Some(node(spec.core_replicas, "core_replicas")?),
        replicant_template: Some(node(spec.replicant_replicas, "replicant_replicas")?),
        dashboard_service_template: Some(service(dashboard_ports(spec.dashboard_port))),
        listeners_service_template: Some(service(listener_ports(&spec.listeners))),
        ..EmqxSpec::default()
    };
    let mut e = Emqx::new(&cluster.resource_name(), emqx_spec);
    e.metadata.labels = Some(labels);
    Ok(e)
}

/// The counts remembered by `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StoppedReplicas {
    core: u32,
    replicant: u32,
}

fn stopped_replicas(e: &Emqx) -> Option<Result<StoppedReplicas>> {
    e.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_STOPPED)).map(|raw| {
        serde_json::from_str::<StoppedReplicas>(raw)
            .map_err(|err| Error::Decode { endpoint: format!("kubernetes annotation {ANNOTATION_STOPPED}"), reason: err.to_string() })
    })
}

fn template_replicas(t: Option<&NodeTemplate>, default: i32) -> Option<u32> {
    t.map(|t| t.spec.as_ref().and_then(|s| s.replicas).unwrap_or(default)).map(|n| u32::try_from(n).unwrap_or(0))
}

/// The core and replicant counts of the spec (the Operator's defaults where absent: core 1,
/// replicant 2 when the template exists, none without it).
fn spec_replicas(e: &Emqx) -> (u32, u32) {
    (
        template_replicas(e.spec.core_template.as_ref(), 1).unwrap_or(1),
        template_replicas(e.spec.replicant_template.as_ref(), 2).unwrap_or(0),
    )
}

/// A Service template as create compares it: its type and its ports' names and numbers.
type ServiceView = (Option<String>, Vec<(Option<String>, i32)>);

/// What create compares to accept an existing resource as its own.
#[derive(Debug, PartialEq)]
struct ManagedView {
    labels: (Option<String>, Option<String>),
    image: String,
    replicas: (u32, u32),
    resources: (Option<ResourceRequirements>, Option<ResourceRequirements>),
    services: Vec<ServiceView>,
    config: Option<String>,
    keys: Option<Vec<BootstrapApiKey>>,
}

fn managed_view(e: &Emqx) -> ManagedView {
    let label = |k: &str| e.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let replicas = match stopped_replicas(e) {
        Some(Ok(s)) => (s.core, s.replicant),
        _ => spec_replicas(e),
    };
    let res = |t: Option<&NodeTemplate>| t.and_then(|t| t.spec.as_ref()).and_then(|s| s.resources.clone());
    let svc = |t: Option<&ServiceTemplate>| {
        let spec = t.and_then(|t| t.spec.as_ref());
        (
            spec.and_then(|s| s.type_.clone()),
            spec.and_then(|s| s.ports.as_ref()).map(|ps| ps.iter().map(|p| (p.name.clone(), p.port)).collect()).unwrap_or_default(),
        )
    };
    ManagedView {
        labels: (label(LABEL_PROJECT), label(LABEL_CLUSTER)),
        image: e.spec.image.clone(),
        replicas,
        resources: (res(e.spec.core_template.as_ref()), res(e.spec.replicant_template.as_ref())),
        services: vec![svc(e.spec.listeners_service_template.as_ref()), svc(e.spec.dashboard_service_template.as_ref())],
        config: e.spec.config.as_ref().and_then(|c| c.data.clone()),
        keys: e.spec.bootstrap_api_keys.clone(),
    }
}

/// The merge patch of both replica counts.
fn replicas_patch(core: u32, replicant: u32) -> Value {
    json!({"spec": {
        "coreTemplate": {"spec": {"replicas": core}},
        "replicantTemplate": {"spec": {"replicas": replicant}},
    }})
}

/// The merge patch of both templates' resources (requests = limits; `null` removes one).
fn resources_patch(r: &Resources) -> Value {
    let q = json!({"cpu": r.cpu_quantity(), "memory": r.memory_quantity()});
    let res = json!({"requests": q, "limits": q});
    json!({"spec": {
        "coreTemplate": {"spec": {"resources": res}},
        "replicantTemplate": {"spec": {"resources": res}},
    }})
}

/// The merge patch of the Services' type and the listeners' ports.
fn network_patch(mode: NetworkMode, listeners: &[Listener]) -> Value {
    json!({"spec": {
        "listenersServiceTemplate": {"enabled": true, "spec": {"type": mode.as_str(), "ports": listener_ports(listeners)}},
        "dashboardServiceTemplate": {"enabled": true, "spec": {"type": mode.as_str()}},
    }})
}

fn image_patch(image: &str) -> Value {
    json!({"spec": {"image": image}})
}

/// The merge patch of stop: both counts to 0, the old ones remembered, guarded by the resource
/// version read.
fn stop_patch(resource_version: Option<&str>, remembered: StoppedReplicas) -> Value {
    let mut p = replicas_patch(0, 0);
    let remembered = serde_json::to_string(&remembered).unwrap_or_default();
    p["metadata"] = json!({"resourceVersion": resource_version, "annotations": {ANNOTATION_STOPPED: remembered}});
    p
}

/// The merge patch of start: the counts back, the annotation removed.
fn start_patch(resource_version: Option<&str>, remembered: StoppedReplicas) -> Value {
    let mut p = replicas_patch(remembered.core, remembered.replicant);
    p["metadata"] = json!({"resourceVersion": resource_version, "annotations": {ANNOTATION_STOPPED: Value::Null}});
    p
}

fn parse_time(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| s.parse::<Timestamp>().ok())
}

/// The [`ClusterState`] of a resource read at `now`, per the table of the module docs.
fn cluster_state(e: &Emqx, now: Timestamp, deadline: Duration) -> ClusterState {
    let status = e.status.clone().unwrap_or_default();
    let (core_desired, replicant_desired) = spec_replicas(e);
    let ready =
        |s: &Option<crd::EmqxNodesStatus>| s.as_ref().and_then(|s| s.ready_replicas).map(|n| u32::try_from(n).unwrap_or(0)).unwrap_or(0);
    let core = ReplicaCount { desired: core_desired, ready: ready(&status.core_nodes_status) };
    let replicant = ReplicaCount { desired: replicant_desired, ready: ready(&status.replicant_nodes_status) };
    let node = |n: &crd::EmqxNode, role: &str| NodeSummary {
        name: n.node.clone(),
        role: n.role.clone().unwrap_or_else(|| role.to_owned()),
        running: n.node_status == "running",
        version: n.version.clone(),
    };
    let nodes: Vec<NodeSummary> =
        status.core_nodes.iter().map(|n| node(n, "core")).chain(status.replicant_nodes.iter().map(|n| node(n, "replicant"))).collect();
    let not_running = || {
        status
            .core_nodes
            .iter()
            .chain(&status.replicant_nodes)
            .find(|n| n.node_status != "running")
            .map(|n| format!("node {} is {}", n.node, if n.node_status.is_empty() { "of unknown status" } else { &n.node_status }))
    };

    let cluster_status = if stopped_replicas(e).is_some() {
        if core.ready + replicant.ready == 0 && !nodes.iter().any(|n| n.running) { ClusterStatus::Stopped } else { ClusterStatus::Stopping }
    } else if status.conditions.iter().any(|c| c.type_ == "Ready" && c.is_true()) {
        match not_running() {
            Some(cause) => ClusterStatus::Error(cause),
            None => ClusterStatus::Running,
        }
    } else {
        let newest = status.conditions.first();
        let since = newest
            .and_then(|c| parse_time(c.last_transition_time.as_deref()).or_else(|| parse_time(c.last_update_time.as_deref())))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let stalled = since.is_some_and(|t| now.duration_since(t).unsigned_abs() > deadline && now > t);
        if stalled {
            let secs = deadline.as_secs();
            let cause = match (not_running(), newest) {
                (Some(node), _) => format!("no progress for {secs}s: {node}"),
                (None, Some(c)) => format!(
                    "no progress for {secs}s: {} is {}{}",
                    c.type_,
                    c.status,
                    c.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                ),
                (None, None) => format!("no status from the operator for {secs}s (is the EMQX Operator running?)"),
            };
            ClusterStatus::Error(cause)
        } else {
            let rolling = status
                .core_nodes_status
                .as_ref()
                .is_some_and(|s| s.current_revision.is_some() && s.update_revision.is_some() && s.current_revision != s.update_revision);
            if e.metadata.generation.unwrap_or(1) > 1 || rolling || !status.node_evacuations_status.is_empty() {
                ClusterStatus::Updating
            } else {
                ClusterStatus::Creating
            }
        }
    };
    ClusterState { status: cluster_status, core, replicant, image: Some(e.spec.image.clone()), nodes }
}

#[async_trait]
impl ClusterDriver for KubernetesDriver {
    fn backend(&self) -> ClusterBackend {
        ClusterBackend::Kubernetes
    }

    async fn state(&self, cluster: &ClusterRef) -> Result<ClusterState> {
        let e = self.get("state", &cluster.resource_name()).await?;
        Ok(cluster_state(&e, self.config.clock.now(), self.config.progress_deadline))
    }

    async fn create(&self, cluster: &ClusterRef, spec: &ClusterSpec) -> Result<()> {
        validate_image(&spec.image)?;
        let desired = emqx_for(cluster, spec)?;
        if let Some(key) = &spec.api_key {
            let secret = api_key_secret(cluster, key, &labels(cluster, &spec.labels));
            let exposed = key.secret.expose_secret();
            match self.secrets().create(&self.post_params(), &secret).await.map_err(|e| error_redacting("create", e, exposed)) {
                Ok(_) => {}
                Err(e) if e.status() == Some(409) => {
                    let existing = self.secrets().get(&secret_name(cluster)).await.map_err(|e| error_redacting("create", e, exposed))?;
                    if !secret_holds(&existing, key) {
                        return Err(Error::Core(ecp_core::Error::conflict("secret", secret_name(cluster), "exists with another api key")));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self.emqxes().create(&self.post_params(), &desired).await.map_err(|e| kube_error("create", e)) {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => {
                let existing = self.get("create", &cluster.resource_name()).await?;
                if managed_view(&existing) == managed_view(&desired) {
                    Ok(())
                } else {
                    Err(Error::Core(ecp_core::Error::conflict("cluster", cluster.resource_name(), "exists with another spec")))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn scale(&self, cluster: &ClusterRef, core: u32, replicant: u32) -> Result<()> {
        if core == 0 {
            return Err(Error::invalid("core_replicas", "must be at least 1 (stop the cluster instead)"));
        }
        to_i32("core_replicas", core)?;
        to_i32("replicant_replicas", replicant)?;
        let name = cluster.resource_name();
        let e = self.get("scale", &name).await?;
        let patch = match stopped_replicas(&e) {
            // Stopped: remember the new counts for start.
            Some(_) => stop_patch(e.metadata.resource_version.as_deref(), StoppedReplicas { core, replicant }),
            None => replicas_patch(core, replicant),
        };
        self.merge("scale", &name, &patch).await
    }

    async fn resize(&self, cluster: &ClusterRef, resources: Resources) -> Result<()> {
        resources.validate()?;
        self.merge("resize", &cluster.resource_name(), &resources_patch(&resources)).await
    }

    async fn set_network(&self, cluster: &ClusterRef, mode: NetworkMode, listeners: &[Listener]) -> Result<()> {
        if listeners.iter().any(|l| l.port == 0) {
            return Err(Error::invalid("listeners", "port 0"));
        }
        self.merge("set_network", &cluster.resource_name(), &network_patch(mode, listeners)).await
    }

    async fn set_image(&self, cluster: &ClusterRef, image: &str) -> Result<()> {
        validate_image(image)?;
        self.merge("set_image", &cluster.resource_name(), &image_patch(image)).await
    }

    async fn stop(&self, cluster: &ClusterRef) -> Result<()> {
        let name = cluster.resource_name();
        let e = self.get("stop", &name).await?;
        if stopped_replicas(&e).is_some() {
            return Ok(());
        }
        let (core, replicant) = spec_replicas(&e);
        self.merge("stop", &name, &stop_patch(e.metadata.resource_version.as_deref(), StoppedReplicas { core, replicant })).await
    }

    async fn start(&self, cluster: &ClusterRef) -> Result<()> {
        let name = cluster.resource_name();
        let e = self.get("start", &name).await?;
        let Some(remembered) = stopped_replicas(&e) else {
            return Ok(());
        };
        let remembered = remembered?;
        let remembered = StoppedReplicas { core: remembered.core.max(1), replicant: remembered.replicant };
        self.merge("start", &name, &start_patch(e.metadata.resource_version.as_deref(), remembered)).await
    }

    async fn delete(&self, cluster: &ClusterRef) -> Result<()> {
        match self.emqxes().delete(&cluster.resource_name(), &DeleteParams::default()).await.map_err(|e| kube_error("delete", e)) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        match self.secrets().delete(&secret_name(cluster), &DeleteParams::default()).await.map_err(|e| kube_error("delete", e)) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_core::{ClusterId, ProjectId};

    fn cluster() -> ClusterRef {
        ClusterRef::new(ClusterId::new(), ProjectId::new(), "prod")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn with_status(status: Value, generation: i64, annotations: Option<Value>) -> Emqx {
        let mut v: Value = serde_json::from_str(crd::tests::SLIM_WITH_STATUS).unwrap();
        v["status"] = status;
        v["metadata"]["generation"] = json!(generation);
        v["metadata"]["creationTimestamp"] = json!("2025-06-01T09:59:00Z");
        if let Some(a) = annotations {
            v["metadata"]["annotations"] = a;
        }
        serde_json::from_value(v).unwrap()
    }

    fn cond(t: &str, status: &str, time: &str) -> Value {
        json!({"type": t, "status": status, "reason": t, "message": format!("{t} message"), "lastTransitionTime": time})
    }

    const SOON: &str = "2025-06-01T10:01:00Z";
    const LATE: &str = "2025-06-02T10:00:00Z";
    const MIN10: Duration = Duration::from_secs(600);

    #[test]
    fn the_contract_status_is_running() {
        let e: Emqx = serde_json::from_str(crd::tests::SLIM_WITH_STATUS).unwrap();
        let s = cluster_state(&e, at(SOON), MIN10);
        assert_eq!(s.status, ClusterStatus::Running);
        assert_eq!(s.core, ReplicaCount { desired: 2, ready: 2 });
        assert_eq!(s.replicant, ReplicaCount { desired: 3, ready: 3 });
        assert_eq!(s.nodes.len(), 2);
        assert!(s.nodes.iter().all(|n| n.running));
        assert_eq!(s.image.as_deref(), Some("emqx/emqx-enterprise:5.10.0"));
    }

    #[test]
    fn condition_sequences_map_to_statuses() {
        let t0 = "2025-06-01T10:00:00Z";
        let progressing = json!({"conditions": [cond("CoreNodesProgressing", "True", t0), cond("Initialized", "True", t0)]});
        // Fresh resource: creating; the same after a spec change: updating.
        assert_eq!(cluster_state(&with_status(progressing.clone(), 1, None), at(SOON), MIN10).status, ClusterStatus::Creating);
        assert_eq!(cluster_state(&with_status(progressing.clone(), 3, None), at(SOON), MIN10).status, ClusterStatus::Updating);
        let replicants = json!({"conditions": [cond("ReplicantNodesProgressing", "True", t0), cond("CoreNodesReady", "True", t0)],
            "coreNodesStatus": {"currentRevision": "a", "updateRevision": "b"}});
        assert_eq!(cluster_state(&with_status(replicants, 1, None), at(SOON), MIN10).status, ClusterStatus::Updating);
        // No status yet: creating, then an error past the deadline.
        assert_eq!(cluster_state(&with_status(json!({}), 1, None), at(SOON), MIN10).status, ClusterStatus::Creating);
        let ClusterStatus::Error(cause) = cluster_state(&with_status(json!({}), 1, None), at(LATE), MIN10).status else { panic!() };
        assert!(cause.contains("no status from the operator"), "{cause}");
        // Stalled progress names the newest condition.
        let ClusterStatus::Error(cause) = cluster_state(&with_status(progressing, 1, None), at(LATE), MIN10).status else { panic!() };
        assert_eq!(cause, "no progress for 600s: CoreNodesProgressing is True (CoreNodesProgressing message)");
        // Ready False is not ready.
        let not_ready = json!({"conditions": [cond("Ready", "False", t0)]});
        assert_eq!(cluster_state(&with_status(not_ready, 1, None), at(SOON), MIN10).status, ClusterStatus::Creating);
        // Ready but a node not running: an error naming it.
        let odd = json!({"conditions": [cond("Ready", "True", t0)],
            "coreNodes": [{"node": "emqx@a", "node_status": "stopped", "role": "core"}]});
        assert_eq!(
            cluster_state(&with_status(odd, 1, None), at(SOON), MIN10).status,
            ClusterStatus::Error("node emqx@a is stopped".into())
        );
        // "Running" with a capital is not the Operator's lowercase value.
        let capital = json!({"conditions": [cond("Ready", "True", t0)], "coreNodes": [{"node": "emqx@a", "node_status": "Running"}]});
        assert!(matches!(cluster_state(&with_status(capital, 1, None), at(SOON), MIN10).status, ClusterStatus::Error(_)));
        // A stalled rollout with a node down names the node.
        let down =
            json!({"conditions": [cond("CoreNodesProgressing", "True", t0)], "coreNodes": [{"node": "emqx@b", "node_status": "stopped"}]});
        assert_eq!(
            cluster_state(&with_status(down, 2, None), at(LATE), MIN10).status,
            ClusterStatus::Error("no progress for 600s: node emqx@b is stopped".into())
        );
    }

    #[test]
    fn stopped_and_stopping() {
        let ann = Some(json!({ANNOTATION_STOPPED: "{\"core\":2,\"replicant\":3}"}));
        let e = with_status(
            json!({"conditions": [cond("Ready", "True", "2025-06-01T10:00:00Z")],
            "coreNodesStatus": {"replicas": 2, "readyReplicas": 1}}),
            4,
            ann.clone(),
        );
        assert_eq!(cluster_state(&e, at(SOON), MIN10).status, ClusterStatus::Stopping);
        let e = with_status(
            json!({"conditions": [cond("CoreNodesProgressing", "True", "2025-06-01T10:00:00Z")],
            "coreNodesStatus": {"replicas": 0, "readyReplicas": 0}}),
            4,
            ann,
        );
        assert_eq!(cluster_state(&e, at(LATE), MIN10).status, ClusterStatus::Stopped);
    }

    #[test]
    fn the_resource_of_a_spec() {
        let c = cluster();
        let key = ApiKey::new("ecp", secrecy::SecretString::from("sentinel-secret-1")).unwrap();
        let spec = ClusterSpec::builder("emqx/emqx-enterprise:5.10.0")
            .replicas(3, 2)
            .resources(Resources::new(500, 1024))
            .network(NetworkMode::NodePort)
            .listeners(vec![
                Listener::default_for(crate::model::ListenerProtocol::Tcp),
                Listener { protocol: crate::model::ListenerProtocol::Tcp, port: 1884 },
            ])
            .api_key(key)
            .label("team", "iot")
            .config("log.console.level = warning")
            .build()
            .unwrap();
        let e = emqx_for(&c, &spec).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert!(!v.to_string().contains("sentinel-secret-1"));
        assert_eq!(v["metadata"]["labels"][LABEL_CLUSTER], c.id.to_string());
        assert_eq!(v["metadata"]["labels"]["team"], "iot");
        assert_eq!(v["spec"]["coreTemplate"]["spec"]["resources"]["limits"]["memory"], "1024Mi");
        assert_eq!(v["spec"]["listenersServiceTemplate"]["spec"]["ports"][1]["name"], "tcp-ecp1884");
        let data = v["spec"]["config"]["data"].as_str().unwrap();
        assert!(data.contains("listeners.tcp.ecp1884.bind = \"0.0.0.0:1884\""));
        assert!(data.contains("listeners.ssl.default.enable = false"));
        assert!(data.ends_with("log.console.level = warning\n"));
        assert_eq!(managed_view(&e), managed_view(&e.clone()));
    }

    #[test]
    fn config_validation() {
        assert!(KubernetesConfig::builder().namespace("Bad_NS").build().is_err());
        assert!(KubernetesConfig::builder().namespace("-x").build().is_err());
        assert!(KubernetesConfig::builder().progress_deadline(Duration::ZERO).build().is_err());
        assert!(KubernetesConfig::builder().field_manager("").build().is_err());
        let c = KubernetesConfig::builder().namespace("emqx").build().unwrap();
        assert_eq!(c.namespace(), "emqx");
        assert!(format!("{c:?}").contains("emqx"));
    }

    proptest::proptest! {
        #[test]
        fn hostile_annotations_and_statuses_never_panic(raw in ".{0,64}", node_status in ".{0,12}", time in ".{0,30}", rv in proptest::option::of(-5i32..5)) {
            let e = with_status(json!({"conditions": [{"type": "Ready", "status": node_status.clone(), "lastTransitionTime": time}],
                "coreNodes": [{"node": "n", "node_status": node_status}], "coreNodesStatus": {"readyReplicas": rv}}),
                1, Some(json!({ANNOTATION_STOPPED: raw})));
            let _ = cluster_state(&e, at(LATE), MIN10);
            let _ = managed_view(&e);
            let _ = stopped_replicas(&e);
        }
    }
}
