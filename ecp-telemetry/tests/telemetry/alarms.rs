//! Alarm rules, their N/P counts, silences, acknowledgement, history, purge, the storm guard,
//! custom alarms, permissions and audit, and notifications through a real loopback webhook.

use std::sync::Arc;
use std::time::Duration;

use ecp_core::access::{Authorizer, Denial, Permission, Principal, ResourceKind, Scope, Visibility};
use ecp_core::prelude::*;
use ecp_core::{
    AuditEvent, AuditQuery, ManualClock, Operation, Organization, PageRequest, Project, SqlStore, TenancyLimits, Timestamp, UserId,
};
use ecp_telemetry::alarm::{
    AlarmConfig, AlarmEngine, AlarmEvent, AlarmFilter, AlarmRule, AlarmSettings, Alarms, Builtin, Closure, Comparison, Condition,
    CustomOutcome, MetricReader, ProjectAlarms, Purge,
};
use ecp_telemetry::{
    LabelMatcher, Labels, MatchOp, MetricName, MetricScope, MetricStore, MetricStoreConfig, Sample, SampleSink, SeriesSelector, Severity,
};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(15);

/// Allows the system principal everything, `viewer` only viewing, and nobody else anything.
#[derive(Debug)]
pub(crate) struct TestAuthz {
    viewer: Principal,
}

impl Authorizer for TestAuthz {
    fn check(&self, p: &Principal, perm: Permission, _scope: &Scope) -> Result<(), Denial> {
        if p.is_system() || (p.name() == self.viewer.name() && perm == Permission::view(perm.kind)) {
            Ok(())
        } else {
            Err(Denial::NotGranted)
        }
    }
    fn has_access(&self, p: &Principal, _scope: &Scope) -> bool {
        p.is_system() || p.name() == self.viewer.name()
    }
    fn visibility(&self, _p: &Principal, _perm: Permission) -> Visibility {
        Visibility::default()
    }
}

pub(crate) struct Rig {
    pub(crate) clock: ManualClock,
    pub(crate) store: Arc<MetricStore>,
    pub(crate) db: Arc<SqlStore>,
    pub(crate) engine: AlarmEngine,
    pub(crate) alarms: Alarms,
    pub(crate) scope: MetricScope,
    pub(crate) admin: ProjectAlarms,
    pub(crate) notices: mpsc::Receiver<AlarmEvent>,
}

/// Organization "acme" with its project "plant", stored.
async fn org_and_project(db: &SqlStore, clock: &ManualClock) -> (Organization, Project) {
    let ev = |op: &str| AuditEvent::new(&Principal::system("t"), ResourceKind::Organization, Operation::new(op).unwrap());
    let org = Organization::new("acme", clock.now()).unwrap();
    db.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", clock.now()).unwrap();
    db.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    (org, project)
}

pub(crate) async fn rig(config: AlarmConfig) -> Rig {
    let clock = ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap());
    let db = Arc::new(SqlStore::memory().await.unwrap());
    let (org, project) = org_and_project(&db, &clock).await;
    let store = Arc::new(MetricStore::new(MetricStoreConfig::builder().clock(Arc::new(clock.clone())).build().unwrap()));
    let engine = AlarmEngine::new(store.clone() as Arc<dyn MetricReader>, Arc::new(clock.clone()), config).unwrap();
    let notices = engine.notices(10_000);
    let authz = Arc::new(TestAuthz { viewer: Principal::user(UserId::new(), "viewer") });
    let alarms = Alarms::new(engine.clone(), db.clone(), authz);
    let admin = alarms.project(&Principal::system("ops"), project.id()).await.unwrap();
    let scope = MetricScope::new(org.id, project.id());
    Rig { clock, store, db, engine, alarms, scope, admin, notices }
}

fn name(n: &str) -> MetricName {
    MetricName::new(n).unwrap()
}

impl Rig {
    /// Writes a sample now.
    pub(crate) fn put(&self, metric: &str, labels: &[(&str, &str)], value: f64) {
        let s = Sample::new(self.scope, name(metric), Labels::new(labels.iter().copied()).unwrap(), self.clock.now(), value);
        assert_eq!(self.store.accept(&[s]).stored, 1);
    }

    /// Moves time one step and evaluates.
    pub(crate) fn tick(&self) {
        self.clock.advance(STEP);
    }

    pub(crate) fn eval(&self) {
        self.engine.evaluate();
    }

    pub(crate) fn active(&self) -> Vec<ecp_telemetry::alarm::Alarm> {
        self.admin.active(&AlarmFilter::default().limit(1000)).unwrap()
    }

    fn history(&self) -> Vec<ecp_telemetry::alarm::Alarm> {
        self.admin.history(&AlarmFilter::default().limit(1000)).unwrap()
    }

    fn drain(&mut self) -> Vec<AlarmEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.notices.try_recv() {
            out.push(e);
        }
        out
    }

    pub(crate) async fn disable_builtins(&self) {
        for r in self.admin.rules().unwrap() {
            if r.builtin.is_some() && r.enabled {
                self.admin.set_rule_enabled(r.id, false).await.unwrap();
            }
        }
    }
}

pub(crate) fn threshold(metric: &str, cmp: Comparison, t: f64) -> Condition {
    Condition::Threshold { selector: SeriesSelector::metric(name(metric)), comparison: cmp, threshold: t }
}

