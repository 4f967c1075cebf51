//! Onboarding end to end over real HTTP: the `Clusters` service with the `existing` backend against
//! ecp-testkit's simulated EMQX 5 REST API on loopback (the wire shapes of every quirk are in
//! `existing_rest.rs`; this proves the pieces work together).

use std::sync::Arc;

use ecp_cluster::emqx::ClientOptions;
use ecp_cluster::{ApiKey, ClusterApi, ClusterBackend, ClusterStatus, Clusters, ExistingDriver, NewExistingCluster};
use ecp_core::access::{Permission, Principal, ResourceKind, Scope};
use ecp_core::prelude::*;
use ecp_core::{AuditEvent, Operation, Organization, PageRequest, Project, SqlStore, TenancyLimits};
use ecp_testkit::emqx::{EmqxSim, EmqxSimConfig};
use secrecy::SecretString;

#[derive(Debug)]
struct AllowSystem;

impl ecp_core::Authorizer for AllowSystem {
    fn check(&self, p: &Principal, _perm: Permission, _scope: &Scope) -> Result<(), ecp_core::Denial> {
        if p.is_system() { Ok(()) } else { Err(ecp_core::Denial::NotGranted) }
    }
    fn has_access(&self, p: &Principal, _scope: &Scope) -> bool {
        p.is_system()
    }
    fn visibility(&self, _p: &Principal, _perm: Permission) -> ecp_core::Visibility {
        ecp_core::Visibility::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cluster_is_onboarded_watched_and_deregistered() {
    let sim = EmqxSim::start(EmqxSimConfig::default()).await.unwrap();
    let db = Arc::new(SqlStore::memory().await.unwrap());
    let ev = |op: &str| AuditEvent::new(&Principal::system("t"), ResourceKind::Organization, Operation::new(op).unwrap());
    let org = Organization::new("acme", ecp_core::Timestamp::now()).unwrap();
    db.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", ecp_core::Timestamp::now()).unwrap();
    db.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    let existing = Arc::new(
        ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()).unwrap(),
    );
    let clusters = Clusters::builder(db.clone(), Arc::new(AllowSystem)).driver(existing.clone()).build();
    let admin = clusters.project(&Principal::system("ops"), project.id()).await.unwrap();

    // A wrong key is refused and nothing is registered.
    let wrong = ClusterApi { base_url: sim.base_url(), key: ApiKey::new("ecp", SecretString::from("nope")).unwrap() };
    let err = admin.register_existing(NewExistingCluster::new("prod", wrong, 100)).await.unwrap_err();
    assert!(matches!(err, ecp_cluster::Error::Unauthorized { status: 401, .. }), "{err}");
    assert!(admin.list(&PageRequest::first(10)).await.unwrap().items.is_empty());

    let api = ClusterApi { base_url: sim.base_url(), key: ApiKey::new("ecp", SecretString::from("ecp-secret")).unwrap() };
    let c = admin.register_existing(NewExistingCluster::new("prod", api.clone(), 100)).await.unwrap();
    assert_eq!((c.backend, c.status.clone()), (ClusterBackend::Existing, ClusterStatus::Running));
    assert_eq!(sim.connection_limit(), 100, "the cluster was told its share of the pool");

    // Read through the handle: nodes, clients over pages, license.
    let handle = existing.cluster(&ecp_cluster::ClusterRef::new(c.id, c.project, &c.name).with_api(api)).unwrap();
    assert_eq!(handle.nodes().await.unwrap().len(), 3);
    assert_eq!(handle.license().await.unwrap().unwrap().max_connections, Some(ecp_cluster::emqx::Limit::Finite(1000)));

    // A node goes down: refresh records the error with its cause; it comes back.
    sim.set_node_stopped(1, true);
    let state = admin.refresh(c.id).await.unwrap();
    assert!(matches!(state.status, ClusterStatus::Error(ref cause) if cause.contains("emqx@10.0.0.2")), "{:?}", state.status);
    assert!(matches!(admin.get(c.id).await.unwrap().status, ClusterStatus::Error(_)));
    sim.set_node_stopped(1, false);
    assert_eq!(admin.refresh(c.id).await.unwrap().status, ClusterStatus::Running);

    // Deregistering never calls the cluster's API to delete anything.
    admin.delete(c.id).await.unwrap();
    assert!(admin.get(c.id).await.unwrap_err().is_not_found());
}
