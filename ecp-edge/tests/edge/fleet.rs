//! The project-scoped fleet handle with fake drivers: registration, CSV import, selectors, tags,
//! probes and statistics, lifecycle on managed services (Unsupported), templates, preview, and a
//! delivery to 10,000 targets through the task engine; authorization and audit throughout.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::AuditStore;
use ecp_core::access::{Principal, Scope};
use ecp_core::audit::AuditQuery;
use ecp_core::edge::{EdgeKind, EdgeLimits, EdgeSelector, EdgeService, EdgeStatus, ManagementMode};
use ecp_core::identity::BuiltinRole;
use ecp_core::task::{IdempotencyKey, RolloutPolicy, TargetState, TaskEngine, TaskState};
use ecp_core::{PageRequest, SqlStore};
use ecp_edge::driver::{Capabilities, Drivers, EdgeDriver, EdgeInfo, Health, NodeInfo, RuleInfo};
use ecp_edge::fleet::{EdgeServiceChanges, Fleet, NewEdgeService, ProjectFleet};
use ecp_edge::import::ImportLimits;
use ecp_edge::template::{ChangeKind, ConfigChange, ConfigTemplate, ParamGrid, ParamSpec, ParamType};
use ecp_edge_api::Error as ApiError;
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params, Grant, NewUser};
use parking_lot::Mutex;
use serde_json::json;

/// A driver that answers from memory: services whose name contains "down" never answer; applies
/// are recorded by idempotency key.
#[derive(Debug, Default)]
pub(crate) struct FakeDriver {
    applied: Mutex<HashMap<String, ConfigChange>>,
}

#[async_trait]
impl EdgeDriver for FakeDriver {
    fn backend(&self) -> &'static str {
        "direct"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::managed()
    }
    async fn probe(&self, s: &EdgeService) -> ecp_edge::Result<Health> {
        if s.name().contains("down") {
            return Err(ecp_edge::Error::Service(ApiError::Transport {
                endpoint: s.endpoint().to_string(),
                retryable: true,
                source: "connection refused".into(),
            }));
        }
        Ok(Health { version: Some("3.6.2".into()) })
    }
    async fn sync_info(&self, _s: &EdgeService) -> ecp_edge::Result<EdgeInfo> {
        Ok(EdgeInfo {
            version: Some("3.6.2".into()),
            drivers: vec![
                NodeInfo {
                    name: "modbus".into(),
                    plugin: "Modbus TCP".into(),
                    state: Some("running".into()),
                    connected: Some(true),
                    groups: vec![ecp_edge::driver::GroupInfo { name: "g".into(), interval: 1000, tag_count: 5 }],
                },
                NodeInfo {
                    name: "opcua".into(),
                    plugin: "OPC UA".into(),
                    state: Some("stopped".into()),
                    connected: Some(false),
                    groups: vec![],
                },
            ],
            apps: vec![],
            streams: vec!["demo".into()],
            rules: vec![
                RuleInfo { id: "r1".into(), name: "r1".into(), status: "running".into() },
                RuleInfo { id: "r2".into(), name: "r2".into(), status: "stopped".into() },
            ],
            extra: Default::default(),
        })
    }
    async fn apply(&self, _s: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> ecp_edge::Result<serde_json::Value> {
        self.applied.lock().entry(key.0.clone()).or_insert_with(|| change.clone());
        Ok(json!({ "applied": true }))
    }
}

pub(crate) struct World {
    pub(crate) root: Principal,
    /// Another organization's project, where `stranger` is an admin.
    pub(crate) other: ecp_core::Project,
    pub(crate) store: Arc<SqlStore>,
    pub(crate) ac: AccessControl,
    pub(crate) fleet: Fleet,
    pub(crate) driver: Arc<FakeDriver>,
    pub(crate) admin: Principal,
    pub(crate) viewer: Principal,
    pub(crate) stranger: Principal,
    pub(crate) project: ecp_core::Project,
}

pub(crate) async fn world() -> World {
    world_with(EdgeLimits::default()).await
}

