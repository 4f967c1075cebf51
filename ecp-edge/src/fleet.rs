//! [`Fleet`] and its project-scoped handle [`ProjectFleet`]: every fleet operation, authorized and
//! audited.
//!
//! `fleet.project(&principal, project_id)` gives a handle whose every call is inside that project,
//! as kube-rs's `Api<K>` carries its namespace. Regular users read; administrators change. Batch
//! work (configuration delivery) runs as tasks of the task engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::access::{Authorizer, Permission, Principal, ResourceKind};
use ecp_core::audit::{AuditEvent, Operation, record_failure};
use ecp_core::edge::{
    Agent, AgentFilter, AgentId, Credentials, EdgeKind, EdgeLimits, EdgeSelector, EdgeService, EdgeStatus, ManagementMode, ProbeOutcome,
    TagUsage, TemplateRecord,
};
use ecp_core::task::{
    IdempotencyKey, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, Task, TaskEngine, TaskHandle, TaskKind, TaskTarget,
    TaskTotals,
};
use ecp_core::{Clock, EdgeServiceId, Page, PageRequest, Project, ProjectId, Store, TaskId};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::driver::{Drivers, EdgeInfo};
use crate::error::{Error, Result};
use crate::template::{ConfigTemplate, ParamGrid};

/// The audit operations of fleets.
pub mod ops {
    use ecp_core::audit::Operation;

    /// An edge service was registered.
    pub const REGISTER: Operation = Operation::from_static("edge_service.register");
    /// Edge services were imported from CSV.
    pub const IMPORT: Operation = Operation::from_static("edge_service.import");
    /// An edge service was changed.
    pub const UPDATE: Operation = Operation::from_static("edge_service.update");
    /// An edge service was deleted (deregistered, for managed services).
    pub const DELETE: Operation = Operation::from_static("edge_service.delete");
    /// A hosted edge service was started.
    pub const START: Operation = Operation::from_static("edge_service.start");
    /// A hosted edge service was stopped.
    pub const STOP: Operation = Operation::from_static("edge_service.stop");
    /// A hosted edge service was restarted.
    pub const RESTART: Operation = Operation::from_static("edge_service.restart");
    /// A hosted edge service was upgraded.
    pub const UPGRADE: Operation = Operation::from_static("edge_service.upgrade");
    /// A tag was created.
    pub const TAG_CREATE: Operation = Operation::from_static("tag.create");
    /// A tag was deleted.
    pub const TAG_DELETE: Operation = Operation::from_static("tag.delete");
    /// A configuration template version was saved.
    pub const TEMPLATE_SAVE: Operation = Operation::from_static("config_template.save");
    /// A task was canceled.
    pub const TASK_CANCEL: Operation = Operation::from_static("task.cancel");
    /// A task was paused.
    pub const TASK_PAUSE: Operation = Operation::from_static("task.pause");
    /// A task was resumed.
    pub const TASK_RESUME: Operation = Operation::from_static("task.resume");
    /// An agent was managed into a project (or renamed there).
    pub const AGENT_MANAGE: Operation = Operation::from_static("agent.manage");
    /// An agent was transferred to another project.
    pub const AGENT_TRANSFER: Operation = Operation::from_static("agent.transfer");
    /// An agent was made unmanaged.
    pub const AGENT_UNMANAGE: Operation = Operation::from_static("agent.unmanage");
    /// An agent was deleted.
    pub const AGENT_DELETE: Operation = Operation::from_static("agent.delete");
}

/// The name of the configuration delivery task kind.
pub const DELIVERY_KIND: &str = "config_delivery";

/// An edge service to register.
#[derive(Debug, Clone)]
pub struct NewEdgeService {
    /// Its name (1–200 characters, unique in the project).
    pub name: String,
    /// Its product.
    pub kind: EdgeKind,
    /// How it is reached.
    pub mode: ManagementMode,
    /// Its API's base URL.
    pub endpoint: String,
    /// How to authenticate to it.
    pub credentials: Credentials,
    /// Its tags (at most 10).
    pub tags: Vec<String>,
    /// The edge agent it is reached through (mode `agent`).
    pub agent: Option<AgentId>,
}

impl NewEdgeService {
    /// A service reached through edge agent `agent`, at `endpoint` as the agent sees it
    /// (`http://127.0.0.1:8085`). The agent must be managed in the project.
    pub fn through_agent(name: impl Into<String>, kind: EdgeKind, agent: AgentId, endpoint: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            mode: ManagementMode::Agent,
            endpoint: endpoint.into(),
            credentials: Credentials::None,
            tags: Vec::new(),
            agent: Some(agent),
        }
    }

    /// A directly managed service without credentials or tags.
    pub fn direct(name: impl Into<String>, kind: EdgeKind, endpoint: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            mode: ManagementMode::Direct,
            endpoint: endpoint.into(),
            credentials: Credentials::None,
            tags: Vec::new(),
            agent: None,
        }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.credentials = c;
        self
    }

    /// Sets the tags.
    #[must_use]
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// Changes to an edge service; `None` leaves a field as it is. Hosted services change only their
/// name and tags (the platform owns their endpoint); managed ones also their endpoint and
/// credentials.
#[derive(Debug, Clone, Default)]
pub struct EdgeServiceChanges {
    /// A new name.
    pub name: Option<String>,
    /// A new endpoint (managed services).
    pub endpoint: Option<String>,
    /// New credentials (managed services).
    pub credentials: Option<Credentials>,
    /// New tags (replacing the old ones).
    pub tags: Option<Vec<String>>,
}

