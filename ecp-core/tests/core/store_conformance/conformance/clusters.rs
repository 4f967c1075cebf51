use std::sync::Arc;

use ecp_core::cluster::{ClusterQuota, ClusterRecord};
use ecp_core::edge::{EdgeKind, EdgeLimits, EdgeService};
use ecp_core::prelude::*;
use ecp_core::{ClusterId, Organization, PageRequest, Project, TenancyLimits};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::ev;
use crate::store_conformance::Fixture;

async fn org(f: &Fixture) -> Organization {
    let o = Organization::new("acme", f.clock.now()).unwrap();
    f.store.create_org(&o, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    o
}

async fn project(f: &Fixture, o: &Organization, name: &str) -> Project {
    let p = Project::new(o.id, name, f.clock.now()).unwrap();
    f.store.create_project(&p, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    p
}

fn cluster(p: &Project, name: &str, conns: u64, now: ecp_core::Timestamp) -> ClusterRecord {
    ClusterRecord::new(ClusterId::new(), p.id(), name, "existing", conns, "running", now).with_api(
        "http://10.0.0.1:18083",
        "ecp",
        SecretString::from("cluster-secret-sentinel"),
    )
}

pub(crate) async fn clusters_license_pool_transfer_and_project_guard(f: &Fixture) {
    let s = f.store.as_ref();
    let o = org(f).await;
    let (p1, p2) = (project(f, &o, "p1").await, project(f, &o, "p2").await);
    let quota = ClusterQuota { max_clusters: 2, max_connections: 1000 };
    let now = f.clock.now();

    // Two clusters fit the license: 600 + 400 connections, the pool is full.
    let a = cluster(&p1, "prod", 600, now).with_spec(json!({"image": "emqx:5.10"}));
    s.create_cluster(&a, &quota, &ev("cluster.register")).await.unwrap();
    let got = s.get_cluster(a.id).await.unwrap();
    assert_eq!((got.name.as_str(), got.project, got.connection_limit, got.enabled), ("prod", p1.id(), 600, true));
    assert_eq!(got.api_secret.as_ref().unwrap().expose_secret(), "cluster-secret-sentinel");
    assert_eq!(got.spec, json!({"image": "emqx:5.10"}));
    assert!(!format!("{got:?}").contains("sentinel"));
    // A name is unique per project regardless of case.
    let dup = s.create_cluster(&cluster(&p1, "PROD", 1, now), &quota, &ev("cluster.register")).await.unwrap_err();
    assert!(matches!(dup, ecp_core::Error::Conflict { .. }), "{dup}");
    // The pool: 600 + 401 > 1000.
    let over = s.create_cluster(&cluster(&p2, "edge", 401, now), &quota, &ev("cluster.register")).await.unwrap_err();
    assert!(matches!(over, ecp_core::Error::LimitExceeded { limit: "licensed connections", max: 1000 }), "{over}");
    let b = cluster(&p2, "edge", 400, now);
    s.create_cluster(&b, &quota, &ev("cluster.register")).await.unwrap();
    let usage = s.license_usage().await.unwrap();
    assert_eq!((usage.clusters, usage.connections), (2, 1000));
    // The cluster count.
    let third = s.create_cluster(&cluster(&p2, "third", 0, now), &quota, &ev("cluster.register")).await.unwrap_err();
    assert!(matches!(third, ecp_core::Error::LimitExceeded { limit: "licensed clusters", max: 2 }), "{third}");

    // Growing a share past the pool fails and keeps the old limit; shrinking frees connections.
    let err = s.set_connection_limit(a.id, 601, &quota, now, &ev("cluster.set_connection_limit")).await.unwrap_err();
    assert!(matches!(err, ecp_core::Error::LimitExceeded { .. }));
    assert_eq!(s.get_cluster(a.id).await.unwrap().connection_limit, 600);
    s.set_connection_limit(a.id, 500, &quota, now, &ev("cluster.set_connection_limit")).await.unwrap();
    s.set_connection_limit(b.id, 500, &quota, now, &ev("cluster.set_connection_limit")).await.unwrap();
    // Disabling returns the share; enabling draws it again, and fails while the pool is taken.
    s.set_cluster_enabled(a.id, false, &quota, now, &ev("cluster.set_enabled")).await.unwrap();
    assert_eq!(s.license_usage().await.unwrap().connections, 500);
    s.set_connection_limit(b.id, 1000, &quota, now, &ev("cluster.set_connection_limit")).await.unwrap();
    let err = s.set_cluster_enabled(a.id, true, &quota, now, &ev("cluster.set_enabled")).await.unwrap_err();
    assert!(matches!(err, ecp_core::Error::LimitExceeded { .. }));
    assert!(!s.get_cluster(a.id).await.unwrap().enabled);

    // Status and spec.
    s.record_cluster_status(a.id, "error", Some("node emqx@10.0.0.2 stopped"), now).await.unwrap();
    let got = s.get_cluster(a.id).await.unwrap();
    assert_eq!((got.status.as_str(), got.status_cause.as_deref()), ("error", Some("node emqx@10.0.0.2 stopped")));
    s.update_cluster_spec(a.id, &json!({"image": "emqx:5.10.1"}), now, &ev("cluster.set_image")).await.unwrap();
    assert_eq!(s.get_cluster(a.id).await.unwrap().spec, json!({"image": "emqx:5.10.1"}));
    assert!(s.record_cluster_status(ClusterId::new(), "running", None, now).await.unwrap_err().is_not_found());

    // A project holding a cluster cannot be deleted; transfer moves it (and the name must be free).
    assert_eq!(s.project_usage(p1.id()).await.unwrap().clusters, 1);
    let err = s.delete_project(p1.id(), &ev("project.delete")).await.unwrap_err();
    assert!(matches!(err, ecp_core::Error::Conflict { .. }), "{err}");
    s.move_resource(*a.id.as_uuid(), p2.id(), &ev("cluster.transfer")).await.unwrap();
    assert_eq!(s.get_cluster(a.id).await.unwrap().project, p2.id());
    assert_eq!(s.list_clusters(p2.id(), &PageRequest::first(10)).await.unwrap().items.len(), 2);
    assert!(s.list_clusters(p1.id(), &PageRequest::first(10)).await.unwrap().items.is_empty());
    s.delete_project(p1.id(), &ev("project.delete")).await.unwrap();

    // Paging.
    let page = s.list_clusters(p2.id(), &PageRequest::first(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = s.list_clusters(p2.id(), &PageRequest::after(1, page.next.clone().unwrap())).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].id, page.items[0].id);

    // Deleting returns the share and the count.
    s.delete_cluster(b.id, &ev("cluster.delete")).await.unwrap();
    assert!(s.get_cluster(b.id).await.unwrap_err().is_not_found());
    assert!(s.delete_cluster(b.id, &ev("cluster.delete")).await.unwrap_err().is_not_found());
    let usage = s.license_usage().await.unwrap();
    assert_eq!((usage.clusters, usage.connections), (1, 0));
    // A non-cluster resource is not deleted as a cluster.
    let svc = EdgeService::builder(p2.id(), "nx", EdgeKind::NeuronEx, "http://127.0.0.1:8085").build(now).unwrap();
    s.create_edge_services(std::slice::from_ref(&svc), &EdgeLimits::default(), &ev("edge_service.register"))
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    assert!(s.delete_cluster(ClusterId::from_uuid(*svc.id().as_uuid()), &ev("cluster.delete")).await.unwrap_err().is_not_found());
    s.get_edge_service(svc.id()).await.unwrap();
}

pub(crate) async fn concurrent_registrations_never_overshoot_the_license(f: &Fixture) {
    let o = org(f).await;
    let p = project(f, &o, "p").await;
    let quota = ClusterQuota { max_clusters: 5, max_connections: 1000 };
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = Arc::clone(&f.store);
        let c = cluster(&p, &format!("c{i}"), 150, f.clock.now());
        tasks.push(tokio::spawn(async move { store.create_cluster(&c, &quota, &ev("cluster.register")).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(ecp_core::Error::LimitExceeded { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // 5 clusters would fit the count, but 6 x 150 > 1000: the pool allows 6, the count 5.
    assert_eq!(ok, 5);
    let usage = f.store.license_usage().await.unwrap();
    assert_eq!((usage.clusters, usage.connections), (5, 750));

    // Edge services: the license's count over the whole installation, per row of a batch.
    let limits = EdgeLimits::builder().max_edge_services(3).build().unwrap();
    let svc = |n: usize| {
        EdgeService::builder(p.id(), format!("nx-{n}"), EdgeKind::NeuronEx, "http://127.0.0.1:8085").build(f.clock.now()).unwrap()
    };
    let results = f.store.create_edge_services(&[svc(1), svc(2)], &limits, &ev("edge_service.import")).await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    let results = f.store.create_edge_services(&[svc(3), svc(4), svc(5)], &limits, &ev("edge_service.import")).await.unwrap();
    assert!(results[0].is_ok());
    for r in &results[1..] {
        assert!(matches!(r, Err(ecp_core::Error::LimitExceeded { limit: "licensed edge services", max: 3 })), "{r:?}");
    }
    assert_eq!(f.store.license_usage().await.unwrap().edge_services, 3);
}
