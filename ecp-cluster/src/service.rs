//! [`Clusters`]: the clusters of the installation, handed out per project as [`ProjectClusters`]
//! whose every call is authorized, audited (success or failure), and checked against the license.
//!
//! | call | permission | backend call |
//! |---|---|---|
//! | `list`, `get`, `refresh` | view cluster | `state` (refresh) |
//! | `start`, `stop` | operate cluster | `start`, `stop` |
//! | `create`, `register_existing`, `scale`, `resize`, `set_network`, `set_image`, `set_connection_limit`, `set_enabled`, `transfer`, `delete` | edit cluster (transfer: in both projects) | as named |
//!
//! The license is enforced by the store in the same transaction as the change: the number of
//! clusters, and the floating connection pool (every enabled cluster's connection limit is its share).

use std::collections::BTreeMap;
use std::sync::Arc;

use ecp_core::audit::{AuditEvent, Operation};
use ecp_core::cluster::{ClusterQuota, ClusterRecord, LicenseUsage};
use ecp_core::scoped::{Audit, Scoped};
use ecp_core::{Authorizer, Clock, ClusterId, Page, PageRequest, Permission, Principal, Project, ProjectId, ResourceKind, Store};

use crate::driver::{ClusterApi, ClusterDriver, ClusterOperation, ClusterRef};
use crate::error::{Error, Result};
use crate::model::{ApiKey, ClusterBackend, ClusterLimits, ClusterSpec, ClusterState, ClusterStatus, Listener, NetworkMode, Resources};

/// The audited operations on clusters.
pub mod ops {
    use ecp_core::audit::Operation;

    /// A hosted cluster was created (on its backend too: a creation the backend refused is a
    /// failure of this operation).
    pub const CREATE: Operation = Operation::from_static("cluster.create");
    /// The license's share was reserved for a hosted cluster being created: written with the
    /// cluster's row, before the backend is asked.
    pub const RESERVE: Operation = Operation::from_static("cluster.reserve");
    /// A cluster's REST API secret was read (the record never holds the secret).
    pub const READ_API: Operation = Operation::from_static("cluster.read_api");
    /// A running cluster was onboarded by its REST API.
    pub const REGISTER: Operation = Operation::from_static("cluster.register");
    /// A cluster's state was read from its backend and its status recorded.
    pub const REFRESH: Operation = Operation::from_static("cluster.refresh");
    /// A cluster was scaled horizontally.
    pub const SCALE: Operation = Operation::from_static("cluster.scale");
    /// A cluster was scaled vertically.
    pub const RESIZE: Operation = Operation::from_static("cluster.resize");
    /// A cluster's network mode or listeners changed.
    pub const SET_NETWORK: Operation = Operation::from_static("cluster.set_network");
    /// A cluster was upgraded or downgraded.
    pub const SET_IMAGE: Operation = Operation::from_static("cluster.set_image");
    /// A cluster was started.
    pub const START: Operation = Operation::from_static("cluster.start");
    /// A cluster was stopped.
    pub const STOP: Operation = Operation::from_static("cluster.stop");
    /// A cluster's connection limit changed.
    pub const SET_CONNECTION_LIMIT: Operation = Operation::from_static("cluster.set_connection_limit");
    /// A cluster was enabled or disabled.
    pub const SET_ENABLED: Operation = Operation::from_static("cluster.set_enabled");
    /// A cluster moved to another project.
    pub const TRANSFER: Operation = Operation::from_static("cluster.transfer");
    /// A cluster was deleted (deregistered, for onboarded clusters).
    pub const DELETE: Operation = Operation::from_static("cluster.delete");
}

/// A cluster as the store keeps it, with its spec parsed.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Its id.
    pub id: ClusterId,
    /// Its project.
    pub project: ProjectId,
    /// Its name.
    pub name: String,
    /// Its backend.
    pub backend: ClusterBackend,
    /// Its hosted spec (`None` for onboarded clusters). Without the API key's secret.
    pub spec: Option<ClusterSpec>,
    /// Its REST API base URL, if known.
    pub api_url: Option<String>,
    /// Its connection limit (its share of the license's pool).
    pub connection_limit: u64,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Its last known status.
    pub status: ClusterStatus,
    /// When it was registered.
    pub created_at: ecp_core::Timestamp,
    /// When it last changed.
    pub updated_at: ecp_core::Timestamp,
}

