use std::time::Duration;

use ecp_core::edge::{Credentials, EdgeKind, EdgeLimits, EdgeSelector, EdgeService, EdgeStatus, ProbeOutcome, TemplateRecord};
use ecp_core::prelude::*;
use ecp_core::{Error, Organization, PageRequest, Project, TenancyLimits};
use secrecy::{ExposeSecret, SecretString};

use super::ev;
use crate::store_conformance::Fixture;

async fn project(f: &Fixture) -> Project {
    let o = Organization::new("acme", f.clock.now()).unwrap();
    f.store.create_org(&o, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let p = Project::new(o.id, "p", f.clock.now()).unwrap();
    f.store.create_project(&p, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    p
}

fn svc(f: &Fixture, p: &Project, name: &str, kind: EdgeKind, tags: &[&str]) -> EdgeService {
    EdgeService::builder(p.id(), name, kind, format!("http://10.0.0.{}:8085", name.len()))
        .credentials(Credentials::Basic { username: "admin".into(), password: SecretString::from("0000") })
        .tags(tags.iter().copied())
        .build(f.clock.now())
        .unwrap()
}

async fn names(f: &Fixture, p: &Project, sel: EdgeSelector) -> Vec<String> {
    let mut v: Vec<String> = f
        .store
        .select_edge_services(p.id(), &sel, &PageRequest::first(1000))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.name().to_owned())
        .collect();
    v.sort();
    v
}

pub(crate) async fn edge_services_tags_and_selectors(f: &Fixture) {
    let s = f.store.as_ref();
    let p = project(f).await;
    let limits = EdgeLimits::builder().max_tags_per_project(5).offline_after_misses(3).build().unwrap();
    let batch = vec![
        svc(f, &p, "a1", EdgeKind::NeuronEx, &["line1", "hall"]),
        svc(f, &p, "a2", EdgeKind::NeuronEx, &["line1"]),
        svc(f, &p, "b1", EdgeKind::Ekuiper, &["line2", "hall"]),
        svc(f, &p, "A1", EdgeKind::NanoMq, &[]),                 // taken, regardless of case
        svc(f, &p, "c1", EdgeKind::NanoMq, &["t4", "t5", "t6"]), // the 6th tag of the project: over the limit
        svc(f, &p, "c2", EdgeKind::Custom, &["t4"]),
    ];
    let results = s.create_edge_services(&batch, &limits, &ev("edge_service.import")).await.unwrap();
    assert!(results[0].is_ok() && results[1].is_ok() && results[2].is_ok() && results[5].is_ok());
    assert!(results[3].as_ref().unwrap_err().is_conflict());
    assert!(matches!(results[4], Err(Error::LimitExceeded { limit: "tags per project", .. })));
    assert!(s.get_edge_service(batch[3].id()).await.unwrap_err().is_not_found(), "a failed row leaves nothing");
    let a1 = s.get_edge_service(batch[0].id()).await.unwrap();
    assert_eq!(a1.tags(), vec!["hall", "line1"]);
    assert_eq!(a1.credentials(), batch[0].credentials());
    assert_eq!(a1.status(), EdgeStatus::Unknown);
    // The project knows what it holds.
    assert_eq!(s.project_usage(p.id()).await.unwrap().edge_services, 4);
    assert!(s.delete_project(p.id(), &ev("project.delete")).await.unwrap_err().is_conflict());

    // Selectors, resolved by the store.
    assert_eq!(names(f, &p, EdgeSelector::with_tags(["line1", "hall"])).await, vec!["a1"]);
    assert_eq!(names(f, &p, EdgeSelector::all().any_tags(["line2", "line1"])).await, vec!["a1", "a2", "b1"]);
    assert_eq!(names(f, &p, EdgeSelector::all().kinds([EdgeKind::NeuronEx])).await, vec!["a1", "a2"]);
    assert_eq!(names(f, &p, EdgeSelector::all().name("A*")).await, vec!["a1", "a2"]);
    assert_eq!(names(f, &p, EdgeSelector::all().name("?1")).await, vec!["a1", "b1"]);
    assert_eq!(names(f, &p, EdgeSelector::all().ids([batch[2].id()])).await, vec!["b1"]);
    assert!(names(f, &p, EdgeSelector::all().ids([])).await.is_empty());
    assert_eq!(s.count_edge_services(p.id(), &EdgeSelector::with_tags(["hall"])).await.unwrap(), 2);
    assert_eq!(s.count_edge_services(p.id(), &EdgeSelector::all()).await.unwrap(), 4);
    assert!(s.count_edge_services(p.id(), &EdgeSelector::with_tags(["bad tag!"])).await.is_err());
    assert_eq!(names(f, &p, EdgeSelector::all().name("%")).await, Vec::<String>::new(), "LIKE wildcards are literal");

    // Probes: online on an answer, offline after 3 misses in a row.
    let t = f.clock.now();
    let up = s.record_probe(a1.id(), &ProbeOutcome { answered: true, version: Some("3.6.2".into()), at: t }, 3).await.unwrap();
    assert_eq!((up.status(), up.version(), up.last_seen()), (EdgeStatus::Online, Some("3.6.2"), Some(t)));
    for i in 1..=3 {
        let later = ecp_core::clock::add(t, Duration::from_secs(i * 15));
        let down = s.record_probe(a1.id(), &ProbeOutcome { answered: false, version: None, at: later }, 3).await.unwrap();
        assert_eq!(down.status(), if i < 3 { EdgeStatus::Online } else { EdgeStatus::Offline }, "miss {i}");
        assert_eq!(down.last_seen(), Some(t));
        assert_eq!(down.version(), Some("3.6.2"));
    }
    s.record_probe(batch[1].id(), &ProbeOutcome { answered: true, version: Some("3.7.0".into()), at: t }, 3).await.unwrap();
    assert_eq!(names(f, &p, EdgeSelector::all().statuses([EdgeStatus::Offline])).await, vec!["a1"]);
    assert_eq!(names(f, &p, EdgeSelector::all().versions(["3.6*"])).await, vec!["a1"]);
    assert_eq!(names(f, &p, EdgeSelector::all().versions(["3.7.0", "9"])).await, vec!["a2"]);

    // Updates replace tags; a tag in use cannot be deleted.
    let mut a2 = s.get_edge_service(batch[1].id()).await.unwrap();
    a2.set_tags(vec!["hall".into()]).unwrap();
    a2.set_name("a2-renamed").unwrap();
    a2.set_credentials(Credentials::Token(SecretString::from("tok")));
    s.update_edge_service(&a2, &limits, &ev("edge_service.update")).await.unwrap();
    let back = s.get_edge_service(a2.id()).await.unwrap();
    assert_eq!((back.name(), back.tags().to_vec()), ("a2-renamed", vec!["hall".to_owned()]));
    assert!(matches!(&back.credentials(), Credentials::Token(t) if t.expose_secret() == "tok"));
    let mut clash = back.clone();
    clash.set_name("B1").unwrap();
    assert!(s.update_edge_service(&clash, &limits, &ev("edge_service.update")).await.unwrap_err().is_conflict());
    let tags = s.list_tags(p.id()).await.unwrap();
    let usage = |n: &str| tags.iter().find(|t| t.name == n).map(|t| t.services);
    assert_eq!((usage("hall"), usage("line1"), usage("t4")), (Some(3), Some(1), Some(1)));
    assert!(s.delete_tag(p.id(), "hall", &ev("tag.delete")).await.unwrap_err().is_conflict());
    s.create_tag(p.id(), "spare", &limits, t, &ev("tag.create")).await.unwrap_err(); // 5 tags exist: over the limit
    s.delete_tag(p.id(), "t4", &ev("tag.delete")).await.unwrap_err();
    s.delete_edge_service(batch[5].id(), &ev("edge_service.delete")).await.unwrap();
    s.delete_tag(p.id(), "t4", &ev("tag.delete")).await.unwrap();
    s.create_tag(p.id(), "spare", &limits, t, &ev("tag.create")).await.unwrap();
    assert!(s.create_tag(p.id(), "spare", &EdgeLimits::default(), t, &ev("tag.create")).await.unwrap_err().is_conflict());
    assert!(s.delete_tag(p.id(), "nope", &ev("tag.delete")).await.unwrap_err().is_not_found());

    // Synced information.
    s.save_edge_info(a1.id(), &serde_json::json!({ "drivers": 3 }), t).await.unwrap();
    let infos = s.edge_infos(p.id()).await.unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].2["drivers"], 3);

    // Deregistration frees the project.
    for id in [batch[0].id(), batch[1].id(), batch[2].id()] {
        s.delete_edge_service(id, &ev("edge_service.delete")).await.unwrap();
    }
    assert!(s.delete_edge_service(batch[0].id(), &ev("edge_service.delete")).await.unwrap_err().is_not_found());
    assert!(s.project_usage(p.id()).await.unwrap().is_empty());
    s.delete_project(p.id(), &ev("project.delete")).await.unwrap();
}

