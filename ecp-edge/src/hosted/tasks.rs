//! Batch installs and upgrades of hosted services as tasks of the task engine (feature `docker`).
//!
//! [`HostedTasks`] registers two task kinds with the engine, [`INSTALL_KIND`] and
//! [`UPGRADE_KIND`]; their targets are edge services, run under the task's [`RolloutPolicy`]
//! (in-flight window, rate, retries, serial mode, abort and rollback) like configuration
//! deliveries. An install target rolls back by uninstalling; an upgrade target by upgrading back
//! to the image it ran before (kept in its result).
//!
//! The install spec is stored with the task, as every task's spec is, but for its environment:
//! the values may be secrets, so they go into the task's secrets (stored apart, sealed, never
//! shown to readers of the task) and come back to the executor when the task runs.

use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::access::{Permission, ResourceKind};
use ecp_core::edge::{Credentials, EdgeKind, EdgeService, ManagementMode};
use ecp_core::task::{
    IdempotencyKey, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, Task, TaskEngine, TaskHandle, TaskKind, TaskTarget,
};
use ecp_core::{EdgeServiceId, ProjectId, Store};
use serde_json::{Value, json};

use super::docker::DockerDriver;
use super::{HostedSpec, valid_image, valid_name};
use crate::driver::EdgeDriver;
use crate::error::{Error, Result};
use crate::fleet::{NewEdgeService, ProjectFleet, ops, with_causes};

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

/// Runs batch installs and upgrades of hosted services on a task engine: the kinds
/// [`INSTALL_KIND`] and [`UPGRADE_KIND`], whose targets are edge services, under the task's
/// rollout policy. An install target rolls back by uninstalling, an upgrade target by upgrading
/// back to the image it ran before.
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
    /// installs them as one task under `policy`, as `fleet`'s principal. Needs `edit edge
    /// service` in the project; the batch is audited as `edge_service.install_batch` (success or
    /// failure) and each registration as its own. Services registered before a failing one stay
    /// registered, not installed.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput` for a bad spec, prefix or node, `NotFound` for an
    /// unknown node, the fleet's registration errors (`Conflict` for a taken name, limits), the
    /// engine's submission errors.
    pub async fn install_batch(
        &self,
        fleet: &ProjectFleet,
        batch: &BatchInstall,
        policy: RolloutPolicy,
    ) -> Result<(Vec<EdgeService>, TaskHandle)> {
        let scope = fleet.scoped();
        let mut event = scope.event(ResourceKind::EdgeService, ops::INSTALL_BATCH);
        event.resource_name = Some(batch.name_prefix.chars().take(200).collect());
        scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                // The environment may hold secrets: the record names the image and nodes only.
                audit.details(json!({ "image": batch.spec.image, "nodes": batch.nodes, "kind": batch.kind }));
                self.install(fleet, batch, policy).await
            })
            .await
    }

    async fn install(&self, fleet: &ProjectFleet, batch: &BatchInstall, policy: RolloutPolicy) -> Result<(Vec<EdgeService>, TaskHandle)> {
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
            targets.push(NewTarget::new(service.id().to_string(), name.clone()).params(json!({ "node": node, "container": name })));
            services.push(service);
        }
        // The environment's values may be secrets: the spec readers see names them, the task's
        // sealed secrets hold them.
        let mut shown = batch.spec.clone();
        let env = std::mem::take(&mut shown.env);
        let task = NewTask::new(fleet.project().id(), INSTALL_KIND, targets)
            .spec(json!({ "spec": shown, "env_keys": env.keys().collect::<Vec<_>>() }))
            .secrets(json!({ "env": env }))
            .policy(policy);
        let handle = self.engine.submit(fleet.principal(), task).await?;
        Ok((services, handle))
    }

    /// Upgrades the hosted services `services` of `fleet`'s project to `image` as one task under
    /// `policy` (serial or parallel, with its abort and rollback rules), as `fleet`'s principal.
    /// Needs `edit edge service` in the project (a new image changes a service's definition);
    /// audited as `edge_service.upgrade_batch`, success or failure. Each service is read from
    /// the store: an id of another project is not found, whatever the caller holds.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound` for a service not in the project, `InvalidInput` for a bad
    /// image, no service, or a service that is not docker-hosted; the engine's submission errors.
    pub async fn upgrade_batch(
        &self,
        fleet: &ProjectFleet,
        services: &[EdgeServiceId],
        image: &str,
        policy: RolloutPolicy,
    ) -> Result<TaskHandle> {
        let scope = fleet.scoped();
        let event = scope.event(ResourceKind::EdgeService, ops::UPGRADE_BATCH);
        scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                audit.details(json!({ "image": image, "services": services.len() }));
                if !valid_image(image) {
                    return Err(ecp_core::Error::invalid("image", "not an image reference").into());
                }
                if services.is_empty() {
                    return Err(ecp_core::Error::invalid("services", "no service to upgrade").into());
                }
                let mut targets = Vec::with_capacity(services.len());
                for id in services {
                    let s = fleet.own(*id).await?;
                    if s.mode() != ManagementMode::Docker {
                        return Err(ecp_core::Error::invalid("services", "every service must be docker-hosted").into());
                    }
                    targets.push(NewTarget::new(s.id().to_string(), s.name()));
                }
                let task = NewTask::new(fleet.project().id(), UPGRADE_KIND, targets).spec(json!({ "image": image })).policy(policy);
                Ok(self.engine.submit(fleet.principal(), task).await?)
            })
            .await
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

    /// An install is undone by uninstalling, an upgrade by going back to the image before it.
    fn rolls_back(&self) -> bool {
        true
    }

    fn executor(&self, task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        let op = if self.name == INSTALL_KIND {
            let mut spec: HostedSpec = serde_json::from_value(task.spec()["spec"].clone())
                .map_err(|e| ecp_core::Error::invalid("task spec", format!("not a hosted install: {e}")))?;
            if let Some(env) = task.secrets().map(|s| s.expose()["env"].clone()).filter(|e| !e.is_null()) {
                spec.env = serde_json::from_value(env).map_err(|e| ecp_core::Error::invalid("task secrets", format!("env: {e}")))?;
            }
            Op::Install(Box::new(spec))
        } else {
            let image = task.spec()["image"]
                .as_str()
                .filter(|i| valid_image(i))
                .ok_or_else(|| ecp_core::Error::invalid("task spec", "not a hosted upgrade: no image".to_owned()))?;
            Op::Upgrade(image.to_owned())
        };
        Ok(Arc::new(HostedExecutor { op, project: task.project(), store: self.store.clone(), driver: self.driver.clone() }))
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
    /// The task's project: a target of another project is refused, whatever its id.
    project: ProjectId,
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
            Ok(s) if s.project() == self.project => Ok(s),
            Ok(_) => Err(TargetError::fatal("the edge service is not in the task's project")),
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