impl Cluster {
    fn from_record(r: &ClusterRecord) -> Result<Self> {
        let integrity = |reason: String| Error::Core(ecp_core::Error::Integrity { what: "stored cluster", reason });
        let backend = ClusterBackend::parse(&r.backend).ok_or_else(|| integrity(format!("backend {:?}", r.backend)))?;
        let spec = if r.spec.is_null() {
            None
        } else {
            Some(serde_json::from_value::<ClusterSpec>(r.spec.clone()).map_err(|e| integrity(format!("spec: {e}")))?)
        };
        let status =
            ClusterStatus::parse(&r.status, r.status_cause.as_deref()).ok_or_else(|| integrity(format!("status {:?}", r.status)))?;
        Ok(Self {
            id: r.id,
            project: r.project,
            name: r.name.clone(),
            backend,
            spec,
            api_url: r.api_url.clone(),
            connection_limit: r.connection_limit,
            enabled: r.enabled,
            status,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// What is needed to onboard a running EMQX 5 cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewExistingCluster {
    /// Its name in the project (1–200 characters).
    pub name: String,
    /// Its REST API and API key.
    pub api: ClusterApi,
    /// Its connection limit, drawn from the license's pool.
    pub connection_limit: u64,
}

impl NewExistingCluster {
    /// A cluster named `name` reached at `api`, with `connection_limit` connections.
    pub fn new(name: impl Into<String>, api: ClusterApi, connection_limit: u64) -> Self {
        Self { name: name.into(), api, connection_limit }
    }
}

/// What is needed to create a hosted cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewHostedCluster {
    /// Its name in the project (1–200 characters).
    pub name: String,
    /// `Kubernetes` or `Docker`.
    pub backend: ClusterBackend,
    /// What it should look like.
    pub spec: ClusterSpec,
    /// Its connection limit, drawn from the license's pool.
    pub connection_limit: u64,
}

impl NewHostedCluster {
    /// A cluster named `name` on `backend` as `spec` says, with `connection_limit` connections.
    pub fn new(name: impl Into<String>, backend: ClusterBackend, spec: ClusterSpec, connection_limit: u64) -> Self {
        Self { name: name.into(), backend, spec, connection_limit }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    drivers: BTreeMap<ClusterBackend, Arc<dyn ClusterDriver>>,
    quota: ClusterQuota,
    license: Option<ecp_core::License>,
    limits: ClusterLimits,
}

/// The installation's clusters: hands out [`ProjectClusters`].
#[derive(Clone)]
pub struct Clusters {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters")
            .field("backends", &self.inner.drivers.keys().collect::<Vec<_>>())
            .field("quota", &self.inner.quota)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// Builds [`Clusters`].
#[derive(Debug)]
pub struct ClustersBuilder {
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    drivers: BTreeMap<ClusterBackend, Arc<dyn ClusterDriver>>,
    quota: ClusterQuota,
    license: Option<ecp_core::License>,
    limits: ClusterLimits,
}

impl ClustersBuilder {
    /// Uses `driver` for its backend.
    #[must_use]
    pub fn driver(mut self, driver: Arc<dyn ClusterDriver>) -> Self {
        self.drivers.insert(driver.backend(), driver);
        self
    }

    /// Enforces a verified license (default: none, unlimited): its cluster count and connection
    /// pool, and its validity period: once it has expired, no cluster can be registered or created
    /// and no connection limit raised or share drawn; reading, refreshing, stopping, deregistering
    /// go on.
    #[must_use]
    pub fn license(mut self, license: &ecp_core::License) -> Self {
        self.quota = ClusterQuota::of(license);
        self.license = Some(license.clone());
        self
    }

    /// The replica limits of hosted clusters (default: the product's 1..=7).
    #[must_use]
    pub fn limits(mut self, limits: ClusterLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The service.
    pub fn build(self) -> Clusters {
        Clusters {
            inner: Arc::new(Inner {
                store: self.store,
                authz: self.authz,
                clock: self.clock,
                drivers: self.drivers,
                quota: self.quota,
                license: self.license,
                limits: self.limits,
            }),
        }
    }
}

impl Clusters {
    /// A builder over `store`, checking permissions with `authz`.
    pub fn builder(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>) -> ClustersBuilder {
        ClustersBuilder {
            store,
            authz,
            clock: Arc::new(ecp_core::SystemClock),
            drivers: BTreeMap::new(),
            quota: ClusterQuota::unlimited(),
            license: None,
            limits: ClusterLimits::default(),
        }
    }

    /// What the installation uses of its license: clusters, connections and edge services of every
    /// tenant, so it needs `view cluster` at system scope (a system administrator).
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn license_usage(&self, principal: &Principal) -> Result<LicenseUsage> {
        let (perm, scope) = (Permission::view(ResourceKind::Cluster), ecp_core::Scope::System);
        self.inner.authz.check(principal, perm, &scope).map_err(|d| d.into_error(principal, perm, &scope))?;
        Ok(self.inner.store.license_usage().await?)
    }

    /// The quota enforced.
    pub fn quota(&self) -> ClusterQuota {
        self.inner.quota
    }

    /// A handle on one project's clusters for `principal`.
    ///
    /// # Errors
    /// `NotFound` for a project the principal cannot see, `Backend`.
    pub async fn project(&self, principal: &Principal, project: ProjectId) -> Result<ProjectClusters> {
        let scope = self.scoped(principal, project).await?;
        let project = scope.project_record().cloned().ok_or_else(|| ecp_core::Error::not_found("project", project))?;
        Ok(ProjectClusters { clusters: self.clone(), scope, project })
    }

    /// `principal` in `project`, as the store has it (`NotFound` where it holds nothing).
    async fn scoped(&self, principal: &Principal, project: ProjectId) -> Result<Scoped> {
        Ok(Scoped::project(self.inner.store.clone(), self.inner.authz.clone(), principal, project).await?)
    }

    fn driver(&self, backend: ClusterBackend) -> Result<&Arc<dyn ClusterDriver>> {
        self.inner.drivers.get(&backend).ok_or_else(|| Error::unsupported("manage", backend.as_str()))
    }
}

/// One project's clusters, as one principal acts on them. Every change goes through
/// [`Scoped::audited`]: authorized, run, and audited, success or failure.
#[derive(Clone)]
pub struct ProjectClusters {
    clusters: Clusters,
    scope: Scoped,
    project: Project,
}

impl std::fmt::Debug for ProjectClusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectClusters").field("project", &self.project.id()).field("principal", self.scope.principal()).finish()
    }
}

impl ProjectClusters {
    fn store(&self) -> &Arc<dyn Store> {
        &self.clusters.inner.store
    }

    fn now(&self) -> ecp_core::Timestamp {
        self.clusters.inner.clock.now()
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// Checks a permission for a read (reads are not audited).
    fn authorize(&self, perm: Permission) -> Result<()> {
        Ok(self.scope.authorize(perm)?)
    }

    fn event(&self, op: Operation) -> AuditEvent {
        self.scope.event(ResourceKind::Cluster, op)
    }

    /// Checks that the license (if any) is valid now: what draws on it needs a valid license.
    fn licensed(&self) -> Result<()> {
        match &self.clusters.inner.license {
            Some(l) => Ok(l.check_time(self.now())?),
            None => Ok(()),
        }
    }

    /// A change to cluster `id` of this project: runs `operation` on its record through
    /// [`Scoped::audited_event`] (authorized with `perm`, audited either way), with the cluster
    /// named in the record.
    async fn changing<T>(
        &self,
        event: AuditEvent,
        perm: Permission,
        id: ClusterId,
        operation: impl AsyncFnOnce(&mut Audit, ClusterRecord) -> Result<T>,
    ) -> Result<T> {
        self.scope
            .audited_event(perm, event, async |audit| {
                let record = self.own(id).await?;
                audit.resource(id, Some(&record.name));
                operation(audit, record).await
            })
            .await
    }

    /// A cluster of this project (others are not found, whatever their id).
    async fn own(&self, id: ClusterId) -> Result<ClusterRecord> {
        match self.store().get_cluster(id).await {
            Ok(c) if c.project == self.project.id() => Ok(c),
            Ok(_) => Err(ecp_core::Error::not_found("cluster", id).into()),
            Err(e) => Err(e.into()),
        }
    }

    /// The driver's view of a stored cluster: its id, project, name and REST API.
    fn reference(record: &ClusterRecord) -> Result<ClusterRef> {
        let mut r = ClusterRef::new(record.id, record.project, &record.name);
        if let (Some(url), Some(key), Some(secret)) = (&record.api_url, &record.api_key, &record.api_secret) {
            r = r.with_api(ClusterApi { base_url: url.clone(), key: ApiKey::new(key.clone(), secret.clone())? });
        }
        Ok(r)
    }

    /// The clusters of this project. Needs `view cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput` for a bad page, `Backend`.
    pub async fn list(&self, page: &PageRequest) -> Result<Page<Cluster>> {
        self.authorize(Permission::view(ResourceKind::Cluster))?;
        let page = self.store().list_clusters(self.project.id(), page).await?;
        let items = page.items.iter().map(Cluster::from_record).collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next: page.next })
    }

    /// One cluster. Needs `view cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn get(&self, id: ClusterId) -> Result<Cluster> {
        self.authorize(Permission::view(ResourceKind::Cluster))?;
        Cluster::from_record(&self.own(id).await?)
    }

    /// Asks the backend for the cluster's state and records its status. Needs `view cluster`
    /// (it changes nothing a user configured); it writes the status, so each call is audited,
    /// failures too.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`; the backend's error (the status is then recorded as `error`
    /// with the error as its cause, and the error returned).
    pub async fn refresh(&self, id: ClusterId) -> Result<ClusterState> {
        let event = self.event(ops::REFRESH).resource(id, None);
        self.scope
            .audited_event(Permission::view(ResourceKind::Cluster), event, async |audit| {
                let record = self.own(id).await?;
                audit.event_mut().resource_name = Some(record.name.clone());
                let backend = Cluster::from_record(&record)?.backend;
                let driver = self.clusters.driver(backend)?;
                match driver.state(&Self::reference(&record)?).await {
                    Ok(state) => {
                        self.store().record_cluster_status(id, state.status.as_str(), state.status.cause(), self.now()).await?;
                        audit.details(serde_json::json!({ "status": state.status.as_str() }));
                        Ok(state)
                    }
                    Err(e) => {
                        let cause = cause_of(&e);
                        self.store().record_cluster_status(id, "error", Some(&cause), self.now()).await?;
                        Err(e)
                    }
                }
            })
            .await
    }

    /// Onboards a running EMQX 5 cluster: checks its REST API with the key (the `existing`
    /// backend's `state`), then registers it with its connection limit drawn from the license's
    /// pool. Needs `edit cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`; the check's error (unreachable, key refused, not EMQX 5); `Conflict` for
    /// a taken name; `LimitExceeded` for the license; `Backend`.
    pub async fn register_existing(&self, new: NewExistingCluster) -> Result<Cluster> {
        let mut event = self.event(ops::REGISTER);
        event.resource_name = Some(new.name.chars().take(200).collect());
        self.scope
            .audited_event(Permission::edit(ResourceKind::Cluster), event, async |audit| {
                ecp_core::tenancy::validate_resource_name(&new.name)?;
                self.licensed()?;
                let id = ClusterId::new();
                audit.resource(id, Some(&new.name)).details(serde_json::json!({
                    "backend": "existing", "api_url": new.api.base_url, "api_key": new.api.key.key, "connection_limit": new.connection_limit,
                }));
                let driver = self.clusters.driver(ClusterBackend::Existing)?.clone();
                let target = ClusterRef::new(id, self.project.id(), &new.name).with_api(new.api.clone());
                let state = driver.state(&target).await?;
                // The cluster is told its share before it counts as registered (the pool is checked
                // first, so it is never told more than the license gives; the store checks again).
                let usage = self.store().license_usage().await?;
                let quota = self.clusters.inner.quota;
                if usage.connections.saturating_add(new.connection_limit) > quota.max_connections {
                    return Err(ecp_core::Error::LimitExceeded { limit: "licensed connections", max: quota.max_connections }.into());
                }
                match driver.set_connection_limit(&target, new.connection_limit).await {
                    Ok(()) => {}
                    // An edition without a dynamic limit keeps its own (its license's).
                    Err(e) if e.is_beyond_the_cluster() => {}
                    Err(e) => return Err(e),
                }
                let mut record =
                    ClusterRecord::new(id, self.project.id(), &new.name, "existing", new.connection_limit, state.status.as_str(), self.now())
                        .with_api(&new.api.base_url, &new.api.key.key, new.api.key.secret.clone());
                record.status_cause = state.status.cause().map(str::to_owned);
                self.store().create_cluster(&record, &self.clusters.inner.quota, audit.in_transaction()).await?;
                Cluster::from_record(&record)
            })
            .await
    }

    /// Creates a hosted cluster: registers it (status `creating`, its connection limit drawn from
    /// the license's pool), then asks the backend to create it. If the backend fails, the cluster
    /// stays registered with status `error` and the cause, and the error is returned (and audited):
    /// it can be retried by deleting it. Needs `edit cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput` (spec out of limits), `Conflict`, `LimitExceeded`,
    /// `Unsupported` (no driver for the backend, or `existing`), the backend's error.
    pub async fn create(&self, new: NewHostedCluster) -> Result<Cluster> {
        let mut event = self.event(ops::CREATE);
        event.resource_name = Some(new.name.chars().take(200).collect());
        self.scope
            .audited_event(Permission::edit(ResourceKind::Cluster), event, async |audit| {
                if !new.backend.is_hosted() {
                    return Err(Error::invalid("backend", "existing clusters are registered, not created"));
                }
                new.spec.validate(&self.clusters.inner.limits)?;
                self.licensed()?;
                let id = ClusterId::new();
                let spec_json = serde_json::to_value(&new.spec).map_err(|e| Error::invalid("spec", e.to_string()))?;
                audit.resource(id, Some(&new.name)).details(serde_json::json!({
                    "backend": new.backend, "spec": spec_json, "connection_limit": new.connection_limit,
                }));
                let driver = self.clusters.driver(new.backend)?.clone();
                let mut record = ClusterRecord::new(
                    id,
                    self.project.id(),
                    &new.name,
                    new.backend.as_str(),
                    new.connection_limit,
                    "creating",
                    self.now(),
                )
                .with_spec(spec_json);
                if let Some(key) = &new.spec.api_key {
                    record.api_key = Some(key.key.clone());
                    record.api_secret = Some(key.secret.clone());
                }
                // The row (and its share of the pool) is written with a record of its own; the
                // creation's outcome is recorded once the backend has answered, so a refused
                // creation is a failure, never a success.
                let reserve = self.event(ops::RESERVE).resource(id, Some(&new.name)).details(serde_json::json!({
                    "connection_limit": new.connection_limit,
                }));
                self.store().create_cluster(&record, &self.clusters.inner.quota, &reserve).await?;
                if let Err(e) = driver.create(&ClusterRef::new(id, self.project.id(), &new.name), &new.spec).await {
                    let cause = cause_of(&e);
                    self.store().record_cluster_status(id, "error", Some(&cause), self.now()).await?;
                    return Err(e);
                }
                Cluster::from_record(&self.store().get_cluster(id).await?)
            })
            .await
    }

    /// Runs one backend change on a hosted cluster with its audit record, and saves the new spec.
    async fn change(
        &self,
        id: ClusterId,
        op: Operation,
        what: ClusterOperation,
        details: serde_json::Value,
        apply: impl FnOnce(&mut ClusterSpec) -> Result<()>,
        call: impl for<'a> FnOnce(&'a dyn ClusterDriver, &'a ClusterRef, &'a ClusterSpec) -> futures_like::BoxFuture<'a, Result<()>>,
    ) -> Result<Cluster> {
        let event = self.event(op).resource(id, None).details(details);
        // Starting and stopping is operating a cluster; every other change edits it.
        let perm = match what {
            ClusterOperation::Start | ClusterOperation::Stop => Permission::operate(ResourceKind::Cluster),
            _ => Permission::edit(ResourceKind::Cluster),
        };
        self.changing(event, perm, id, async |audit, record| {
            let cluster = Cluster::from_record(&record)?;
            let Some(mut spec) = cluster.spec.clone() else {
                return Err(Error::unsupported(what.as_str(), cluster.backend.as_str()));
            };
            apply(&mut spec)?;
            spec.validate(&self.clusters.inner.limits)?;
            let driver = self.clusters.driver(cluster.backend)?.clone();
            let target = Self::reference(&record)?;
            call(driver.as_ref(), &target, &spec).await?;
            let json = serde_json::to_value(&spec).map_err(|e| Error::invalid("spec", e.to_string()))?;
            let r = self.store().update_cluster_spec(id, &json, self.now(), audit.in_transaction()).await?;
            Cluster::from_record(&r)
        })
        .await
    }