/// What a CSV import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// The services imported.
    pub imported: Vec<EdgeServiceId>,
    /// Every line that was not imported, with why.
    pub failures: Vec<crate::import::ImportFailure>,
}

/// The rendering of a template for one target, without applying it.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewRow {
    /// The service.
    pub service: EdgeServiceId,
    /// Its name.
    pub name: String,
    /// The change it would get, or why it cannot get one.
    pub result: std::result::Result<crate::template::ConfigChange, String>,
}

/// Counts of a project's edge fleet (the product's "project statistics").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectStatistics {
    /// Services answering.
    pub services_online: u64,
    /// Services not answering.
    pub services_offline: u64,
    /// Services not probed yet.
    pub services_unknown: u64,
    /// South drivers.
    pub drivers_total: u64,
    /// South drivers running and connected.
    pub drivers_running: u64,
    /// South drivers stopped or disconnected.
    pub drivers_error: u64,
    /// eKuiper rules.
    pub rules_total: u64,
    /// Rules running.
    pub rules_running: u64,
    /// Rules stopped.
    pub rules_stopped: u64,
    /// Rules in error.
    pub rules_error: u64,
    /// Tag points configured in south driver groups.
    pub tag_points: u64,
}

struct FleetInner {
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    engine: TaskEngine,
    drivers: Drivers,
    limits: EdgeLimits,
    probe_concurrency: usize,
}

/// Edge fleets over one store: hand out [`ProjectFleet`]s.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<FleetInner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("drivers", &self.inner.drivers).field("limits", &self.inner.limits).finish_non_exhaustive()
    }
}

impl Fleet {
    /// A fleet; registers the configuration delivery task kind with `engine`.
    ///
    /// # Errors
    /// `Conflict` if the engine already has a `config_delivery` kind.
    pub fn new(
        store: Arc<dyn Store>,
        authz: Arc<dyn Authorizer>,
        clock: Arc<dyn Clock>,
        engine: TaskEngine,
        drivers: Drivers,
        limits: EdgeLimits,
    ) -> Result<Self> {
        engine.register(Arc::new(DeliveryKind { store: store.clone(), drivers: drivers.clone() }))?;
        Ok(Self { inner: Arc::new(FleetInner { store, authz, clock, engine, drivers, limits, probe_concurrency: 64 }) })
    }

    /// The task engine deliveries run on.
    pub fn engine(&self) -> &TaskEngine {
        &self.inner.engine
    }

    /// A handle on one project's fleet for `principal`.
    ///
    /// # Errors
    /// `NotFound` for a project the principal cannot see, `Backend`.
    pub async fn project(&self, principal: &Principal, project: ProjectId) -> Result<ProjectFleet> {
        let p = match self.inner.store.get_project(project).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Err(ecp_core::Error::not_found("project", project).into()),
            Err(e) => return Err(e.into()),
        };
        if !self.inner.authz.has_access(principal, &p.scope()) {
            return Err(ecp_core::Error::not_found("project", project).into());
        }
        let org_name = self.inner.store.get_org(p.org).await.map(|o| o.name).unwrap_or_default();
        Ok(ProjectFleet { fleet: self.clone(), principal: principal.clone(), project: p, org_name })
    }
}

/// One project's edge fleet, as one principal acts on it.
#[derive(Clone)]
pub struct ProjectFleet {
    fleet: Fleet,
    principal: Principal,
    project: Project,
    org_name: String,
}

impl std::fmt::Debug for ProjectFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectFleet").field("project", &self.project.id).field("principal", &self.principal).finish()
    }
}

impl ProjectFleet {
    fn store(&self) -> &Arc<dyn Store> {
        &self.fleet.inner.store
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    fn authorize(&self, perm: Permission) -> Result<()> {
        let scope = self.project.scope();
        self.fleet.inner.authz.check(&self.principal, perm, &scope).map_err(|d| Error::Core(d.into_error(&self.principal, perm, &scope)))
    }

    fn event(&self, kind: ResourceKind, op: Operation) -> AuditEvent {
        AuditEvent::new(&self.principal, kind, op).org(self.project.org, &self.org_name).project(self.project.id, &self.project.name)
    }

    async fn fail<T>(&self, event: AuditEvent, err: impl Into<Error>) -> Result<T> {
        let err = err.into();
        record_failure(self.store().as_ref(), event, &err).await;
        Err(err)
    }

    /// A service of this project (others are not found, whatever their id).
    async fn own(&self, id: EdgeServiceId) -> Result<EdgeService> {
        match self.store().get_edge_service(id).await {
            Ok(s) if s.project == self.project.id => Ok(s),
            Ok(_) => Err(ecp_core::Error::not_found("edge service", id).into()),
            Err(e) => Err(e.into()),
        }
    }

    fn now(&self) -> ecp_core::Timestamp {
        self.fleet.inner.clock.now()
    }

    /// An agent managed in this project (others are not found).
    async fn own_agent(&self, id: &AgentId) -> Result<Agent> {
        match self.store().get_agent(id).await {
            Ok(a) if a.project == Some(self.project.id) => Ok(a),
            Ok(_) => Err(ecp_core::Error::not_found("agent", id).into()),
            Err(e) => Err(e.into()),
        }
    }

    // --- edge agents ----------------------------------------------------------------------------

    /// The agents managed in this project. Needs `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn agents(&self, page: &PageRequest) -> Result<Page<Agent>> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        let filter = AgentFilter { project: Some(self.project.id), ..AgentFilter::default() };
        Ok(self.store().list_agents(&filter, page).await?)
    }