#[tokio::test]
async fn a_rule_fires_after_n_breaches_and_clears_after_p_healthy_evaluations() {
    let mut r = rig(AlarmConfig::default()).await;
    r.disable_builtins().await;
    let rule = r
        .admin
        .create_rule(
            AlarmRule::new("hot", threshold("cpu", Comparison::Gt, 80.0), Severity::Critical)
                .counts(3, 2)
                .message("cpu of %node% is %value% (over %threshold%)"),
        )
        .await
        .unwrap();
    let node = [("node", "n1")];
    // An interrupted streak starts over.
    for v in [90.0, 90.0, 50.0, 90.0, 90.0] {
        r.tick();
        r.put("cpu", &node, v);
        r.eval();
        assert!(r.active().is_empty(), "fired before 3 consecutive breaches");
    }
    r.tick();
    r.put("cpu", &node, 95.0);
    r.eval();
    let active = r.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].message, "cpu of n1 is 95 (over 80)");
    assert_eq!(active[0].severity, Severity::Critical);
    assert_eq!(active[0].value, Some(95.0));
    let id = active[0].id;
    // Still breaching: no second alarm for the same instance.
    r.tick();
    r.put("cpu", &node, 99.0);
    r.eval();
    assert_eq!(r.active().len(), 1);
    // One healthy evaluation is not enough with P = 2.
    r.tick();
    r.put("cpu", &node, 10.0);
    r.eval();
    assert_eq!(r.active().len(), 1);
    r.tick();
    r.put("cpu", &node, 10.0);
    r.eval();
    assert!(r.active().is_empty());
    let h = r.history();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].id, id);
    assert_eq!(h[0].closure, Some(Closure::Recovered));
    let ev = r.drain();
    assert!(matches!(&ev[..], [AlarmEvent::Fired(a), AlarmEvent::Closed(b)] if a.id == id && b.id == id), "{ev:?}");
    // Stale data is no data: the rule neither fires nor recovers on points older than stale_after.
    r.admin.update_rule(AlarmRule { trigger_count: 1, ..rule }).await.unwrap();
    r.tick();
    r.put("cpu", &node, 99.0);
    r.clock.advance(Duration::from_secs(600));
    r.eval();
    assert!(r.active().is_empty());
}

/// Breaching and healthy samples for each built-in rule.
fn feed(r: &Rig, b: Builtin, breach: bool, round: u32) {
    let src = [("source", "edge:1")];
    match b {
        Builtin::EdgeServiceOffline => r.put("ecp_edge_up", &src, if breach { 0.0 } else { 1.0 }),
        Builtin::EdgeAgentOffline => r.put("ecp_agent_up", &src, if breach { 0.0 } else { 1.0 }),
        Builtin::DriverError => {
            r.put("neuron_node_link_state", &[("source", "edge:1"), ("node", "modbus-1")], if breach { 0.0 } else { 1.0 })
        }
        Builtin::RuleError => r.put("ekuiper_rule_status", &[("source", "edge:1"), ("rule", "r1")], if breach { -1.0 } else { 1.0 }),
        // Uptime grows each round; a breach is a drop.
        Builtin::ServiceRestarted => r.put("uptime_seconds", &src, if breach { 5.0 } else { 1000.0 + f64::from(round) * 15.0 }),
        Builtin::EmqxCpuHigh => r.put("emqx_vm_cpu_use", &[("source", "cluster:1"), ("node", "emqx@a")], if breach { 95.0 } else { 20.0 }),
        Builtin::EmqxMemoryHigh => {
            let l = [("source", "cluster:1"), ("node", "emqx@a")];
            r.put("emqx_node_memory_total_bytes", &l, 8e9);
            r.put("emqx_node_memory_used_bytes", &l, if breach { 7.5e9 } else { 2e9 });
        }
        Builtin::EmqxNodeDown => r.put("emqx_node_up", &[("source", "cluster:1"), ("node", "emqx@b")], if breach { 0.0 } else { 1.0 }),
        Builtin::EmqxLicenseExpiring => r.put("emqx_license_expiry_days", &[("source", "cluster:1")], if breach { 12.0 } else { 200.0 }),
        Builtin::EmqxLicenseConnections => {
            let l = [("source", "cluster:1")];
            r.put("emqx_license_max_connections", &l, 1000.0);
            r.put("emqx_connections", &l, if breach { 950.0 } else { 100.0 });
        }
        // Counters: +500 per 15 s round while breaching, +1 otherwise.
        Builtin::EmqxAuthnFailures | Builtin::EmqxAuthzDenials => {
            let metric =
                if b == Builtin::EmqxAuthnFailures { "emqx_authentication_failure_total" } else { "emqx_authorization_deny_total" };
            let last = r.store.latest(&r.scope, &SeriesSelector::metric(name(metric))).first().map_or(0.0, |(_, p)| p.value);
            r.put(metric, &[("source", "cluster:1")], last + if breach { 500.0 } else { 1.0 });
        }
        _ => unreachable!("a built-in rule without a feeder: {b:?}"),
    }
}