/// The bulk path (rows as one JSON parameter) stores every field exactly, whatever characters a
/// name, endpoint or secret holds, and every optional field both set and unset.
pub(crate) async fn imported_rows_round_trip_exactly(f: &Fixture) {
    let p = project(f).await;
    let names = ["O'Brien \"quoted\" \\ back", "東京-ライン 1", "emoji 🚀 \u{2028} sep", "json [\"no\"] {1}", "plain"];
    let mut batch = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let credentials = match i % 3 {
            0 => Credentials::None,
            1 => Credentials::Basic { username: "us'er\"".into(), password: SecretString::from("pa\\ss\"w'ord ü") },
            _ => Credentials::Token(SecretString::from("tok\"en'\\")),
        };
        let mut s = EdgeService::builder(p.id(), *name, EdgeKind::NeuronEx, format!("http://10.0.0.{i}:8085/api?q='x'&y=\"z\""))
            .credentials(credentials)
            .tags([format!("t{i}"), "common".into()]);
        if i % 2 == 0 {
            let agent = ecp_core::edge::AgentId::new(format!("agent-{i}")).unwrap();
            f.store.set_agent_secret(&agent, Some("$7$101$x$y"), None, f.clock.now(), &ev("agent.credentials")).await.unwrap();
            s = s.through_agent(agent);
        }
        let mut s = s.build(f.clock.now()).unwrap();
        if i % 2 == 0 {
            s.set_observed(Some(format!("3.{i}.0 \"beta\"")), Some(f.clock.now()), u32::MAX);
        }
        batch.push(s);
    }
    let results = f.store.create_edge_services(&batch, &EdgeLimits::default(), &ev("edge_service.import")).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let page = f.store.select_edge_services(p.id(), &EdgeSelector::with_tags(["common"]), &PageRequest::first(100)).await.unwrap();
    assert_eq!(page.items.len(), names.len());
    for want in &batch {
        let got = f.store.get_edge_service(want.id()).await.unwrap();
        let listed = page.items.iter().find(|s| s.id() == want.id()).expect("listed");
        for got in [&got, listed] {
            assert_eq!(got.name(), want.name());
            assert_eq!(got.endpoint(), want.endpoint());
            assert_eq!(got.mode(), want.mode());
            assert_eq!(got.agent(), want.agent());
            assert_eq!(got.tags(), want.tags());
            assert_eq!(got.version(), want.version());
            assert_eq!(got.status(), want.status());
            assert_eq!(got.last_seen(), want.last_seen());
            assert_eq!(got.missed_probes(), want.missed_probes());
            assert_eq!(got.created_at(), want.created_at());
            assert_eq!(got.updated_at(), want.updated_at());
            match (&got.credentials(), &want.credentials()) {
                (Credentials::None, Credentials::None) => {}
                (Credentials::Basic { username: a, password: x }, Credentials::Basic { username: b, password: y }) => {
                    assert_eq!(a, b);
                    assert_eq!(x.expose_secret(), y.expose_secret());
                }
                (Credentials::Token(x), Credentials::Token(y)) => assert_eq!(x.expose_secret(), y.expose_secret()),
                (a, b) => panic!("credentials differ: {a:?} vs {b:?}"),
            }
        }
    }
    // The names are taken, case-insensitively, through the same path.
    let again: Vec<EdgeService> = names.iter().map(|n| svc(f, &p, &n.to_uppercase(), EdgeKind::NeuronEx, &[])).collect();
    let results = f.store.create_edge_services(&again, &EdgeLimits::default(), &ev("edge_service.import")).await.unwrap();
    assert!(results.iter().all(|r| r.as_ref().is_err_and(Error::is_conflict)), "{results:?}");
}

