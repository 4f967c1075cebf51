//! Every mutating method of the project-scoped fleet handle, called by a principal that sees the
//! project but may not change it (a viewer): each is refused with `PermissionDenied`, writes a
//! failure record of its own operation, and changes nothing. The list of methods is checked
//! against the handle's source, so a method cannot be added without being classified here.

use std::io::Cursor;

use ecp_core::audit::{AuditQuery, AuditScope, Outcome};
use ecp_core::edge::{AgentId, EdgeKind, EdgeSelector};
use ecp_core::task::RolloutPolicy;
use ecp_core::{AgentStore, AuditStore, PageRequest, TaskId};
use ecp_edge::fleet::{EdgeServiceChanges, NewEdgeService, ProjectFleet};
use ecp_edge::import::ImportLimits;
use ecp_edge::template::{ChangeKind, ConfigTemplate, ParamGrid};
use serde_json::json;

use crate::fleet::{World, world};

/// The handle's sources, as the crate has them.
const SOURCES: [&str; 8] = [
    include_str!("../../src/fleet/mod.rs"),
    include_str!("../../src/fleet/agents.rs"),
    include_str!("../../src/fleet/services.rs"),
    include_str!("../../src/fleet/tags.rs"),
    include_str!("../../src/fleet/health.rs"),
    include_str!("../../src/fleet/templates.rs"),
    include_str!("../../src/fleet/tasks.rs"),
    include_str!("../../src/fleet/delivery.rs"),
];

/// Methods that change nothing and write nothing.
const READS: [&str; 14] = [
    "agents",
    "count",
    "get",
    "preview",
    "principal",
    "project",
    "select",
    "statistics",
    "tags",
    "task",
    "task_targets",
    "tasks",
    "template",
    "templates",
];

/// The mutating methods and the audit operation each records.
const MUTATING: [(&str, &str); 20] = [
    ("cancel_task", "task.cancel"),
    ("claim_agent", "agent.claim"),
    ("create_tag", "tag.create"),
    ("delete", "edge_service.delete"),
    ("delete_agent", "agent.delete"),
    ("delete_tag", "tag.delete"),
    ("deliver", "config_delivery.create"),
    ("import_csv", "edge_service.import"),
    ("manage_agent", "agent.manage"),
    ("pause_task", "task.pause"),
    ("register", "edge_service.register"),
    ("restart", "edge_service.restart"),
    ("resume_task", "task.resume"),
    ("save_template", "config_template.save"),
    ("start", "edge_service.start"),
    ("stop", "edge_service.stop"),
    ("transfer_agent", "agent.transfer"),
    ("unmanage_agent", "agent.unmanage"),
    ("update", "edge_service.update"),
    ("upgrade", "edge_service.upgrade"),
];

/// Probes and information syncs: they change nothing a user configured, so a viewer may run
/// them, but they record what they observe, so each call is audited.
const OBSERVES: [(&str, &str); 4] = [
    ("probe", "edge_service.probe"),
    ("probe_all", "edge_service.probe_all"),
    ("sync_all", "edge_service.sync_all"),
    ("sync_info", "edge_service.sync_info"),
];

fn mutating() -> impl Iterator<Item = (&'static str, &'static str)> {
    MUTATING.into_iter()
}

#[test]
fn every_public_method_of_the_fleet_handle_is_a_read_or_tested_here() {
    let found = ecp_testkit::methods::public_methods("ProjectFleet", &SOURCES);
    let mut known: Vec<String> =
        READS.iter().map(|m| (*m).to_owned()).chain(mutating().chain(OBSERVES).map(|(m, _)| m.to_owned())).collect();
    known.sort();
    assert_eq!(found, known, "a public method of ProjectFleet is neither a read nor a tested mutation");
}

/// What a viewer could change: the project's services, tags, templates, agents and tasks.
async fn snapshot(w: &World, f: &ProjectFleet) -> serde_json::Value {
    let services = f.select(&EdgeSelector::all(), &PageRequest::first(100)).await.unwrap().items;
    let agents = f.agents(&PageRequest::first(100)).await.unwrap().items;
    let tasks = f.tasks(&PageRequest::first(100)).await.unwrap().items;
    json!({
        "services": services.iter().map(|s| json!([s.id(), s.name(), s.endpoint(), s.tags(), s.credentials().kind()])).collect::<Vec<_>>(),
        "tags": f.tags().await.unwrap().iter().map(|t| json!([t.name, t.services])).collect::<Vec<_>>(),
        "templates": f.templates().await.unwrap().iter().map(|t| json!([t.id, t.version, t.name])).collect::<Vec<_>>(),
        "agents": agents.iter().map(|a| json!([a.id, a.project, a.name])).collect::<Vec<_>>(),
        "tasks": tasks.iter().map(|t| json!([t.id(), t.state()])).collect::<Vec<_>>(),
        "all_agents": w.store.list_agents(&Default::default(), &PageRequest::first(100)).await.unwrap().items.len(),
    })
}

