//! [`Fleet`] and its project-scoped handle [`ProjectFleet`]: every fleet operation, authorized and
//! audited.
//!
//! `fleet.project(&principal, project_id)` gives a handle whose every call is inside that project,
//! as kube-rs's `Api<K>` carries its namespace. The project comes from the store
//! ([`Scoped::project`]), and every change goes through [`Scoped::audited`], which checks the
//! permission, runs it, and writes its audit record, success or failure. Regular users read;
//! administrators change. Batch work (configuration delivery) runs as tasks of the task engine.
//!
//! The handle's operations are grouped by concern: agents, services, tags, health and information,
//! templates and delivery, tasks.

use std::sync::Arc;

use ecp_core::access::{Authorizer, Permission, Principal};
use ecp_core::edge::{Agent, AgentId, Credentials, EdgeKind, EdgeLimits, EdgeSelector, EdgeService, ManagementMode};
use ecp_core::scoped::Scoped;
use ecp_core::task::TaskEngine;
use ecp_core::{Clock, EdgeServiceId, PageRequest, Project, ProjectId, Store};
use serde::{Deserialize, Serialize};

use crate::driver::Drivers;
use crate::error::Result;

mod agents;
mod delivery;
mod health;
mod services;
mod tags;
mod tasks;
mod templates;

use delivery::DeliveryKind;
pub(crate) use delivery::with_causes;

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
    /// A batch install of hosted edge services was submitted as a task.
    pub const INSTALL_BATCH: Operation = Operation::from_static("edge_service.install_batch");
    /// A batch upgrade of hosted edge services was submitted as a task.
    pub const UPGRADE_BATCH: Operation = Operation::from_static("edge_service.upgrade_batch");
    /// A service was probed and its health recorded.
    pub const PROBE: Operation = Operation::from_static("edge_service.probe");
    /// Every service of a project was probed.
    pub const PROBE_ALL: Operation = Operation::from_static("edge_service.probe_all");
    /// A service's information was synced and stored.
    pub const SYNC_INFO: Operation = Operation::from_static("edge_service.sync_info");
    /// Every online service of a project was synced.
    pub const SYNC_ALL: Operation = Operation::from_static("edge_service.sync_all");
    /// A tag was created.
    pub const TAG_CREATE: Operation = Operation::from_static("tag.create");
    /// A tag was deleted.
    pub const TAG_DELETE: Operation = Operation::from_static("tag.delete");
    /// A configuration template version was saved.
    pub const TEMPLATE_SAVE: Operation = Operation::from_static("config_template.save");
    /// A configuration delivery task was created (its success record is the task engine's, of the
    /// same name).
    pub const DELIVER: Operation = Operation::from_static("config_delivery.create");
    /// A task was canceled.
    pub const TASK_CANCEL: Operation = Operation::from_static("task.cancel");
    /// A task was paused.
    pub const TASK_PAUSE: Operation = Operation::from_static("task.pause");
    /// A task was resumed.
    pub const TASK_RESUME: Operation = Operation::from_static("task.resume");
    /// An agent was managed into a project (or renamed there).
    pub const AGENT_MANAGE: Operation = Operation::from_static("agent.manage");
    /// An unmanaged agent was managed into a project with its claim code.
    pub const AGENT_CLAIM: Operation = Operation::from_static("agent.claim");
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
#[non_exhaustive]
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
    /// A service of `kind` managed in `mode`, without credentials or tags (a service in mode
    /// `agent` is made with [`through_agent`](Self::through_agent)).
    pub fn new(name: impl Into<String>, kind: EdgeKind, mode: ManagementMode, endpoint: impl Into<String>) -> Self {
        Self { name: name.into(), kind, mode, endpoint: endpoint.into(), credentials: Credentials::None, tags: Vec::new(), agent: None }
    }

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
#[non_exhaustive]
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