    /// Sets the core and replicant node counts (within the configured limits). Needs `edit cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `InvalidInput`, `Unsupported` (onboarded clusters), the
    /// backend's error.
    pub async fn scale(&self, id: ClusterId, core: u32, replicant: u32) -> Result<Cluster> {
        let details = serde_json::json!({"core_replicas": core, "replicant_replicas": replicant});
        self.change(
            id,
            ops::SCALE,
            ClusterOperation::Scale,
            details,
            |s| {
                s.core_replicas = core;
                s.replicant_replicas = replicant;
                Ok(())
            },
            |d, c, _| Box::pin(d.scale(c, core, replicant)),
        )
        .await
    }

    /// Sets each node's CPU and memory. Needs `edit cluster`.
    ///
    /// # Errors
    /// As [`scale`](Self::scale).
    pub async fn resize(&self, id: ClusterId, resources: Resources) -> Result<Cluster> {
        let details = serde_json::json!({"cpu_millis": resources.cpu_millis, "memory_mib": resources.memory_mib});
        self.change(
            id,
            ops::RESIZE,
            ClusterOperation::Resize,
            details,
            |s| {
                s.resources = resources;
                Ok(())
            },
            |d, c, _| Box::pin(d.resize(c, resources)),
        )
        .await
    }

    /// Sets how the listeners and dashboard are exposed, and the listeners. Needs `edit cluster`.
    ///
    /// # Errors
    /// As [`scale`](Self::scale).
    pub async fn set_network(&self, id: ClusterId, mode: NetworkMode, listeners: Vec<Listener>) -> Result<Cluster> {
        let details = serde_json::json!({"network": mode, "listeners": listeners});
        let for_spec = listeners.clone();
        self.change(
            id,
            ops::SET_NETWORK,
            ClusterOperation::SetNetwork,
            details,
            move |s| {
                s.network = mode;
                s.listeners = for_spec;
                Ok(())
            },
            |d, c, s| Box::pin(d.set_network(c, mode, &s.listeners)),
        )
        .await
    }

