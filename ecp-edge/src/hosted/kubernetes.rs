//! [`KubernetesEdgeDriver`]: edge services hosted on Kubernetes (feature `kubernetes`), a
//! Deployment and a Service each, through kube-rs.
//!
//! | operation | requests |
//! |---|---|
//! | install | `POST` the Deployment (one replica, the image, the API port with a TCP readiness probe, `progressDeadlineSeconds`) and the ClusterIP Service in front of it; a 409 is read back and accepted when it is the same service and image. Then the rollout is followed as for upgrade (without rollback: there is nothing to go back to) |
//! | upgrade | `GET` the Deployment for the running image, then a strategic merge patch of the container's image (recording the previous one in the annotation `io.ecp/previous-image`), then the rollout is followed (below). When it fails, the image is patched back (what `kubectl rollout undo` does for an image change) and the upgrade answers [`RolloutError`] (`rolled_back: true`) inside `Error::Core(Backend)` |
//! | stop / start | merge patch of `spec.replicas` to 0 / 1 |
//! | restart | merge patch of the pod template annotation `kubectl.kubernetes.io/restartedAt` (what `kubectl rollout restart` does), at the configured clock's time |
//! | uninstall | `DELETE` the Deployment and the Service; 404 means already gone |
//! | probe, sync_info, apply | the [`DirectDriver`], against the Service's in-cluster DNS name (`http://<name>.<namespace>.svc.<domain>:<port>`), or the registered endpoint if so configured |
//!
//! **Following a rollout** reads the Deployment every `poll_interval` until, as `kubectl rollout
//! status` decides: `status.observedGeneration` ≥ the generation written, `updatedReplicas` =
//! `spec.replicas`, no old replica left (`replicas` = `updatedReplicas`) and `availableReplicas` =
//! `updatedReplicas`. The `Progressing` condition with reason `ProgressDeadlineExceeded`, or the
//! driver's own `rollout_timeout`, is a failure.
//!
//! The API server is reached through a [`KubeConnection`] of ecp-hosting. A failed request is
//! [`Error::Hosting`], its operation the request (`PATCH /apis/apps/v1/namespaces/...`), with the
//! API server's status (404 is `is_not_found`; 409, 429 and 5xx are retryable) and
//! `reason: message` as its source.
//!
//! Names: `ecp-edge-` and the service id's 32 hex digits (a DNS-1035 label). Labels:
//! `io.ecp.project`, `io.ecp.edge-service` (the selector), `io.ecp.kind`,
//! `app.kubernetes.io/managed-by=ecp`. The API port is the registered endpoint's port, else the
//! product's default (NeuronEX 8085, Neuron 7000, eKuiper 9081, NanoMQ 8081, custom 80).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ecp_core::edge::{EdgeKind, EdgeService};
use ecp_core::task::IdempotencyKey;
use ecp_core::{Clock, SystemClock};
use ecp_hosting::kubernetes::{KubeConnection, is_dns_label, validate_field_manager, validate_namespace};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::direct::DirectDriver;
use crate::driver::{Capabilities, EdgeDriver, EdgeInfo, Health};
use crate::error::{Error, Result};
use crate::template::ConfigChange;

const BACKEND: &str = "kubernetes";

/// The label of the project.
pub const LABEL_PROJECT: &str = "io.ecp.project";
/// The label of the edge service (the Deployment's selector).
pub const LABEL_SERVICE: &str = "io.ecp.edge-service";
/// The label of the product kind.
pub const LABEL_KIND: &str = "io.ecp.kind";
/// The annotation recording the image an upgrade replaced.
pub const ANNOTATION_PREVIOUS_IMAGE: &str = "io.ecp/previous-image";
/// The pod template annotation a restart sets, as `kubectl rollout restart` does.
pub const ANNOTATION_RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Where probes, info sync and configuration reach a hosted service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceEndpoint {
    /// The Service's in-cluster DNS name under this cluster domain (`cluster.local`): for a control
    /// plane that runs in the cluster.
    ClusterDns(String),
    /// The endpoint the service was registered with (an ingress, a port-forward, a NodePort).
    Registered,
}

