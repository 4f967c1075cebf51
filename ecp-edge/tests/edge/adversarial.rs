//! Adversarial tests of the fleet: a lower role, another tenant or a hostile endpoint must not get
//! further than its rights.

use ecp_core::access::{Permission, Principal, ResourceKind};
use ecp_core::audit::{AuditQuery, AuditScope};
use ecp_core::edge::{Credentials, EdgeKind};
use ecp_core::{AgentStore, AuditStore, PageRequest};
use ecp_edge::fleet::{EdgeServiceChanges, NewEdgeService};
use ecp_rbac::{Grant, NewUser};
use secrecy::SecretString;

use crate::fleet::{World, world};

/// A user of the project holding a custom role of the organization with `permissions`.
async fn holder(w: &World, email: &str, permissions: &[Permission]) -> Principal {
    let name = email.split('@').next().unwrap_or("role");
    let role = w.ac.users.create_role(&w.root, Some(w.project.org()), name, "", permissions).await.unwrap();
    let u = w.ac.users.create_user(&w.root, NewUser::new(email, email).grant(Grant::custom(role.id, w.project.scope()))).await.unwrap();
    Principal::user(u.id, u.email)
}

/// `operate` starts and stops what is defined; a new image changes the definition and needs `edit`
/// (as a cluster's does). The refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operate_does_not_change_an_image() {
    let w = world().await;
    let admin = w.fleet.project(&w.admin, w.project.id()).await.unwrap();
    let s = admin.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085")).await.unwrap();
    let operator =
        holder(&w, "op@example.com", &[Permission::view(ResourceKind::EdgeService), Permission::operate(ResourceKind::EdgeService)]).await;
    let op = w.fleet.project(&operator, w.project.id()).await.unwrap();
    let e = op.upgrade(s.id(), "emqx/neuronex:3.6.3").await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_permission_denied()), "{e}");
    // Starting is the operator's to do (the fake direct driver cannot, which is another answer).
    let e = op.start(s.id()).await.unwrap_err();
    assert!(!matches!(&e, ecp_edge::Error::Core(c) if c.is_permission_denied()), "{e}");
    let q = AuditQuery { operation: Some("edge_service.upgrade".into()), success: Some(false), ..Default::default() };
    let refused = w.store.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(refused.items.len(), 1);
    assert_eq!(refused.items[0].event.actor.name, "op@example.com");
}

/// Pointing a service at another origin drops the password stored for the old one, unless new
/// credentials come with the change: an editor cannot send the stored password to a host of its
/// choosing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_an_endpoint_drops_the_stored_password() {
    let w = world().await;
    let admin = w.fleet.project(&w.admin, w.project.id()).await.unwrap();
    let basic = || Credentials::Basic { username: "admin".into(), password: SecretString::from("0000") };
    let s =
        admin.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085").credentials(basic())).await.unwrap();
    let same = admin.update(s.id(), EdgeServiceChanges::new().endpoint("http://10.0.0.1:8085/")).await.unwrap();
    assert!(matches!(same.credentials(), Credentials::Basic { .. }), "the same origin keeps them");
    let moved = admin.update(s.id(), EdgeServiceChanges::new().endpoint("http://attacker.example:8085")).await.unwrap();
    assert_eq!(moved.credentials(), &Credentials::None);
    let stored = admin.get(s.id()).await.unwrap();
    assert_eq!(stored.credentials(), &Credentials::None, "the store dropped them too");
    let given = admin.update(s.id(), EdgeServiceChanges::new().endpoint("http://10.0.0.2:8085").credentials(basic())).await.unwrap();
    assert!(matches!(given.credentials(), Credentials::Basic { .. }), "credentials given with the move stay");
}