#[tokio::test]
async fn every_builtin_rule_fires_after_its_trigger_count_and_recovers_after_its_recovery_count() {
    for b in Builtin::ALL {
        let mut r = rig(AlarmConfig::default()).await;
        r.disable_builtins().await;
        let rule = r.admin.builtin(b).unwrap();
        let rule = r.admin.update_rule(AlarmRule { enabled: true, ..rule }).await.unwrap();
        let (n, p) = (u32::from(rule.trigger_count), u32::from(rule.recovery_count));
        let mut round = 0;
        // Healthy history first (the window of increase rules, the uptime baseline).
        for _ in 0..25 {
            round += 1;
            r.tick();
            feed(&r, b, false, round);
            r.eval();
        }
        assert!(r.active().is_empty(), "{b:?} fired on healthy data");
        for i in 1..=n {
            round += 1;
            r.tick();
            feed(&r, b, true, round);
            r.eval();
            let fired = r.active().len();
            if i < n {
                assert_eq!(fired, 0, "{b:?} fired after {i} of {n} breaches");
            } else {
                assert_eq!(fired, 1, "{b:?} did not fire after {n} breaches");
            }
        }
        let alarm = r.active().remove(0);
        assert_eq!(alarm.name, rule.name);
        for ph in ["%value%", "%threshold%", "%source%", "%node%", "%rule%", "%instance%"] {
            assert!(!alarm.message.contains(ph), "{b:?}: unrendered {ph} in {:?}", alarm.message);
        }
        for i in 1..=p + 30 {
            round += 1;
            r.tick();
            feed(&r, b, false, round);
            r.eval();
            if r.active().is_empty() {
                // Increase rules need the window to slide past the breach; all others recover after exactly P.
                if !matches!(b, Builtin::EmqxAuthnFailures | Builtin::EmqxAuthzDenials) {
                    assert_eq!(i, p, "{b:?} recovered after {i} healthy evaluations, expected {p}");
                }
                break;
            }
            assert!(i < p + 30, "{b:?} never recovered");
        }
        assert_eq!(r.history()[0].closure, Some(Closure::Recovered), "{b:?}");
        let kinds: Vec<_> = r.drain().iter().map(|e| matches!(e, AlarmEvent::Fired(_))).collect();
        assert_eq!(kinds, vec![true, false], "{b:?}: one fired and one closed notice");
    }
}

#[tokio::test]
async fn silences_per_rule_and_per_instance() {
    let r = rig(AlarmConfig::default()).await;
    r.disable_builtins().await;
    let rule = r.admin.create_rule(AlarmRule::new("high", threshold("t", Comparison::Gt, 1.0), Severity::Normal)).await.unwrap();
    // The whole rule, until a time.
    let until = ecp_core::clock::add(r.clock.now(), Duration::from_secs(60));
    r.admin.silence_rule(rule.id, Some(until)).await.unwrap();
    for _ in 0..3 {
        r.tick();
        r.put("t", &[("i", "a")], 5.0);
        r.put("t", &[("i", "b")], 5.0);
        r.eval();
        assert!(r.active().is_empty(), "a silenced rule fired");
    }
    assert!(r.engine.stats().silenced >= 2);
    // The silence ran out.
    r.tick();
    r.tick();
    r.put("t", &[("i", "a")], 5.0);
    r.put("t", &[("i", "b")], 5.0);
    r.eval();
    assert_eq!(r.active().len(), 2);
    // One instance, until lifted: after both recover, only the other fires again.
    r.tick();
    r.put("t", &[("i", "a")], 0.0);
    r.put("t", &[("i", "b")], 0.0);
    r.eval();
    assert!(r.active().is_empty());
    let inst_a = r.history().iter().find(|a| a.labels.get("i") == Some("a")).unwrap().instance.clone();
    r.admin.silence_instance(rule.id, &inst_a, None).await.unwrap();
    r.tick();
    r.put("t", &[("i", "a")], 5.0);
    r.put("t", &[("i", "b")], 5.0);
    r.eval();
    let active = r.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].labels.get("i"), Some("b"));
    r.admin.unsilence_instance(rule.id, &inst_a).await.unwrap();
    r.tick();
    r.put("t", &[("i", "a")], 5.0);
    r.put("t", &[("i", "b")], 5.0);
    r.eval();
    assert_eq!(r.active().len(), 2);
    // Silencing an unknown rule is NotFound.
    let e = r.admin.silence_rule(ecp_telemetry::alarm::RuleId::new(), None).await.unwrap_err();
    assert!(matches!(e, ecp_telemetry::Error::Core(ref c) if c.is_not_found()), "{e}");
}