impl EdgeServiceChanges {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A new endpoint (managed services).
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// New credentials (managed services).
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// New tags, replacing the old ones.
    #[must_use]
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }
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
    /// A builder of a fleet over `store`, authorizing with `authz`, running deliveries on
    /// `engine`, reaching services through `drivers`.
    pub fn builder(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>, engine: TaskEngine, drivers: Drivers) -> FleetBuilder {
        FleetBuilder {
            store,
            authz,
            engine,
            drivers,
            clock: Arc::new(ecp_core::SystemClock),
            limits: EdgeLimits::default(),
            probe_concurrency: 64,
        }
    }

    /// A handle on one project's fleet for `principal`; the project is read from the store.
    ///
    /// # Errors
    /// `NotFound` for a project the principal cannot see, `Backend`.
    pub async fn project(&self, principal: &Principal, project: ProjectId) -> Result<ProjectFleet> {
        let scope = Scoped::project(self.inner.store.clone(), self.inner.authz.clone(), principal, project).await?;
        let project = scope.project_record().cloned().ok_or_else(|| ecp_core::Error::not_found("project", project))?;
        Ok(ProjectFleet { fleet: self.clone(), scope, project })
    }
}

/// Builds a [`Fleet`]; [`build`](Self::build) checks the settings.
#[must_use]
pub struct FleetBuilder {
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
    engine: TaskEngine,
    drivers: Drivers,
    clock: Arc<dyn Clock>,
    limits: EdgeLimits,
    probe_concurrency: usize,
}

impl std::fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBuilder").field("drivers", &self.drivers).field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// The clock (default: the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The limits (default: 100 tags per project, offline after 3 missed probes, no license).
    pub fn limits(mut self, limits: EdgeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How many services are probed or synced at once (default 64; 1..=10,000).
    pub fn probe_concurrency(mut self, n: usize) -> Self {
        self.probe_concurrency = n;
        self
    }

    /// The fleet; registers the configuration delivery task kind with the engine.
    ///
    /// # Errors
    /// `InvalidInput` for a probe concurrency outside 1..=10,000; `Conflict` if the engine already
    /// has a `config_delivery` kind.
    pub fn build(self) -> Result<Fleet> {
        if !(1..=10_000).contains(&self.probe_concurrency) {
            return Err(ecp_core::Error::invalid("probe_concurrency", "must be 1..=10000").into());
        }
        self.engine.register(Arc::new(DeliveryKind { store: self.store.clone(), drivers: self.drivers.clone() }))?;
        Ok(Fleet {
            inner: Arc::new(FleetInner {
                store: self.store,
                authz: self.authz,
                clock: self.clock,
                engine: self.engine,
                drivers: self.drivers,
                limits: self.limits,
                probe_concurrency: self.probe_concurrency,
            }),
        })
    }
}

/// One project's edge fleet, as one principal acts on it.
#[derive(Clone)]
pub struct ProjectFleet {
    fleet: Fleet,
    scope: Scoped,
    project: Project,
}

impl std::fmt::Debug for ProjectFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectFleet").field("project", &self.project.id()).field("principal", self.scope.principal()).finish()
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

    /// Who acts through this handle.
    pub fn principal(&self) -> &Principal {
        self.scope.principal()
    }

    /// The principal's handle on the project (its scope resolved from the store).
    #[cfg(feature = "docker")]
    pub(crate) fn scoped(&self) -> &Scoped {
        &self.scope
    }

    /// Checks a permission for a read (reads are not audited).
    fn authorize(&self, perm: Permission) -> Result<()> {
        Ok(self.scope.authorize(perm)?)
    }

    /// A service of this project (others are not found, whatever their id).
    pub(crate) async fn own(&self, id: EdgeServiceId) -> Result<EdgeService> {
        match self.store().get_edge_service(id).await {
            Ok(s) if s.project() == self.project.id() => Ok(s),
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
            Ok(a) if a.project == Some(self.project.id()) => Ok(a),
            Ok(_) => Err(ecp_core::Error::not_found("agent", id).into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every service matching a selector (paging through the store).
    async fn all(&self, selector: &EdgeSelector) -> Result<Vec<EdgeService>> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(1000);
        loop {
            let got = self.store().select_edge_services(self.project.id(), selector, &page).await?;
            out.extend(got.items);
            match got.next {
                Some(c) => page = PageRequest::after(1000, c),
                None => return Ok(out),
            }
        }
    }
}