/// How the [`KubernetesEdgeDriver`] works.
#[derive(Clone)]
#[non_exhaustive]
pub struct KubeHostingConfig {
    namespace: String,
    field_manager: String,
    progress_deadline: Duration,
    rollout_timeout: Duration,
    poll_interval: Duration,
    endpoint: ServiceEndpoint,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for KubeHostingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeHostingConfig")
            .field("namespace", &self.namespace)
            .field("field_manager", &self.field_manager)
            .field("progress_deadline", &self.progress_deadline)
            .field("rollout_timeout", &self.rollout_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl KubeHostingConfig {
    /// A builder: namespace `default`, field manager `ecp`, progress deadline 10 minutes, rollout
    /// timeout 11 minutes, poll every 2 s, in-cluster DNS under `cluster.local`.
    pub fn builder() -> KubeHostingConfigBuilder {
        KubeHostingConfigBuilder {
            config: KubeHostingConfig {
                namespace: "default".to_owned(),
                field_manager: "ecp".to_owned(),
                progress_deadline: Duration::from_secs(600),
                rollout_timeout: Duration::from_secs(660),
                poll_interval: Duration::from_secs(2),
                endpoint: ServiceEndpoint::ClusterDns("cluster.local".to_owned()),
                clock: Arc::new(SystemClock),
            },
        }
    }

    /// The namespace of the services.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Builds a [`KubeHostingConfig`]; [`build`](Self::build) validates it.
#[derive(Clone)]
pub struct KubeHostingConfigBuilder {
    config: KubeHostingConfig,
}

impl fmt::Debug for KubeHostingConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeHostingConfigBuilder").field("config", &self.config).finish()
    }
}

impl KubeHostingConfigBuilder {
    /// The namespace (a DNS-1123 label).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = namespace.into();
        self
    }

    /// The field manager named in writes.
    #[must_use]
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.config.field_manager = manager.into();
        self
    }

    /// The Deployment's `progressDeadlineSeconds` (1 s to 1 day, whole seconds).
    #[must_use]
    pub fn progress_deadline(mut self, deadline: Duration) -> Self {
        self.config.progress_deadline = deadline;
        self
    }

    /// How long the driver follows a rollout before it gives up and rolls back.
    #[must_use]
    pub fn rollout_timeout(mut self, timeout: Duration) -> Self {
        self.config.rollout_timeout = timeout;
        self
    }

    /// How often a rollout's status is read (1 ms to 1 min).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// Where probes and configuration reach the services.
    #[must_use]
    pub fn endpoint(mut self, endpoint: ServiceEndpoint) -> Self {
        self.config.endpoint = endpoint;
        self
    }

    /// The clock of restart timestamps.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// The config.
    ///
    /// # Errors
    /// `InvalidInput` naming the first bad setting.
    pub fn build(self) -> Result<KubeHostingConfig> {
        let c = self.config;
        let invalid = |field: &'static str, reason: &'static str| Error::Core(ecp_core::Error::invalid(field, reason));
        validate_namespace(&c.namespace)?;
        validate_field_manager(&c.field_manager)?;
        if c.progress_deadline < Duration::from_secs(1) || c.progress_deadline > Duration::from_secs(86_400) {
            return Err(invalid("progress_deadline", "must be 1 s..=1 day"));
        }
        if c.rollout_timeout.is_zero() {
            return Err(invalid("rollout_timeout", "must be more than zero"));
        }
        if c.poll_interval < Duration::from_millis(1) || c.poll_interval > Duration::from_secs(60) {
            return Err(invalid("poll_interval", "must be 1 ms..=1 min"));
        }
        if let ServiceEndpoint::ClusterDns(domain) = &c.endpoint
            && (domain.is_empty() || !domain.split('.').all(is_dns_label))
        {
            return Err(invalid("endpoint", "the cluster domain must be DNS labels"));
        }
        Ok(c)
    }
}

/// An upgrade (or install) whose rollout failed. Found as the source of the `Error::Core(Backend)`
/// the driver answers; downcast it to read the details.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RolloutError {
    /// The Deployment.
    pub deployment: String,
    /// The image that did not roll out.
    pub image: String,
    /// The image rolled back to, if the driver rolled back.
    pub rolled_back_to: Option<String>,
    /// Why: the `Progressing` condition's message, or the driver's timeout.
    pub reason: String,
}

impl fmt::Display for RolloutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rollout of {} to {} failed: {}", self.deployment, self.image, self.reason)?;
        if let Some(prev) = &self.rolled_back_to {
            write!(f, "; rolled back to {prev}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RolloutError {}

/// The driver of edge services hosted on Kubernetes; see the [module docs](self).
pub struct KubernetesEdgeDriver {
    client: kube::Client,
    config: KubeHostingConfig,
    direct: DirectDriver,
}

impl fmt::Debug for KubernetesEdgeDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesEdgeDriver").field("config", &self.config).field("direct", &self.direct).finish_non_exhaustive()
    }
}