    /// Upgrades or downgrades the cluster to `image`. Needs `edit cluster`.
    ///
    /// # Errors
    /// As [`scale`](Self::scale).
    pub async fn set_image(&self, id: ClusterId, image: &str) -> Result<Cluster> {
        let details = serde_json::json!({"image": image});
        let owned = image.to_owned();
        self.change(
            id,
            ops::SET_IMAGE,
            ClusterOperation::SetImage,
            details,
            move |s| {
                crate::model::validate_image(&owned)?;
                s.image = owned;
                Ok(())
            },
            |d, c, s| Box::pin(d.set_image(c, &s.image)),
        )
        .await
    }

    /// Stops the cluster. Needs `operate cluster`.
    ///
    /// # Errors
    /// As [`scale`](Self::scale).
    pub async fn stop(&self, id: ClusterId) -> Result<Cluster> {
        let c =
            self.change(id, ops::STOP, ClusterOperation::Stop, serde_json::json!({}), |_| Ok(()), |d, c, _| Box::pin(d.stop(c))).await?;
        self.store().record_cluster_status(id, "stopping", None, self.now()).await?;
        Ok(Cluster { status: ClusterStatus::Stopping, ..c })
    }

    /// Starts a stopped cluster. Needs `operate cluster`.
    ///
    /// # Errors
    /// As [`scale`](Self::scale).
    pub async fn start(&self, id: ClusterId) -> Result<Cluster> {
        let c =
            self.change(id, ops::START, ClusterOperation::Start, serde_json::json!({}), |_| Ok(()), |d, c, _| Box::pin(d.start(c))).await?;
        self.store().record_cluster_status(id, "updating", None, self.now()).await?;
        Ok(Cluster { status: ClusterStatus::Updating, ..c })
    }