    /// Manages an unmanaged agent into this project under `name` (or renames one of its own).
    /// Needs `edit edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound` for an unknown agent or one managed in another project
    /// (transfer it from there), `InvalidInput` for a bad name, `Backend`.
    pub async fn manage_agent(&self, id: &AgentId, name: &str) -> Result<Agent> {
        let event = self.event(ResourceKind::EdgeService, ops::AGENT_MANAGE).resource(id, Some(name));
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        match self.store().get_agent(id).await {
            Ok(a) if a.project.is_none() || a.project == Some(self.project.id) => {}
            Ok(_) => return self.fail(event, ecp_core::Error::not_found("agent", id)).await,
            Err(e) => return self.fail(event, e).await,
        }
        match self.store().manage_agent(id, self.project.id, name, &event).await {
            Ok(a) => Ok(a),
            Err(e) => self.fail(event, e).await,
        }
    }

    /// Transfers an agent of this project to the project of `to` (the same principal's handle on
    /// it). Needs `edit edge service` in both; refused while services of this project are reached
    /// through the agent.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict`, `Backend`.
    pub async fn transfer_agent(&self, id: &AgentId, to: &ProjectFleet) -> Result<Agent> {
        let event = self.event(ResourceKind::EdgeService, ops::AGENT_TRANSFER).resource(id, None).details(serde_json::json!({
            "to_org": to.project.org, "to_project": to.project.id, "to_project_name": to.project.name,
        }));
        if let Err(e) = self
            .authorize(Permission::edit(ResourceKind::EdgeService))
            .and_then(|()| to.authorize(Permission::edit(ResourceKind::EdgeService)))
        {
            return self.fail(event, e).await;
        }
        let agent = match self.own_agent(id).await {
            Ok(a) => a,
            Err(e) => return self.fail(event, e).await,
        };
        let name = agent.name.unwrap_or_else(|| id.to_string());
        match self.store().manage_agent(id, to.project.id, &name, &event).await {
            Ok(a) => Ok(a),
            Err(e) => self.fail(event, e).await,
        }
    }

    /// Makes an agent of this project unmanaged. Needs `edit edge service`; refused while
    /// services are reached through it.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict`, `Backend`.
    pub async fn unmanage_agent(&self, id: &AgentId) -> Result<()> {
        let event = self.event(ResourceKind::EdgeService, ops::AGENT_UNMANAGE).resource(id, None);
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        if let Err(e) = self.own_agent(id).await {
            return self.fail(event, e).await;
        }
        match self.store().unmanage_agent(id, &event).await {
            Ok(()) => Ok(()),
            Err(e) => self.fail(event, e).await,
        }
    }

    /// Deletes an agent of this project. Needs `edit edge service`; refused while services are
    /// reached through it.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict`, `Backend`.
    pub async fn delete_agent(&self, id: &AgentId) -> Result<()> {
        let event = self.event(ResourceKind::EdgeService, ops::AGENT_DELETE).resource(id, None);
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        if let Err(e) = self.own_agent(id).await {
            return self.fail(event, e).await;
        }
        match self.store().delete_agent(id, &event).await {
            Ok(()) => Ok(()),
            Err(e) => self.fail(event, e).await,
        }
    }

    // --- services -------------------------------------------------------------------------------

    /// Registers an edge service. Needs `edit edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Conflict` for a taken name, `LimitExceeded` for tags,
    /// `Backend`.
    pub async fn register(&self, new: NewEdgeService) -> Result<EdgeService> {
        let mut event = self.event(ResourceKind::EdgeService, ops::REGISTER);
        event.resource_name = Some(new.name.chars().take(200).collect());
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        let mut service =
            match EdgeService::new(self.project.id, &new.name, new.kind, new.mode, &new.endpoint, new.credentials, new.tags, self.now()) {
                Ok(s) => s,
                Err(e) => return self.fail(event, e).await,
            };
        match (new.mode, new.agent) {
            (ManagementMode::Agent, Some(agent)) => {
                if let Err(e) = self.own_agent(&agent).await {
                    return self.fail(event, e).await;
                }
                service = service.through_agent(agent);
            }
            (ManagementMode::Agent, None) | (_, Some(_)) => {
                let e = ecp_core::Error::invalid("agent", "a service is reached through an agent exactly when its mode is agent");
                return self.fail(event, e).await;
            }
            _ => {}
        }
        let event = event.resource(service.id, Some(&service.name)).details(serde_json::json!({
            "kind": service.kind, "mode": service.mode, "endpoint": service.endpoint, "tags": service.tags,
            "credentials": service.credentials.kind(), "agent": service.agent,
        }));
        let outcome = self.store().create_edge_services(std::slice::from_ref(&service), &self.fleet.inner.limits, &event).await;
        match outcome {
            Ok(mut results) => match results.pop() {
                Some(Ok(())) => Ok(service),
                Some(Err(e)) => self.fail(event, e).await,
                None => Ok(service),
            },
            Err(e) => self.fail(event, e).await,
        }
    }

