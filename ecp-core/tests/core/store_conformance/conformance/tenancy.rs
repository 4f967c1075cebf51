use ecp_core::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;

use ecp_core::store::ProjectFilter;
use ecp_core::tenancy::{ProjectResource, ProjectResourceKind};
use ecp_core::{Error, Organization, Page, PageRequest, Project, Store, TenancyLimits};

use super::ev;
use crate::store_conformance::Fixture;

fn limits(orgs: u64, per_org: u64, total: u64) -> TenancyLimits {
    TenancyLimits::builder().max_organizations(orgs).max_projects_per_org(per_org).max_projects(total).build().unwrap()
}

async fn org(store: &dyn Store, name: &str, l: &TenancyLimits, f: &Fixture) -> Organization {
    let org = Organization::new(name, f.clock.now()).unwrap();
    store.create_org(&org, l, &ev("organization.create")).await.unwrap();
    org
}

async fn project(store: &dyn Store, org: &Organization, name: &str, l: &TenancyLimits, f: &Fixture) -> Project {
    let p = Project::new(org.id, name, f.clock.now()).unwrap();
    store.create_project(&p, l, &ev("project.create")).await.unwrap();
    p
}

async fn all_orgs(store: &dyn Store) -> Vec<Organization> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let Page { items, next } = store.list_orgs(None, &page).await.unwrap();
        out.extend(items);
        match next {
            Some(c) => page = PageRequest::after(2, c),
            None => return out,
        }
    }
}

pub(crate) async fn orgs_create_get_list_rename_delete(f: &Fixture) {
    let s = f.store.as_ref();
    let l = TenancyLimits::default();
    let a = org(s, "Acme", &l, f).await;
    let b = org(s, "Globex", &l, f).await;
    let c = org(s, "工厂 3", &l, f).await;
    assert_eq!(s.get_org(a.id).await.unwrap(), a);

    // Names are unique regardless of case.
    let dup = Organization::new("ACME", f.clock.now()).unwrap();
    let err = s.create_org(&dup, &l, &ev("organization.create")).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");

    // Listing pages through everything in creation order, and can be restricted.
    let listed: Vec<_> = all_orgs(s).await.into_iter().map(|o| o.id).collect();
    assert_eq!(listed, vec![a.id, b.id, c.id]);
    let within = s.list_orgs(Some(&[c.id, a.id]), &PageRequest::first(10)).await.unwrap();
    assert_eq!(within.items.iter().map(|o| o.id).collect::<Vec<_>>(), vec![a.id, c.id]);
    assert!(s.list_orgs(Some(&[]), &PageRequest::first(10)).await.unwrap().items.is_empty());

    f.clock.advance(std::time::Duration::from_secs(5));
    let renamed = s.rename_org(b.id, "Initech", f.clock.now(), &ev("organization.rename")).await.unwrap();
    assert_eq!(renamed.name, "Initech");
    assert!(renamed.updated_at > renamed.created_at);
    assert!(s.rename_org(a.id, "initech", f.clock.now(), &ev("organization.rename")).await.unwrap_err().is_conflict());
    let ghost = ecp_core::OrgId::new();
    assert!(s.rename_org(ghost, "x", f.clock.now(), &ev("organization.rename")).await.unwrap_err().is_not_found());

    s.delete_org(a.id, &ev("organization.delete")).await.unwrap();
    assert!(s.get_org(a.id).await.unwrap_err().is_not_found());
    assert!(s.delete_org(a.id, &ev("organization.delete")).await.unwrap_err().is_not_found());
    // The freed name can be used again.
    org(s, "acme", &l, f).await;
}

pub(crate) async fn org_limit_holds(f: &Fixture) {
    let s = f.store.as_ref();
    let l = limits(3, 100, 1000);
    let orgs: Vec<_> = futures_join(["a", "b", "c"].map(|n| org(s, n, &l, f))).await;
    let fourth = Organization::new("d", f.clock.now()).unwrap();
    let err = s.create_org(&fourth, &l, &ev("organization.create")).await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: "organizations", max: 3 }), "{err}");
    s.delete_org(orgs[0].id, &ev("organization.delete")).await.unwrap();
    s.create_org(&fourth, &l, &ev("organization.create")).await.unwrap();
}