    /// Sets the cluster's connection limit within the license's pool ("Update Connect Limit") and
    /// pushes it to the cluster where the backend can (EMQX's dynamic license setting of onboarded
    /// clusters; elsewhere the limit is the platform's accounting only). On `LimitExceeded`, or when
    /// the cluster refuses the setting, the old limit stays. Needs `edit cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `LimitExceeded`, the backend's error, `Backend`.
    pub async fn set_connection_limit(&self, id: ClusterId, limit: u64) -> Result<Cluster> {
        let event = self.event(ops::SET_CONNECTION_LIMIT).resource(id, None).details(serde_json::json!({"connection_limit": limit}));
        self.changing(event, Permission::edit(ResourceKind::Cluster), id, async |audit, record| {
            if limit > record.connection_limit {
                self.licensed()?;
            }
            let quota = self.clusters.inner.quota;
            // The pool first (so a cluster is never told a limit the license cannot give it) ...
            if record.enabled {
                let usage = self.store().license_usage().await?;
                let others = usage.connections.saturating_sub(record.connection_limit);
                if others.saturating_add(limit) > quota.max_connections {
                    return Err(ecp_core::Error::LimitExceeded { limit: "licensed connections", max: quota.max_connections }.into());
                }
            }
            // ... then the cluster, then the store (which checks the pool again, in its transaction).
            let backend = Cluster::from_record(&record)?.backend;
            let driver = self.clusters.driver(backend)?;
            let target = Self::reference(&record)?;
            let pushed = match driver.set_connection_limit(&target, limit).await {
                Ok(()) => true,
                Err(e) if e.is_unsupported() => false,
                Err(e) => return Err(e),
            };
            match self.store().set_connection_limit(id, limit, &quota, self.now(), audit.in_transaction()).await {
                Ok(r) => Cluster::from_record(&r),
                Err(e) => {
                    if pushed {
                        // Another replica took the connections meanwhile: give the cluster its old limit back.
                        let _ = driver.set_connection_limit(&target, record.connection_limit).await;
                    }
                    Err(e.into())
                }
            }
        })
        .await
    }