    /// Imports directly managed services from a CSV file (see [`crate::import`]): every valid line
    /// is registered, every bad line reported with its number and reason, no line half-imported.
    /// Needs `edit edge service`. One audit record covers the import, with the per-line results.
    ///
    /// # Errors
    /// `PermissionDenied`; the file as a whole unreadable (no header, over the size limit) as
    /// `InvalidInput`; `Backend`.
    pub async fn import_csv(
        &self,
        reader: impl std::io::Read + Send + 'static,
        limits: crate::import::ImportLimits,
    ) -> Result<ImportReport> {
        let event = self.event(ResourceKind::EdgeService, ops::IMPORT);
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        let parsed = tokio::task::spawn_blocking(move || crate::import::parse_csv(reader, &limits))
            .await
            .map_err(|e| Error::Core(ecp_core::Error::backend("csv", e.to_string())))?;
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => return self.fail(event, ecp_core::Error::invalid("csv", e.to_string())).await,
        };
        let now = self.now();
        let mut failures = parsed.failures;
        let mut services = Vec::with_capacity(parsed.rows.len());
        let mut lines = Vec::with_capacity(parsed.rows.len());
        for row in parsed.rows {
            match EdgeService::new(
                self.project.id,
                &row.name,
                row.kind,
                ManagementMode::Direct,
                &row.endpoint,
                row.credentials,
                row.tags,
                now,
            ) {
                Ok(s) => {
                    services.push(s);
                    lines.push(row.line);
                }
                Err(e) => failures.push(crate::import::ImportFailure { line: row.line, reason: e.to_string() }),
            }
        }
        let event = event.details(serde_json::json!({ "lines": services.len() + failures.len() }));
        let results = match self.store().create_edge_services(&services, &self.fleet.inner.limits, &event).await {
            Ok(r) => r,
            Err(e) => return self.fail(event, e).await,
        };
        let mut report = ImportReport::default();
        for ((service, line), result) in services.iter().zip(lines).zip(results) {
            match result {
                Ok(()) => report.imported.push(service.id),
                Err(e) => failures.push(crate::import::ImportFailure { line, reason: e.to_string() }),
            }
        }
        failures.sort_by_key(|f| f.line);
        report.failures = failures;
        Ok(report)
    }

    /// One service. Needs `view edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn get(&self, id: EdgeServiceId) -> Result<EdgeService> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        self.own(id).await
    }

    /// The services matching a selector, in registration order. Needs `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn select(&self, selector: &EdgeSelector, page: &PageRequest) -> Result<Page<EdgeService>> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        Ok(self.store().select_edge_services(self.project.id, selector, page).await?)
    }

    /// How many services match a selector. Needs `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn count(&self, selector: &EdgeSelector) -> Result<u64> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        Ok(self.store().count_edge_services(self.project.id, selector).await?)
    }

    /// Every service matching a selector (paging through the store).
    async fn all(&self, selector: &EdgeSelector) -> Result<Vec<EdgeService>> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(1000);
        loop {
            let got = self.store().select_edge_services(self.project.id, selector, &page).await?;
            out.extend(got.items);
            match got.next {
                Some(c) => page = PageRequest::after(1000, c),
                None => return Ok(out),
            }
        }
    }

    /// Changes a service. Needs `edit edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` (an endpoint or credentials of a hosted
    /// service), `Conflict`, `LimitExceeded`, `Backend`.
    pub async fn update(&self, id: EdgeServiceId, changes: EdgeServiceChanges) -> Result<EdgeService> {
        let event = self.event(ResourceKind::EdgeService, ops::UPDATE).resource(id, None);
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        let mut s = match self.own(id).await {
            Ok(s) => s,
            Err(e) => return self.fail(event, e).await,
        };
        let event = event.resource(id, Some(&s.name)).details(serde_json::json!({
            "name": changes.name, "endpoint": changes.endpoint, "credentials": changes.credentials.as_ref().map(Credentials::kind),
            "tags": changes.tags,
        }));
        if s.mode.is_hosted() && (changes.endpoint.is_some() || changes.credentials.is_some()) {
            return self
                .fail(event, ecp_core::Error::invalid("endpoint", "a hosted service's endpoint and credentials belong to the platform"))
                .await;
        }
        if let Some(n) = changes.name {
            s.name = n;
        }
        if let Some(e) = changes.endpoint {
            s.endpoint = e;
        }
        if let Some(c) = changes.credentials {
            s.credentials = c;
        }
        if let Some(t) = changes.tags {
            match ecp_core::edge::normalize_tags(t) {
                Ok(t) => s.tags = t,
                Err(e) => return self.fail(event, e).await,
            }
        }
        s.updated_at = self.now();
        if let Err(e) = self.store().update_edge_service(&s, &self.fleet.inner.limits, &event).await {
            return self.fail(event, e).await;
        }
        Ok(s)
    }

    /// Deletes a service: removes a hosted one's instance first (through its driver), deregisters a
    /// managed one. Needs `edit edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, the driver's error for a hosted service, `Backend`.
    pub async fn delete(&self, id: EdgeServiceId) -> Result<()> {
        let event = self.event(ResourceKind::EdgeService, ops::DELETE).resource(id, None);
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        let s = match self.own(id).await {
            Ok(s) => s,
            Err(e) => return self.fail(event, e).await,
        };
        let event = event.resource(id, Some(&s.name)).details(serde_json::json!({ "mode": s.mode }));
        if s.mode.is_hosted() {
            let removed = match self.fleet.inner.drivers.get(s.mode) {
                Ok(d) => d.uninstall(&s).await,
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                return self.fail(event, e).await;
            }
        }
        if let Err(e) = self.store().delete_edge_service(id, &event).await {
            return self.fail(event, e).await;
        }
        if let Ok(d) = self.fleet.inner.drivers.get(s.mode) {
            d.forget(&s);
        }
        Ok(())
    }

    async fn lifecycle(&self, id: EdgeServiceId, op: Operation, image: Option<&str>) -> Result<()> {
        let event = self.event(ResourceKind::EdgeService, op.clone()).resource(id, None);
        if let Err(e) = self.authorize(Permission::operate(ResourceKind::EdgeService)) {
            return self.fail(event, e).await;
        }
        let s = match self.own(id).await {
            Ok(s) => s,
            Err(e) => return self.fail(event, e).await,
        };
        let event = event.resource(id, Some(&s.name)).details(serde_json::json!({ "image": image }));
        let driver = match self.fleet.inner.drivers.get(s.mode) {
            Ok(d) => d.clone(),
            Err(e) => return self.fail(event, e).await,
        };
        let done = match op.as_str() {
            "edge_service.start" => driver.start(&s).await,
            "edge_service.stop" => driver.stop(&s).await,
            "edge_service.restart" => driver.restart(&s).await,
            _ => driver.upgrade(&s, image.unwrap_or_default()).await,
        };
        match done {
            Ok(()) => {
                self.store().append_audit(&event).await?;
                Ok(())
            }
            Err(e) => self.fail(event, e).await,
        }
    }

    /// Starts a hosted service. Needs `operate edge service`.
    ///
    /// # Errors
    /// `Unsupported` for managed services (direct, agent), `NotFound`, `PermissionDenied`, the
    /// driver's error.
    pub async fn start(&self, id: EdgeServiceId) -> Result<()> {
        self.lifecycle(id, ops::START, None).await
    }

    /// Stops a hosted service. Needs `operate edge service`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn stop(&self, id: EdgeServiceId) -> Result<()> {
        self.lifecycle(id, ops::STOP, None).await
    }

    /// Restarts a hosted service. Needs `operate edge service`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn restart(&self, id: EdgeServiceId) -> Result<()> {
        self.lifecycle(id, ops::RESTART, None).await
    }

    /// Upgrades a hosted service to `image`. Needs `operate edge service`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn upgrade(&self, id: EdgeServiceId, image: &str) -> Result<()> {
        self.lifecycle(id, ops::UPGRADE, Some(image)).await
    }

    // --- tags ---------------------------------------------------------------------------------

    /// The project's tags and their use. Needs `view tag`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn tags(&self) -> Result<Vec<TagUsage>> {
        self.authorize(Permission::view(ResourceKind::Tag))?;
        Ok(self.store().list_tags(self.project.id).await?)
    }

    /// Defines a tag. Needs `edit tag`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Conflict`, `LimitExceeded`, `Backend`.
    pub async fn create_tag(&self, name: &str) -> Result<()> {
        let mut event = self.event(ResourceKind::Tag, ops::TAG_CREATE);
        event.resource_name = Some(name.chars().take(20).collect());
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::Tag)) {
            return self.fail(event, e).await;
        }
        if let Err(e) = self.store().create_tag(self.project.id, name, &self.fleet.inner.limits, self.now(), &event).await {
            return self.fail(event, e).await;
        }
        Ok(())
    }

    /// Deletes a tag no service carries. Needs `edit tag`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict` while in use, `Backend`.
    pub async fn delete_tag(&self, name: &str) -> Result<()> {
        let mut event = self.event(ResourceKind::Tag, ops::TAG_DELETE);
        event.resource_name = Some(name.chars().take(20).collect());
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::Tag)) {
            return self.fail(event, e).await;
        }
        if let Err(e) = self.store().delete_tag(self.project.id, name, &event).await {
            return self.fail(event, e).await;
        }
        Ok(())
    }

    // --- health and information ----------------------------------------------------------------

    async fn probe_one(&self, s: &EdgeService) -> Result<EdgeService> {
        let outcome = match self.fleet.inner.drivers.get(s.mode) {
            Ok(d) => match d.probe(s).await {
                Ok(h) => ProbeOutcome { answered: true, version: h.version, at: self.now() },
                Err(e) => {
                    tracing::debug!(service = %s.id, error = %e, "probe failed");
                    ProbeOutcome { answered: false, version: None, at: self.now() }
                }
            },
            Err(e) => return Err(e),
        };
        Ok(self.store().record_probe(s.id, &outcome, self.fleet.inner.limits.offline_after_misses).await?)
    }

    /// Probes one service now and records the result. Needs `view edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Unsupported` for a mode without a driver, `Backend`.
    pub async fn probe(&self, id: EdgeServiceId) -> Result<EdgeService> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        let s = self.own(id).await?;
        self.probe_one(&s).await
    }

    /// Probes every service of the project (a bounded number at once; a slow or dead service never
    /// holds up the others beyond its driver's timeout) and records the results. Returns the
    /// services as updated. Needs `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn probe_all(&self) -> Result<Vec<EdgeService>> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        let services = self.all(&EdgeSelector::all()).await?;
        let results: Vec<Result<EdgeService>> = futures::stream::iter(services.iter().map(|s| self.probe_one(s)))
            .buffer_unordered(self.fleet.inner.probe_concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Pulls one service's drivers, groups, tags, apps, streams and rules and stores them. Needs
    /// `view edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, the driver's error, `Backend`.
    pub async fn sync_info(&self, id: EdgeServiceId) -> Result<EdgeInfo> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        let s = self.own(id).await?;
        let info = self.fleet.inner.drivers.get(s.mode)?.sync_info(&s).await?;
        let value = serde_json::to_value(&info).map_err(|e| Error::Core(ecp_core::Error::backend("json", e)))?;
        self.store().save_edge_info(id, &value, self.now()).await?;
        Ok(info)
    }

    /// Syncs every online service; returns how many synced and the failures by service. Needs
    /// `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn sync_all(&self) -> Result<(usize, Vec<(EdgeServiceId, String)>)> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        let online = self.all(&EdgeSelector { statuses: vec![EdgeStatus::Online], ..Default::default() }).await?;
        let results: Vec<(EdgeServiceId, Result<EdgeInfo>)> =
            futures::stream::iter(online.iter().map(|s| async move { (s.id, self.sync_info(s.id).await) }))
                .buffer_unordered(self.fleet.inner.probe_concurrency)
                .collect()
                .await;
        let mut ok = 0;
        let mut failed = Vec::new();
        for (id, r) in results {
            match r {
                Ok(_) => ok += 1,
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        Ok((ok, failed))
    }

    /// The project's statistics: services by state, from the store; drivers, rules and tag points,
    /// from the last information sync. Needs `view monitoring`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn statistics(&self) -> Result<ProjectStatistics> {
        self.authorize(Permission::view(ResourceKind::Monitoring))?;
        let mut st = ProjectStatistics::default();
        for (status, slot) in [(EdgeStatus::Online, 0), (EdgeStatus::Offline, 1), (EdgeStatus::Unknown, 2)] {
            let n =
                self.store().count_edge_services(self.project.id, &EdgeSelector { statuses: vec![status], ..Default::default() }).await?;
            match slot {
                0 => st.services_online = n,
                1 => st.services_offline = n,
                _ => st.services_unknown = n,
            }
        }
        for (_, _, info) in self.store().edge_infos(self.project.id).await? {
            let Ok(info) = serde_json::from_value::<EdgeInfo>(info) else { continue };
            for d in &info.drivers {
                st.drivers_total += 1;
                if d.state.as_deref() == Some("running") && d.connected != Some(false) {
                    st.drivers_running += 1;
                } else {
                    st.drivers_error += 1;
                }
                st.tag_points += d.groups.iter().map(|g| g.tag_count).sum::<u64>();
            }
            for r in &info.rules {
                st.rules_total += 1;
                if r.status == "running" {
                    st.rules_running += 1;
                } else if r.status.starts_with("error") || r.status == "stopped by error" {
                    st.rules_error += 1;
                } else {
                    st.rules_stopped += 1;
                }
            }
        }
        Ok(st)
    }

    // --- templates and delivery ----------------------------------------------------------------

    /// Saves a template: a new one (`id` `None`) as version 1, or the next version of an existing
    /// one. Needs `edit config delivery`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput` for a bad template, `Conflict` for a taken name or a
    /// concurrent save, `NotFound`, `Backend`.
    pub async fn save_template(&self, id: Option<uuid::Uuid>, name: &str, template: &ConfigTemplate) -> Result<TemplateRecord> {
        let mut event = self.event(ResourceKind::ConfigDelivery, ops::TEMPLATE_SAVE);
        event.resource_name = Some(name.chars().take(200).collect());
        if let Err(e) = self.authorize(Permission::edit(ResourceKind::ConfigDelivery)) {
            return self.fail(event, e).await;
        }
        if let Err(e) = template.validate() {
            return self.fail(event, e).await;
        }
        let (id, version) = match id {
            None => (uuid::Uuid::now_v7(), 1),
            Some(id) => match self.store().get_template(id, None).await {
                Ok(t) if t.project == self.project.id => (id, t.version + 1),
                Ok(_) => return self.fail(event, ecp_core::Error::not_found("template", id)).await,
                Err(e) => return self.fail(event, e).await,
            },
        };
        let body = serde_json::to_value(template).map_err(|e| Error::Core(ecp_core::Error::backend("json", e)))?;
        let record = TemplateRecord {
            id,
            version,
            project: self.project.id,
            name: name.to_owned(),
            kind: template.kind.as_str().to_owned(),
            body,
            created_by: self.principal.name().to_owned(),
            created_at: self.now(),
        };
        let event = event.resource(id, Some(name)).details(serde_json::json!({ "version": version, "kind": record.kind }));
        if let Err(e) = self.store().save_template(&record, &event).await {
            return self.fail(event, e).await;
        }
        Ok(record)
    }

    /// A template version (the latest for `None`) and its parsed form. Needs `view config
    /// delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn template(&self, id: uuid::Uuid, version: Option<u32>) -> Result<(TemplateRecord, ConfigTemplate)> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        let record = self.store().get_template(id, version).await?;
        if record.project != self.project.id {
            return Err(ecp_core::Error::not_found("template", id).into());
        }
        let parsed: ConfigTemplate = serde_json::from_value(record.body.clone())
            .map_err(|e| Error::Core(ecp_core::Error::Integrity { what: "template", reason: e.to_string() }))?;
        Ok((record, parsed))
    }

    /// The latest version of every template. Needs `view config delivery`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn templates(&self) -> Result<Vec<TemplateRecord>> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        Ok(self.store().list_templates(self.project.id).await?)
    }

    /// Renders a template for every selected service without applying it; each row holds the change
    /// or why there is none (a missing or mistyped parameter, a service of another kind). Needs
    /// `view config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn preview(
        &self,
        id: uuid::Uuid,
        version: Option<u32>,
        selector: &EdgeSelector,
        grid: &ParamGrid,
    ) -> Result<Vec<PreviewRow>> {
        let (_, template) = self.template(id, version).await?;
        grid.validate()?;
        let services = self.all(selector).await?;
        Ok(services
            .into_iter()
            .map(|s| {
                let values = grid.values_for(&s.id.to_string(), &s.name);
                let result = render_for(&template, &s, &values);
                PreviewRow { service: s.id, name: s.name, result }
            })
            .collect())
    }

    /// Delivers a template to every selected service as a task under `policy`; per-target results
    /// go to the task and to its audit records. There is no limit on the number of targets. Needs
    /// `edit config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` (no target), `Conflict` while another
    /// exclusive delivery runs in the project, `Backend`.
    pub async fn deliver(
        &self,
        id: uuid::Uuid,
        version: Option<u32>,
        selector: &EdgeSelector,
        grid: &ParamGrid,
        policy: RolloutPolicy,
    ) -> Result<TaskHandle> {
        self.authorize(Permission::edit(ResourceKind::ConfigDelivery))?;
        let (record, template) = self.template(id, version).await?;
        grid.validate()?;
        let services = self.all(selector).await?;
        if self.fleet.inner.limits.max_tag_points != u64::MAX {
            self.check_tag_points(&template, &services, grid).await?;
        }
        let targets: Vec<NewTarget> = services
            .iter()
            .map(|s| NewTarget {
                id: s.id.to_string(),
                name: s.name.clone(),
                params: serde_json::to_value(grid.values_for(&s.id.to_string(), &s.name)).unwrap_or(Value::Null),
            })
            .collect();
        let spec = serde_json::json!({ "template": record.id, "version": record.version, "name": record.name, "body": template });
        let task = NewTask { org: self.project.org, project: self.project.id, kind: DELIVERY_KIND.into(), spec, policy, targets };
        Ok(self.fleet.inner.engine.submit(&self.principal, task).await?)
    }

    /// Checks that delivering `template` to `services` keeps the installation within the license's
    /// tag points: the tags of every project's last information sync, minus those of the south
    /// devices this delivery replaces, plus the ones it adds.
    async fn check_tag_points(&self, template: &ConfigTemplate, services: &[EdgeService], grid: &ParamGrid) -> Result<()> {
        let max = self.fleet.inner.limits.max_tag_points;
        let mut installed: u64 = 0;
        let mut here: BTreeMap<(EdgeServiceId, String), u64> = BTreeMap::new();
        let mut page = PageRequest::first(500);
        loop {
            let projects = self.store().list_projects(&Default::default(), &page).await?;
            for p in &projects.items {
                for (service, _, info) in self.store().edge_infos(p.id).await? {
                    let Ok(info) = serde_json::from_value::<EdgeInfo>(info) else { continue };
                    for d in &info.drivers {
                        let n: u64 = d.groups.iter().map(|g| g.tag_count).sum();
                        installed = installed.saturating_add(n);
                        if p.id == self.project.id {
                            here.insert((service, d.name.clone()), n);
                        }
                    }
                }
            }
            match projects.next {
                Some(cursor) => page = PageRequest::after(500, cursor),
                None => break,
            }
        }
        let mut total = installed;
        for s in services {
            let values = grid.values_for(&s.id.to_string(), &s.name);
            if let Ok(crate::template::ConfigChange::NeuronSouthDevice { node, groups, .. }) = render_for(template, s, &values) {
                let adds: u64 = groups.iter().map(|g| g.tags.len() as u64).sum();
                let replaces = here.get(&(s.id, node)).copied().unwrap_or(0);
                total = total.saturating_sub(replaces).saturating_add(adds);
            }
        }
        if total > max {
            return Err(ecp_core::Error::LimitExceeded { limit: "licensed tag points", max }.into());
        }
        Ok(())
    }

    /// The project's tasks, newest first. Needs `view config delivery`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn tasks(&self, page: &PageRequest) -> Result<Page<Task>> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        Ok(self.store().list_tasks(self.project.id, page).await?)
    }

    /// A task of this project and its counts. Needs `view config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn task(&self, id: TaskId) -> Result<(Task, TaskTotals)> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        let (task, totals) = self.fleet.inner.engine.progress(id).await?;
        if task.project != self.project.id {
            return Err(ecp_core::Error::not_found("task", id).into());
        }
        Ok((task, totals))
    }

    /// A task's targets, in order, from `after_seq`. Needs `view config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn task_targets(&self, id: TaskId, after_seq: Option<u64>, limit: u32) -> Result<Vec<TaskTarget>> {
        self.task(id).await?;
        Ok(self.store().task_targets(id, after_seq, limit).await?)
    }

    async fn steer(&self, id: TaskId, op: Operation) -> Result<()> {
        let event = self.event(ResourceKind::ConfigDelivery, op.clone()).resource(id, None);
        if let Err(e) = self.authorize(Permission::operate(ResourceKind::ConfigDelivery)) {
            return self.fail(event, e).await;
        }
        if let Err(e) = self.task(id).await {
            return self.fail(event, e).await;
        }
        let Some(handle) = self.fleet.inner.engine.handle(id) else {
            return self.fail(event, ecp_core::Error::conflict("task", id, "it is not running in this engine")).await;
        };
        match op.as_str() {
            "task.cancel" => handle.cancel().await,
            "task.pause" => handle.pause().await,
            _ => handle.resume().await,
        }
        self.store().append_audit(&event).await?;
        Ok(())
    }

    /// Cancels a running task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Conflict` if it is not running here, `Backend`.
    pub async fn cancel_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_CANCEL).await
    }

    /// Pauses a running task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// As [`cancel_task`](Self::cancel_task).
    pub async fn pause_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_PAUSE).await
    }

    /// Resumes a paused task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// As [`cancel_task`](Self::cancel_task).
    pub async fn resume_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_RESUME).await
    }
}