async fn world_with(limits: EdgeLimits) -> World {
    let store = Arc::new(SqlStore::memory().await.unwrap());
    let config = AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1).unwrap()).build().unwrap();
    let ac = AccessControl::new(store.clone(), config).await.unwrap();
    let root = ac.users.bootstrap_admin("root@example.com", "Root", &secrecy::SecretString::from("R00t-passw0rd!")).await.unwrap();
    let root = Principal::user(root.id, root.email);
    let org = ac.tenancy.create_org(&root, "acme").await.unwrap();
    let project = ac.tenancy.create_project(&root, org.id, "plant").await.unwrap();
    let other_org = ac.tenancy.create_org(&root, "globex").await.unwrap();
    let other = ac.tenancy.create_project(&root, other_org.id, "plant").await.unwrap();
    let mk = |email: &str, role, scope| {
        let ac = ac.clone();
        let root = root.clone();
        let email = email.to_owned();
        async move {
            let u = ac.users.create_user(&root, NewUser::new(email.clone(), email).grant(Grant::builtin(role, scope))).await.unwrap();
            Principal::user(u.id, u.email)
        }
    };
    let admin = mk("pa@example.com", BuiltinRole::ProjectAdmin, project.scope()).await;
    let viewer = mk("v@example.com", BuiltinRole::Viewer, project.scope()).await;
    let stranger = mk("x@example.com", BuiltinRole::ProjectAdmin, other.scope()).await;
    let driver = Arc::new(FakeDriver::default());
    let engine = TaskEngine::builder(store.clone()).build().unwrap();
    let drivers = Drivers::new().with(ManagementMode::Direct, driver.clone());
    let fleet = Fleet::builder(store.clone(), ac.authorizer.clone(), engine, drivers)
        .clock(Arc::new(ecp_core::SystemClock))
        .limits(limits)
        .build()
        .unwrap();
    let _ = Scope::System;
    World { root, other, store, ac, fleet, driver, admin, viewer, stranger, project }
}