async fn futures_join<F: std::future::Future>(futs: [F; 3]) -> Vec<F::Output> {
    let [a, b, c] = futs;
    vec![a.await, b.await, c.await]
}

pub(crate) async fn projects_and_their_limits(f: &Fixture) {
    let s = f.store.as_ref();
    let l = limits(10, 2, 3);
    let a = org(s, "a", &l, f).await;
    let b = org(s, "b", &l, f).await;
    let p1 = project(s, &a, "Plant 1", &l, f).await;
    // Same name in another organization is fine; in the same one (any case) it is not.
    project(s, &b, "Plant 1", &l, f).await;
    let dup = Project::new(a.id, "PLANT 1", f.clock.now()).unwrap();
    assert!(s.create_project(&dup, &l, &ev("project.create")).await.unwrap_err().is_conflict());
    project(s, &a, "Plant 2", &l, f).await;
    // Per organization.
    let third = Project::new(a.id, "Plant 3", f.clock.now()).unwrap();
    let err = s.create_project(&third, &l, &ev("project.create")).await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: "projects per organization", max: 2 }), "{err}");
    // In all.
    let c = org(s, "c", &l, f).await;
    let over = Project::new(c.id, "x", f.clock.now()).unwrap();
    let err = s.create_project(&over, &l, &ev("project.create")).await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: "projects", max: 3 }), "{err}");
    // A failed create changed no counter.
    assert_eq!(s.get_org(a.id).await.unwrap().project_count, 2);
    assert_eq!(s.get_org(c.id).await.unwrap().project_count, 0);
    // Unknown organization.
    let orphan = Project::new(ecp_core::OrgId::new(), "x", f.clock.now()).unwrap();
    assert!(s.create_project(&orphan, &l, &ev("project.create")).await.unwrap_err().is_not_found());

    assert_eq!(s.get_project(p1.id()).await.unwrap(), p1);
    let renamed = s.rename_project(p1.id(), "Line A", f.clock.now(), &ev("project.rename")).await.unwrap();
    assert_eq!(renamed.name(), "Line A");
    assert!(s.rename_project(p1.id(), "plant 2", f.clock.now(), &ev("project.rename")).await.unwrap_err().is_conflict());

    let in_a = s.list_projects(&ProjectFilter { org: Some(a.id), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(in_a.items.len(), 2);
    let search = s
        .list_projects(&ProjectFilter { name_contains: Some("line".into()), ..Default::default() }, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(search.items.iter().map(|p| p.id()).collect::<Vec<_>>(), vec![p1.id()]);
    // LIKE wildcards in the search text are literal.
    let wild =
        s.list_projects(&ProjectFilter { name_contains: Some("%".into()), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert!(wild.items.is_empty());
    let within = s
        .list_projects(
            &ProjectFilter { within_orgs: Some(vec![b.id]), within_projects: vec![p1.id()], ..Default::default() },
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(within.items.len(), 2);

    s.delete_project(p1.id(), &ev("project.delete")).await.unwrap();
    assert_eq!(s.get_org(a.id).await.unwrap().project_count, 1);
    assert!(s.delete_project(p1.id(), &ev("project.delete")).await.unwrap_err().is_not_found());
    // The freed slot can be used again.
    project(s, &c, "x", &l, f).await;
}

pub(crate) async fn org_with_projects_cannot_be_deleted(f: &Fixture) {
    let s = f.store.as_ref();
    let l = TenancyLimits::default();
    let a = org(s, "a", &l, f).await;
    let p = project(s, &a, "p", &l, f).await;
    let err = s.delete_org(a.id, &ev("organization.delete")).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("1 projects"), "{err}");
    s.delete_project(p.id(), &ev("project.delete")).await.unwrap();
    s.delete_org(a.id, &ev("organization.delete")).await.unwrap();
}

pub(crate) async fn project_with_resources_cannot_be_deleted(f: &Fixture) {
    let s = f.store.as_ref();
    let l = TenancyLimits::default();
    let a = org(s, "a", &l, f).await;
    let p = project(s, &a, "p", &l, f).await;
    let cluster = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::Cluster, p.id(), "emqx-1", f.clock.now());
    let edge = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::EdgeService, p.id(), "neuronex-1", f.clock.now());
    s.register_resource(&cluster, &ev("cluster.register")).await.unwrap();
    s.register_resource(&edge, &ev("edge_service.register")).await.unwrap();
    // Names are unique per kind; the same name of another kind is fine.
    let dup = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::Cluster, p.id(), "EMQX-1", f.clock.now());
    assert!(s.register_resource(&dup, &ev("cluster.register")).await.unwrap_err().is_conflict());
    let other_kind = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::Agent, p.id(), "emqx-1", f.clock.now());
    s.register_resource(&other_kind, &ev("agent.register")).await.unwrap();
    // Hostile names are refused.
    let bad = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::Cluster, p.id(), "x\u{0}y", f.clock.now());
    assert!(matches!(s.register_resource(&bad, &ev("cluster.register")).await.unwrap_err(), Error::InvalidInput { .. }));

    let usage = s.project_usage(p.id()).await.unwrap();
    assert_eq!((usage.clusters, usage.edge_services, usage.other), (1, 1, 1));
    let err = s.delete_project(p.id(), &ev("project.delete")).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("1 clusters, 1 edge services"), "{err}");
    assert_eq!(s.get_org(a.id).await.unwrap().project_count, 1, "a refused delete changes no counter");

    for r in [&cluster, &edge, &other_kind] {
        s.deregister_resource(r.id, &ev("resource.deregister")).await.unwrap();
    }
    assert!(s.deregister_resource(cluster.id, &ev("resource.deregister")).await.unwrap_err().is_not_found());
    assert!(s.project_usage(p.id()).await.unwrap().is_empty());
    s.delete_project(p.id(), &ev("project.delete")).await.unwrap();
    assert!(s.project_usage(p.id()).await.unwrap_err().is_not_found());
    let orphan = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::Cluster, p.id(), "late", f.clock.now());
    assert!(s.register_resource(&orphan, &ev("cluster.register")).await.unwrap_err().is_not_found());
}