/// The failure records of `operation` in the project.
async fn failures(w: &World, operation: &str) -> Vec<ecp_core::AuditRecord> {
    let q = AuditQuery { project: Some(w.project.id()), operation: Some(operation.to_owned()), success: Some(false), ..Default::default() };
    w.store.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(100)).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_writes_a_failure_record_and_changes_nothing() {
    let w = world().await;
    let admin = w.as_admin().await;
    let fx = fixtures(&w, &admin).await;
    let viewer = w.fleet.project(&w.viewer, w.project.id()).await.unwrap();
    every_mutation_is_denied(&w, &admin, &viewer, "v@example.com", &fx).await;
}

/// A service, a tag, a template, a finished delivery and a managed agent in the project.
async fn fixtures(w: &World, admin: &ProjectFleet) -> Fixtures {
    let s = admin.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085").tags(["hall"])).await.unwrap();
    admin.create_tag("spare").await.unwrap();
    let template =
        ConfigTemplate::new(ChangeKind::EkuiperStream, json!({ "name": "s", "sql": "CREATE STREAM s () WITH (TYPE=\"memory\")" }), vec![]);
    let t = admin.save_template(None, "stream", &template).await.unwrap();
    let agent = AgentId::new("edge-denials").unwrap();
    w.store.agent_hello(&agent, "1.0", &json!({}), ecp_core::Timestamp::now(), u64::MAX).await.unwrap();
    // An agent heard on an open broker has no claim code: the system administrator hands it out.
    w.fleet.project(&w.root, w.project.id()).await.unwrap().manage_agent(&agent, "gateway").await.unwrap();
    let handle = admin.deliver(t.id, None, &EdgeSelector::all(), &ParamGrid::default(), RolloutPolicy::default()).await.unwrap();
    let task: TaskId = handle.id();
    // Let it finish, so that nothing changes on its own while the denials run.
    handle.wait().await;
    Fixtures { service: s.id(), template: t.id, body: template, task, agent }
}

/// What the denied calls name: a service, a template, a task and an agent of the project.
struct Fixtures {
    service: ecp_core::EdgeServiceId,
    template: ecp_core::TemplateId,
    body: ConfigTemplate,
    task: TaskId,
    agent: AgentId,
}

/// Calls every mutating method through `denied` (a handle of `actor`) and checks each is refused
/// with `PermissionDenied`, recorded as a failure naming `actor`, and changes nothing.
async fn every_mutation_is_denied(w: &World, admin: &ProjectFleet, denied: &ProjectFleet, actor: &str, fx: &Fixtures) {
    let Fixtures { service, template: t, body: template, task, agent } = fx;
    let (service, t, task) = (*service, *t, *task);
    let before = snapshot(w, admin).await;
    let csv = "name,kind,endpoint\nx,neuronex,http://10.0.0.9:8085\n";
    for (method, operation) in mutating() {
        let already = failures(w, operation).await.len();
        let err = match method {
            "cancel_task" => denied.cancel_task(task).await.unwrap_err(),
            "claim_agent" => {
                let code = ecp_core::edge::ClaimCode::generate().unwrap();
                denied.claim_agent(&AgentId::new("edge-unclaimed").unwrap(), "x", &code).await.unwrap_err()
            }
            "create_tag" => denied.create_tag("new").await.unwrap_err(),
            "delete" => denied.delete(service).await.unwrap_err(),
            "delete_agent" => denied.delete_agent(agent).await.unwrap_err(),
            "delete_tag" => denied.delete_tag("spare").await.unwrap_err(),
            "deliver" => denied.deliver(t, None, &EdgeSelector::all(), &ParamGrid::default(), RolloutPolicy::default()).await.unwrap_err(),
            "import_csv" => denied.import_csv(Cursor::new(csv.as_bytes().to_vec()), ImportLimits::default()).await.unwrap_err(),
            "manage_agent" => denied.manage_agent(agent, "renamed").await.unwrap_err(),
            "pause_task" => denied.pause_task(task).await.unwrap_err(),
            "register" => denied.register(NewEdgeService::direct("x", EdgeKind::NanoMq, "http://h:8081")).await.unwrap_err(),
            "restart" => denied.restart(service).await.unwrap_err(),
            "resume_task" => denied.resume_task(task).await.unwrap_err(),
            "save_template" => denied.save_template(Some(t), "stream", template).await.unwrap_err(),
            "start" => denied.start(service).await.unwrap_err(),
            "stop" => denied.stop(service).await.unwrap_err(),
            "transfer_agent" => denied.transfer_agent(agent, denied).await.unwrap_err(),
            "unmanage_agent" => denied.unmanage_agent(agent).await.unwrap_err(),
            "update" => denied.update(service, EdgeServiceChanges::new().name("renamed")).await.unwrap_err(),
            "upgrade" => denied.upgrade(service, "emqx/neuronex:3.6.3").await.unwrap_err(),
            other => panic!("no case for {other}"),
        };
        assert!(matches!(&err, ecp_edge::Error::Core(e) if e.is_permission_denied()), "{actor} {method}: {err}");
        let records = failures(w, operation).await;
        assert_eq!(records.len(), already + 1, "{actor}: {method} wrote no failure record of {operation}");
        let last = records.iter().max_by_key(|r| r.seq).unwrap();
        assert_eq!(last.event.actor.name, actor, "{method}");
        assert!(matches!(&last.event.outcome, Outcome::Failure { reason } if reason.contains("permission denied")), "{method}");
        assert_eq!(snapshot(w, admin).await, before, "{actor}: {method} changed something");
    }
}

