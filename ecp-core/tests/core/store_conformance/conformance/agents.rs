use ecp_core::edge::{AgentFilter, AgentId, DesiredChange, EdgeKind, EdgeLimits, EdgeService, ManagementMode, ReportedItem};
use ecp_core::prelude::*;
use ecp_core::{Organization, PageRequest, Project, TenancyLimits};
use serde_json::json;

use super::ev;
use crate::store_conformance::Fixture;

async fn project(f: &Fixture, org: &str) -> Project {
    let o = Organization::new(org, f.clock.now()).unwrap();
    f.store.create_org(&o, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let p = Project::new(o.id, "p", f.clock.now()).unwrap();
    f.store.create_project(&p, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    p
}

pub(crate) async fn agents_appear_are_managed_and_guard_their_services(f: &Fixture) {
    let s = f.store.as_ref();
    let (p1, p2) = (project(f, "acme").await, project(f, "globex").await);
    let a = AgentId::new("edge-a").unwrap();
    let b = AgentId::new("edge-b").unwrap();

    // Credentials issued before the first connection create the agent, unmanaged and offline.
    s.set_agent_secret(&b, Some("$7$101$x$y"), None, f.clock.now(), &ev("agent.credentials")).await.unwrap();
    let got = s.get_agent(&b).await.unwrap();
    assert!(got.has_secret && !got.online && got.project.is_none());
    assert_eq!(s.agent_secrets().await.unwrap(), vec![(b.clone(), "$7$101$x$y".to_owned())]);

    // A hello creates an unknown agent, unmanaged and online; a second one updates it.
    let hello = json!({"services": [{"name": "nx", "kind": "neuronex", "url": "http://127.0.0.1:8085"}]});
    let first = s.agent_hello(&a, "0.1.0", &hello, f.clock.now(), u64::MAX).await.unwrap().unwrap();
    assert!(first.online && first.project.is_none() && !first.has_secret);
    assert_eq!(first.hello, hello);
    s.agent_hello(&a, "0.1.1", &hello, f.clock.now(), u64::MAX).await.unwrap().unwrap();
    assert_eq!(s.get_agent(&a).await.unwrap().version.as_deref(), Some("0.1.1"));
    assert!(s.get_agent(&AgentId::new("nobody").unwrap()).await.unwrap_err().is_not_found());
    assert!(!s.set_agent_presence(&AgentId::new("nobody").unwrap(), true, f.clock.now()).await.unwrap());

    let unmanaged = s.list_agents(&AgentFilter { managed: Some(false), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(unmanaged.items.len(), 2);
    let online = s.list_agents(&AgentFilter { online: Some(true), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(online.items.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec!["edge-a"]);

    // Manage into p1; a service is reached through it.
    let managed = s.manage_agent(&a, p1.id(), "line 1 gateway", &ev("agent.manage")).await.unwrap();
    assert_eq!(managed.project, Some(p1.id()));
    let in_p1 = s.list_agents(&AgentFilter { project: Some(p1.id()), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(in_p1.items.len(), 1);
    let svc = EdgeService::builder(p1.id(), "nx-1", EdgeKind::NeuronEx, "http://127.0.0.1:8085")
        .through_agent(a.clone())
        .build(f.clock.now())
        .unwrap();
    let limits = EdgeLimits::builder().max_tags_per_project(100).offline_after_misses(3).build().unwrap();
    s.create_edge_services(std::slice::from_ref(&svc), &limits, &ev("edge_service.register")).await.unwrap().pop().unwrap().unwrap();
    let stored = s.get_edge_service(svc.id()).await.unwrap();
    assert_eq!((stored.mode(), stored.agent()), (ManagementMode::Agent, Some(&a)));

    // While it serves: no transfer, no unmanage, no delete; the project cannot go either.
    assert!(s.manage_agent(&a, p2.id(), "moved", &ev("agent.transfer")).await.unwrap_err().is_conflict());
    assert!(s.unmanage_agent(&a, &ev("agent.unmanage")).await.unwrap_err().is_conflict());
    assert!(s.delete_agent(&a, &ev("agent.delete")).await.unwrap_err().is_conflict());
    // Renaming within the same project is fine.
    s.manage_agent(&a, p1.id(), "renamed", &ev("agent.manage")).await.unwrap();

    s.delete_edge_service(svc.id(), &ev("edge_service.delete")).await.unwrap();
    assert!(s.delete_project(p1.id(), &ev("project.delete")).await.unwrap_err().is_conflict(), "a project holding an agent stays");
    let moved = s.manage_agent(&a, p2.id(), "moved", &ev("agent.transfer")).await.unwrap();
    assert_eq!(moved.project, Some(p2.id()));
    s.delete_project(p1.id(), &ev("project.delete")).await.unwrap();
    s.unmanage_agent(&a, &ev("agent.unmanage")).await.unwrap();
    s.delete_agent(&a, &ev("agent.delete")).await.unwrap();
    assert!(s.get_agent(&a).await.unwrap_err().is_not_found());
}

/// A claim code manages an unmanaged agent once, into one project; every wrong proof is the same
/// `NotFound`; first hellos stop creating agents at the cap.
pub(crate) async fn claims_are_used_once_and_hellos_are_capped(f: &Fixture) {
    use ecp_core::edge::ClaimCode;
    let s = f.store.as_ref();
    let (p1, p2) = (project(f, "acme").await, project(f, "globex").await);
    let (a, b) = (AgentId::new("edge-claim-a").unwrap(), AgentId::new("edge-claim-b").unwrap());
    let code = ClaimCode::generate().unwrap();
    let other = ClaimCode::generate().unwrap();
    assert_ne!(code.digest(), other.digest());
    s.set_agent_secret(&a, Some("$7$101$x$y"), Some(&code.digest()), f.clock.now(), &ev("agent.credentials.issue")).await.unwrap();
    assert!(s.get_agent(&a).await.unwrap().claimable);

    let wrong = s.claim_agent(&a, p1.id(), "gw", &other.digest(), &ev("agent.claim")).await.unwrap_err();
    assert!(wrong.is_not_found(), "{wrong}");
    let unknown = s.claim_agent(&b, p1.id(), "gw", &code.digest(), &ev("agent.claim")).await.unwrap_err();
    assert_eq!(wrong.to_string().replace("edge-claim-b", "edge-claim-a"), unknown.to_string().replace("edge-claim-b", "edge-claim-a"));
    let claimed = s.claim_agent(&a, p1.id(), "gw", &code.digest(), &ev("agent.claim")).await.unwrap();
    assert_eq!((claimed.project, claimed.claimable), (Some(p1.id()), false));
    assert!(s.claim_agent(&a, p2.id(), "gw", &code.digest(), &ev("agent.claim")).await.unwrap_err().is_not_found(), "used up");
    // Credentials issued again to a managed agent bring no claim code.
    s.set_agent_secret(&a, Some("$7$101$x$z"), Some(&other.digest()), f.clock.now(), &ev("agent.credentials.issue")).await.unwrap();
    assert!(!s.get_agent(&a).await.unwrap().claimable);
    assert!(s.claim_agent(&a, p2.id(), "gw", &other.digest(), &ev("agent.claim")).await.unwrap_err().is_not_found());
    assert_eq!(s.get_agent(&a).await.unwrap().project, Some(p1.id()));

    // The cap counts unmanaged agents; known agents always say hello.
    let unmanaged = |n| async move {
        let page = s.list_agents(&AgentFilter { managed: Some(false), ..Default::default() }, &PageRequest::first(100)).await.unwrap();
        assert_eq!(page.items.len(), n);
    };
    unmanaged(0).await;
    for i in 0..3 {
        let id = AgentId::new(format!("anon-{i}")).unwrap();
        assert!(s.agent_hello(&id, "1", &json!({}), f.clock.now(), 2).await.unwrap().is_some() == (i < 2));
    }
    unmanaged(2).await;
    assert!(s.get_agent(&AgentId::new("anon-2").unwrap()).await.unwrap_err().is_not_found());
    assert!(s.agent_hello(&AgentId::new("anon-0").unwrap(), "2", &json!({}), f.clock.now(), 2).await.unwrap().is_some());
    assert!(s.agent_hello(&a, "2", &json!({}), f.clock.now(), 0).await.unwrap().is_some(), "a managed agent");
}

pub(crate) async fn desired_items_version_and_converge(f: &Fixture) {
    let s = f.store.as_ref();
    let a = AgentId::new("edge-d").unwrap();
    s.agent_hello(&a, "0.1.0", &json!({}), f.clock.now(), u64::MAX).await.unwrap().unwrap();
    let stream = json!({"kind": "ekuiper_stream", "name": "s", "sql": "CREATE STREAM s () WITH (TYPE=\"memory\")"});
    let one = s.put_desired(&a, "stream:s", "127.0.0.1:8085", &stream, f.clock.now()).await.unwrap();
    assert_eq!((one.item.version, one.item.applied), (1, None));
    assert_eq!(one.all, vec![one.item.clone()]);
    // The same change again keeps its version: a retried delivery is not a new one.
    assert_eq!(s.put_desired(&a, "stream:s", "127.0.0.1:8085", &stream, f.clock.now()).await.unwrap().item.version, 1);
    let rule = json!({"kind": "ekuiper_rule", "id": "r", "sql": "SELECT * FROM s", "actions": []});
    let two = s.put_desired(&a, "rule:r", "127.0.0.1:8085", &rule, f.clock.now()).await.unwrap();
    assert_eq!(two.item.version, 2);
    // The whole desired set comes back, read after the write.
    assert_eq!(two.all.iter().map(|d| (d.key.as_str(), d.version)).collect::<Vec<_>>(), vec![("rule:r", 2), ("stream:s", 1)]);
    assert!(s.record_applied(&a, "stream:s", 1, true, &json!({"created": true}), f.clock.now()).await.unwrap());
    let items = s.desired(&a).await.unwrap();
    assert_eq!(items.iter().map(|d| (d.key.as_str(), d.converged())).collect::<Vec<_>>(), vec![("rule:r", false), ("stream:s", true)]);
    assert_eq!(items[1].detail, Some(json!({"created": true})));

    // A changed stream gets the next version and is no longer converged.
    let stream2 = json!({"kind": "ekuiper_stream", "name": "s", "sql": "CREATE STREAM s (a bigint) WITH (TYPE=\"memory\")"});
    let three = s.put_desired(&a, "stream:s", "127.0.0.1:8085", &stream2, f.clock.now()).await.unwrap().item;
    assert_eq!(three.version, 3);
    assert!(!three.converged());
    // A late report of the old version does not move the record backwards, nor does one for a
    // version that was never desired or a key that does not exist.
    assert!(s.record_applied(&a, "stream:s", 3, false, &json!("boom"), f.clock.now()).await.unwrap());
    assert!(!s.record_applied(&a, "stream:s", 1, true, &json!({}), f.clock.now()).await.unwrap());
    assert!(!s.record_applied(&a, "stream:s", 9, true, &json!({}), f.clock.now()).await.unwrap());
    assert!(!s.record_applied(&a, "nope", 1, true, &json!({}), f.clock.now()).await.unwrap());
    let now = s.desired(&a).await.unwrap();
    assert_eq!(now[1].applied, Some((3, false)));
    assert!(s.put_desired(&AgentId::new("ghost").unwrap(), "k", "t", &stream, f.clock.now()).await.unwrap_err().is_not_found());
    assert!(matches!(s.put_desired(&a, "", "t", &stream, f.clock.now()).await.unwrap_err(), ecp_core::Error::InvalidInput { .. }));
    assert!(matches!(
        s.put_desired(&a, &"k".repeat(201), "t", &stream, f.clock.now()).await.unwrap_err(),
        ecp_core::Error::InvalidInput { .. }
    ));

    // The set's version is its newest item's; a withdrawal makes a newer set without the item,
    // and the next item is newer still.
    let set = s.desired_set(&a).await.unwrap();
    assert_eq!((set.version, set.items), (3, s.desired(&a).await.unwrap()));
    let same = s.withdraw_desired(&a, &["nope".to_owned()], f.clock.now()).await.unwrap();
    assert_eq!(same.version, 3, "withdrawing nothing changes nothing");
    let after = s.withdraw_desired(&a, &["stream:s".to_owned(), "nope".to_owned()], f.clock.now()).await.unwrap();
    assert_eq!(after.version, 4);
    assert_eq!(after.items.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), vec!["rule:r"]);
    assert_eq!(s.desired_set(&a).await.unwrap(), after);
    let back = s.put_desired(&a, "stream:s", "127.0.0.1:8085", &stream, f.clock.now()).await.unwrap().item;
    assert_eq!((back.version, back.applied), (5, None), "a withdrawn key comes back as a new item");
    let empty = s.withdraw_desired(&a, &["stream:s".to_owned(), "rule:r".to_owned()], f.clock.now()).await.unwrap();
    assert_eq!((empty.version, empty.items.len()), (6, 0), "an empty set still has its version");
    let ghost = AgentId::new("ghost").unwrap();
    assert!(s.desired_set(&ghost).await.unwrap_err().is_not_found());
    assert!(s.withdraw_desired(&ghost, &["k".to_owned()], f.clock.now()).await.unwrap_err().is_not_found());
}

/// Reports of many agents in one write: the highest version of a key counts, and what does not
/// match a desired item is ignored.
pub(crate) async fn reports_are_recorded_in_one_batch(f: &Fixture) {
    let s = f.store.as_ref();
    let (a, b) = (AgentId::new("edge-r1").unwrap(), AgentId::new("edge-r2").unwrap());
    let change = |n: u32| json!({"kind": "ekuiper_rule", "id": "r", "sql": format!("SELECT {n} FROM s"), "actions": []});
    for agent in [&a, &b] {
        s.agent_hello(agent, "0.1.0", &json!({}), f.clock.now(), u64::MAX).await.unwrap().unwrap();
        s.put_desired(agent, "rule:r", "t", &change(1), f.clock.now()).await.unwrap();
        s.put_desired(agent, "rule:r", "t", &change(2), f.clock.now()).await.unwrap();
        s.put_desired(agent, "stream:s", "t", &change(3), f.clock.now()).await.unwrap();
    }
    let report = |agent: &AgentId, key: &str, version: u64, ok: bool| ReportedItem {
        agent: agent.clone(),
        key: key.to_owned(),
        version,
        ok,
        detail: json!({"v": version, "text": "quote ' \" back \\ 中文 \u{2028}"}),
    };
    assert_eq!(s.record_reports(&[], f.clock.now()).await.unwrap(), 0);
    let batch = [
        report(&a, "rule:r", 2, true),
        report(&a, "rule:r", 1, false), // older, in the same batch: the highest counts
        report(&b, "rule:r", 1, false),
        report(&b, "stream:s", 3, true),
        report(&b, "nope", 1, true),     // no such key
        report(&a, "stream:s", 9, true), // never desired
    ];
    assert_eq!(s.record_reports(&batch, f.clock.now()).await.unwrap(), 3);
    let got = |agent: &AgentId| {
        let agent = agent.clone();
        async move { s.desired(&agent).await.unwrap().into_iter().map(|d| (d.key, d.applied, d.detail)).collect::<Vec<_>>() }
    };
    assert_eq!(
        got(&a).await,
        vec![("rule:r".to_owned(), Some((2, true)), Some(batch[0].detail.clone())), ("stream:s".to_owned(), None, None),]
    );
    assert_eq!(
        got(&b).await,
        vec![
            ("rule:r".to_owned(), Some((1, false)), Some(batch[2].detail.clone())),
            ("stream:s".to_owned(), Some((3, true)), Some(batch[3].detail.clone())),
        ]
    );
    // A late report of an older version does not move a record back.
    assert_eq!(s.record_reports(&[report(&a, "rule:r", 1, false)], f.clock.now()).await.unwrap(), 0);
    assert_eq!(got(&a).await[0].1, Some((2, true)));
}

/// Concurrent puts to one agent: every change gets its own version, the newest of a key stays,
/// and every call returns a stored item no older than its own.
pub(crate) async fn concurrent_puts_keep_versions_unique(f: &Fixture) {
    let s = f.store.clone();
    let a = AgentId::new("edge-c").unwrap();
    s.agent_hello(&a, "0.1.0", &json!({}), f.clock.now(), u64::MAX).await.unwrap().unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40u32 {
        let (s, a, at) = (s.clone(), a.clone(), f.clock.now());
        calls.spawn(async move {
            // 20 keys, two different changes each.
            let key = format!("rule:{}", i % 20);
            let change = json!({"kind": "ekuiper_rule", "id": key, "sql": format!("SELECT {i} FROM s"), "actions": []});
            s.put_desired(&a, &key, "t", &change, at).await.unwrap()
        });
    }
    let mut returned = Vec::new();
    while let Some(put) = calls.join_next().await {
        returned.push(put.unwrap().item);
    }
    let stored = s.desired(&a).await.unwrap();
    assert_eq!(stored.len(), 20);
    let mut versions: Vec<u64> = stored.iter().map(|d| d.version).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 20, "versions are unique per agent: {stored:?}");
    for item in returned {
        let now = stored.iter().find(|d| d.key == item.key).unwrap();
        assert!(item.version <= now.version);
    }
}

/// Many items of many agents in one call: an agent's several items are set in order, each item's
/// own error is its result, and every result carries its agent's whole set.
pub(crate) async fn many_items_are_put_in_one_call(f: &Fixture) {
    let s = f.store.as_ref();
    let (a, b) = (AgentId::new("edge-m1").unwrap(), AgentId::new("edge-m2").unwrap());
    for agent in [&a, &b] {
        s.agent_hello(agent, "0.1.0", &json!({}), f.clock.now(), u64::MAX).await.unwrap().unwrap();
    }
    let change = |agent: &AgentId, key: &str, n: u32| DesiredChange {
        agent: agent.clone(),
        key: key.to_owned(),
        target: "127.0.0.1:8085".to_owned(),
        change: json!({"kind": "ekuiper_rule", "id": key, "sql": format!("SELECT {n} FROM s"), "actions": []}),
    };
    assert!(s.put_desired_many(&[], f.clock.now()).await.unwrap().is_empty());
    let calls = [
        change(&a, "rule:x", 1),
        change(&b, "rule:x", 1),
        change(&a, "rule:y", 1),
        change(&a, "rule:x", 2), // a's third item: set after the first, a newer version
        change(&AgentId::new("ghost").unwrap(), "rule:x", 1),
        change(&b, "", 1),
        change(&b, "rule:x", 1), // the same as b's first: unchanged
    ];
    let results = s.put_desired_many(&calls, f.clock.now()).await.unwrap();
    assert_eq!(results.len(), calls.len());
    let version = |i: usize| results[i].as_ref().unwrap().item.version;
    // a's items in order: x v1, y v2, x v3; the first result shows x as it is after the call.
    assert_eq!((version(0), version(2), version(3)), (3, 2, 3));
    assert_eq!(version(1), 1);
    assert_eq!(version(6), 1, "an unchanged item keeps its version");
    assert!(results[4].as_ref().unwrap_err().is_not_found());
    assert!(matches!(results[5].as_ref().unwrap_err(), ecp_core::Error::InvalidInput { .. }));
    // Every result has its agent's set as stored after the whole call.
    let a_now = s.desired(&a).await.unwrap();
    assert_eq!(a_now.iter().map(|d| (d.key.as_str(), d.version)).collect::<Vec<_>>(), vec![("rule:x", 3), ("rule:y", 2)]);
    assert_eq!(results[3].as_ref().unwrap().all, a_now);
    assert_eq!(a_now[0].change["sql"], json!("SELECT 2 FROM s"));
    assert_eq!(results[1].as_ref().unwrap().all, s.desired(&b).await.unwrap());
}
