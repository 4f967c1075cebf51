//! Batch installs and upgrades of hosted services as tasks of the task engine (feature `docker`).
//!
//! [`HostedTasks`] registers two task kinds with the engine, [`INSTALL_KIND`] and
//! [`UPGRADE_KIND`]; their targets are edge services, run under the task's [`RolloutPolicy`]
//! (in-flight window, rate, retries, serial mode, abort and rollback) like configuration
//! deliveries. An install target rolls back by uninstalling; an upgrade target by upgrading back
//! to the image it ran before (kept in its result).
//!
//! The install spec (environment included) is stored with the task, as every task's spec is.

use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::access::Principal;
use ecp_core::edge::{Credentials, EdgeKind, EdgeService, ManagementMode};
use ecp_core::task::{
    IdempotencyKey, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, Task, TaskEngine, TaskHandle, TaskKind, TaskTarget,
};
use ecp_core::{EdgeServiceId, Project, Store};
use serde_json::{Value, json};

use super::docker::DockerDriver;
use super::{HostedSpec, valid_image, valid_name};
use crate::driver::EdgeDriver;
use crate::error::{Error, Result};
use crate::fleet::{NewEdgeService, ProjectFleet, with_causes};

/// The name of the batch install task kind.
pub const INSTALL_KIND: &str = "edge_install";
/// The name of the batch upgrade task kind.
pub const UPGRADE_KIND: &str = "edge_upgrade";

/// A batch install: one instance per node, named `<prefix>-<node>`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BatchInstall {
    /// The prefix of the services' (and containers') names.
    pub name_prefix: String,
    /// The product the instances run.
    pub kind: EdgeKind,
    /// How they run (the node and container name are set per instance).
    pub spec: HostedSpec,
    /// The nodes (empty: every node of the driver).
    pub nodes: Vec<String>,
    /// How to authenticate to the instances' APIs.
    pub credentials: Credentials,
    /// The services' tags.
    pub tags: Vec<String>,
}

impl BatchInstall {
    /// Instances of `kind` from `spec` named `<name_prefix>-<node>` on every node.
    pub fn new(name_prefix: impl Into<String>, kind: EdgeKind, spec: HostedSpec) -> Self {
        BatchInstall { name_prefix: name_prefix.into(), kind, spec, nodes: Vec::new(), credentials: Credentials::None, tags: Vec::new() }
    }

    /// Only on these nodes.
    #[must_use]
    pub fn nodes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, nodes: I) -> Self {
        self.nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// The instances' API credentials.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The services' tags.
    #[must_use]
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// Runs batch installs and upgrades of hosted services on a task engine; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct HostedTasks {
    engine: TaskEngine,
    driver: Arc<DockerDriver>,
}

impl HostedTasks {
    /// Registers the install and upgrade task kinds with `engine` (so tasks resumed after a crash
    /// run again).
    ///
    /// # Errors
    /// `Conflict` if the engine already has kinds of these names.
    pub fn new(store: Arc<dyn Store>, engine: TaskEngine, driver: Arc<DockerDriver>) -> Result<Self> {
        engine.register(Arc::new(HostedKind { name: INSTALL_KIND, store: store.clone(), driver: driver.clone() }))?;
        engine.register(Arc::new(HostedKind { name: UPGRADE_KIND, store, driver: driver.clone() }))?;
        Ok(HostedTasks { engine, driver })
    }

    /// Registers one service per node in `fleet`'s project (mode `docker`, endpoint
    /// `http://<prefix>-<node>:<port>` as a placeholder: the driver resolves the real one) and
    /// installs them as one task under `policy`. Services registered before a failing one stay
    /// registered, not installed.
    ///
    /// # Errors
    /// `InvalidInput` for a bad spec, prefix or node, `NotFound` for an unknown node, the
    /// fleet's registration errors (`PermissionDenied`, `Conflict` for a taken name, limits), the
    /// engine's submission errors.
    pub async fn install_batch(
        &self,
        fleet: &ProjectFleet,
        principal: &Principal,
        batch: &BatchInstall,
        policy: RolloutPolicy,
    ) -> Result<(Vec<EdgeService>, TaskHandle)> {
        batch.spec.validate()?;
        let nodes: Vec<String> =
            if batch.nodes.is_empty() { self.driver.node_names().map(str::to_owned).collect() } else { batch.nodes.clone() };
        if nodes.is_empty() {
            return Err(ecp_core::Error::invalid("nodes", "no node to install on").into());
        }
        let known: Vec<&str> = self.driver.node_names().collect();
        let mut plan = Vec::new();
        for node in &nodes {
            if !known.contains(&node.as_str()) {
                return Err(ecp_core::Error::not_found("docker node", node).into());
            }
            let name = format!("{}-{node}", batch.name_prefix);
            if !valid_name(&name) {
                return Err(ecp_core::Error::invalid("name_prefix", format!("{name:?} is not a valid container name")).into());
            }
            plan.push((node.clone(), name));
        }
        let mut services = Vec::new();
        let mut targets = Vec::new();
        for (node, name) in plan {
            let endpoint = format!("{}://{name}:{}", batch.spec.scheme, batch.spec.port);
            let new = NewEdgeService {
                name: name.clone(),
                kind: batch.kind,
                mode: ManagementMode::Docker,
                endpoint,
                credentials: batch.credentials.clone(),
                tags: batch.tags.clone(),
                agent: None,
            };
            let service = fleet.register(new).await?;
            targets.push(NewTarget { id: service.id.to_string(), name: name.clone(), params: json!({ "node": node, "container": name }) });
            services.push(service);
        }
        let project = fleet.project();
        let task = NewTask {
            org: project.org,
            project: project.id,
            kind: INSTALL_KIND.into(),
            spec: json!({ "spec": batch.spec }),
            policy,
            targets,
        };
        let handle = self.engine.submit(principal, task).await?;
        Ok((services, handle))
    }