    /// Enables or disables the cluster: disabling returns its share to the pool, enabling draws it
    /// again. Needs `edit cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `LimitExceeded` (enabling), `Backend`.
    pub async fn set_enabled(&self, id: ClusterId, enabled: bool) -> Result<Cluster> {
        let event = self.event(ops::SET_ENABLED).resource(id, None).details(serde_json::json!({"enabled": enabled}));
        self.changing(event, Permission::edit(ResourceKind::Cluster), id, async |audit, record| {
            let backend = Cluster::from_record(&record)?.backend;
            let driver = self.clusters.driver(backend)?.clone();
            let target = Self::reference(&record)?;
            let quota = self.clusters.inner.quota;
            if enabled {
                self.licensed()?;
                // The store takes the share back from the pool (checked in its transaction), then
                // the cluster gets its limit again; a cluster that refuses stays disabled.
                let r = self.store().set_cluster_enabled(id, true, &quota, self.now(), audit.in_transaction()).await?;
                match driver.set_connection_limit(&target, record.connection_limit).await {
                    Ok(()) => {}
                    Err(e) if e.is_beyond_the_cluster() => {}
                    Err(e) => {
                        let undo = self.event(ops::SET_ENABLED).resource(id, Some(&record.name)).details(serde_json::json!({
                            "enabled": false, "cause": "the cluster refused its limit",
                        }));
                        let _ = self.store().set_cluster_enabled(id, false, &quota, self.now(), &undo).await;
                        return Err(e);
                    }
                }
                return Cluster::from_record(&r);
            }
            // A disabled cluster's share returns to the pool only once the cluster itself is held to
            // no connections: a backend that cannot lower the limit keeps the share (stop or delete
            // the cluster instead).
            match driver.set_connection_limit(&target, 0).await {
                Ok(()) => {}
                Err(e) if e.is_beyond_the_cluster() => {
                    return Err(Error::unsupported(
                        "disabling (the cluster's limit cannot be lowered: stop or delete it)",
                        backend.as_str(),
                    ));
                }
                Err(e) => return Err(e),
            }
            let r = self.store().set_cluster_enabled(id, false, &quota, self.now(), audit.in_transaction()).await?;
            Cluster::from_record(&r)
        })
        .await
    }