pub(crate) async fn a_large_import_in_one_call(f: &Fixture) {
    let p = project(f).await;
    let tags = ["line1", "line2", "hall"];
    let batch: Vec<EdgeService> = (0..5000).map(|i| svc(f, &p, &format!("edge-{i:05}"), EdgeKind::NeuronEx, &[tags[i % 3]])).collect();
    let results = f.store.create_edge_services(&batch, &EdgeLimits::default(), &ev("edge_service.import")).await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(f.store.count_edge_services(p.id(), &EdgeSelector::with_tags(["line2"])).await.unwrap(), 1667);
    let mut all = 0;
    let mut page = PageRequest::first(1000);
    loop {
        let got = f.store.select_edge_services(p.id(), &EdgeSelector::all(), &page).await.unwrap();
        all += got.items.len();
        assert!(got.items.iter().all(|s| s.tags().len() == 1));
        match got.next {
            Some(c) => page = PageRequest::after(1000, c),
            None => break,
        }
    }
    assert_eq!(all, 5000);
}

pub(crate) async fn templates_are_versioned(f: &Fixture) {
    let s = f.store.as_ref();
    let p = project(f).await;
    let id = ecp_core::TemplateId::new();
    let v = |version: u32, name: &str| TemplateRecord {
        id,
        version,
        project: p.id(),
        name: name.into(),
        kind: "ekuiper_rule".into(),
        body: serde_json::json!({ "sql": format!("SELECT * FROM s{version}") }),
        created_by: "ann".into(),
        created_at: f.clock.now(),
    };
    s.save_template(&v(1, "rule"), &ev("template.create")).await.unwrap();
    assert!(s.save_template(&v(1, "rule"), &ev("template.create")).await.unwrap_err().is_conflict());
    assert!(s.save_template(&v(3, "rule"), &ev("template.update")).await.unwrap_err().is_conflict(), "versions follow each other");
    s.save_template(&v(2, "rule"), &ev("template.update")).await.unwrap();
    assert_eq!(s.get_template(id, None).await.unwrap().version, 2);
    assert_eq!(s.get_template(id, Some(1)).await.unwrap().body["sql"], "SELECT * FROM s1");
    let other = TemplateRecord { id: ecp_core::TemplateId::new(), ..v(1, "RULE") };
    assert!(s.save_template(&other, &ev("template.create")).await.unwrap_err().is_conflict(), "names are unique in a project");
    let listed = s.list_templates(p.id()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 2);
    assert!(s.get_template(ecp_core::TemplateId::new(), None).await.unwrap_err().is_not_found());
}