/// A project administrator's handle made before the administrator was disabled, and an API key's
/// made before the key was revoked: every mutating method is refused and recorded, as a viewer's
/// is, with no reload in between (the authorizer follows at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_and_a_revoked_key_change_nothing() {
    use ecp_core::identity::BuiltinRole;
    use ecp_rbac::{Grant, NewApiKey, NewUser};
    let w = world().await;
    let admin = w.as_admin().await;
    let fx = fixtures(&w, &admin).await;

    let grant = Grant::builtin(BuiltinRole::ProjectAdmin, w.project.scope());
    let second = w.ac.users.create_user(&w.root, NewUser::new("pa2@example.com", "pa2").grant(grant)).await.unwrap();
    let second_p = ecp_core::access::Principal::user(second.id, second.email.clone());
    let key = w.ac.users.create_api_key(&w.root, NewApiKey::new("deployer").grant(grant)).await.unwrap();
    let key_p = w.ac.auth.authenticate_api_key(&key.secret).await.unwrap();
    let (disabled, revoked) =
        (w.fleet.project(&second_p, w.project.id()).await.unwrap(), w.fleet.project(&key_p, w.project.id()).await.unwrap());
    disabled.create_tag("before").await.unwrap();
    w.ac.users.set_enabled(&w.root, second.id, false).await.unwrap();
    w.ac.users.revoke_api_key(&w.root, key.key.id).await.unwrap();
    every_mutation_is_denied(&w, &admin, &disabled, "pa2@example.com", &fx).await;
    every_mutation_is_denied(&w, &admin, &revoked, "deployer", &fx).await;
    assert!(w.ac.auth.authenticate_api_key(&key.secret).await.is_err());
}

/// A viewer's probes and syncs run, and each call leaves a record of its own operation naming the
/// viewer; a probe of a service the project does not have is a recorded failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_syncs_are_recorded() {
    let w = world().await;
    let admin = w.as_admin().await;
    let s = admin.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085")).await.unwrap();
    let viewer = w.fleet.project(&w.viewer, w.project.id()).await.unwrap();
    let q = |operation: &str, success| AuditQuery {
        project: Some(w.project.id()),
        operation: Some(operation.to_owned()),
        success: Some(success),
        ..Default::default()
    };
    for (method, operation) in OBSERVES {
        match method {
            "probe" => drop(viewer.probe(s.id()).await.unwrap()),
            "probe_all" => assert_eq!(viewer.probe_all().await.unwrap().len(), 1),
            "sync_all" => drop(viewer.sync_all().await.unwrap()),
            "sync_info" => drop(viewer.sync_info(s.id()).await.unwrap()),
            other => panic!("no case for {other}"),
        }
        let all = AuditScope { all: true, ..Default::default() };
        let records = w.store.query_audit(&q(operation, true), &all, &PageRequest::first(10)).await.unwrap();
        assert_eq!(records.items.len(), 1, "{method} wrote no record of {operation}");
        assert_eq!(records.items[0].event.actor.name, "v@example.com", "{method}");
    }
    let e = viewer.probe(ecp_core::EdgeServiceId::new()).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_not_found()), "{e}");
    let all = AuditScope { all: true, ..Default::default() };
    let failed = w.store.query_audit(&q("edge_service.probe", false), &all, &PageRequest::first(10)).await.unwrap();
    assert_eq!(failed.items.len(), 1);
}
