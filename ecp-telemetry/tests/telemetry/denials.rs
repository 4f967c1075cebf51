//! Every mutating method of the project-scoped alarm handle, called by a principal that sees the
//! project but may not change it (a viewer): each is refused with `PermissionDenied`, writes a
//! failure record of its own operation, and changes nothing. The list of methods is checked
//! against the handle's source, so a method cannot be added without being classified here.

use ecp_core::audit::{AuditQuery, AuditScope, Outcome};
use ecp_core::{AuditStore, PageRequest, Principal, UserId};
use ecp_telemetry::Severity;
use ecp_telemetry::alarm::{AlarmConfig, AlarmFilter, AlarmRule, AlarmSettings, Comparison, ProjectAlarms, Purge};

use crate::alarms::{Rig, rig, threshold};

/// Methods that change nothing: reads.
const READS: [&str; 7] = ["active", "builtin", "history", "rules", "scope", "settings", "storm"];

/// The mutating methods and the audit operation each records.
const MUTATING: [(&str, &str); 15] = [
    ("acknowledge", "alarm.acknowledge"),
    ("clear_storm", "alarm.clear_storm"),
    ("create_rule", "alarm_rule.create"),
    ("delete_rule", "alarm_rule.delete"),
    ("issue_custom_token", "alarm.custom_token"),
    ("move_to_history", "alarm.move_to_history"),
    ("purge", "alarm.purge"),
    ("revoke_custom_token", "alarm.custom_token"),
    ("set_rule_enabled", "alarm_rule.update"),
    ("set_settings", "alarm.settings"),
    ("silence_instance", "alarm.silence"),
    ("silence_rule", "alarm.silence"),
    ("unsilence_instance", "alarm.silence"),
    ("unsilence_rule", "alarm.silence"),
    ("update_rule", "alarm_rule.update"),
];

#[test]
fn every_public_method_of_the_alarm_handle_is_a_read_or_tested_here() {
    let found = ecp_testkit::methods::public_methods("ProjectAlarms", &[include_str!("../../src/alarm/mod.rs")]);
    let mut known: Vec<String> = READS.iter().chain(MUTATING.iter().map(|(m, _)| m)).map(|m| (*m).to_owned()).collect();
    known.sort();
    assert_eq!(found, known, "a public method of ProjectAlarms is neither a read nor a tested mutation");
}

/// What a viewer could change: rules, settings, active and closed alarms, the storm guard.
fn snapshot(h: &ProjectAlarms) -> String {
    let all = AlarmFilter::default().limit(1000);
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        h.rules().unwrap(),
        h.settings().unwrap(),
        h.active(&all).unwrap(),
        h.history(&all).unwrap(),
        h.storm().unwrap()
    )
}

async fn failures(r: &Rig, operation: &str) -> Vec<ecp_core::AuditRecord> {
    let q = AuditQuery { operation: Some(operation.to_owned()), success: Some(false), ..Default::default() };
    r.db.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(1000)).await.unwrap().items
}

#[tokio::test]
async fn a_denied_call_writes_a_failure_record_and_changes_nothing() {
    let r = rig(AlarmConfig::default()).await;
    r.disable_builtins().await;
    let rule =
        r.admin.create_rule(AlarmRule::new("high", threshold("t", Comparison::Gt, 1.0), Severity::Critical).counts(1, 1)).await.unwrap();
    r.tick();
    r.put("t", &[("i", "1")], 5.0);
    r.eval();
    let alarm = r.active()[0].id;
    r.admin.issue_custom_token().await.unwrap();

    let viewer = r.alarms.project(&Principal::user(UserId::new(), "viewer"), r.admin.scope().project).await.unwrap();
    let before = snapshot(&r.admin);
    for (method, operation) in MUTATING {
        let already = failures(&r, operation).await.len();
        let err = match method {
            "acknowledge" => viewer.acknowledge(alarm).await.unwrap_err(),
            "clear_storm" => viewer.clear_storm().await.unwrap_err(),
            "create_rule" => {
                viewer.create_rule(AlarmRule::new("x", threshold("t", Comparison::Lt, 0.0), Severity::Normal)).await.unwrap_err()
            }
            "delete_rule" => viewer.delete_rule(rule.id).await.unwrap_err(),
            "issue_custom_token" => viewer.issue_custom_token().await.unwrap_err(),
            "move_to_history" => viewer.move_to_history(alarm).await.unwrap_err(),
            "purge" => viewer.purge(Purge::KeepNewest(0)).await.unwrap_err(),
            "revoke_custom_token" => viewer.revoke_custom_token().await.unwrap_err(),
            "set_rule_enabled" => viewer.set_rule_enabled(rule.id, false).await.unwrap_err(),
            "set_settings" => viewer.set_settings(AlarmSettings { enabled: false, notify_critical_only: true }).await.unwrap_err(),
            "silence_instance" => viewer.silence_instance(rule.id, "x", None).await.unwrap_err(),
            "silence_rule" => viewer.silence_rule(rule.id, None).await.unwrap_err(),
            "unsilence_instance" => viewer.unsilence_instance(rule.id, "x").await.unwrap_err(),
            "unsilence_rule" => viewer.unsilence_rule(rule.id).await.unwrap_err(),
            "update_rule" => viewer.update_rule(AlarmRule { name: "renamed".into(), ..rule.clone() }).await.unwrap_err(),
            other => panic!("no case for {other}"),
        };
        assert!(matches!(&err, ecp_telemetry::Error::Core(e) if e.is_permission_denied()), "{method}: {err}");
        let records = failures(&r, operation).await;
        assert_eq!(records.len(), already + 1, "{method} wrote no failure record of {operation}");
        let last = records.iter().max_by_key(|r| r.seq).unwrap();
        assert_eq!(last.event.actor.name, "viewer", "{method}");
        assert!(matches!(&last.event.outcome, Outcome::Failure { reason } if reason.contains("permission denied")), "{method}");
        assert_eq!(snapshot(&r.admin), before, "{method} changed something");
    }
    // The token issued before is still the one that works.
    assert!(r.admin.revoke_custom_token().await.unwrap());
}