impl KubernetesEdgeDriver {
    /// A driver on the API server of `connection` (see [`KubeConnection`]: inferred from the
    /// environment, a kubeconfig file and context, or the host's client); `direct` reaches the
    /// services' APIs. No request is sent.
    ///
    /// # Errors
    /// [`Error::Hosting`] (operation `connect`) when no usable configuration is found.
    pub async fn connect(connection: &KubeConnection, config: KubeHostingConfig, direct: DirectDriver) -> Result<Self> {
        Ok(Self { client: connection.client().await?, config, direct })
    }

    /// A driver over a `kube::Client` the host already has (or a scripted one in tests): the one
    /// public signature with a kube type.
    pub fn from_client(client: kube::Client, config: KubeHostingConfig, direct: DirectDriver) -> Self {
        Self { client, config, direct }
    }

    /// The config.
    pub fn config(&self) -> &KubeHostingConfig {
        &self.config
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn pp(&self) -> PostParams {
        PostParams { dry_run: false, field_manager: Some(self.config.field_manager.clone()) }
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams { field_manager: Some(self.config.field_manager.clone()), ..PatchParams::default() }
    }

    fn path(&self, plural: &str, name: &str) -> String {
        let group = if plural == "deployments" { "/apis/apps/v1" } else { "/api/v1" };
        format!("{group}/namespaces/{}/{plural}/{name}", self.config.namespace)
    }

    async fn get_deployment(&self, name: &str) -> Result<Deployment> {
        Ok(self.deployments().get(name).await.map_err(|e| kube_error("GET", &self.path("deployments", name), e))?)
    }

    async fn patch_deployment<P: serde::Serialize + fmt::Debug>(&self, name: &str, patch: &Patch<P>) -> Result<Deployment> {
        Ok(self
            .deployments()
            .patch(name, &self.patch_params(), patch)
            .await
            .map_err(|e| kube_error("PATCH", &self.path("deployments", name), e))?)
    }

    /// Follows the rollout of `generation` until it completes, fails or times out.
    async fn follow_rollout(&self, name: &str, generation: i64) -> std::result::Result<(), FollowError> {
        let start = Instant::now();
        loop {
            let d = self.get_deployment(name).await.map_err(FollowError::Api)?;
            match rollout_progress(&d, generation) {
                Rollout::Complete => return Ok(()),
                Rollout::Failed(reason) => return Err(FollowError::Failed(reason)),
                Rollout::Waiting(what) => {
                    // Give up now rather than sleep past the timeout.
                    if start.elapsed() + self.config.poll_interval > self.config.rollout_timeout {
                        return Err(FollowError::Failed(format!("not complete after {:?} ({what})", self.config.rollout_timeout)));
                    }
                }
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// The service as the direct driver must see it: its endpoint replaced by the Service's
    /// in-cluster DNS name, unless configured otherwise.
    fn reachable(&self, service: &EdgeService) -> EdgeService {
        match &self.config.endpoint {
            ServiceEndpoint::Registered => service.clone(),
            ServiceEndpoint::ClusterDns(domain) => service.reached_at(in_cluster_endpoint(service, &self.config.namespace, domain)),
        }
    }
}

enum FollowError {
    Api(Error),
    Failed(String),
}

/// A kube error of `method path` as ecp-hosting's.
fn kube_error(method: &str, path: &str, e: kube::Error) -> ecp_hosting::Error {
    ecp_hosting::kubernetes::error(format!("{method} {path}"), e)
}

/// The name of a service's Deployment and Service.
pub fn resource_name(service: &EdgeService) -> String {
    format!("ecp-edge-{}", service.id().as_uuid().simple())
}

/// The product's default API port.
fn default_port(kind: EdgeKind) -> u16 {
    match kind {
        EdgeKind::NeuronEx => 8085,
        EdgeKind::Neuron => 7000,
        EdgeKind::Ekuiper => 9081,
        EdgeKind::NanoMq => 8081,
        _ => 80,
    }
}

/// The API port: the registered endpoint's, else the product's default.
fn api_port(service: &EdgeService) -> u16 {
    url::Url::parse(service.endpoint()).ok().and_then(|u| u.port()).unwrap_or_else(|| default_port(service.kind()))
}

/// `http://<name>.<namespace>.svc.<domain>:<port>`.
fn in_cluster_endpoint(service: &EdgeService, namespace: &str, domain: &str) -> String {
    format!("http://{}.{namespace}.svc.{domain}:{}", resource_name(service), api_port(service))
}

fn labels(service: &EdgeService) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_PROJECT.to_owned(), service.project().to_string()),
        (LABEL_SERVICE.to_owned(), service.id().to_string()),
        (LABEL_KIND.to_owned(), service.kind().as_str().to_owned()),
        ("app.kubernetes.io/name".to_owned(), service.kind().as_str().to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "ecp".to_owned()),
    ])
}