pub(crate) async fn resources_move_between_projects(f: &Fixture) {
    let s = f.store.as_ref();
    let l = TenancyLimits::default();
    let a = org(s, "a", &l, f).await;
    let p1 = project(s, &a, "one", &l, f).await;
    let p2 = project(s, &a, "two", &l, f).await;
    let c1 = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::Cluster, p1.id(), "c", f.clock.now());
    let c2 = ProjectResource::new(uuid::Uuid::now_v7(), ProjectResourceKind::Cluster, p2.id(), "c", f.clock.now());
    s.register_resource(&c1, &ev("cluster.register")).await.unwrap();
    s.register_resource(&c2, &ev("cluster.register")).await.unwrap();
    // The name is taken in the target project.
    assert!(s.move_resource(c1.id, p2.id(), &ev("cluster.transfer")).await.unwrap_err().is_conflict());
    s.deregister_resource(c2.id, &ev("resource.deregister")).await.unwrap();
    let moved = s.move_resource(c1.id, p2.id(), &ev("cluster.transfer")).await.unwrap();
    assert_eq!(moved.project, p2.id());
    assert_eq!(s.get_resource(c1.id).await.unwrap().project, p2.id());
    let listed = s.list_resources(p2.id(), Some(ProjectResourceKind::Cluster), &PageRequest::first(10)).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(s.list_resources(p1.id(), None, &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(s.move_resource(c1.id, ecp_core::ProjectId::new(), &ev("cluster.transfer")).await.unwrap_err().is_not_found());
    assert!(s.move_resource(uuid::Uuid::now_v7(), p1.id(), &ev("cluster.transfer")).await.unwrap_err().is_not_found());
}

/// Many tasks create and delete projects at once, on several connections: the limits hold exactly
/// and the counters agree with the rows.
pub(crate) async fn concurrent_creates_and_deletes_hold_the_limits_exactly(f: &Fixture) {
    let store: Arc<dyn Store> = f.store.clone();
    let l = limits(100, 10, 25);
    let mut orgs = Vec::new();
    for i in 0..3 {
        orgs.push(org(store.as_ref(), &format!("org {i}"), &l, f).await);
    }

    // Phase 1: 90 concurrent creates, 30 per organization; 10 per organization and 25 in all fit.
    let mut tasks = Vec::new();
    for i in 0..90 {
        let store = store.clone();
        let org = orgs[i % 3].id;
        let now = f.clock.now();
        tasks.push(tokio::spawn(async move {
            let p = Project::new(org, &format!("p{i}"), now).unwrap();
            store.create_project(&p, &l, &ev("project.create")).await.map(|()| p)
        }));
    }
    let mut created = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(p) => created.push(p),
            Err(Error::LimitExceeded { .. }) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(created.len(), 25, "exactly the total limit was created");
    assert_eq!(refused, 65);
    check_counts(store.as_ref(), &orgs, &l).await;

    // Phase 2: delete 12 while 40 more creates race them.
    let mut tasks = Vec::new();
    for p in created.iter().take(12) {
        let store = store.clone();
        let id = p.id();
        tasks.push(tokio::spawn(async move { store.delete_project(id, &ev("project.delete")).await.map(|()| -1i32) }));
    }
    for i in 0..40 {
        let store = store.clone();
        let org = orgs[i % 3].id;
        let now = f.clock.now();
        tasks.push(tokio::spawn(async move {
            let p = Project::new(org, &format!("q{i}"), now).unwrap();
            store.create_project(&p, &l, &ev("project.create")).await.map(|()| 1i32)
        }));
    }
    let mut delta = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => delta += d,
            Err(Error::LimitExceeded { .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    let total = check_counts(store.as_ref(), &orgs, &l).await;
    assert_eq!(total as i32, 25 + delta, "every successful create and delete is accounted for");
    assert!(total <= 25);
}

/// Checks that no limit is exceeded and that the counters equal the rows; returns the total.
async fn check_counts(store: &dyn Store, orgs: &[Organization], l: &TenancyLimits) -> u64 {
    let mut total = 0;
    for o in orgs {
        let rows =
            store.list_projects(&ProjectFilter { org: Some(o.id), ..Default::default() }, &PageRequest::first(1000)).await.unwrap().items;
        let names: HashSet<_> = rows.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), rows.len());
        let counted = store.get_org(o.id).await.unwrap().project_count;
        assert_eq!(counted, rows.len() as u64, "counter of {} agrees with its rows", o.name);
        assert!(counted <= l.max_projects_per_org());
        total += counted;
    }
    assert!(total <= l.max_projects());
    total
}

pub(crate) async fn bad_pages_are_refused(f: &Fixture) {
    let s = f.store.as_ref();
    for page in [PageRequest::first(0), PageRequest::first(1001), PageRequest::after(10, "x".repeat(500))] {
        let err = s.list_orgs(None, &page).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    }
    // A cursor that is no id just yields nothing after it, never an error or a panic.
    s.list_orgs(None, &PageRequest::after(10, "'; DROP TABLE organizations; --")).await.unwrap();
    let o = org(s, "still here", &TenancyLimits::default(), f).await;
    assert_eq!(s.get_org(o.id).await.unwrap().name, "still here");
    let long = ProjectFilter { name_contains: Some("x".repeat(1000)), ..Default::default() };
    assert!(s.list_projects(&long, &PageRequest::first(10)).await.is_err());
    s.ping().await.unwrap();
}