    /// Upgrades `services` (hosted services of `project`) to `image` as one task under `policy`
    /// (serial or parallel, with its abort and rollback rules).
    ///
    /// # Errors
    /// `InvalidInput` for a bad image, no service, or a service of another project or mode; the
    /// engine's submission errors.
    pub async fn upgrade_batch(
        &self,
        principal: &Principal,
        project: &Project,
        services: &[EdgeService],
        image: &str,
        policy: RolloutPolicy,
    ) -> Result<TaskHandle> {
        if !valid_image(image) {
            return Err(ecp_core::Error::invalid("image", "not an image reference").into());
        }
        if services.iter().any(|s| s.project != project.id || s.mode != ManagementMode::Docker) {
            return Err(ecp_core::Error::invalid("services", "every service must be a docker-hosted service of the project").into());
        }
        let targets = services.iter().map(|s| NewTarget::new(s.id.to_string(), s.name.clone())).collect();
        let task =
            NewTask { org: project.org, project: project.id, kind: UPGRADE_KIND.into(), spec: json!({ "image": image }), policy, targets };
        Ok(self.engine.submit(principal, task).await?)
    }
}

#[derive(Debug)]
struct HostedKind {
    name: &'static str,
    store: Arc<dyn Store>,
    driver: Arc<DockerDriver>,
}

impl TaskKind for HostedKind {
    fn name(&self) -> &str {
        self.name
    }

    fn executor(&self, task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        let op = if self.name == INSTALL_KIND {
            let spec: HostedSpec = serde_json::from_value(task.spec["spec"].clone())
                .map_err(|e| ecp_core::Error::invalid("task spec", format!("not a hosted install: {e}")))?;
            Op::Install(Box::new(spec))
        } else {
            let image = task.spec["image"]
                .as_str()
                .filter(|i| valid_image(i))
                .ok_or_else(|| ecp_core::Error::invalid("task spec", "not a hosted upgrade: no image".to_owned()))?;
            Op::Upgrade(image.to_owned())
        };
        Ok(Arc::new(HostedExecutor { op, store: self.store.clone(), driver: self.driver.clone() }))
    }
}

#[derive(Debug)]
enum Op {
    Install(Box<HostedSpec>),
    Upgrade(String),
}

#[derive(Debug)]
struct HostedExecutor {
    op: Op,
    store: Arc<dyn Store>,
    driver: Arc<DockerDriver>,
}

fn target_error(e: &Error) -> TargetError {
    TargetError { reason: with_causes(e), retryable: e.is_retryable() }
}

impl HostedExecutor {
    async fn service(&self, target: &TaskTarget) -> Result<EdgeService, TargetError> {
        let id: EdgeServiceId = target.target.parse().map_err(TargetError::fatal)?;
        match self.store.get_edge_service(id).await {
            Ok(s) => Ok(s),
            Err(e) if e.is_not_found() => Err(TargetError::fatal("the edge service was deregistered")),
            Err(e) => Err(TargetError { reason: e.to_string(), retryable: e.is_retryable() }),
        }
    }
}

#[async_trait]
impl TargetExecutor for HostedExecutor {
    async fn apply(&self, target: &TaskTarget, _key: &IdempotencyKey) -> Result<Value, TargetError> {
        let service = self.service(target).await?;
        match &self.op {
            Op::Install(spec) => {
                let mut spec = (**spec).clone();
                if let Some(node) = target.params["node"].as_str() {
                    spec.node = Some(node.to_owned());
                }
                if let Some(name) = target.params["container"].as_str() {
                    spec.container_name = Some(name.to_owned());
                }
                let instance = self.driver.install_with(&service, &spec).await.map_err(|e| target_error(&e))?;
                Ok(json!({ "instance": instance }))
            }
            Op::Upgrade(image) => {
                let before = self.driver.instance(&service).await.map_err(|e| target_error(&e))?;
                let instance = self.driver.upgrade_to(&service, image).await.map_err(|e| target_error(&e))?;
                Ok(json!({ "previous_image": before.image, "instance": instance }))
            }
        }
    }

    async fn rollback(&self, target: &TaskTarget, _key: &IdempotencyKey) -> Result<(), TargetError> {
        let service = self.service(target).await?;
        match &self.op {
            Op::Install(_) => self.driver.uninstall(&service).await.map_err(|e| target_error(&e)),
            Op::Upgrade(_) => {
                let previous = target.result.as_ref().and_then(|r| r["previous_image"].as_str()).filter(|i| !i.is_empty());
                let Some(previous) = previous else { return Err(TargetError::fatal("the image before the upgrade is not known")) };
                self.driver.upgrade_to(&service, previous).await.map(|_| ()).map_err(|e| target_error(&e))
            }
        }
    }
}
