//! The cluster service: authorization, audit, license (cluster count and connection pool),
//! transfer, the project guard, and what reaches the backend. The backend here is a recording
//! driver (the real ones have their own suites: Operator CR, Docker engine, EMQX REST).

use std::sync::Arc;

use async_trait::async_trait;
use ecp_cluster::{
    ApiKey, ClusterApi, ClusterBackend, ClusterDriver, ClusterRef, ClusterSpec, ClusterState, ClusterStatus, Clusters, Listener,
    ListenerProtocol, NetworkMode, NewExistingCluster, NewHostedCluster, ReplicaCount, Resources,
};
use ecp_core::access::{Authorizer, Denial, Permission, Principal, ResourceKind, Scope, Visibility};
use ecp_core::prelude::*;
use ecp_core::{
    AuditEvent, AuditQuery, License, LicenseKind, ManualClock, Operation, Organization, PageRequest, Project, SqlStore, TenancyLimits,
    Timestamp, UserId,
};
use parking_lot::Mutex;
use secrecy::SecretString;

const SENTINEL: &str = "cluster-api-secret-sentinel";

/// Allows the system principal everything, `viewer` only viewing, and nobody else anything.
#[derive(Debug)]
pub(crate) struct TestAuthz;

impl Authorizer for TestAuthz {
    fn check(&self, p: &Principal, perm: Permission, _scope: &Scope) -> Result<(), Denial> {
        if p.is_system() || (p.name() == "viewer" && perm == Permission::view(perm.kind)) { Ok(()) } else { Err(Denial::NotGranted) }
    }
    fn has_access(&self, p: &Principal, _scope: &Scope) -> bool {
        p.is_system() || p.name() == "viewer"
    }
    fn visibility(&self, _p: &Principal, _perm: Permission) -> Visibility {
        Visibility::default()
    }
}

/// Records every call; answers `state` with `status`, fails calls while `fail` is set.
#[derive(Debug)]
pub(crate) struct Recording {
    backend: ClusterBackend,
    calls: Mutex<Vec<String>>,
    status: Mutex<ClusterStatus>,
    fail: Mutex<bool>,
}

impl Recording {
    fn new(backend: ClusterBackend) -> Arc<Self> {
        Arc::new(Self { backend, calls: Mutex::new(Vec::new()), status: Mutex::new(ClusterStatus::Running), fail: Mutex::new(false) })
    }
    fn record(&self, call: String) -> ecp_cluster::Result<()> {
        if *self.fail.lock() {
            return Err(ecp_cluster::Error::Backend { backend: "test", operation: "call", status: Some(500), source: "refused".into() });
        }
        self.calls.lock().push(call);
        Ok(())
    }
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().clone()
    }
}

#[async_trait]
impl ClusterDriver for Recording {
    fn backend(&self) -> ClusterBackend {
        self.backend
    }
    async fn state(&self, c: &ClusterRef) -> ecp_cluster::Result<ClusterState> {
        self.record(format!("state {} api={}", c.name, c.api.as_ref().map(|a| a.base_url.as_str()).unwrap_or("-")))?;
        Ok(ClusterState {
            status: self.status.lock().clone(),
            core: ReplicaCount { desired: 1, ready: 1 },
            replicant: ReplicaCount::default(),
            image: None,
            nodes: vec![],
        })
    }
    async fn create(&self, c: &ClusterRef, spec: &ClusterSpec) -> ecp_cluster::Result<()> {
        self.record(format!("create {} {} {}x{}", c.resource_name(), spec.image, spec.core_replicas, spec.replicant_replicas))
    }
    async fn scale(&self, c: &ClusterRef, core: u32, replicant: u32) -> ecp_cluster::Result<()> {
        self.record(format!("scale {} {core} {replicant}", c.name))
    }
    async fn resize(&self, c: &ClusterRef, r: Resources) -> ecp_cluster::Result<()> {
        self.record(format!("resize {} {:?} {:?}", c.name, r.cpu_millis, r.memory_mib))
    }
    async fn set_network(&self, c: &ClusterRef, mode: NetworkMode, l: &[Listener]) -> ecp_cluster::Result<()> {
        self.record(format!("network {} {} {}", c.name, mode.as_str(), l.len()))
    }
    async fn set_image(&self, c: &ClusterRef, image: &str) -> ecp_cluster::Result<()> {
        self.record(format!("image {} {image}", c.name))
    }
    async fn stop(&self, c: &ClusterRef) -> ecp_cluster::Result<()> {
        self.record(format!("stop {}", c.name))
    }
    async fn start(&self, c: &ClusterRef) -> ecp_cluster::Result<()> {
        self.record(format!("start {}", c.name))
    }
    async fn set_connection_limit(&self, c: &ClusterRef, limit: u64) -> ecp_cluster::Result<()> {
        if self.backend != ClusterBackend::Existing {
            return Err(ecp_cluster::Error::unsupported("set_connection_limit", "kubernetes"));
        }
        self.record(format!("limit {} {limit}", c.name))
    }
    async fn delete(&self, c: &ClusterRef) -> ecp_cluster::Result<()> {
        self.record(format!("delete {}", c.name))
    }
}