#[tokio::test]
async fn acknowledge_move_to_history_purge_and_their_audit() {
    let r = rig(AlarmConfig::default()).await;
    r.disable_builtins().await;
    let rule =
        r.admin.create_rule(AlarmRule::new("high", threshold("t", Comparison::Gt, 1.0), Severity::Critical).counts(2, 1)).await.unwrap();
    for i in 0..6 {
        r.tick();
        r.put("t", &[("i", &i.to_string())], 5.0);
    }
    r.eval();
    r.tick();
    for i in 0..6 {
        r.put("t", &[("i", &i.to_string())], 5.0);
    }
    r.eval();
    let active = r.active();
    assert_eq!(active.len(), 6);
    let acked = r.admin.acknowledge(active[0].id).await.unwrap();
    assert_eq!(acked.acknowledged.as_ref().unwrap().by, "ops");
    let f = AlarmFilter::default().acknowledged(true);
    assert_eq!(r.admin.active(&f).unwrap().len(), 1);
    // Moved by hand: into history, and it must breach N times again to fire again.
    for a in &active[..4] {
        let moved = r.admin.move_to_history(a.id).await.unwrap();
        assert!(matches!(moved.closure, Some(Closure::Manual { ref by }) if by == "ops"));
    }
    assert_eq!(r.active().len(), 2);
    r.tick();
    for i in 0..6 {
        r.put("t", &[("i", &i.to_string())], 5.0);
    }
    r.eval();
    assert_eq!(r.active().len(), 2, "moved alarms fired again before N breaches");
    r.tick();
    for i in 0..6 {
        r.put("t", &[("i", &i.to_string())], 5.0);
    }
    r.eval();
    assert_eq!(r.active().len(), 6);
    assert!(r.admin.move_to_history(active[0].id).await.is_err(), "an alarm already in history cannot be moved");
    // Purge: keep the newest 1 of 4, then by age.
    assert_eq!(r.admin.purge(Purge::KeepNewest(1)).await.unwrap(), 3);
    assert_eq!(r.history().len(), 1);
    r.tick();
    assert_eq!(r.admin.purge(Purge::OlderThan(r.clock.now())).await.unwrap(), 1);
    assert!(r.history().is_empty());
    // Deleting the rule closes its alarms.
    r.admin.delete_rule(rule.id).await.unwrap();
    assert!(r.active().is_empty());
    assert!(r.history().iter().all(|a| a.closure == Some(Closure::RuleDeleted)));
    // Every change is in the audit log.
    let page =
        r.db.query_audit(
            &AuditQuery { resource_kind: Some(ResourceKind::Alarm), ..AuditQuery::default() },
            &ecp_core::audit::AuditScope { all: true, ..Default::default() },
            &PageRequest::first(100),
        )
        .await
        .unwrap();
    let ops: Vec<&str> = page.items.iter().map(|a| a.event.operation.as_str()).collect();
    for op in ["alarm_rule.create", "alarm.acknowledge", "alarm.move_to_history", "alarm.purge", "alarm_rule.delete"] {
        assert!(ops.contains(&op), "{op} not audited: {ops:?}");
    }
}