/// A NUL in a search is refused, never read as "match everything" (SQLite's LIKE stops at it):
/// names, endpoints, versions of the fleet's selector, and the user search of access control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_search_is_refused_not_a_wildcard() {
    use ecp_core::edge::EdgeSelector;
    let w = world().await;
    let admin = w.fleet.project(&w.admin, w.project.id()).await.unwrap();
    admin.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085")).await.unwrap();
    for sel in [
        EdgeSelector::all().name("\0"),
        EdgeSelector::all().name("x\0"),
        EdgeSelector::all().endpoint_contains("\0"),
        EdgeSelector::all().versions(["\0*"]),
        EdgeSelector::all().versions(["\0"]),
    ] {
        let e = admin.select(&sel, &PageRequest::first(10)).await.unwrap_err();
        assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_invalid_input()), "{sel:?}: {e}");
    }
    let filter = ecp_core::identity::UserFilter { search: Some("\0".into()), ..Default::default() };
    let e = w.ac.users.list_users(&w.root, &filter, &PageRequest::first(10)).await.unwrap_err();
    assert!(matches!(&e, ecp_rbac::Error::Core(c) if c.is_invalid_input()), "{e}");
}

/// `transfer_agent` authorizes the destination for the caller, not for whoever the destination
/// handle was made for: an admin cannot push its agent into another tenant's project through that
/// tenant's handle, and the refusal names nothing of the other tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_transferred_only_where_the_caller_may_edit() {
    use ecp_core::edge::AgentId;
    let w = world().await;
    let admin = w.fleet.project(&w.admin, w.project.id()).await.unwrap();
    let agent = AgentId::new("edge-transfer").unwrap();
    w.store.agent_hello(&agent, "1.0", &serde_json::json!({}), ecp_core::Timestamp::now(), u64::MAX).await.unwrap();
    // An agent heard on an open broker has no claim code: the system administrator hands it out.
    w.fleet.project(&w.root, w.project.id()).await.unwrap().manage_agent(&agent, "gateway").await.unwrap();
    let theirs = w.fleet.project(&w.stranger, w.other.id()).await.unwrap();
    let e = admin.transfer_agent(&agent, &theirs).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_not_found()), "{e}");
    assert_eq!(admin.agents(&PageRequest::first(10)).await.unwrap().items.len(), 1, "the agent stayed");
    let q = AuditQuery { operation: Some("agent.transfer".into()), success: Some(false), ..Default::default() };
    let refused = w.store.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(refused.items.len(), 1);
    let record = format!("{:?}", refused.items[0].event);
    assert!(!record.contains("globex"), "the other tenant's organization is named: {record}");
    assert!(record.contains("\"acme\""), "the record is the caller's own: {record}");
}