pub(crate) struct Rig {
    pub(crate) clock: ManualClock,
    pub(crate) db: Arc<SqlStore>,
    pub(crate) clusters: Clusters,
    pub(crate) hosted: Arc<Recording>,
    pub(crate) existing: Arc<Recording>,
    pub(crate) p1: Project,
    pub(crate) p2: Project,
}

fn license(max_clusters: u64, max_connections: u64) -> License {
    License {
        id: "lic-1".into(),
        customer: "Acme".into(),
        kind: LicenseKind::Official,
        starts_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        expires_at: "2028-01-01T00:00:00Z".parse().unwrap(),
        max_connections,
        max_clusters,
        max_edge_services: 10,
        max_tag_points: 5000,
    }
}

pub(crate) async fn rig(max_clusters: u64, max_connections: u64) -> Rig {
    let clock = ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap());
    let db = Arc::new(SqlStore::memory().await.unwrap());
    let ev = |op: &str| AuditEvent::new(&Principal::system("t"), ResourceKind::Organization, Operation::new(op).unwrap());
    let org = Organization::new("acme", clock.now()).unwrap();
    db.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let p1 = Project::new(org.id, "plant", clock.now()).unwrap();
    db.create_project(&p1, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    let p2 = Project::new(org.id, "lab", clock.now()).unwrap();
    db.create_project(&p2, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    let hosted = Recording::new(ClusterBackend::Kubernetes);
    let existing = Recording::new(ClusterBackend::Existing);
    let clusters = Clusters::builder(db.clone(), Arc::new(TestAuthz))
        .driver(hosted.clone())
        .driver(existing.clone())
        .license(&license(max_clusters, max_connections))
        .clock(Arc::new(clock.clone()))
        .build();
    Rig { clock, db, clusters, hosted, existing, p1, p2 }
}

pub(crate) fn api() -> ClusterApi {
    ClusterApi { base_url: "http://10.0.0.1:18083".into(), key: ApiKey::new("ecp", SecretString::from(SENTINEL)).unwrap() }
}

async fn audit_of(db: &SqlStore, op: &str) -> Vec<ecp_core::AuditRecord> {
    use ecp_core::AuditStore;
    let q = AuditQuery { operation: Some(op.to_owned()), ..AuditQuery::default() };
    let scope = ecp_core::audit::AuditScope { all: true, ..Default::default() };
    db.query_audit(&q, &scope, &PageRequest::first(100)).await.unwrap().items
}

#[tokio::test]
async fn onboarding_checks_the_cluster_and_draws_from_the_pool() {
    let r = rig(3, 1000).await;
    let admin = r.clusters.project(&Principal::system("ops"), r.p1.id()).await.unwrap();
    let c = admin.register_existing(NewExistingCluster::new("prod", api(), 600)).await.unwrap();
    assert_eq!((c.backend, c.connection_limit, c.status.clone()), (ClusterBackend::Existing, 600, ClusterStatus::Running));
    // Registration tells the cluster its share of the pool.
    assert_eq!(r.existing.calls(), vec!["state prod api=http://10.0.0.1:18083", "limit prod 600"]);
    // The pool: 600 + 500 > 1000, refused and audited as a failure; nothing registered.
    let err = admin.register_existing(NewExistingCluster::new("second", api(), 500)).await.unwrap_err();
    assert!(matches!(err, ecp_cluster::Error::Core(ecp_core::Error::LimitExceeded { .. })), "{err}");
    assert_eq!(admin.list(&PageRequest::first(10)).await.unwrap().items.len(), 1);
    // A cluster that does not answer is not registered.
    *r.existing.fail.lock() = true;
    assert!(admin.register_existing(NewExistingCluster::new("down", api(), 10)).await.is_err());
    *r.existing.fail.lock() = false;
    let records = audit_of(&r.db, "cluster.register").await;
    assert_eq!(records.len(), 3);
    assert_eq!(records.iter().filter(|a| a.event.outcome.is_success()).count(), 1);
    for a in &records {
        assert!(!format!("{a:?}").contains(SENTINEL), "the secret reached the audit trail");
    }
    // The secret is kept for the backend, never shown.
    assert!(!format!("{c:?}").contains(SENTINEL));
    assert_eq!(admin.api(c.id).await.unwrap().unwrap(), api());
    // Reading the secret is audited, and the record does not hold it.
    let reads = audit_of(&r.db, "cluster.read_api").await;
    assert_eq!(reads.len(), 1);
    assert!(reads[0].event.outcome.is_success());
    assert!(!format!("{:?}", reads[0].event).contains(SENTINEL));
    // Hosted operations are not for onboarded clusters.
    assert!(admin.scale(c.id, 2, 0).await.unwrap_err().is_unsupported());
    // Refresh records what the backend says, including an error with its cause.
    *r.existing.status.lock() = ClusterStatus::Error("node emqx@10.0.0.2 stopped".into());
    admin.refresh(c.id).await.unwrap();
    assert_eq!(admin.get(c.id).await.unwrap().status, ClusterStatus::Error("node emqx@10.0.0.2 stopped".into()));
    // Limit changes within the pool, disable returns the share, delete only deregisters.
    assert!(admin.set_connection_limit(c.id, 1001).await.is_err());
    admin.set_connection_limit(c.id, 1000).await.unwrap();
    assert!(r.existing.calls().contains(&"limit prod 1000".to_owned()), "pushed to the cluster");
    assert!(!r.existing.calls().iter().any(|c| c == "limit prod 1001"), "refused by the pool before reaching the cluster");
    // A cluster that refuses the setting keeps the old limit.
    *r.existing.fail.lock() = true;
    assert!(admin.set_connection_limit(c.id, 10).await.is_err());
    *r.existing.fail.lock() = false;
    assert_eq!(admin.get(c.id).await.unwrap().connection_limit, 1000);
    assert_eq!(r.clusters.license_usage(&Principal::system("ops")).await.unwrap().connections, 1000);
    // Disabling returns the share only once the cluster is held to no connections: a cluster that
    // refuses keeps it, and stays enabled.
    *r.existing.fail.lock() = true;
    assert!(admin.set_enabled(c.id, false).await.is_err());
    *r.existing.fail.lock() = false;
    assert_eq!(r.clusters.license_usage(&Principal::system("ops")).await.unwrap().connections, 1000);
    admin.set_enabled(c.id, false).await.unwrap();
    assert!(r.existing.calls().contains(&"limit prod 0".to_owned()), "the cluster was held to no connections");
    assert_eq!(r.clusters.license_usage(&Principal::system("ops")).await.unwrap().connections, 0);
    admin.delete(c.id).await.unwrap();
    assert!(!r.existing.calls().iter().any(|c| c.starts_with("delete")));
    assert_eq!(r.clusters.license_usage(&Principal::system("ops")).await.unwrap().clusters, 0);
    // The installation's usage is every tenant's: not for a project's viewer.
    let e = r.clusters.license_usage(&Principal::user(ecp_core::UserId::new(), "nobody")).await.unwrap_err();
    assert!(matches!(&e, ecp_cluster::Error::Core(c) if c.is_permission_denied()), "{e}");
}

#[tokio::test]
async fn hosted_lifecycle_reaches_the_backend_and_keeps_the_spec() {
    let r = rig(5, 10_000).await;
    let admin = r.clusters.project(&Principal::system("ops"), r.p1.id()).await.unwrap();
    let spec = ClusterSpec::builder("emqx/emqx-enterprise:5.10.0")
        .replicas(3, 2)
        .api_key(ApiKey::new("ecp", SecretString::from(SENTINEL)).unwrap())
        .build()
        .unwrap();
    let c = admin.create(NewHostedCluster::new("mqtt", ClusterBackend::Kubernetes, spec, 1000)).await.unwrap();
    assert_eq!(c.status, ClusterStatus::Creating);
    assert_eq!(r.hosted.calls(), vec![format!("create ecp-{} emqx/emqx-enterprise:5.10.0 3x2", c.id.as_uuid().simple())]);
    // Out of limits: refused before the backend is asked.
    assert!(admin.scale(c.id, 8, 0).await.is_err());
    let c = admin.scale(c.id, 5, 4).await.unwrap();
    assert_eq!(c.spec.as_ref().map(|s| (s.core_replicas, s.replicant_replicas)), Some((5, 4)));
    admin.resize(c.id, Resources::new(2000, 2048)).await.unwrap();
    admin.set_network(c.id, NetworkMode::LoadBalancer, vec![Listener::default_for(ListenerProtocol::Tcp)]).await.unwrap();
    let c = admin.set_image(c.id, "emqx/emqx-enterprise:5.8.9").await.unwrap();
    let spec = c.spec.clone().unwrap();
    assert_eq!(
        (spec.image.as_str(), spec.network, spec.listeners.len(), spec.resources),
        ("emqx/emqx-enterprise:5.8.9", NetworkMode::LoadBalancer, 1, Resources::new(2000, 2048))
    );
    // The stored spec never holds the key's secret.
    {
        use ecp_core::ClusterStore;
        let stored = r.db.get_cluster(c.id).await.unwrap();
        assert!(!stored.spec.to_string().contains(SENTINEL));
        assert!(!format!("{stored:?}").contains(SENTINEL));
    }
    assert_eq!(admin.stop(c.id).await.unwrap().status, ClusterStatus::Stopping);
    admin.start(c.id).await.unwrap();
    assert_eq!(
        r.hosted.calls()[1..],
        [
            "scale mqtt 5 4",
            "resize mqtt Some(2000) Some(2048)",
            "network mqtt LoadBalancer 1",
            "image mqtt emqx/emqx-enterprise:5.8.9",
            "stop mqtt",
            "start mqtt"
        ]
    );
    // A failing backend call is audited as a failure and changes nothing stored.
    *r.hosted.fail.lock() = true;
    assert!(admin.scale(c.id, 1, 0).await.is_err());
    assert_eq!(admin.get(c.id).await.unwrap().spec.unwrap().core_replicas, 5);
    // Delete fails with the backend and keeps the cluster; then succeeds.
    assert!(admin.delete(c.id).await.is_err());
    admin.get(c.id).await.unwrap();
    *r.hosted.fail.lock() = false;
    admin.delete(c.id).await.unwrap();
    assert!(admin.get(c.id).await.unwrap_err().is_not_found());
    let scales = audit_of(&r.db, "cluster.scale").await;
    assert_eq!((scales.len(), scales.iter().filter(|a| a.event.outcome.is_success()).count()), (3, 1));
    // A failed create leaves the cluster registered in error, with the cause.
    *r.hosted.fail.lock() = true;
    let spec = ClusterSpec::builder("emqx:5").build().unwrap();
    assert!(admin.create(NewHostedCluster::new("broken", ClusterBackend::Kubernetes, spec, 1)).await.is_err());
    let broken = admin.list(&PageRequest::first(10)).await.unwrap().items.pop().unwrap();
    assert!(matches!(broken.status, ClusterStatus::Error(ref cause) if cause.contains("refused")), "{:?}", broken.status);
    // ... and its creation is recorded as the failure it is, never as a success.
    let creates: Vec<_> =
        audit_of(&r.db, "cluster.create").await.into_iter().filter(|a| a.event.resource_name.as_deref() == Some("broken")).collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert!(!creates[0].event.outcome.is_success());
    assert_eq!(audit_of(&r.db, "cluster.reserve").await.iter().filter(|a| a.event.resource_name.as_deref() == Some("broken")).count(), 1);
    // No driver for a backend: Unsupported.
    let spec = ClusterSpec::builder("emqx:5").build().unwrap();
    assert!(admin.create(NewHostedCluster::new("d", ClusterBackend::Docker, spec, 1)).await.unwrap_err().is_unsupported());
}

#[tokio::test]
async fn permissions_transfer_and_the_project_guard() {
    let r = rig(5, 10_000).await;
    let admin = r.clusters.project(&Principal::system("ops"), r.p1.id()).await.unwrap();
    let c = admin.register_existing(NewExistingCluster::new("prod", api(), 10)).await.unwrap();
    // A viewer sees but cannot change; a stranger does not see the project at all.
    let viewer = r.clusters.project(&Principal::user(UserId::new(), "viewer"), r.p1.id()).await.unwrap();
    assert_eq!(viewer.get(c.id).await.unwrap().name, "prod");
    let denied = viewer.set_connection_limit(c.id, 5).await.unwrap_err();
    assert!(matches!(denied, ecp_cluster::Error::Core(ecp_core::Error::PermissionDenied { .. })), "{denied}");
    assert!(viewer.stop(c.id).await.is_err());
    assert!(viewer.transfer(c.id, r.p2.id()).await.is_err());
    let stranger = r.clusters.project(&Principal::user(UserId::new(), "stranger"), r.p1.id()).await.unwrap_err();
    assert!(stranger.is_not_found());
    // Another project's handle does not find the cluster.
    let other = r.clusters.project(&Principal::system("ops"), r.p2.id()).await.unwrap();
    assert!(other.get(c.id).await.unwrap_err().is_not_found());
    // The project holding a cluster cannot be deleted; after a transfer the other one holds it.
    use ecp_core::TenancyStore;
    let ev = AuditEvent::new(&Principal::system("t"), ResourceKind::Project, Operation::new("project.delete").unwrap());
    assert!(r.db.delete_project(r.p1.id(), &ev).await.is_err());
    let moved = admin.transfer(c.id, r.p2.id()).await.unwrap();
    assert_eq!(moved.project, r.p2.id());
    assert!(admin.get(c.id).await.unwrap_err().is_not_found());
    assert_eq!(other.get(c.id).await.unwrap().name, "prod");
    r.db.delete_project(r.p1.id(), &ev).await.unwrap();
    assert!(r.db.delete_project(r.p2.id(), &ev).await.is_err());
    let transfers = audit_of(&r.db, "cluster.transfer").await;
    assert_eq!(transfers.iter().filter(|a| a.event.outcome.is_success()).count(), 1);
    assert_eq!(transfers.len(), 2, "the viewer's refused transfer is audited too");
}

#[tokio::test]
async fn an_expired_license_stops_what_draws_on_it() {
    let r = rig(5, 1000).await;
    let admin = r.clusters.project(&Principal::system("ops"), r.p1.id()).await.unwrap();
    let c = admin.register_existing(NewExistingCluster::new("prod", api(), 100)).await.unwrap();
    r.clock.set("2028-01-01T00:00:00Z".parse().unwrap());
    let err = admin.register_existing(NewExistingCluster::new("late", api(), 1)).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let spec = ClusterSpec::builder("emqx:5").build().unwrap();
    assert!(
        admin.create(NewHostedCluster::new("h", ClusterBackend::Kubernetes, spec, 1)).await.unwrap_err().to_string().contains("expired")
    );
    assert!(admin.set_connection_limit(c.id, 200).await.unwrap_err().to_string().contains("expired"));
    // Shrinking, disabling, reading, refreshing and deregistering go on.
    admin.set_connection_limit(c.id, 50).await.unwrap();
    admin.set_enabled(c.id, false).await.unwrap();
    assert!(admin.set_enabled(c.id, true).await.unwrap_err().to_string().contains("expired"));
    admin.refresh(c.id).await.unwrap();
    admin.delete(c.id).await.unwrap();
}