#[tokio::test]
async fn the_storm_guard_pauses_a_project_at_50_alarms_a_minute_until_cleared() {
    let mut r = rig(AlarmConfig::default()).await;
    r.disable_builtins().await;
    r.admin.create_rule(AlarmRule::new("flood", threshold("t", Comparison::Gt, 0.0), Severity::Critical)).await.unwrap();
    r.tick();
    for i in 0..80 {
        r.put("t", &[("i", &i.to_string())], 1.0);
    }
    r.eval();
    assert_eq!(r.active().len(), 50, "the 50th alarm starts the storm; the rest are suppressed");
    let storm = r.admin.storm().unwrap();
    assert!(storm.paused_since.is_some());
    assert_eq!(storm.suppressed, 30);
    let ev = r.drain();
    assert_eq!(ev.iter().filter(|e| matches!(e, AlarmEvent::StormStarted { .. })).count(), 1, "exactly one storm notification");
    assert_eq!(ev.iter().filter(|e| matches!(e, AlarmEvent::Fired(_))).count(), 50);
    // While paused, nothing new is raised, and custom alarms are suppressed too.
    r.tick();
    for i in 0..80 {
        r.put("t", &[("i", &i.to_string())], 1.0);
    }
    r.eval();
    assert_eq!(r.active().len(), 50);
    let token = r.admin.issue_custom_token().await.unwrap();
    let body = format!(r#"{{"message":"door open","timestamp":"{}"}}"#, r.clock.now().as_second());
    assert_eq!(r.engine.push_custom(token.token.expose_secret(), body.as_bytes()).unwrap(), CustomOutcome::Suppressed);
    assert!(r.drain().is_empty(), "no notifications during a storm");
    // Clearing resumes: the instances still breaching fire on the next evaluation.
    assert_eq!(r.admin.clear_storm().await.unwrap(), Some(31));
    assert_eq!(r.admin.clear_storm().await.unwrap(), None);
    r.tick();
    for i in 0..80 {
        r.put("t", &[("i", &i.to_string())], 1.0);
    }
    r.eval();
    assert_eq!(r.active().len(), 80);
    // Alarms spread over more than a minute do not start a storm.
    let mut r = rig(AlarmConfig::default()).await;
    r.disable_builtins().await;
    r.admin.create_rule(AlarmRule::new("slow", threshold("t", Comparison::Gt, 0.0), Severity::Normal)).await.unwrap();
    for i in 0..120 {
        r.clock.advance(Duration::from_secs(2));
        r.put("t", &[("i", &i.to_string())], 1.0);
        r.eval();
    }
    assert_eq!(r.active().len(), 120);
    assert_eq!(r.admin.active(&AlarmFilter::default()).unwrap().len(), 100, "listings return 100 by default");
    assert!(r.admin.storm().unwrap().paused_since.is_none());
    assert!(r.drain().iter().all(|e| !matches!(e, AlarmEvent::StormStarted { .. })));
}

#[tokio::test]
async fn custom_alarms_with_a_project_token() {
    let r = rig(AlarmConfig::default()).await;
    let token = r.admin.issue_custom_token().await.unwrap();
    let t = token.token.expose_secret().to_string();
    assert!(!format!("{token:?}").contains(&t), "the token leaks through Debug");
    let now = r.clock.now().as_second();
    let body = |extra: &str, ts: i64| format!(r#"{{"message":"valve stuck","timestamp":"{ts}"{extra}}}"#);
    let id = match r.engine.push_custom(&t, body(r#","severity":1,"tag":"line-3","uuid":"u-1""#, now).as_bytes()).unwrap() {
        CustomOutcome::Raised(id) => id,
        o => panic!("{o:?}"),
    };
    // The same uuid is the same alarm.
    assert_eq!(r.engine.push_custom(&t, body(r#","severity":"0","uuid":"u-1""#, now).as_bytes()).unwrap(), CustomOutcome::Updated(id));
    let active = r.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].severity, Severity::Normal);
    // Older than 10 minutes: dropped. In the future: refused.
    assert_eq!(r.engine.push_custom(&t, body("", now - 601).as_bytes()).unwrap(), CustomOutcome::TooOld);
    assert!(r.engine.push_custom(&t, body("", now + 3600).as_bytes()).is_err());
    // Malformed bodies are typed errors.
    for bad in [
        "".to_string(),
        "{".to_string(),
        r#"{"timestamp":"1"}"#.to_string(),
        body(r#","severity":2"#, now),
        body(r#","unknown":true"#, now),
        r#"{"message":"x","timestamp":"soon"}"#.to_string(),
        r#"{"message":"","timestamp":"1"}"#.to_string(),
        format!(r#"{{"message":"{}","timestamp":"{now}"}}"#, "x".repeat(70_000)),
    ] {
        let e = r.engine.push_custom(&t, bad.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("invalid") || e.to_string().contains("exceeds the limit"), "{e}");
    }
    // Wrong and revoked tokens are refused.
    assert!(r.engine.push_custom("nope", body("", now).as_bytes()).unwrap_err().to_string().contains("permission denied"));
    assert!(r.admin.revoke_custom_token().await.unwrap());
    assert!(r.engine.push_custom(&t, body("", now).as_bytes()).is_err());
    // Custom alarms are closed by hand.
    r.admin.move_to_history(id).await.unwrap();
    assert!(r.active().is_empty());
}

#[tokio::test]
async fn permissions_settings_and_project_isolation() {
    let mut r = rig(AlarmConfig::default()).await;
    let viewer = r.alarms.project(&Principal::user(UserId::new(), "viewer"), r.scope.project).await.unwrap();
    assert!(!viewer.rules().unwrap().is_empty());
    let rule = viewer.rules().unwrap().remove(0);
    let e = viewer.set_rule_enabled(rule.id, false).await.unwrap_err();
    assert!(matches!(e, ecp_telemetry::Error::Core(ref c) if c.is_permission_denied()), "{e}");
    assert!(viewer.issue_custom_token().await.is_err());
    assert!(viewer.clear_storm().await.is_err());
    // The failure is audited.
    let page =
        r.db.query_audit(
            &AuditQuery { success: Some(false), ..AuditQuery::default() },
            &ecp_core::audit::AuditScope { all: true, ..Default::default() },
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert!(page.items.iter().any(|a| a.event.operation.as_str() == "alarm_rule.update"));
    // A stranger cannot even learn the project exists.
    let e = r.alarms.project(&Principal::user(UserId::new(), "stranger"), r.scope.project).await.unwrap_err();
    assert!(matches!(e, ecp_telemetry::Error::Core(ref c) if c.is_not_found()));
    // Disabled alarms evaluate nothing; critical-only notifies only critical alarms.
    r.disable_builtins().await;
    r.admin.create_rule(AlarmRule::new("n", threshold("t", Comparison::Gt, 0.0), Severity::Normal)).await.unwrap();
    r.admin.set_settings(AlarmSettings { enabled: false, notify_critical_only: true }).await.unwrap();
    r.tick();
    r.put("t", &[], 1.0);
    r.eval();
    assert!(r.active().is_empty());
    r.admin.set_settings(AlarmSettings { enabled: true, notify_critical_only: true }).await.unwrap();
    r.tick();
    r.put("t", &[], 1.0);
    r.eval();
    assert_eq!(r.active().len(), 1);
    assert!(r.drain().is_empty(), "a normal alarm was notified under critical-only");
    // Another project's series never reach this project's rules.
    let other = MetricScope::new(r.scope.org, ecp_core::ProjectId::new());
    r.tick();
    r.store.accept(&[Sample::new(other, name("t"), Labels::new([("x", "y")]).unwrap(), r.clock.now(), 9.0)]);
    r.eval();
    assert_eq!(r.active().len(), 1);
    // Bad rules are refused.
    assert!(
        r.admin.create_rule(AlarmRule::new("n", threshold("t", Comparison::Gt, 0.0), Severity::Normal)).await.is_err(),
        "duplicate name"
    );
    assert!(r.admin.create_rule(AlarmRule::new("m", threshold("t", Comparison::Gt, 0.0), Severity::Normal).counts(11, 1)).await.is_err());
}

mod webhook {
    use std::sync::Arc;

    use axum::Json;
    use axum::extract::State;
    use ecp_telemetry::NotificationRouter;
    use ecp_telemetry::alarm::{SEND_FAILED, spawn_notifications};
    use ecp_telemetry::notify::webhook::WebhookNotifier;
    use ecp_telemetry::notify::{Route, RouteScope};
    use parking_lot::Mutex;

    use super::*;

    async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(|State(got): State<Arc<Mutex<Vec<serde_json::Value>>>>, Json(v): Json<serde_json::Value>| async move {
                    got.lock().push(v);
                    "ok"
                }),
            )
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, got)
    }

    fn router(url: &str) -> NotificationRouter {
        let hook = WebhookNotifier::builder("ops-hook", url)
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .attempts(2)
            .base_delay(Duration::from_millis(10))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        NotificationRouter::builder().route(Route::new("all", RouteScope::All).notifier(Arc::new(hook))).build().unwrap()
    }

    async fn wait_until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn fired_and_recovered_alarms_reach_a_real_webhook_and_failed_sends_raise_an_alarm() {
        let r = rig(AlarmConfig::default()).await;
        r.disable_builtins().await;
        let (url, got) = receiver().await;
        let task = spawn_notifications(&r.engine, router(&url), 100);
        r.admin
            .create_rule(AlarmRule::new("hot", threshold("cpu", Comparison::Gt, 80.0), Severity::Critical).message("cpu %value%"))
            .await
            .unwrap();
        r.tick();
        r.put("cpu", &[("node", "n1")], 91.0);
        r.eval();
        wait_until("the fired notification", || got.lock().len() == 1).await;
        r.tick();
        r.put("cpu", &[("node", "n1")], 10.0);
        r.eval();
        wait_until("the recovered notification", || got.lock().len() == 2).await;
        let bodies = got.lock().clone();
        let text = serde_json::to_string(&bodies).unwrap();
        assert!(text.contains("hot") && text.contains("cpu 91") && text.contains("recovered: cpu 91"), "{text}");
        task.abort();

        // An unreachable webhook: the send fails and the project gets a "notification send failed" alarm.
        let r = rig(AlarmConfig::default()).await;
        r.disable_builtins().await;
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", dead.local_addr().unwrap());
        drop(dead);
        let _task = spawn_notifications(&r.engine, router(&url), 100);
        r.admin.create_rule(AlarmRule::new("hot", threshold("cpu", Comparison::Gt, 80.0), Severity::Critical)).await.unwrap();
        r.tick();
        r.put("cpu", &[], 91.0);
        r.eval();
        wait_until("the send-failed alarm", || r.active().iter().any(|a| a.name == SEND_FAILED)).await;
        let failed = r.active().into_iter().find(|a| a.name == SEND_FAILED).unwrap();
        assert_eq!(failed.severity, Severity::Normal);
        assert!(failed.message.contains("ops-hook"), "{}", failed.message);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
    #[test]
    fn custom_alarm_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), json in "\\{\"message\":\"[a-z]{0,8}\",\"timestamp\":[\"0-9a-z]{0,14}(,\"severity\":[0-9\"]{0,3})?\\}") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let r = rig(AlarmConfig::default()).await;
            let token = r.admin.issue_custom_token().await.unwrap();
            let t = token.token.expose_secret();
            let _ = r.engine.push_custom(t, &body);
            let _ = r.engine.push_custom(t, json.as_bytes());
            assert!(r.active().len() <= 2);
        });
    }
}

/// Well-formed custom alarm pushes, as the product documents them, at the rig's time.
fn custom_bodies(now: i64) -> Vec<Vec<u8>> {
    [
        format!(r#"{{"message":"valve stuck","timestamp":"{now}","severity":1,"tag":"line-3","uuid":"u-1"}}"#),
        format!(r#"{{"message":"door open","timestamp":{now}}}"#),
        format!(r#"{{"message":"pump 2 pressure low","timestamp":"{now}","severity":"0","tag":"","uuid":""}}"#),
        format!(r#"{{"message":"  sensor 7 offline  ","timestamp":{},"severity":null,"uuid":"sensor-7"}}"#, now - 30),
    ]
    .map(String::into_bytes)
    .to_vec()
}

/// Well-formed alarm rules of every condition, as a client sends them.
fn rule_bodies() -> Vec<Vec<u8>> {
    let sel = |metric: &str, matchers: Vec<LabelMatcher>| SeriesSelector { name: name(metric), matchers };
    let node = LabelMatcher { name: "node".into(), op: MatchOp::OneOf, value: "emqx@a|emqx@b".into() };
    let source = LabelMatcher { name: "source".into(), op: MatchOp::NotEq, value: "test".into() };
    [
        AlarmRule::new("cpu high", threshold("emqx_vm_cpu_use", Comparison::Ge, 90.5), Severity::Critical)
            .counts(3, 2)
            .message("%node%: cpu %value% >= %threshold%")
            .tags(["ops", "cpu"]),
        AlarmRule::new(
            "memory",
            Condition::Ratio {
                numerator: sel("emqx_vm_used_memory", vec![node.clone()]),
                denominator: sel("emqx_vm_total_memory", vec![]),
                comparison: Comparison::Gt,
                threshold: 0.85,
            },
            Severity::Normal,
        ),
        AlarmRule::new(
            "drops",
            Condition::Increase {
                selector: sel("emqx_messages_dropped", vec![source]),
                window: Duration::from_secs(300),
                comparison: Comparison::Gt,
                threshold: 100.0,
            },
            Severity::Critical,
        )
        .counts(1, 10),
        AlarmRule::new("restarted", Condition::Decreased { selector: sel("uptime_seconds", vec![node]) }, Severity::Normal),
        Builtin::ALL[0].rule(),
    ]
    .map(|r| serde_json::to_vec(&r).unwrap())
    .to_vec()
}

/// Mutations of well-formed custom alarm pushes (flips, inserted bytes and tokens, deleted,
/// truncated and duplicated ranges, splices of two bodies, values moved, replaced or removed)
/// raise or update an alarm, or are refused with a typed error that leaves the project's alarms as
/// they were and never shows the token.
#[test]
fn mutated_custom_alarm_bodies_never_panic_and_refusals_change_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(rig(AlarmConfig::default()));
    let token = rt.block_on(r.admin.issue_custom_token()).unwrap();
    let t = token.token.expose_secret().to_string();
    let samples = custom_bodies(r.clock.now().as_second());
    assert!(matches!(r.engine.push_custom(&t, &samples[0]).unwrap(), CustomOutcome::Raised(_)), "an alarm is stored before");
    let config = proptest::test_runner::Config { cases: 256, failure_persistence: None, ..Default::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&ecp_testkit::mutate::mutated(samples), |m| {
            let before = (r.active(), r.history(), r.admin.storm().unwrap());
            match r.engine.push_custom(&t, &m.bytes) {
                Ok(_) => {}
                Err(e) => {
                    let shown = format!("{e} {e:?}");
                    proptest::prop_assert!(shown.starts_with("invalid") || shown.contains("exceeds the limit"), "{}", shown);
                    proptest::prop_assert!(!shown.contains(&t), "the token shows: {}", shown);
                    proptest::prop_assert_eq!((r.active(), r.history(), r.admin.storm().unwrap()), before);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Mutations of well-formed alarm rules decode to a rule the project takes only if it is valid,
/// or are refused (by the decoder or by `create_rule`) with the project's rules unchanged.
#[test]
fn mutated_alarm_rule_bodies_never_panic_and_refusals_change_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(rig(AlarmConfig::default()));
    let config = proptest::test_runner::Config { cases: 256, failure_persistence: None, ..Default::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&ecp_testkit::mutate::mutated(rule_bodies()), |m| {
            let Ok(rule) = serde_json::from_slice::<AlarmRule>(&m.bytes) else { return Ok(()) };
            let before = r.admin.rules().unwrap();
            let valid = rule.validate().is_ok();
            match rt.block_on(r.admin.create_rule(rule.clone())) {
                Ok(created) => {
                    proptest::prop_assert!(valid, "an invalid rule was taken: {:?}", rule);
                    proptest::prop_assert!(created.validate().is_ok() && created.builtin.is_none());
                    proptest::prop_assert!(r.admin.rules().unwrap().contains(&created));
                    proptest::prop_assert_eq!(r.admin.rules().unwrap().len(), before.len() + 1);
                }
                Err(e) => {
                    proptest::prop_assert!(!e.to_string().is_empty());
                    proptest::prop_assert_eq!(r.admin.rules().unwrap(), before);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// With the engine keeping its configuration in the store, rules (a deleted built-in included), silences, settings and the
/// custom alarm token survive a restart (a new store connection and a new engine on the same
/// SQLite file), and so do active alarms and history; every project of the store is evaluated from
/// start-up, also one nobody opened.
#[tokio::test]
async fn configuration_survives_a_restart_and_every_project_is_evaluated_from_start_up() {
    use ecp_core::SqlStoreConfig;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecp.db");
    let clock = ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap());
    let connect = || async { Arc::new(SqlStore::connect(SqlStoreConfig::sqlite_file(&path).build().unwrap()).await.unwrap()) };
    let metrics = || Arc::new(MetricStore::new(MetricStoreConfig::builder().clock(Arc::new(clock.clone())).build().unwrap()));
    let authz = Arc::new(TestAuthz { viewer: Principal::user(UserId::new(), "viewer") });
    let ops = Principal::system("ops");

    let db = connect().await;
    let ev = |op: &str| AuditEvent::new(&Principal::system("t"), ResourceKind::Organization, Operation::new(op).unwrap());
    let org = Organization::new("acme", clock.now()).unwrap();
    db.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let opened = Project::new(org.id, "opened", clock.now()).unwrap();
    let unopened = Project::new(org.id, "never-opened", clock.now()).unwrap();
    for p in [&opened, &unopened] {
        db.create_project(p, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    }

    // First life: a rule, a silenced built-in, settings and a token.
    let engine_metrics = metrics();
    let engine =
        AlarmEngine::new(engine_metrics.clone() as Arc<dyn MetricReader>, Arc::new(clock.clone()), AlarmConfig::default()).unwrap();
    let writer = engine.persist(db.clone(), Duration::from_millis(100)).await.unwrap();
    let alarms = Alarms::new(engine.clone(), db.clone(), authz.clone());
    let admin = alarms.project(&ops, opened.id()).await.unwrap();
    admin.create_rule(AlarmRule::new("hot", threshold("cpu", Comparison::Gt, 80.0), Severity::Critical).counts(1, 1)).await.unwrap();
    let offline = admin.builtin(Builtin::EdgeServiceOffline).unwrap();
    admin.silence_rule(offline.id, None).await.unwrap();
    let agent_offline = admin.builtin(Builtin::EdgeAgentOffline).unwrap();
    admin.delete_rule(agent_offline.id).await.unwrap();
    let settings = AlarmSettings { enabled: true, notify_critical_only: true };
    admin.set_settings(settings).await.unwrap();
    let token = admin.issue_custom_token().await.unwrap().token.expose_secret().to_string();
    let rules = admin.rules().unwrap();
    // Alarms: a custom one acknowledged, another moved to history, and the rule's, still active.
    let push = |uuid: &str| format!(r#"{{"message":"valve stuck","timestamp":"{}","uuid":"{uuid}"}}"#, clock.now().as_second());
    let CustomOutcome::Raised(acked) = engine.push_custom(&token, push("u-1").as_bytes()).unwrap() else { panic!("not raised") };
    admin.acknowledge(acked).await.unwrap();
    let CustomOutcome::Raised(moved) = engine.push_custom(&token, push("u-2").as_bytes()).unwrap() else { panic!("not raised") };
    admin.move_to_history(moved).await.unwrap();
    let scope = MetricScope::new(org.id, opened.id());
    clock.advance(STEP);
    let hot = Sample::new(scope, name("cpu"), Labels::new([("node", "n1")]).unwrap(), clock.now(), 95.0);
    assert_eq!(engine_metrics.accept(&[hot]).stored, 1);
    engine.evaluate();
    let active = admin.active(&AlarmFilter::default()).unwrap();
    let history = admin.history(&AlarmFilter::default()).unwrap();
    assert_eq!((active.len(), history.len()), (2, 1));
    let kept = async || {
        let docs = db.documents("alarm_project").await.unwrap();
        let alarms = db.documents(&format!("alarm/{}", opened.id())).await.unwrap();
        docs.iter().any(|(k, d)| k == &opened.id().to_string() && d["token_hash"].is_string() && d.to_string().contains("\"hot\""))
            && alarms.len() == 3
            && alarms.iter().any(|(k, d)| k == &moved.to_string() && d["state"] == "history")
    };
    let t0 = std::time::Instant::now();
    while !kept().await {
        assert!(t0.elapsed() < Duration::from_secs(10), "the configuration was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.abort();
    drop((admin, alarms, engine));

    // Second life.
    let db = connect().await;
    let store = metrics();
    let engine = AlarmEngine::new(store.clone() as Arc<dyn MetricReader>, Arc::new(clock.clone()), AlarmConfig::default()).unwrap();
    let mut events = engine.subscribe();
    let _writer = engine.persist(db.clone(), Duration::from_millis(100)).await.unwrap();
    // Both projects' edge services are offline; nobody has opened anything yet.
    for p in [&opened, &unopened] {
        let scope = MetricScope::new(org.id, p.id());
        for round in 0..5 {
            clock.advance(STEP);
            let s = Sample::new(scope, name("ecp_edge_up"), Labels::new([("source", "edge:1")]).unwrap(), clock.now(), 0.0);
            assert_eq!(store.accept(&[s]).stored, 1);
            let _ = round;
            engine.evaluate();
        }
    }
    let mut fired = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let AlarmEvent::Fired(a) = e {
            fired.push(a.scope.project);
        }
    }
    assert_eq!(fired, vec![unopened.id()], "the never-opened project fired; the opened one's rule is still silenced");
    assert!(engine.stats().silenced > 0);

    let alarms = Alarms::new(engine.clone(), db.clone(), authz);
    let admin = alarms.project(&ops, opened.id()).await.unwrap();
    assert_eq!(admin.rules().unwrap(), rules, "the rules are as they were: built-ins not doubled, the deleted one still gone");
    assert_eq!(admin.settings().unwrap(), settings);
    assert_eq!(admin.active(&AlarmFilter::default()).unwrap(), active, "the active alarms, acknowledgement included");
    assert_eq!(admin.history(&AlarmFilter::default()).unwrap(), history);
    // The rule's alarm came back with its instance: it recovers, the same alarm closes.
    clock.advance(STEP);
    let cool = Sample::new(MetricScope::new(org.id, opened.id()), name("cpu"), Labels::new([("node", "n1")]).unwrap(), clock.now(), 10.0);
    assert_eq!(store.accept(&[cool]).stored, 1);
    engine.evaluate();
    let recovered: Vec<_> = admin.history(&AlarmFilter::default()).unwrap().into_iter().filter(|a| a.name == "hot").collect();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].closure, Some(Closure::Recovered));
    assert!(active.iter().any(|a| a.id == recovered[0].id), "the alarm that fired before the restart");
    let body = format!(r#"{{"message":"valve stuck","timestamp":"{}"}}"#, clock.now().as_second());
    assert!(matches!(engine.push_custom(&token, body.as_bytes()).unwrap(), CustomOutcome::Raised(_)), "the token still pushes");
}

/// Kept documents that do not read (damaged, or from another program) are skipped with a
/// warning: the engine starts, and the project starts with the defaults.
#[tokio::test]
async fn kept_alarm_documents_that_do_not_read_are_skipped() {
    let clock = ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap());
    let db = Arc::new(SqlStore::memory().await.unwrap());
    let (org, project) = org_and_project(&db, &clock).await;
    let now = clock.now();
    db.put_document("alarm_project", &project.id().to_string(), &serde_json::json!({ "scope": 5 }), now).await.unwrap();
    db.put_document("alarm_project", "junk", &serde_json::json!([1, 2]), now).await.unwrap();
    let bad_token = serde_json::json!({ "scope": { "org": org.id, "project": project.id() }, "settings": { "enabled": true, "notify_critical_only": false }, "rules": [], "token_hash": "not hex" });
    db.put_document("alarm_project", "other", &bad_token, now).await.unwrap();
    db.put_document(&format!("alarm/{}", project.id()), "x", &serde_json::json!("not an alarm"), now).await.unwrap();

    let metrics = Arc::new(MetricStore::new(MetricStoreConfig::builder().clock(Arc::new(clock.clone())).build().unwrap()));
    let engine = AlarmEngine::new(metrics as Arc<dyn MetricReader>, Arc::new(clock.clone()), AlarmConfig::default()).unwrap();
    let _writer = engine.persist(db.clone(), Duration::from_millis(100)).await.expect("the engine starts");
    let alarms = Alarms::new(engine, db.clone(), Arc::new(TestAuthz { viewer: Principal::user(UserId::new(), "viewer") }));
    let admin = alarms.project(&Principal::system("ops"), project.id()).await.unwrap();
    assert_eq!(admin.rules().unwrap().len(), Builtin::ALL.len(), "the defaults");
    assert!(admin.active(&AlarmFilter::default()).unwrap().is_empty());
}