fn selector(service: &EdgeService) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_SERVICE.to_owned(), service.id().to_string())])
}

/// The container's name: the product kind.
fn container_name(service: &EdgeService) -> String {
    service.kind().as_str().to_owned()
}

/// The Deployment of `service` running `image`.
fn deployment_for(service: &EdgeService, image: &str, progress_deadline: Duration) -> Deployment {
    let port = i32::from(api_port(service));
    let labels = labels(service);
    Deployment {
        metadata: ObjectMeta { name: Some(resource_name(service)), labels: Some(labels.clone()), ..ObjectMeta::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            progress_deadline_seconds: Some(i32::try_from(progress_deadline.as_secs()).unwrap_or(i32::MAX)),
            revision_history_limit: Some(3),
            selector: LabelSelector { match_labels: Some(selector(service)), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: container_name(service),
                        image: Some(image.to_owned()),
                        ports: Some(vec![ContainerPort {
                            name: Some("api".to_owned()),
                            container_port: port,
                            protocol: Some("TCP".to_owned()),
                            ..ContainerPort::default()
                        }]),
                        readiness_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction { port: IntOrString::String("api".to_owned()), host: None }),
                            period_seconds: Some(5),
                            ..Probe::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The ClusterIP Service of `service`.
fn service_for(service: &EdgeService) -> Service {
    let port = i32::from(api_port(service));
    Service {
        metadata: ObjectMeta { name: Some(resource_name(service)), labels: Some(labels(service)), ..ObjectMeta::default() },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector(service)),
            ports: Some(vec![ServicePort {
                name: Some("api".to_owned()),
                port,
                protocol: Some("TCP".to_owned()),
                target_port: Some(IntOrString::String("api".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The image of a Deployment's container named `container` (else its first container).
fn current_image(d: &Deployment, container: &str) -> Option<String> {
    let containers = &d.spec.as_ref()?.template.spec.as_ref()?.containers;
    containers.iter().find(|c| c.name == container).or_else(|| containers.first()).and_then(|c| c.image.clone())
}

/// The strategic merge patch of the container's image, recording the image it replaces.
fn image_patch(container: &str, image: &str, previous: Option<&str>) -> Value {
    let mut p = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}});
    if let Some(prev) = previous {
        p["metadata"] = json!({"annotations": {ANNOTATION_PREVIOUS_IMAGE: prev}});
    }
    p
}

fn replicas_patch(n: i32) -> Value {
    json!({"spec": {"replicas": n}})
}

fn restart_patch(at: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION_RESTARTED_AT: at}}}}})
}

/// Where a rollout stands.
#[derive(Debug, PartialEq, Eq)]
enum Rollout {
    Complete,
    Waiting(String),
    Failed(String),
}

/// `kubectl rollout status`'s decision for a Deployment of `generation` or later.
fn rollout_progress(d: &Deployment, generation: i64) -> Rollout {
    let Some(status) = &d.status else {
        return Rollout::Waiting("no status yet".to_owned());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Waiting("the controller has not observed the change".to_owned());
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Rollout::Failed(c.message.clone().unwrap_or_else(|| "progress deadline exceeded".to_owned()));
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        Rollout::Waiting(format!("{updated} of {want} replicas updated"))
    } else if replicas > updated {
        Rollout::Waiting(format!("{} old replicas pending termination", replicas - updated))
    } else if available < updated {
        Rollout::Waiting(format!("{available} of {updated} updated replicas available"))
    } else {
        Rollout::Complete
    }
}

fn validate_image(image: &str) -> Result<()> {
    if image.is_empty() || image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Core(ecp_core::Error::invalid("image", "must be 1..=255 characters without whitespace")));
    }
    Ok(())
}

fn rollout_failure(e: RolloutError) -> Error {
    Error::Core(ecp_core::Error::backend(BACKEND, e))
}