fn render_for(
    template: &ConfigTemplate,
    s: &EdgeService,
    values: &BTreeMap<String, Value>,
) -> std::result::Result<crate::template::ConfigChange, String> {
    let change = template.render(values).map_err(|e| e.to_string())?;
    if !change.fits(s.kind) {
        return Err(format!("a {} change does not fit a {} service", template.kind.as_str(), s.kind));
    }
    Ok(change)
}

/// The configuration delivery task kind: renders the template for each target and applies it
/// through the target's driver.
#[derive(Debug)]
struct DeliveryKind {
    store: Arc<dyn Store>,
    drivers: Drivers,
}

impl TaskKind for DeliveryKind {
    fn name(&self) -> &str {
        DELIVERY_KIND
    }

    fn resource_kind(&self) -> ResourceKind {
        ResourceKind::ConfigDelivery
    }

    fn executor(&self, task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        let template: ConfigTemplate = serde_json::from_value(task.spec["body"].clone())
            .map_err(|e| ecp_core::Error::invalid("task spec", format!("not a configuration delivery: {e}")))?;
        let services = ServiceLoader::new(self.store.clone(), task.project);
        Ok(Arc::new(DeliveryExecutor { template, services, drivers: self.drivers.clone() }))
    }
}

#[derive(Debug)]
struct DeliveryExecutor {
    template: ConfigTemplate,
    services: ServiceLoader,
    drivers: Drivers,
}