impl World {
    pub(crate) async fn as_admin(&self) -> ProjectFleet {
        self.fleet.project(&self.admin, self.project.id()).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_tags_probes_and_statistics() {
    let w = world().await;
    let f = w.as_admin().await;
    let a = f.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085").tags(["hall", "line1"])).await.unwrap();
    let b = f.register(NewEdgeService::direct("line-2-down", EdgeKind::NeuronEx, "http://10.0.0.2:8085").tags(["hall"])).await.unwrap();
    assert!(
        f.register(NewEdgeService::direct("LINE-1", EdgeKind::Ekuiper, "http://10.0.0.3:9081"))
            .await
            .unwrap_err()
            .to_string()
            .contains("taken")
    );
    assert!(f.register(NewEdgeService::direct("bad", EdgeKind::Ekuiper, "ftp://x")).await.is_err());

    // Read-only for viewers; invisible to other tenants.
    let v = w.fleet.project(&w.viewer, w.project.id()).await.unwrap();
    assert_eq!(v.count(&EdgeSelector::all()).await.unwrap(), 2);
    assert!(v.register(NewEdgeService::direct("x", EdgeKind::NanoMq, "http://h:8081")).await.is_err());
    assert!(v.delete(a.id()).await.is_err());
    assert!(w.fleet.project(&w.stranger, w.project.id()).await.unwrap_err().is_not_found());

    // Selectors.
    assert_eq!(f.count(&EdgeSelector::with_tags(["hall", "line1"])).await.unwrap(), 1);
    assert_eq!(f.select(&EdgeSelector::all().name("line-*"), &PageRequest::first(10)).await.unwrap().items.len(), 2);

    // Probes: online, and offline after three misses in a row.
    for _ in 0..3 {
        f.probe_all().await.unwrap();
    }
    assert_eq!(f.get(a.id()).await.unwrap().status(), EdgeStatus::Online);
    assert_eq!(f.get(b.id()).await.unwrap().status(), EdgeStatus::Offline);
    assert_eq!(f.get(a.id()).await.unwrap().version(), Some("3.6.2"));

    // Info sync of online services, and statistics.
    let (synced, failed) = f.sync_all().await.unwrap();
    assert_eq!((synced, failed.len()), (1, 0));
    let st = f.statistics().await.unwrap();
    assert_eq!((st.services_online, st.services_offline), (1, 1));
    assert_eq!((st.drivers_total, st.drivers_running, st.drivers_error, st.tag_points), (2, 1, 1, 5));
    assert_eq!((st.rules_total, st.rules_running, st.rules_stopped), (2, 1, 1));

    // Managed services have no lifecycle.
    let err = f.start(a.id()).await.unwrap_err();
    assert!(err.is_unsupported(), "{err}");
    assert!(f.upgrade(a.id(), "emqx/neuronex:3.7").await.unwrap_err().is_unsupported());

    // Tags: a tag in use cannot be deleted.
    assert!(f.delete_tag("hall").await.is_err());
    f.update(a.id(), EdgeServiceChanges::new().tags(["line1"])).await.unwrap();
    f.update(b.id(), EdgeServiceChanges::new().tags(Vec::<String>::new()).name("line-2")).await.unwrap();
    f.delete_tag("hall").await.unwrap();
    assert_eq!(f.tags().await.unwrap().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["line1"]);

    // Deleting deregisters; the project can then be deleted.
    f.delete(a.id()).await.unwrap();
    f.delete(b.id()).await.unwrap();
    assert!(f.get(a.id()).await.unwrap_err().is_not_found());

    // Everything was audited, failures included.
    let q = AuditQuery { project: Some(w.project.id()), success: Some(false), ..Default::default() };
    let failed =
        w.store.query_audit(&q, &ecp_core::audit::AuditScope { all: true, ..Default::default() }, &PageRequest::first(100)).await.unwrap();
    assert!(failed.items.iter().any(|r| r.event.operation.as_str() == "edge_service.start"));
    assert!(failed.items.iter().any(|r| r.event.operation.as_str() == "edge_service.register"));
    let _ = &w.ac;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_reports_bad_lines() {
    let w = world().await;
    let f = w.as_admin().await;
    f.register(NewEdgeService::direct("existing", EdgeKind::NeuronEx, "http://10.0.0.9:8085")).await.unwrap();
    let csv = "category,name,nodeType,endpoint,scheme,tagName\n\
               4,edge-1,Direct,10.0.0.1:8085,http,line1\n\
               4,edge-2,Direct,10.0.0.2:8085,https,line1;hall\n\
               7,edge-3,Direct,10.0.0.3:8085,http,\n\
               4,existing,Direct,10.0.0.4:8085,http,\n\
               4,edge-5,Direct,10.0.0.5:8085,http\n";
    let report = f.import_csv(Cursor::new(csv.as_bytes().to_vec()), ImportLimits::default()).await.unwrap();
    assert_eq!(report.imported.len(), 2);
    let lines: Vec<u64> = report.failures.iter().map(|f| f.line).collect();
    assert_eq!(lines, vec![4, 5, 6], "{:?}", report.failures);
    assert!(report.failures[1].reason.contains("taken"), "{:?}", report.failures[1]);
    assert_eq!(f.count(&EdgeSelector::with_tags(["line1"])).await.unwrap(), 2);
    let v = w.fleet.project(&w.viewer, w.project.id()).await.unwrap();
    assert!(v.import_csv(Cursor::new(csv.as_bytes().to_vec()), ImportLimits::default()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn templates_preview_and_a_delivery_to_ten_thousand_services() {
    let w = world().await;
    let f = w.as_admin().await;
    // 10,000 services registered in one call through the store.
    let now = ecp_core::Timestamp::now();
    let services: Vec<EdgeService> = (0..10_000)
        .map(|i| {
            let kind = if i % 100 == 0 { EdgeKind::NanoMq } else { EdgeKind::NeuronEx };
            EdgeService::builder(w.project.id(), format!("edge-{i:05}"), kind, format!("http://10.1.{}.{}:8085", i / 250, i % 250))
                .tags(["fleet"])
                .build(now)
                .unwrap()
        })
        .collect();
    let ev =
        ecp_core::AuditEvent::new(&w.admin, ecp_core::ResourceKind::EdgeService, ecp_core::Operation::from_static("edge_service.import"));
    use ecp_core::prelude::*;
    assert!(w.store.create_edge_services(&services, &EdgeLimits::default(), &ev).await.unwrap().iter().all(Result::is_ok));

    let template = ConfigTemplate::new(
        ChangeKind::EkuiperRule,
        json!({ "id": "alarm_${line}", "sql": "SELECT * FROM demo WHERE temp > ${limit}", "actions": [{ "log": {} }] }),
        vec![ParamSpec::with_default("line", ParamType::String, json!("all")), ParamSpec::required("limit", ParamType::Number)],
    );
    let saved = f.save_template(None, "temperature alarm", &template).await.unwrap();
    assert_eq!(saved.version, 1);
    let v2 = f.save_template(Some(saved.id), "temperature alarm", &template).await.unwrap();
    assert_eq!(v2.version, 2);
    assert!(w.fleet.project(&w.viewer, w.project.id()).await.unwrap().save_template(None, "x", &template).await.is_err());

    let mut grid = ParamGrid::default();
    grid.default.insert("limit".into(), json!(30));
    grid.rows.insert("edge-00001".into(), [("line".to_owned(), json!("l1")), ("limit".to_owned(), json!(45))].into());
    let selector = EdgeSelector::all().name("edge-0000?");
    let preview = f.preview(saved.id, None, &selector, &grid).await.unwrap();
    assert_eq!(preview.len(), 10);
    let row = |name: &str| preview.iter().find(|r| r.name == name).unwrap();
    assert!(row("edge-00000").result.as_ref().unwrap_err().contains("does not fit"), "a NanoMQ service takes no eKuiper rule");
    match row("edge-00001").result.as_ref().unwrap() {
        ConfigChange::EkuiperRule { id, sql, .. } => {
            assert_eq!((id.as_str(), sql.as_str()), ("alarm_l1", "SELECT * FROM demo WHERE temp > 45"))
        }
        other => panic!("{other:?}"),
    }
    let empty = f.preview(saved.id, None, &selector, &ParamGrid::default()).await.unwrap();
    assert!(empty.iter().all(|r| r.result.as_ref().is_err_and(|e| e.contains("limit") || e.contains("fit"))));

    // The delivery: every NeuronEX service gets its rule, every NanoMQ one fails with its reason.
    let policy = RolloutPolicy::builder().max_in_flight(256).retries(1, Duration::ZERO, Duration::ZERO).build().unwrap();
    let handle = f.deliver(saved.id, None, &EdgeSelector::with_tags(["fleet"]), &grid, policy).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(300), handle.wait()).await.unwrap(), Some(TaskState::Failed));
    let (task, totals) = f.task(handle.id()).await.unwrap();
    assert_eq!((totals.total, totals.succeeded, totals.failed), (10_000, 9_900, 100));
    assert_eq!(task.kind(), "config_delivery");
    assert_eq!(w.driver.applied.lock().len(), 9_900);
    let targets = f.task_targets(handle.id(), None, 200).await.unwrap();
    assert!(targets.iter().filter(|t| t.state == TargetState::Failed).all(|t| t.reason.as_deref().unwrap().contains("does not fit")));
    assert_eq!(f.tasks(&PageRequest::first(10)).await.unwrap().items.len(), 1);
    // Other tenants cannot see the task.
    let stranger = w.fleet.project(&w.stranger, w.project.id()).await;
    assert!(stranger.is_err());
}

/// A license valid from `from_days` to `until_days` days from now.
fn license(from_days: i64, until_days: i64) -> ecp_core::License {
    let day = |d: i64| {
        let span = Duration::from_secs(86_400 * d.unsigned_abs());
        if d < 0 { ecp_core::clock::sub(ecp_core::Timestamp::now(), span) } else { ecp_core::clock::add(ecp_core::Timestamp::now(), span) }
    };
    ecp_core::License {
        id: "lic-1".into(),
        customer: "Acme".into(),
        kind: ecp_core::LicenseKind::Trial,
        starts_at: day(from_days),
        expires_at: day(until_days),
        max_connections: 100,
        max_clusters: 1,
        max_edge_services: 3,
        max_tag_points: 20,
    }
}

/// Past its expiry (or before its start) a license lets nothing new draw on it: no service is
/// registered or imported, no tag points are delivered; what is registered stays and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_license_registers_nothing_new() {
    for (from, until, why) in [(-365, -1, "expired"), (1, 365, "not valid before")] {
        let w = world_with(EdgeLimits::builder().license(&license(from, until)).build().unwrap()).await;
        let f = w.as_admin().await;
        let err = f.register(NewEdgeService::direct("nx-0", EdgeKind::NeuronEx, "http://10.0.0.1:8085")).await.unwrap_err();
        assert!(matches!(&err, ecp_edge::Error::Core(e) if e.is_invalid_input()) && err.to_string().contains(why), "{err}");
        let csv = "category,name,nodeType,endpoint,scheme,tagName\n4,nx-4,4,10.0.0.4:8085,http,\n";
        let report = f.import_csv(std::io::Cursor::new(csv.as_bytes().to_vec()), ImportLimits::default()).await.unwrap();
        assert!(report.imported.is_empty() && report.failures.iter().any(|l| l.reason.contains(why)), "{report:?}");
        assert_eq!(f.count(&EdgeSelector::default()).await.unwrap(), 0);
        let t = f
            .save_template(
                None,
                "device",
                &ConfigTemplate::new(
                    ChangeKind::NeuronSouthDevice,
                    json!({"node": "d", "plugin": "Modbus TCP", "groups": [{"name": "g", "interval": 1000, "tags": []}]}),
                    vec![],
                ),
            )
            .await
            .unwrap();
        let err = f.deliver(t.id, None, &EdgeSelector::default(), &ParamGrid::default(), RolloutPolicy::default()).await.unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_license_limits_edge_services_and_tag_points() {
    let license = license(-1, 365);
    let w = world_with(EdgeLimits::builder().license(&license).build().unwrap()).await;
    let f = w.as_admin().await;
    for i in 0..3 {
        f.register(NewEdgeService::direct(format!("nx-{i}"), EdgeKind::NeuronEx, format!("http://10.0.0.{i}:8085"))).await.unwrap();
    }
    let err = f.register(NewEdgeService::direct("nx-3", EdgeKind::NeuronEx, "http://10.0.0.3:8085")).await.unwrap_err();
    assert!(matches!(err, ecp_edge::Error::Core(ecp_core::Error::LimitExceeded { limit: "licensed edge services", max: 3 })), "{err}");
    let csv = "category,name,nodeType,endpoint,scheme,tagName\n4,nx-4,4,10.0.0.4:8085,http,\n";
    let report = f.import_csv(std::io::Cursor::new(csv.as_bytes().to_vec()), ImportLimits::default()).await.unwrap();
    assert!(report.imported.is_empty(), "{report:?}");
    assert!(report.failures.iter().any(|l| l.reason.contains("licensed edge services")), "{report:?}");

    // Each synced service has 5 tag points in its `modbus` device: 15 of 20 used.
    f.probe_all().await.unwrap();
    assert_eq!(f.sync_all().await.unwrap().0, 3);
    assert_eq!(f.statistics().await.unwrap().tag_points, 15);
    let tag = |n: &str| json!({"name": n, "address": "1!400001", "attribute": 1, "type": 3});
    let device = |node: &str| {
        ConfigTemplate::new(
            ChangeKind::NeuronSouthDevice,
            json!({"node": node, "plugin": "Modbus TCP", "groups": [{"name": "g", "interval": 1000, "tags": [tag("a"), tag("b")]}]}),
            vec![],
        )
    };
    let policy = || RolloutPolicy::builder().max_in_flight(4).build().unwrap();
    let all = EdgeSelector::default();
    // A new device with 2 tags on 3 services: 15 + 6 > 20, refused before any task starts.
    let new = f.save_template(None, "new device", &device("new")).await.unwrap();
    let err = f.deliver(new.id, None, &all, &ParamGrid::default(), policy()).await.unwrap_err();
    assert!(matches!(err, ecp_edge::Error::Core(ecp_core::Error::LimitExceeded { limit: "licensed tag points", max: 20 })), "{err}");
    assert!(f.tasks(&PageRequest::first(10)).await.unwrap().items.is_empty());
    // Replacing the 5-tag `modbus` device with a 2-tag one: 15 - 15 + 6 fits.
    let replace = f.save_template(None, "replace modbus", &device("modbus")).await.unwrap();
    let handle = f.deliver(replace.id, None, &all, &ParamGrid::default(), policy()).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), handle.wait()).await.unwrap(), Some(TaskState::Succeeded));
}

/// A delivered configuration is not undone, so a delivery asking to roll back on abort is refused
/// before anything is sent: `Unsupported`, recorded as a failure, no task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cannot_ask_for_a_rollback_it_cannot_do() {
    let w = world().await;
    let f = w.as_admin().await;
    f.register(NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.1:8085")).await.unwrap();
    let template =
        ConfigTemplate::new(ChangeKind::EkuiperStream, json!({ "name": "s", "sql": "CREATE STREAM s () WITH (TYPE=\"memory\")" }), vec![]);
    let saved = f.save_template(None, "stream", &template).await.unwrap();
    let policy = RolloutPolicy::builder().abort_when(0.5, 1).rollback_on_abort(true).build().unwrap();
    let e = f.deliver(saved.id, None, &EdgeSelector::all(), &ParamGrid::default(), policy).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_unsupported()), "{e}");
    assert!(f.tasks(&PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(w.driver.applied.lock().is_empty());
    let q = ecp_core::audit::AuditQuery { operation: Some("config_delivery.create".into()), success: Some(false), ..Default::default() };
    let scope = ecp_core::audit::AuditScope { all: true, ..Default::default() };
    let refused = w.store.query_audit(&q, &scope, &PageRequest::first(10)).await.unwrap();
    assert_eq!(refused.items.len(), 1, "the refusal is recorded");
}