#[async_trait]
impl EdgeDriver for KubernetesEdgeDriver {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted()
    }

    fn forget(&self, service: &EdgeService) {
        self.direct.forget(service);
    }

    async fn probe(&self, service: &EdgeService) -> Result<Health> {
        self.direct.probe(&self.reachable(service)).await
    }

    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo> {
        self.direct.sync_info(&self.reachable(service)).await
    }

    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
        self.direct.apply(&self.reachable(service), change, key).await
    }

    async fn install(&self, service: &EdgeService, image: &str) -> Result<()> {
        validate_image(image)?;
        let name = resource_name(service);
        let desired = deployment_for(service, image, self.config.progress_deadline);
        let created =
            self.deployments().create(&self.pp(), &desired).await.map_err(|e| kube_error("POST", &self.path("deployments", ""), e));
        let generation = match created {
            Ok(d) => d.metadata.generation.unwrap_or(1),
            Err(e) if e.status() == Some(409) => {
                let existing = self.get_deployment(&name).await?;
                let ours = existing.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE)) == Some(&service.id().to_string());
                if !ours || current_image(&existing, &container_name(service)).as_deref() != Some(image) {
                    return Err(Error::Core(ecp_core::Error::conflict("deployment", name, "exists with another service or image")));
                }
                existing.metadata.generation.unwrap_or(1)
            }
            Err(e) => return Err(e.into()),
        };
        match self.services().create(&self.pp(), &service_for(service)).await.map_err(|e| kube_error("POST", &self.path("services", ""), e))
        {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {
                let existing = self.services().get(&name).await.map_err(|e| kube_error("GET", &self.path("services", &name), e))?;
                if existing.spec.as_ref().and_then(|s| s.selector.as_ref()) != Some(&selector(service)) {
                    return Err(Error::Core(ecp_core::Error::conflict("service", name, "exists with another selector")));
                }
            }
            Err(e) => return Err(e.into()),
        }
        match self.follow_rollout(&name, generation).await {
            Ok(()) => Ok(()),
            Err(FollowError::Api(e)) => Err(e),
            Err(FollowError::Failed(reason)) => {
                Err(rollout_failure(RolloutError { deployment: name, image: image.to_owned(), rolled_back_to: None, reason }))
            }
        }
    }

    async fn upgrade(&self, service: &EdgeService, image: &str) -> Result<()> {
        validate_image(image)?;
        let name = resource_name(service);
        let container = container_name(service);
        let before = self.get_deployment(&name).await?;
        let previous = current_image(&before, &container);
        let generation = if previous.as_deref() == Some(image) {
            // Already this image (a retried upgrade): only wait for it.
            before.metadata.generation.unwrap_or(1)
        } else {
            let patched = self.patch_deployment(&name, &Patch::Strategic(image_patch(&container, image, previous.as_deref()))).await?;
            patched.metadata.generation.unwrap_or(1)
        };
        let reason = match self.follow_rollout(&name, generation).await {
            Ok(()) => return Ok(()),
            Err(FollowError::Api(e)) => return Err(e),
            Err(FollowError::Failed(reason)) => reason,
        };
        let rolled_back_to = match previous.filter(|p| p != image) {
            Some(prev) => {
                self.patch_deployment(&name, &Patch::Strategic(image_patch(&container, &prev, None))).await?;
                Some(prev)
            }
            None => None,
        };
        tracing::warn!(deployment = %name, image, ?rolled_back_to, %reason, "edge service upgrade failed");
        Err(rollout_failure(RolloutError { deployment: name, image: image.to_owned(), rolled_back_to, reason }))
    }

    async fn start(&self, service: &EdgeService) -> Result<()> {
        self.patch_deployment(&resource_name(service), &Patch::Merge(replicas_patch(1))).await.map(drop)
    }

    async fn stop(&self, service: &EdgeService) -> Result<()> {
        self.patch_deployment(&resource_name(service), &Patch::Merge(replicas_patch(0))).await.map(drop)
    }

    async fn restart(&self, service: &EdgeService) -> Result<()> {
        let at = self.config.clock.now().to_string();
        self.patch_deployment(&resource_name(service), &Patch::Merge(restart_patch(&at))).await.map(drop)
    }

    async fn uninstall(&self, service: &EdgeService) -> Result<()> {
        let name = resource_name(service);
        match self
            .deployments()
            .delete(&name, &DeleteParams::background())
            .await
            .map_err(|e| kube_error("DELETE", &self.path("deployments", &name), e))
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        match self
            .services()
            .delete(&name, &DeleteParams::default())
            .await
            .map_err(|e| kube_error("DELETE", &self.path("services", &name), e))
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_core::ProjectId;
    use ecp_core::edge::ManagementMode;

    fn service(kind: EdgeKind, endpoint: &str) -> EdgeService {
        EdgeService::builder(ProjectId::new(), "line-1", kind, endpoint)
            .mode(ManagementMode::Kubernetes)
            .build("2025-06-01T10:00:00Z".parse().unwrap())
            .unwrap()
    }

    fn deployment(status: Value, replicas: i32) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "d", "generation": 2},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}, "status": status}))
        .unwrap()
    }

    #[test]
    fn ports_and_endpoints() {
        let s = service(EdgeKind::NeuronEx, "http://10.0.0.5:8085");
        assert_eq!(api_port(&s), 8085);
        assert_eq!(
            in_cluster_endpoint(&s, "edge", "cluster.local"),
            format!("http://ecp-edge-{}.edge.svc.cluster.local:8085", s.id().as_uuid().simple())
        );
        assert_eq!(api_port(&service(EdgeKind::Ekuiper, "http://ekuiper.local")), 9081);
        assert_eq!(api_port(&service(EdgeKind::NanoMq, "http://n:18081")), 18081);
        assert!(resource_name(&s).len() <= 63);
    }

    #[test]
    fn rollout_decisions_follow_kubectl() {
        let w = |s: Value| rollout_progress(&deployment(s, 1), 2);
        assert!(matches!(
            w(json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1})),
            Rollout::Waiting(_)
        ));
        assert!(matches!(
            w(json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1})),
            Rollout::Waiting(_)
        ));
        assert!(matches!(
            w(json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0})),
            Rollout::Waiting(_)
        ));
        assert!(matches!(w(json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 0})), Rollout::Waiting(_)));
        assert_eq!(w(json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1})), Rollout::Complete);
        let failed = w(json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"d-7f\" has timed out progressing."}]}));
        assert_eq!(failed, Rollout::Failed("ReplicaSet \"d-7f\" has timed out progressing.".into()));
        // Stopped (0 replicas wanted): complete once nothing old is left.
        assert_eq!(rollout_progress(&deployment(json!({"observedGeneration": 2}), 0), 2), Rollout::Complete);
    }

    proptest::proptest! {
        #[test]
        fn any_deployment_status_gets_a_decision(
            observed in proptest::option::of(-3i64..5), replicas in proptest::option::of(-3i32..5),
            updated in proptest::option::of(-3i32..5), avail in proptest::option::of(-3i32..5),
            want in -3i32..5, reason in proptest::option::of(".{0,24}"),
        ) {
            let d = deployment(json!({"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                "availableReplicas": avail, "conditions": [{"type": "Progressing", "status": "False", "reason": reason}]}), want);
            let r = rollout_progress(&d, 2);
            if r == Rollout::Complete {
                proptest::prop_assert!(observed.unwrap_or(0) >= 2 && updated.unwrap_or(0) >= want);
            }
        }
    }

    #[test]
    fn config_validation() {
        assert!(KubeHostingConfig::builder().namespace("Edge").build().is_err());
        assert!(KubeHostingConfig::builder().poll_interval(Duration::ZERO).build().is_err());
        assert!(KubeHostingConfig::builder().progress_deadline(Duration::from_millis(10)).build().is_err());
        assert!(KubeHostingConfig::builder().endpoint(ServiceEndpoint::ClusterDns("bad..domain".into())).build().is_err());
        assert_eq!(KubeHostingConfig::builder().namespace("edge").build().unwrap().namespace(), "edge");
    }

    #[test]
    fn the_objects_of_a_service() {
        let s = service(EdgeKind::Neuron, "http://10.0.0.9:7000");
        let d = serde_json::to_value(deployment_for(&s, "emqx/neuron:2.15.0", Duration::from_secs(120))).unwrap();
        assert_eq!(d["spec"]["selector"]["matchLabels"][LABEL_SERVICE], s.id().to_string());
        assert_eq!(d["spec"]["template"]["metadata"]["labels"][LABEL_PROJECT], s.project().to_string());
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 7000);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 120);
        let v = serde_json::to_value(service_for(&s)).unwrap();
        assert_eq!(v["spec"]["selector"], json!({LABEL_SERVICE: s.id().to_string()}));
        assert_eq!(v["spec"]["ports"][0]["port"], 7000);
    }
}