/// Another tenant's admin, through its own project's handle, learns nothing from error kinds:
/// every call naming our service, task, template or agent is answered exactly as the same call
/// naming an id that never existed (the id aside); so is asking for a handle on our project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_answer_like_ids_that_never_existed() {
    use ecp_core::edge::{AgentId, ClaimCode, EdgeSelector};
    use ecp_core::task::RolloutPolicy;
    use ecp_core::{EdgeServiceId, ProjectId, TaskId, TemplateId};
    use ecp_edge::template::{ChangeKind, ConfigTemplate, ParamGrid};

    let w = world().await;
    let admin = w.as_admin().await;
    let s = admin.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085")).await.unwrap();
    let template = ConfigTemplate::new(
        ChangeKind::EkuiperStream,
        serde_json::json!({ "name": "s", "sql": "CREATE STREAM s () WITH (TYPE=\"memory\")" }),
        vec![],
    );
    let t = admin.save_template(None, "stream", &template).await.unwrap();
    let handle = admin.deliver(t.id, None, &EdgeSelector::all(), &ParamGrid::default(), RolloutPolicy::default()).await.unwrap();
    let task = handle.id();
    handle.wait().await;
    let agent = AgentId::new("edge-ours").unwrap();
    w.store.agent_hello(&agent, "1.0", &serde_json::json!({}), ecp_core::Timestamp::now(), u64::MAX).await.unwrap();
    w.fleet.project(&w.root, w.project.id()).await.unwrap().manage_agent(&agent, "gateway").await.unwrap();
    let stranger = w.fleet.project(&w.stranger, w.other.id()).await.unwrap();
    let (no_service, no_task, no_template, no_agent) =
        (EdgeServiceId::new(), TaskId::new(), TemplateId::new(), AgentId::new("edge-never").unwrap());

    let mut differ: Vec<String> = Vec::new();
    macro_rules! same {
        ($what:literal, |$id:ident: $ty:ty| $call:expr, $foreign:expr, $unknown:expr) => {{
            let answer = async |$id: $ty| -> String {
                match $call.await {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("{:?}", std::mem::discriminant(&e)) + &e.to_string(),
                }
            };
            let (f, u) = (&$foreign, &$unknown);
            let (foreign, unknown) = (answer((*f).clone()).await, answer((*u).clone()).await);
            let foreign = foreign.replace(&f.to_string(), "ID");
            let unknown = unknown.replace(&u.to_string(), "ID");
            if foreign != unknown || foreign == "ok" {
                differ.push(format!("{}: {foreign} / {unknown}", $what));
            }
        }};
    }
    let sid = s.id();
    same!("project", |id: ProjectId| w.fleet.project(&w.stranger, id), w.project.id(), ProjectId::new());
    same!("get", |id: EdgeServiceId| stranger.get(id), sid, no_service);
    same!("update", |id: EdgeServiceId| stranger.update(id, EdgeServiceChanges::new().name("x")), sid, no_service);
    same!("delete", |id: EdgeServiceId| stranger.delete(id), sid, no_service);
    same!("probe", |id: EdgeServiceId| stranger.probe(id), sid, no_service);
    same!("sync_info", |id: EdgeServiceId| stranger.sync_info(id), sid, no_service);
    same!("start", |id: EdgeServiceId| stranger.start(id), sid, no_service);
    same!("stop", |id: EdgeServiceId| stranger.stop(id), sid, no_service);
    same!("restart", |id: EdgeServiceId| stranger.restart(id), sid, no_service);
    same!("upgrade", |id: EdgeServiceId| stranger.upgrade(id, "emqx/neuronex:3.6.3"), sid, no_service);
    same!("task", |id: TaskId| stranger.task(id), task, no_task);
    same!("task_targets", |id: TaskId| stranger.task_targets(id, None, 10), task, no_task);
    same!("cancel_task", |id: TaskId| stranger.cancel_task(id), task, no_task);
    same!("pause_task", |id: TaskId| stranger.pause_task(id), task, no_task);
    same!("resume_task", |id: TaskId| stranger.resume_task(id), task, no_task);
    same!("template", |id: TemplateId| stranger.template(id, None), t.id, no_template);
    same!("save_template", |id: TemplateId| stranger.save_template(Some(id), "stream", &template), t.id, no_template);
    same!("preview", |id: TemplateId| stranger.preview(id, None, &EdgeSelector::all(), &ParamGrid::default()), t.id, no_template);
    same!(
        "deliver",
        |id: TemplateId| stranger.deliver(id, None, &EdgeSelector::all(), &ParamGrid::default(), RolloutPolicy::default()),
        t.id,
        no_template
    );
    same!("manage_agent", |id: AgentId| stranger.manage_agent(&id, "mine"), agent, no_agent);
    same!("claim_agent", |id: AgentId| stranger.claim_agent(&id, "mine", &ClaimCode::generate().unwrap()), agent, no_agent);
    same!("unmanage_agent", |id: AgentId| stranger.unmanage_agent(&id), agent, no_agent);
    same!("delete_agent", |id: AgentId| stranger.delete_agent(&id), agent, no_agent);
    assert!(differ.is_empty(), "another tenant's ids answered differently:\n{}", differ.join("\n"));
}