/// Reads the services of concurrent applies together, a page of the task's project by id per
/// batch ([`Coalescer`](ecp_core::coalesce::Coalescer)). A service not in that page (it moved to
/// another project since, or the batch read failed) is read alone, as before.
#[derive(Debug)]
struct ServiceLoader {
    store: Arc<dyn Store>,
    project: ProjectId,
    batches: ecp_core::coalesce::Coalescer<EdgeServiceId, Option<EdgeService>>,
}

impl ServiceLoader {
    /// The most services read in one statement.
    const BATCH: usize = 500;

    fn new(store: Arc<dyn Store>, project: ProjectId) -> Self {
        ServiceLoader { store, project, batches: ecp_core::coalesce::Coalescer::new(Self::BATCH) }
    }

    async fn get(&self, id: EdgeServiceId) -> ecp_core::Result<EdgeService> {
        let found = self
            .batches
            .call(id, |ids| async move {
                let limit = u32::try_from(ids.len()).ok()?;
                let selector = EdgeSelector { ids: Some(ids.clone()), ..EdgeSelector::default() };
                let page = self.store.select_edge_services(self.project, &selector, &PageRequest::first(limit)).await.ok()?;
                let mut found: std::collections::HashMap<EdgeServiceId, EdgeService> = page.items.into_iter().map(|s| (s.id, s)).collect();
                Some(ids.iter().map(|id| found.remove(id)).collect())
            })
            .await;
        match found.flatten() {
            Some(service) => Ok(service),
            None => self.store.get_edge_service(id).await,
        }
    }
}

#[async_trait]
impl TargetExecutor for DeliveryExecutor {
    async fn apply(&self, target: &TaskTarget, key: &IdempotencyKey) -> std::result::Result<Value, TargetError> {
        let id: EdgeServiceId = target.target.parse().map_err(TargetError::fatal)?;
        let service = match self.services.get(id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Err(TargetError::fatal("the edge service was deregistered")),
            Err(e) => return Err(TargetError { reason: e.to_string(), retryable: e.is_retryable() }),
        };
        let values: BTreeMap<String, Value> = serde_json::from_value(target.params.clone()).unwrap_or_default();
        let change = render_for(&self.template, &service, &values).map_err(TargetError::fatal)?;
        let driver = self.drivers.get(service.mode).map_err(TargetError::fatal)?;
        driver.apply(&service, &change, key).await.map_err(|e| TargetError { reason: with_causes(&e), retryable: e.is_retryable() })
    }
}

/// An error with its causes (`agent edge-7: transport failed (retryable): the agent is offline`),
/// for task target reasons; causes never carry credentials (transports strip them).
pub(crate) fn with_causes(e: &Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.ends_with(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}
