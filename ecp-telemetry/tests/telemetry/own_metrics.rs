//! The control plane's own metrics move when the things they count happen: denials through a
//! real RBAC authorizer, tasks through a real task engine on an in-memory SQLite store; and the
//! encoded text is well-formed Prometheus text (and OpenMetrics with `# EOF`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::access::{Authorizer, Permission, Principal, ResourceKind, Scope};
use ecp_core::prelude::*;
use ecp_core::task::{
    IdempotencyKey, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, TargetState, Task, TaskEngine, TaskKind, TaskState,
    TaskTarget,
};
use ecp_core::{AuditEvent, Operation, Organization, Project, SqlStore, SystemClock, TenancyLimits, UserId};
use ecp_rbac::RbacAuthorizer;
use ecp_telemetry::own::{self, Direction, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use ecp_telemetry::{ControlPlaneMetrics, CountingAuthorizer, Severity};
use prometheus_client::metrics::counter::Counter;
use proptest::prelude::*;

fn line_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[tokio::test]
async fn denials_through_a_real_rbac_authorizer_are_counted_by_permission() {
    let store: Arc<SqlStore> = Arc::new(SqlStore::memory().await.unwrap());
    let rbac = Arc::new(RbacAuthorizer::load(store, Arc::new(SystemClock)).await.unwrap());
    let metrics = ControlPlaneMetrics::new();
    let authz = CountingAuthorizer::new(rbac.clone(), metrics.clone());
    let dynamic: Arc<dyn Authorizer> = Arc::new(authz.clone());

    let stranger = Principal::user(UserId::new(), "stranger");
    let edit = Permission::edit(ResourceKind::EdgeService);
    let view = Permission::view(ResourceKind::Cluster);
    // The wrapper answers exactly as the authorizer it wraps.
    for (p, perm) in [(&stranger, edit), (&stranger, edit), (&stranger, view), (&Principal::system("job"), edit)] {
        assert_eq!(dynamic.check(p, perm, &Scope::System), rbac.check(p, perm, &Scope::System));
        assert_eq!(dynamic.has_access(p, &Scope::System), rbac.has_access(p, &Scope::System));
        assert_eq!(dynamic.visibility(p, perm), rbac.visibility(p, perm));
    }
    assert!(dynamic.check(&Principal::system("job"), edit, &Scope::System).is_ok());

    let text = metrics.encode();
    assert_eq!(line_value(&text, r#"ecp_authz_denials_total{permission="edge_service:edit"}"#), Some(2.0), "{text}");
    assert_eq!(line_value(&text, r#"ecp_authz_denials_total{permission="cluster:view"}"#), Some(1.0));
    assert!(text.contains("# TYPE ecp_authz_denials_total counter\n"));
    // The system principal is allowed: nothing counted for it.
    assert_eq!(text.lines().filter(|l| l.starts_with("ecp_authz_denials_total{")).count(), 2);
}

#[derive(Debug)]
struct FailSome;

#[async_trait]
impl TargetExecutor for FailSome {
    async fn apply(&self, target: &TaskTarget, _key: &IdempotencyKey) -> Result<serde_json::Value, TargetError> {
        if target.target.starts_with("bad") { Err(TargetError::fatal("bad configuration")) } else { Ok(serde_json::Value::Null) }
    }
}

#[derive(Debug)]
struct Delivery;

impl TaskKind for Delivery {
    fn name(&self) -> &str {
        "config_delivery"
    }
    fn executor(&self, _task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        Ok(Arc::new(FailSome))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_real_engine_are_counted_by_kind_and_outcome() {
    let store = Arc::new(SqlStore::memory().await.unwrap());
    let ev = |op: &str| AuditEvent::new(&Principal::system("t"), ResourceKind::Organization, Operation::new(op).unwrap());
    let org = Organization::new("acme", ecp_core::Timestamp::now()).unwrap();
    store.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", ecp_core::Timestamp::now()).unwrap();
    store.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    let engine = TaskEngine::builder(store).clock(Arc::new(SystemClock)).build().unwrap();
    engine.register(Arc::new(Delivery)).unwrap();

    let metrics = ControlPlaneMetrics::new();
    let observer = metrics.observe_tasks(&engine);
    let policy = || RolloutPolicy::builder().exclusive(false).target_timeout(Duration::from_secs(5)).build().unwrap();
    let task = |targets: &[&str]| {
        NewTask::new(project.id(), "config_delivery", targets.iter().map(|t| NewTarget::new(*t, *t)).collect())
            .spec(serde_json::json!({}))
            .policy(policy())
    };
    let ok = engine.submit(&Principal::system("t"), task(&["e1", "e2", "e3"])).await.unwrap();
    let mixed = engine.submit(&Principal::system("t"), task(&["e4", "bad5"])).await.unwrap();
    assert_eq!(ok.wait().await, Some(TaskState::Succeeded));
    assert_eq!(mixed.wait().await, Some(TaskState::Failed));

    // The observer counts asynchronously: wait until it has seen both ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = metrics.encode();
        if line_value(&text, r#"ecp_tasks_total{kind="config_delivery",outcome="failed"}"#) == Some(1.0)
            && line_value(&text, r#"ecp_tasks_total{kind="config_delivery",outcome="succeeded"}"#) == Some(1.0)
        {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "tasks not counted in time:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(line_value(&text, r#"ecp_task_targets_total{outcome="succeeded"}"#), Some(4.0), "{text}");
    assert_eq!(line_value(&text, r#"ecp_task_targets_total{outcome="failed"}"#), Some(1.0));
    assert_eq!(line_value(&text, "ecp_task_events_lagged_total"), Some(0.0));
    // Only final states are counted: no running or pending series.
    assert!(!text.contains(r#"outcome="running""#) && !text.contains(r#"outcome="pending""#));
    observer.abort();
}

#[test]
fn prometheus_text_has_help_type_and_values_and_openmetrics_ends_with_eof() {
    let m = ControlPlaneMetrics::new();
    assert!(!m.encode().contains("ecp_authz_denials_total"), "a family without series is left out of the text");
    m.authz_denied(Permission::operate(ResourceKind::EdgeService));
    m.task_finished("config_delivery", TaskState::Succeeded);
    m.task_target_finished(TargetState::TimedOut);
    m.agent_message(Direction::In, "heartbeat");
    m.agent_message(Direction::In, "heartbeat");
    m.agent_message(Direction::Out, "command");
    m.agent_message_rejected("malformed");
    m.agent_samples_dropped("unmanaged", 3);
    m.agent_samples_dropped("invalid", 0);
    m.collector_error("emqx prod-1", &ecp_telemetry::Error::Decode { source_name: "emqx prod-1".into(), reason: "x".into() });
    m.collector_samples("emqx prod-1", 120);
    m.set_metric_store_series(42);
    m.alarm_fired(Severity::Critical);
    m.notification("ops webhook", "delivered");
    m.notification("ops webhook", "failed");
    m.log_records("stored", 7);
    let host = Counter::<u64>::default();
    m.register("host_http_requests", "Requests served by the host", host.clone());
    host.inc_by(5);

    let text = m.encode();
    for (family, kind) in [
        ("ecp_tasks_total", "counter"),
        ("ecp_task_targets_total", "counter"),
        ("ecp_agent_messages_total", "counter"),
        ("ecp_agent_messages_rejected_total", "counter"),
        ("ecp_agent_samples_dropped_total", "counter"),
        ("ecp_authz_denials_total", "counter"),
        ("ecp_collector_errors_total", "counter"),
        ("ecp_collector_samples_total", "counter"),
        ("ecp_metric_store_series", "gauge"),
        ("ecp_alarms_fired_total", "counter"),
        ("ecp_notifications_total", "counter"),
        ("ecp_log_records_total", "counter"),
        ("host_http_requests_total", "counter"),
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "no HELP of {family}:\n{text}");
        assert!(text.contains(&format!("# TYPE {family} {kind}\n")), "no TYPE of {family}:\n{text}");
    }
    for (series, value) in [
        (r#"ecp_tasks_total{kind="config_delivery",outcome="succeeded"}"#, 1.0),
        (r#"ecp_task_targets_total{outcome="timed_out"}"#, 1.0),
        (r#"ecp_authz_denials_total{permission="edge_service:operate"}"#, 1.0),
        (r#"ecp_agent_messages_total{direction="in",kind="heartbeat"}"#, 2.0),
        (r#"ecp_agent_messages_total{direction="out",kind="command"}"#, 1.0),
        (r#"ecp_agent_messages_rejected_total{reason="malformed"}"#, 1.0),
        (r#"ecp_agent_samples_dropped_total{reason="unmanaged"}"#, 3.0),
        (r#"ecp_collector_errors_total{collector="emqx prod-1",kind="decode"}"#, 1.0),
        (r#"ecp_collector_samples_total{collector="emqx prod-1"}"#, 120.0),
        ("ecp_metric_store_series", 42.0),
        (r#"ecp_alarms_fired_total{severity="critical"}"#, 1.0),
        (r#"ecp_notifications_total{notifier="ops webhook",outcome="delivered"}"#, 1.0),
        (r#"ecp_notifications_total{notifier="ops webhook",outcome="failed"}"#, 1.0),
        (r#"ecp_log_records_total{outcome="stored"}"#, 7.0),
        ("host_http_requests_total", 5.0),
    ] {
        assert_eq!(line_value(&text, series), Some(value), "{series} in:\n{text}");
    }
    assert!(!text.contains(r#"reason="invalid""#), "adding 0 creates no series");
    assert!(!text.contains("# EOF"), "the Prometheus 0.0.4 text has no EOF line");
    assert_eq!(PROMETHEUS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");

    let om = m.encode_openmetrics();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE ecp_tasks counter\n"), "OpenMetrics names the counter family without _total:\n{om}");
    assert_eq!(line_value(&om, r#"ecp_tasks_total{kind="config_delivery",outcome="succeeded"}"#), Some(1.0));
    assert!(OPENMETRICS_CONTENT_TYPE.starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(format!("{m:?}").starts_with("ControlPlaneMetrics"));
}

/// Every sample line of the text: `name{labels} value` or `name value`, one per line.
fn well_formed(text: &str) -> bool {
    text.lines().all(|l| {
        if l.starts_with('#') {
            return l.starts_with("# HELP ") || l.starts_with("# TYPE ");
        }
        let Some((series, value)) = l.rsplit_once(' ') else { return false };
        value.parse::<f64>().is_ok() && series.starts_with("ecp_") && (!series.contains('{') || series.ends_with('}'))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Hostile names (quotes, backslashes, newlines, long unicode) never break the text or grow a
    /// family past its limit.
    #[test]
    fn hostile_names_stay_bounded_and_escaped(names in proptest::collection::vec(any::<String>(), 1..400)) {
        let m = ControlPlaneMetrics::new();
        for n in &names {
            m.collector_samples(n, 1);
            m.notification(n, n);
            m.agent_message(Direction::In, n);
            m.task_finished(n, TaskState::Failed);
        }
        let text = m.encode();
        prop_assert!(well_formed(&text), "{}", text);
        for family in ["ecp_collector_samples_total{", "ecp_notifications_total{", "ecp_agent_messages_total{", "ecp_tasks_total{"] {
            let series = text.lines().filter(|l| l.starts_with(family)).count();
            // The limit, plus one `other` series (the closed labels have one value each here).
            prop_assert!(series <= own::MAX_SERIES_PER_FAMILY + 1, "{family}: {series}");
        }
        let total: f64 = text.lines().filter(|l| l.starts_with("ecp_collector_samples_total{")).filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum();
        prop_assert_eq!(total, names.len() as f64);
    }
}

/// The exposition parses back with the crate's own Prometheus parser: no skipped line, every family
/// typed, and the values that were counted.
#[tokio::test]
async fn the_exposition_parses_back_with_the_prometheus_parser() {
    let metrics = ControlPlaneMetrics::new();
    metrics.alarm_fired(Severity::Critical);
    metrics.alarm_fired(Severity::Critical);
    metrics.alarm_fired(Severity::Normal);
    metrics.collector_failed("emqx \"prod\"\n1", "timeout");
    metrics.collector_samples("scrape edge-7", 42);
    metrics.notification("ops-hook", "sent");
    metrics.set_metric_store_series(1234);
    metrics.agent_message(Direction::In, "heartbeat");
    let text = metrics.encode();
    let parsed = ecp_telemetry::prom::parse(text.as_bytes(), &ecp_telemetry::prom::ParseLimits::default()).unwrap();
    assert!(parsed.skipped.is_empty(), "{:?}\n{text}", parsed.skipped);
    let value = |name: &str, label: (&str, &str)| {
        parsed.samples.iter().find(|s| s.name.as_str() == name && s.labels.get(label.0) == Some(label.1)).map(|s| s.value)
    };
    assert_eq!(value("ecp_alarms_fired_total", ("severity", "critical")), Some(2.0));
    assert_eq!(value("ecp_alarms_fired_total", ("severity", "normal")), Some(1.0));
    assert_eq!(value("ecp_collector_errors_total", ("collector", "emqx \"prod\"\n1")), Some(1.0), "label escaping survives the round trip");
    assert_eq!(value("ecp_collector_samples_total", ("collector", "scrape edge-7")), Some(42.0));
    assert_eq!(value("ecp_notifications_total", ("outcome", "sent")), Some(1.0));
    assert_eq!(parsed.samples.iter().find(|s| s.name.as_str() == "ecp_metric_store_series").map(|s| s.value), Some(1234.0));
    for s in &parsed.samples {
        assert_ne!(parsed.kind_of(s.name.as_str()), ecp_telemetry::prom::MetricKind::Untyped, "{} has no TYPE", s.name);
    }
}

#[tokio::test]
async fn the_store_gauge_and_alarm_counter_follow_the_library() {
    use ecp_telemetry::alarm::{AlarmConfig, AlarmEngine, MetricReader};
    use ecp_telemetry::{Labels, MetricName, MetricScope, MetricStore, MetricStoreConfig, Sample, SampleSink};
    let metrics = ControlPlaneMetrics::new();
    let store = Arc::new(MetricStore::new(MetricStoreConfig::default()));
    let scope = MetricScope::new(ecp_core::OrgId::new(), ecp_core::ProjectId::new());
    let up = MetricName::new("ecp_edge_up").unwrap();
    let samples: Vec<Sample> = (0..3)
        .map(|i| Sample::new(scope, up.clone(), Labels::new([("source", format!("edge:{i}"))]).unwrap(), ecp_core::Timestamp::now(), 0.0))
        .collect();
    assert_eq!(store.accept(&samples).stored, 3);
    let gauge = metrics.observe_store(&store, Duration::from_millis(10));
    let engine = AlarmEngine::new(store.clone() as Arc<dyn MetricReader>, Arc::new(SystemClock), AlarmConfig::default()).unwrap();
    let counter = metrics.observe_alarms(&engine);
    engine.attach(scope);
    // "edge service offline" fires after 2 evaluations, once per offline service.
    engine.evaluate();
    engine.evaluate();
    let t = std::time::Instant::now();
    loop {
        let text = metrics.encode();
        if line_value(&text, "ecp_metric_store_series") == Some(3.0)
            && line_value(&text, r#"ecp_alarms_fired_total{severity="critical"}"#) == Some(3.0)
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(store);
    drop(engine);
    tokio::time::timeout(Duration::from_secs(5), gauge).await.expect("the gauge task ends with its store").unwrap();
    counter.abort();
}
