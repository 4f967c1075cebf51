use ecp_core::prelude::*;
use std::sync::Arc;
use std::time::Duration;

use ecp_core::access::{Principal, ResourceKind, Subject};
use ecp_core::audit::{AuditEvent, AuditQuery, AuditScope, ChainHead, Operation, Outcome};
use ecp_core::{Error, Organization, PageRequest, Project, Store, TenancyLimits, UserId, verify_audit};
use sqlx::{AnyPool, AssertSqlSafe};

use super::ev;
use crate::store_conformance::Fixture;

async fn head(s: &dyn Store) -> u64 {
    s.audit_head().await.unwrap().seq
}

pub(crate) async fn every_mutation_is_audited_in_its_transaction(f: &Fixture) {
    let s = f.store.as_ref();
    let l = TenancyLimits::default();
    assert_eq!(head(s).await, 0);
    let o = Organization::new("acme", f.clock.now()).unwrap();
    let event = ev("organization.create").org(o.id, "acme").resource(o.id, Some("acme"));
    s.create_org(&o, &l, &event).await.unwrap();
    assert_eq!(head(s).await, 1);
    // A refused change leaves no record: the record is part of the change's transaction.
    let dup = Organization::new("ACME", f.clock.now()).unwrap();
    assert!(s.create_org(&dup, &l, &ev("organization.create")).await.is_err());
    let p = Project::new(o.id, "p", f.clock.now()).unwrap();
    let tight = TenancyLimits::builder().max_projects(1).build().unwrap();
    s.create_project(&p, &tight, &ev("project.create")).await.unwrap();
    let over = Project::new(o.id, "q", f.clock.now()).unwrap();
    assert!(s.create_project(&over, &tight, &ev("project.create")).await.is_err());
    assert!(s.delete_org(o.id, &ev("organization.delete")).await.is_err());
    assert_eq!(head(s).await, 2);

    let page =
        s.query_audit(&AuditQuery::default(), &AuditScope { all: true, ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    let ops: Vec<_> = page.items.iter().map(|r| r.event.operation.as_str().to_owned()).collect();
    assert_eq!(ops, vec!["project.create", "organization.create"]);
    let first = &page.items[1];
    assert_eq!(first.event, event);
    assert_eq!(first.seq, 1);
    assert_eq!(first.at, f.clock.now());
    verify_audit(s, None).await.unwrap();
}

pub(crate) async fn queries_filter_and_page_newest_first(f: &Fixture) {
    let s = f.store.as_ref();
    let ann = Principal::user(UserId::new(), "ann@example.com");
    let bob = Principal::user(UserId::new(), "Bob@Example.com");
    let (o1, o2) = (ecp_core::OrgId::new(), ecp_core::OrgId::new());
    let p1 = ecp_core::ProjectId::new();
    let t0 = f.clock.now();
    let mut expected_ids = Vec::new();
    for i in 0..12u64 {
        let who = if i % 2 == 0 { &ann } else { &bob };
        let op = if i % 3 == 0 { "edge_service.upgrade" } else { "organization.rename" };
        let mut e = AuditEvent::new(who, ResourceKind::EdgeService, Operation::new(op).unwrap())
            .org(if i < 6 { o1 } else { o2 }, "org")
            .resource(format!("svc-{i}"), Some("svc"));
        if i == 4 {
            e = e.project(p1, "p1");
        }
        if i == 7 {
            e = e.failed("permission denied");
        }
        let rec = s.append_audit(&e).await.unwrap();
        expected_ids.push(rec.id);
        f.clock.advance(Duration::from_secs(60));
    }
    let all_scope = AuditScope { all: true, ..Default::default() };
    let all = &all_scope;
    let q = |query: AuditQuery| async move { s.query_audit(&query, all, &PageRequest::first(100)).await.unwrap().items };

    let everything = q(AuditQuery::default()).await;
    assert_eq!(everything.len(), 12);
    assert!(everything.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");

    let by_actor = AuditQuery { actor: Some(ann.subject()), ..Default::default() };
    assert_eq!(q(by_actor).await.len(), 6);
    let by_name = AuditQuery { actor_name_contains: Some("bob@".into()), ..Default::default() };
    assert_eq!(q(by_name).await.len(), 6, "actor names match regardless of case");
    let by_org = AuditQuery { org: Some(o2), ..Default::default() };
    assert_eq!(q(by_org).await.len(), 6);
    let by_project = AuditQuery { project: Some(p1), ..Default::default() };
    assert_eq!(q(by_project).await.len(), 1);
    let by_resource =
        AuditQuery { resource_kind: Some(ResourceKind::EdgeService), resource_id: Some("svc-3".into()), ..Default::default() };
    assert_eq!(q(by_resource).await.len(), 1);
    let by_op = AuditQuery { operation: Some("edge_service.upgrade".into()), ..Default::default() };
    assert_eq!(q(by_op).await.len(), 4);
    let by_prefix = AuditQuery { operation: Some("organization.".into()), ..Default::default() };
    assert_eq!(q(by_prefix).await.len(), 8);
    let failures = AuditQuery { success: Some(false), ..Default::default() };
    let failed = q(failures).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].event.outcome, Outcome::Failure { reason: "permission denied".into() });
    let window = AuditQuery {
        since: Some(ecp_core::clock::add(t0, Duration::from_secs(120))),
        until: Some(ecp_core::clock::add(t0, Duration::from_secs(300))),
        ..Default::default()
    };
    let in_window = q(window).await;
    assert_eq!(in_window.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 4, 3]);

    // Scopes restrict what a principal may see.
    let scoped = s
        .query_audit(&AuditQuery::default(), &AuditScope { all: false, orgs: vec![o1], projects: vec![] }, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(scoped.items.len(), 6);
    let proj_only = s
        .query_audit(&AuditQuery::default(), &AuditScope { all: false, orgs: vec![], projects: vec![p1] }, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(proj_only.items.len(), 1);
    let nothing = s.query_audit(&AuditQuery::default(), &AuditScope::default(), &PageRequest::first(100)).await.unwrap();
    assert!(nothing.items.is_empty());

    // Paging.
    let mut seen = Vec::new();
    let mut page = PageRequest::first(5);
    loop {
        let got = s.query_audit(&AuditQuery::default(), all, &page).await.unwrap();
        seen.extend(got.items.iter().map(|r| r.id));
        match got.next {
            Some(c) => page = PageRequest::after(5, c),
            None => break,
        }
    }
    expected_ids.reverse();
    assert_eq!(seen, expected_ids);

    // Case-insensitive search folds non-ASCII letters too, on every backend.
    let accented =
        AuditEvent::new(&Principal::user(UserId::new(), "ÉLODIE Ünal"), ResourceKind::User, Operation::from_static("user.update"));
    s.append_audit(&accented).await.unwrap();
    for search in ["élodie", "ÜNAL", "élodie ü"] {
        let found = q(AuditQuery { actor_name_contains: Some(search.into()), ..Default::default() }).await;
        assert_eq!(found.len(), 1, "{search}: non-ASCII names match regardless of case");
    }

    // Hostile filters are refused, not executed.
    for bad in [
        AuditQuery { operation: Some("x'; DROP TABLE audit_log; --".into()), ..Default::default() },
        AuditQuery { actor_name_contains: Some("x".repeat(10_000)), ..Default::default() },
    ] {
        assert!(matches!(s.query_audit(&bad, all, &PageRequest::first(10)).await.unwrap_err(), Error::InvalidInput { .. }));
    }
    assert!(s.query_audit(&AuditQuery::default(), all, &PageRequest::after(10, "not-a-seq")).await.is_err());
    let system = AuditQuery { actor: Some(Subject::System), ..Default::default() };
    assert!(q(system).await.is_empty());
    verify_audit(s, None).await.unwrap();
}

pub(crate) async fn concurrent_appends_never_fork_the_chain(f: &Fixture) {
    let store: Arc<dyn Store> = f.store.clone();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let e = ev("organization.rename").details(serde_json::json!({ "i": i }));
            store.append_audit(&e).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
    let report = verify_audit(store.as_ref(), None).await.unwrap();
    assert_eq!(report.records, 64);
}

async fn raw(f: &Fixture) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(&f.url).await.expect("raw connection")
}

async fn exec(pool: &AnyPool, sql: &str) {
    sqlx::query(AssertSqlSafe(sql.to_owned())).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn broken(result: ecp_core::Result<ecp_core::VerifyReport>) -> String {
    match result {
        Err(e @ Error::Integrity { .. }) => e.to_string(),
        other => panic!("tampering was not detected: {other:?}"),
    }
}

pub(crate) async fn tampering_is_detected(f: &Fixture) {
    let s = f.store.as_ref();
    for i in 0..6 {
        let e = ev("organization.rename").resource(format!("org-{i}"), Some("acme")).details(serde_json::json!({ "to": format!("n{i}") }));
        s.append_audit(&e).await.unwrap();
    }
    let good = verify_audit(s, None).await.unwrap();
    assert_eq!(good.records, 6);
    let pool = raw(f).await;

    // A flipped byte in a field.
    exec(&pool, "UPDATE audit_log SET actor_name = 'Conformance' WHERE seq = 3").await;
    assert!(broken(verify_audit(s, None).await).contains("record 3 was changed"));
    exec(&pool, "UPDATE audit_log SET actor_name = 'conformance' WHERE seq = 3").await;
    verify_audit(s, None).await.unwrap();

    // A flipped byte in the details.
    exec(&pool, "UPDATE audit_log SET details = REPLACE(details, 'n4', 'n5') WHERE seq = 5").await;
    assert!(broken(verify_audit(s, None).await).contains("record 5 was changed"));
    exec(&pool, "UPDATE audit_log SET details = REPLACE(details, 'n5', 'n4') WHERE seq = 5").await;
    // A change that makes the row undecodable is reported as tampering too.
    exec(&pool, "UPDATE audit_log SET resource_kind = 'rocket' WHERE seq = 2").await;
    assert!(broken(verify_audit(s, None).await).contains("record 2"));
    exec(&pool, "UPDATE audit_log SET resource_kind = 'organization' WHERE seq = 2").await;
    verify_audit(s, None).await.unwrap();

    // A swapped pair (positions exchanged).
    exec(&pool, "UPDATE audit_log SET seq = -1 WHERE seq = 2").await;
    exec(&pool, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    exec(&pool, "UPDATE audit_log SET seq = 3 WHERE seq = -1").await;
    let msg = broken(verify_audit(s, None).await);
    assert!(msg.contains("record 2"), "{msg}");
    exec(&pool, "UPDATE audit_log SET seq = -1 WHERE seq = 2").await;
    exec(&pool, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    exec(&pool, "UPDATE audit_log SET seq = 3 WHERE seq = -1").await;
    verify_audit(s, None).await.unwrap();

    // A published anchor that the log no longer matches.
    let wrong = ChainHead { seq: 4, hash: "f".repeat(64) };
    assert!(broken(verify_audit(s, Some(&wrong)).await).contains("anchor"));
    let beyond = ChainHead { seq: 99, hash: good.head.hash.clone() };
    assert!(broken(verify_audit(s, Some(&beyond)).await).contains("anchor"));
    verify_audit(s, Some(&good.head)).await.unwrap();

    // A deleted row in the middle.
    exec(&pool, "DELETE FROM audit_log WHERE seq = 4").await;
    assert!(broken(verify_audit(s, None).await).contains("record 4 is missing"));

    // Deleted newest rows (on a fresh copy of the chain: re-append after removing everything).
    let f2 = match f.url.starts_with("sqlite") {
        true => crate::store_conformance::sqlite().await,
        false => crate::store_conformance::postgres().await.expect("postgres fixture"),
    };
    for _ in 0..3 {
        f2.store.append_audit(&ev("organization.rename")).await.unwrap();
    }
    let pool2 = raw(&f2).await;
    exec(&pool2, "DELETE FROM audit_log WHERE seq = 3").await;
    assert!(broken(verify_audit(f2.store.as_ref(), None).await).contains("removed"));
}

/// Rows written before the search keys existed get them when a store next connects, so a
/// non-ASCII search finds them too.
pub(crate) async fn search_keys_are_filled_for_older_rows(f: &Fixture) {
    let s = f.store.as_ref();
    let actor = Principal::user(UserId::new(), "ÅSA Öberg");
    s.append_audit(&AuditEvent::new(&actor, ResourceKind::User, Operation::from_static("user.update"))).await.unwrap();
    let pool = raw(f).await;
    exec(&pool, "UPDATE audit_log SET actor_name_key = NULL").await;
    let query = AuditQuery { actor_name_contains: Some("åsa".into()), ..Default::default() };
    let all = AuditScope { all: true, ..Default::default() };
    assert!(s.query_audit(&query, &all, &PageRequest::first(10)).await.unwrap().items.is_empty(), "the key is gone");
    let config = ecp_core::SqlStoreConfig::builder(secrecy::SecretString::from(f.url.clone())).build().unwrap();
    let again = ecp_core::SqlStore::connect(config).await.unwrap();
    assert_eq!(again.query_audit(&query, &all, &PageRequest::first(10)).await.unwrap().items.len(), 1);
    assert!(ecp_core::verify_audit(&again, None).await.is_ok(), "the chain does not cover the key");
}

/// An id re-encoded by hand (upper case, braces, no hyphens) parses to the same value, and a flag
/// set to another integer still reads as true: the chain's hash would match while equality
/// filters miss the row. Both are tampering: the store reads back only what it writes.
pub(crate) async fn reencoded_ids_and_flags_are_tampering(f: &Fixture) {
    use ecp_core::{OrgId, ProjectId};
    let s = f.store.as_ref();
    let (org, project, user) = (OrgId::new(), ProjectId::new(), UserId::new());
    for i in 0..3 {
        let e = AuditEvent::new(&Principal::user(user, "ann"), ResourceKind::EdgeService, Operation::from_static("edge_service.update"))
            .org(org, "acme")
            .project(project, "plant")
            .resource(format!("svc-{i}"), Some("svc"));
        s.append_audit(&e).await.unwrap();
    }
    verify_audit(s, None).await.unwrap();
    let pool = raw(f).await;
    let (o, p, u) = (org.to_string(), project.to_string(), user.to_string());
    let tampered = [
        format!("UPDATE audit_log SET org_id = '{}' WHERE seq = 2", o.to_uppercase()),
        format!("UPDATE audit_log SET org_id = '{{{o}}}' WHERE seq = 2"),
        format!("UPDATE audit_log SET org_id = '{}' WHERE seq = 2", o.replace('-', "")),
        format!("UPDATE audit_log SET project_id = '{}' WHERE seq = 2", p.to_uppercase()),
        format!("UPDATE audit_log SET actor_id = '{}' WHERE seq = 2", u.to_uppercase()),
        "UPDATE audit_log SET id = UPPER(id) WHERE seq = 2".to_owned(),
        "UPDATE audit_log SET success = 2 WHERE seq = 2".to_owned(),
    ];
    let restore =
        format!("UPDATE audit_log SET org_id = '{o}', project_id = '{p}', actor_id = '{u}', id = LOWER(id), success = 1 WHERE seq = 2");
    for sql in tampered {
        exec(&pool, &sql).await;
        let msg = broken(verify_audit(s, None).await);
        assert!(msg.contains("record 2"), "{sql}: {msg}");
        exec(&pool, &restore).await;
        verify_audit(s, None).await.unwrap();
    }
}
