//! Every mutating method of the project-scoped cluster handle, called by a principal that sees the
//! project but may not change it (a viewer): each is refused with `PermissionDenied`, writes a
//! failure record of its own operation, and changes nothing (in the store or at the backend). The
//! list of methods is checked against the handle's source, so a method cannot be added without
//! being classified here.

use ecp_cluster::{ClusterBackend, ClusterSpec, Listener, ListenerProtocol, NetworkMode, NewExistingCluster, NewHostedCluster, Resources};
use ecp_core::audit::{AuditQuery, AuditScope, Outcome};
use ecp_core::{AuditStore, PageRequest, Principal, UserId};

use crate::clusters_service::{Rig, api, rig};

const READS: [&str; 3] = ["get", "list", "project"];

/// The mutating methods (and `api`, which reads a secret and is audited as a change is) and the
/// audit operation each records. (`refresh` reads the backend and records what it says, with
/// `view`: not a change a viewer is refused, but audited; see below.)
const MUTATING: [(&str, &str); 13] = [
    ("api", "cluster.read_api"),
    ("create", "cluster.create"),
    ("delete", "cluster.delete"),
    ("register_existing", "cluster.register"),
    ("resize", "cluster.resize"),
    ("scale", "cluster.scale"),
    ("set_connection_limit", "cluster.set_connection_limit"),
    ("set_enabled", "cluster.set_enabled"),
    ("set_image", "cluster.set_image"),
    ("set_network", "cluster.set_network"),
    ("start", "cluster.start"),
    ("stop", "cluster.stop"),
    ("transfer", "cluster.transfer"),
];

#[test]
fn every_public_method_of_the_cluster_handle_is_a_read_or_tested_here() {
    let found = ecp_testkit::methods::public_methods("ProjectClusters", &[include_str!("../../src/service.rs")]);
    let mut known: Vec<String> =
        READS.iter().chain(["refresh"].iter()).chain(MUTATING.iter().map(|(m, _)| m)).map(|m| (*m).to_owned()).collect();
    known.sort();
    assert_eq!(found, known, "a public method of ProjectClusters is neither a read nor a tested mutation");
}

async fn failures(r: &Rig, operation: &str) -> Vec<ecp_core::AuditRecord> {
    let q = AuditQuery { operation: Some(operation.to_owned()), success: Some(false), ..Default::default() };
    r.db.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(1000)).await.unwrap().items
}

#[tokio::test]
async fn a_denied_call_writes_a_failure_record_and_changes_nothing() {
    let r = rig(10, 10_000).await;
    let admin = r.clusters.project(&Principal::system("ops"), r.p1.id()).await.unwrap();
    let spec = ClusterSpec::builder("emqx:5").build().unwrap();
    let hosted = admin.create(NewHostedCluster::new("hosted", ClusterBackend::Kubernetes, spec.clone(), 100)).await.unwrap();
    let onboarded = admin.register_existing(NewExistingCluster::new("onboarded", api(), 100)).await.unwrap();
    let calls = (r.hosted.calls().len(), r.existing.calls().len());

    let viewer = r.clusters.project(&Principal::user(UserId::new(), "viewer"), r.p1.id()).await.unwrap();
    let snapshot = async || format!("{:?}", admin.list(&PageRequest::first(100)).await.unwrap().items);
    let before = snapshot().await;
    let listeners = vec![Listener::default_for(ListenerProtocol::Tcp)];
    for (method, operation) in MUTATING {
        let already = failures(&r, operation).await.len();
        let err = match method {
            "api" => viewer.api(hosted.id).await.unwrap_err(),
            "create" => viewer.create(NewHostedCluster::new("new", ClusterBackend::Kubernetes, spec.clone(), 10)).await.unwrap_err(),
            "delete" => viewer.delete(hosted.id).await.unwrap_err(),
            "register_existing" => viewer.register_existing(NewExistingCluster::new("other", api(), 10)).await.unwrap_err(),
            "resize" => viewer.resize(hosted.id, Resources::default()).await.unwrap_err(),
            "scale" => viewer.scale(hosted.id, 3, 2).await.unwrap_err(),
            "set_connection_limit" => viewer.set_connection_limit(onboarded.id, 5).await.unwrap_err(),
            "set_enabled" => viewer.set_enabled(onboarded.id, false).await.unwrap_err(),
            "set_image" => viewer.set_image(hosted.id, "emqx:5.10").await.unwrap_err(),
            "set_network" => viewer.set_network(hosted.id, NetworkMode::NodePort, listeners.clone()).await.unwrap_err(),
            "start" => viewer.start(hosted.id).await.unwrap_err(),
            "stop" => viewer.stop(hosted.id).await.unwrap_err(),
            "transfer" => viewer.transfer(hosted.id, r.p2.id()).await.unwrap_err(),
            other => panic!("no case for {other}"),
        };
        assert!(matches!(&err, ecp_cluster::Error::Core(e) if e.is_permission_denied()), "{method}: {err}");
        let records = failures(&r, operation).await;
        assert_eq!(records.len(), already + 1, "{method} wrote no failure record of {operation}");
        let last = records.iter().max_by_key(|r| r.seq).unwrap();
        assert_eq!(last.event.actor.name, "viewer", "{method}");
        assert!(matches!(&last.event.outcome, Outcome::Failure { reason } if reason.contains("permission denied")), "{method}");
        assert_eq!(snapshot().await, before, "{method} changed something");
        assert_eq!((r.hosted.calls().len(), r.existing.calls().len()), calls, "{method} reached the backend");
    }
}

/// A viewer's refresh runs (it needs only `view`) and is recorded under its name, with the status
/// it found; a refresh of a cluster the project does not have is a recorded failure.
#[tokio::test]
async fn a_refresh_is_recorded() {
    let r = rig(10, 10_000).await;
    let admin = r.clusters.project(&Principal::system("ops"), r.p1.id()).await.unwrap();
    let onboarded = admin.register_existing(NewExistingCluster::new("onboarded", api(), 100)).await.unwrap();
    let viewer = r.clusters.project(&Principal::user(UserId::new(), "viewer"), r.p1.id()).await.unwrap();
    viewer.refresh(onboarded.id).await.unwrap();
    let q = AuditQuery { operation: Some("cluster.refresh".into()), ..Default::default() };
    let records = r.db.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].event.actor.name.as_str(), records[0].event.resource_name.as_deref()), ("viewer", Some("onboarded")));
    assert!(records[0].event.outcome.is_success());
    let e = viewer.refresh(ecp_core::ClusterId::new()).await.unwrap_err();
    assert!(matches!(&e, ecp_cluster::Error::Core(c) if c.is_not_found()), "{e}");
    assert_eq!(failures(&r, "cluster.refresh").await.len(), 1);
}