    /// Moves the cluster to another project (immediate, as in the product). Needs `edit cluster`
    /// here and in the target project; the target must be visible to the principal.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound` (cluster, or a project the principal cannot see), `Conflict`
    /// for a taken name there, `Backend`.
    pub async fn transfer(&self, id: ClusterId, to: ProjectId) -> Result<Cluster> {
        let event = self.event(ops::TRANSFER).resource(id, None).details(serde_json::json!({"to_project": to}));
        self.changing(event, Permission::edit(ResourceKind::Cluster), id, async |audit, _| {
            let target = self.clusters.scoped(self.scope.principal(), to).await?;
            target.authorize(Permission::edit(ResourceKind::Cluster))?;
            let name = target.project_record().map(|p| p.name()).unwrap_or_default();
            audit.details(serde_json::json!({"to_project": to, "to_project_name": name}));
            self.store().move_resource(*id.as_uuid(), to, audit.in_transaction()).await?;
            Cluster::from_record(&self.store().get_cluster(id).await?)
        })
        .await
    }

    /// Deletes the cluster: a hosted one is deleted by its backend first; an onboarded one is only
    /// deregistered. Its share returns to the pool. Needs `edit cluster`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, the backend's error (the cluster then stays registered).
    pub async fn delete(&self, id: ClusterId) -> Result<()> {
        let event = self.event(ops::DELETE).resource(id, None);
        self.changing(event, Permission::edit(ResourceKind::Cluster), id, async |audit, record| {
            audit.details(serde_json::json!({"backend": record.backend}));
            let backend = Cluster::from_record(&record)?.backend;
            if backend.is_hosted() {
                let driver = self.clusters.driver(backend)?.clone();
                driver.delete(&Self::reference(&record)?).await?;
            }
            Ok(self.store().delete_cluster(id, audit.in_transaction()).await?)
        })
        .await
    }

    /// The REST API secret of a cluster, for host code that calls the cluster itself. Needs `edit
    /// cluster`; every read is audited as `cluster.read_api` (who read whose secret, never the
    /// secret), refusals too.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn api(&self, id: ClusterId) -> Result<Option<ClusterApi>> {
        let event = self.event(ops::READ_API).resource(id, None);
        self.changing(event, Permission::edit(ResourceKind::Cluster), id, async |_, record| Ok(Self::reference(&record)?.api)).await
    }
}

/// An error and its sources, as one line: the cause recorded with an `error` status.
fn cause_of(e: &Error) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        source = s.source();
    }
    cause
}

/// The boxed future of a backend call (no `futures` dependency for one type).
mod futures_like {
    use std::future::Future;
    use std::pin::Pin;

    /// A boxed, sendable future.
    pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
}