/// Names, tags and selectors made of SQL wildcards, quotes, backslashes, glob characters, very
/// long and mixed-direction text: each is stored as written, matches only itself (a wildcard is a
/// literal, a glob character is the glob's), never another tenant's service, and a name over the
/// limit is refused without storing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_tags_and_selectors_match_only_themselves() {
    use ecp_core::edge::EdgeSelector;
    let w = world().await;
    let ours = w.as_admin().await;
    let theirs = w.fleet.project(&w.stranger, w.other.id()).await.unwrap();
    let long = "ש".repeat(100) + &"x".repeat(100);
    let names = [
        "100%",
        "100_",
        "a%b",
        "a_b",
        "it's",
        "say \"hi\"",
        r"back\slash",
        r"end\",
        "star*",
        "what?",
        "[abc]",
        "'; DROP TABLE x; --",
        "מכונה line-1",
        "line-1 مصنع",
        long.as_str(),
    ];
    let tags = ["a_b", "ab_", "x-1", "שלום", "日本_1"];
    for (i, name) in names.iter().enumerate() {
        let tag = tags[i % tags.len()];
        let s = ours
            .register(NewEdgeService::direct(*name, EdgeKind::NeuronEx, format!("http://10.0.0.{}:8085", i + 1)).tags([tag]))
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(s.name(), *name, "stored as written");
        // The other tenant has a service of the same name and tag, and one that a wildcard would match.
        theirs.register(NewEdgeService::direct(*name, EdgeKind::NeuronEx, "http://10.1.0.1:8085").tags([tag])).await.unwrap();
    }
    for bait in ["100x", "100", "axb", "a-b", "its", "a~b", "abc", "zz"] {
        ours.register(NewEdgeService::direct(bait, EdgeKind::NanoMq, "http://10.0.1.1:8081").tags(["axb"])).await.unwrap();
    }
    let select = async |fleet: &ecp_edge::fleet::ProjectFleet, sel: EdgeSelector| -> Vec<String> {
        let mut got: Vec<String> =
            fleet.select(&sel, &PageRequest::first(1000)).await.unwrap().items.iter().map(|s| s.name().to_owned()).collect();
        got.sort();
        got
    };
    // A name glob without `*` or `?` matches exactly that name (case-insensitively), in our project only.
    for name in names.iter().filter(|n| !n.contains(['*', '?'])) {
        assert_eq!(select(&ours, EdgeSelector::all().name(*name)).await, vec![name.to_string()], "{name:?}");
    }
    assert_eq!(select(&ours, EdgeSelector::all().name("%")).await, Vec::<String>::new());
    assert_eq!(select(&ours, EdgeSelector::all().name("_")).await, Vec::<String>::new());
    assert_eq!(select(&ours, EdgeSelector::all().name("a%b")).await, vec!["a%b"]);
    assert_eq!(select(&ours, EdgeSelector::all().name("100?")).await, vec!["100%", "100_", "100x"]);
    assert_eq!(select(&ours, EdgeSelector::all().name("*%*")).await, vec!["100%", "a%b"]);
    assert_eq!(select(&ours, EdgeSelector::all().name(r"*\*")).await, vec![r"back\slash", r"end\"]);
    assert_eq!(select(&ours, EdgeSelector::all().name("*'*")).await, vec!["'; DROP TABLE x; --", "it's"]);
    assert_eq!(select(&ours, EdgeSelector::all().name("*מכונה*")).await, vec!["מכונה line-1"]);
    assert_eq!(select(&ours, EdgeSelector::all().name("ש*")).await, vec![long.clone()]);
    assert_eq!(select(&ours, EdgeSelector::all().name("*")).await.len(), names.len() + 8);
    // Tags match exactly: `a_b` is not `axb`, and tags of the other tenant count nowhere.
    assert_eq!(select(&ours, EdgeSelector::with_tags(["a_b"])).await.len(), names.len().div_ceil(tags.len()));
    assert_eq!(select(&ours, EdgeSelector::with_tags(["axb"])).await.len(), 8);
    assert_eq!(select(&ours, EdgeSelector::all().any_tags(["ab_", "שלום"])).await.len(), 6);
    let usage = ours.tags().await.unwrap();
    assert!(usage.iter().all(|t| tags.contains(&t.name.as_str()) || t.name == "axb"), "{usage:?}");
    assert_eq!(usage.iter().map(|t| t.services).sum::<u64>(), (names.len() + 8) as u64, "our services only");
    // The other tenant sees its own, whatever it asks.
    assert_eq!(select(&theirs, EdgeSelector::all().name("*")).await.len(), names.len());
    assert_eq!(select(&theirs, EdgeSelector::with_tags(["axb"])).await.len(), 0);
    // Over the limit: refused, nothing stored.
    let before = select(&ours, EdgeSelector::all()).await;
    let e = ours.register(NewEdgeService::direct(long.clone() + "!", EdgeKind::NeuronEx, "http://10.0.2.1:8085")).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_invalid_input()), "{e}");
    let e = ours.select(&EdgeSelector::all().name("x".repeat(201)), &PageRequest::first(10)).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_invalid_input()), "{e}");
    assert_eq!(select(&ours, EdgeSelector::all()).await, before);
}
