//! Alarms: rules that fire after N consecutive breaching evaluations and clear after P healthy
//! ones, their lifecycle (active, acknowledged, history, purge), silences, the storm guard, and
//! custom alarms pushed by outside systems with a project token.
//!
//! The [`AlarmEngine`] evaluates every attached project's rules against a [`MetricReader`] (the
//! metric store) on an interval; [`Alarms::project`] hands out a [`ProjectAlarms`] handle whose every
//! call is authorized for one principal in one project and audited.
//!
//! Rules, silences, settings, custom alarm tokens, active alarms and history survive a restart
//! when the engine keeps them in the store ([`AlarmEngine::persist`]).

mod engine;
mod glue;
mod rule;

use std::sync::Arc;

use ecp_core::audit::AuditEvent;
use ecp_core::scoped::Scoped;
use ecp_core::{Authorizer, Operation, Permission, Principal, Project, ProjectId, ResourceKind, Store, Timestamp};
use secrecy::SecretString;

pub use engine::{
    Acknowledgement, Alarm, AlarmConfig, AlarmConfigBuilder, AlarmEngine, AlarmEvent, AlarmId, AlarmOrigin, AlarmSettings, AlarmState,
    Closure, CustomOutcome, EngineStats, MAX_CUSTOM_BODY, MetricReader, SEND_FAILED, StormStatus,
};
pub use glue::{notification_of, spawn_notifications, spawn_notifications_counted};
pub use rule::{AlarmRule, Builtin, Comparison, Condition, MAX_COUNT, RuleId};

use crate::error::{Error, Result};
use crate::sample::{MetricScope, Severity};

/// The most history records one purge removes, as in the product.
pub const MAX_PURGE: usize = 50_000;

/// Audit operation names of alarm operations.
pub mod ops {
    use ecp_core::Operation;

    /// A rule was created.
    pub const RULE_CREATE: Operation = Operation::from_static("alarm_rule.create");
    /// A rule was changed (including enabled/disabled).
    pub const RULE_UPDATE: Operation = Operation::from_static("alarm_rule.update");
    /// A rule was deleted.
    pub const RULE_DELETE: Operation = Operation::from_static("alarm_rule.delete");
    /// A rule or one of its instances was silenced or unsilenced.
    pub const SILENCE: Operation = Operation::from_static("alarm.silence");
    /// An alarm was acknowledged.
    pub const ACKNOWLEDGE: Operation = Operation::from_static("alarm.acknowledge");
    /// An alarm was moved to history by hand.
    pub const MOVE: Operation = Operation::from_static("alarm.move_to_history");
    /// History was purged.
    pub const PURGE: Operation = Operation::from_static("alarm.purge");
    /// The project's alarm settings changed.
    pub const SETTINGS: Operation = Operation::from_static("alarm.settings");
    /// A storm was cleared.
    pub const CLEAR_STORM: Operation = Operation::from_static("alarm.clear_storm");
    /// A custom alarm token was issued or revoked.
    pub const TOKEN: Operation = Operation::from_static("alarm.custom_token");
}

/// Which alarms a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmFilter {
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only alarms whose name or message contains this (case-insensitive).
    pub text: Option<String>,
    /// Only acknowledged (`true`) or unacknowledged (`false`) ones.
    pub acknowledged: Option<bool>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

impl AlarmFilter {
    /// Only this severity.
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = Some(s);
        self
    }

    /// Only alarms whose name or message contains `text` (case-insensitive).
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Only acknowledged (`true`) or unacknowledged (`false`) ones.
    pub fn acknowledged(mut self, yes: bool) -> Self {
        self.acknowledged = Some(yes);
        self
    }

    /// At most this many (1 to 1,000).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    fn matches(&self, a: &Alarm) -> bool {
        self.severity.is_none_or(|s| a.severity == s)
            && self.acknowledged.is_none_or(|k| a.acknowledged.is_some() == k)
            && self.text.as_deref().is_none_or(|t| {
                let t = t.to_lowercase();
                a.name.to_lowercase().contains(&t) || a.message.to_lowercase().contains(&t)
            })
    }

    fn max(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// Which history records a purge removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purge {
    /// Those that ended before this time.
    OlderThan(Timestamp),
    /// All but the newest `n`.
    KeepNewest(usize),
}

/// A custom alarm token, shown once when issued.
#[derive(Debug)]
pub struct CustomToken {
    /// The token, for the `X-ECP-Alarm-Token` header.
    pub token: SecretString,
    /// The project it pushes into.
    pub project: ProjectId,
}

/// Alarms of every project: hands out [`ProjectAlarms`].
#[derive(Clone)]
pub struct Alarms {
    engine: AlarmEngine,
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
}

impl std::fmt::Debug for Alarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarms").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl Alarms {
    /// Alarms over an engine, authorizing with `authz` and auditing to `store`.
    pub fn new(engine: AlarmEngine, store: Arc<dyn Store>, authz: Arc<dyn Authorizer>) -> Self {
        Alarms { engine, store, authz }
    }

    /// A handle on one project's alarms for `principal`; attaches the project to the engine.
    ///
    /// # Errors
    /// `NotFound` for a project the principal cannot see, `Backend`.
    pub async fn project(&self, principal: &Principal, project: ProjectId) -> Result<ProjectAlarms> {
        let handle = Scoped::project(self.store.clone(), self.authz.clone(), principal, project).await?;
        let p = handle.project_record().cloned().ok_or_else(|| ecp_core::Error::not_found("project", project))?;
        let scope = MetricScope::new(p.org(), p.id());
        self.engine.attach(scope);
        Ok(ProjectAlarms { alarms: self.clone(), handle, project: p, scope })
    }
}

/// One project's alarms, as one principal acts on them. Reading needs `view alarm`; acknowledging,
/// moving, silencing and clearing a storm need `operate alarm`; rules, settings, purges and tokens
/// need `edit alarm`. Every change is audited, success or failure.
#[derive(Clone)]
pub struct ProjectAlarms {
    alarms: Alarms,
    handle: Scoped,
    project: Project,
    scope: MetricScope,
}

impl std::fmt::Debug for ProjectAlarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectAlarms").field("project", &self.project.id()).field("principal", self.handle.principal()).finish()
    }
}

impl ProjectAlarms {
    /// The project's scope.
    pub fn scope(&self) -> MetricScope {
        self.scope
    }

    fn engine(&self) -> &AlarmEngine {
        &self.alarms.engine
    }

    /// Checks a permission for a read (reads are not audited).
    fn authorize(&self, perm: Permission) -> Result<()> {
        Ok(self.handle.authorize(perm)?)
    }

    fn event(&self, op: Operation) -> AuditEvent {
        self.handle.event(ResourceKind::Alarm, op)
    }

    /// Runs a change through [`Scoped::audited_event`]: authorized with `perm`, applied by `f`
    /// (which returns the record's details), audited either way.
    async fn change<T>(&self, perm: Permission, event: AuditEvent, f: impl FnOnce(&Self) -> Result<(T, serde_json::Value)>) -> Result<T> {
        self.handle
            .audited_event(perm, event, async |audit| {
                let (v, details) = f(self)?;
                self.engine().config_changed(self.project.id());
                if audit.event().resource_name.is_none()
                    && let Some(name) = details.get("name").and_then(|n| n.as_str())
                {
                    audit.resource_name(&name.chars().take(64).collect::<String>());
                }
                audit.details(details);
                Ok(v)
            })
            .await
    }

    fn state<T>(&self, f: impl FnOnce(&mut engine::ProjectState) -> T) -> T {
        self.engine().with_state(self.scope, f)
    }

    fn by(&self) -> String {
        self.handle.principal().name().to_string()
    }

    // --- rules ----------------------------------------------------------------------------------

    /// The project's rules (built-in ones included).
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn rules(&self) -> Result<Vec<AlarmRule>> {
        self.authorize(Permission::view(ResourceKind::Alarm))?;
        Ok(self.state(|st| st.rules()))
    }

    /// The rule of a built-in kind.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound` if it was deleted.
    pub fn builtin(&self, b: Builtin) -> Result<AlarmRule> {
        self.authorize(Permission::view(ResourceKind::Alarm))?;
        self.state(|st| st.rules().into_iter().find(|r| r.builtin == Some(b)))
            .ok_or_else(|| ecp_core::Error::not_found("alarm rule", format!("{b:?}")).into())
    }

    /// Creates a rule (it gets a new id).
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Conflict` for a duplicate name, `LimitExceeded`,
    /// `Backend` (audit).
    pub async fn create_rule(&self, mut rule: AlarmRule) -> Result<AlarmRule> {
        rule.id = RuleId::new();
        rule.builtin = None;
        let event = self.event(ops::RULE_CREATE).resource(rule.id, Some(&rule.name));
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            s.state(|st| s.engine().op_put_rule(st, rule.clone()))?;
            Ok((rule.clone(), serde_json::json!({ "rule": &rule })))
        })
        .await
    }

    /// Replaces a rule (matched by id): its condition, counts, severity, message, tags, enabled.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `InvalidInput`, `Conflict`, `Backend`.
    pub async fn update_rule(&self, rule: AlarmRule) -> Result<AlarmRule> {
        let event = self.event(ops::RULE_UPDATE).resource(rule.id, Some(&rule.name));
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            s.state(|st| {
                let old = st.rule(rule.id).ok_or_else(|| Error::from(ecp_core::Error::not_found("alarm rule", rule.id)))?;
                let mut rule = rule.clone();
                rule.builtin = old.builtin;
                s.engine().op_put_rule(st, rule.clone())?;
                Ok((rule.clone(), serde_json::json!({ "rule": &rule })))
            })
        })
        .await
    }

    /// Turns a rule on or off.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn set_rule_enabled(&self, id: RuleId, enabled: bool) -> Result<AlarmRule> {
        let event = self.event(ops::RULE_UPDATE).resource(id, None);
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            s.state(|st| {
                let mut rule = st.rule(id).cloned().ok_or_else(|| Error::from(ecp_core::Error::not_found("alarm rule", id)))?;
                rule.enabled = enabled;
                s.engine().op_put_rule(st, rule.clone())?;
                Ok((rule, serde_json::json!({ "enabled": enabled })))
            })
        })
        .await
    }

    /// Deletes a rule; its active alarms move to history.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn delete_rule(&self, id: RuleId) -> Result<()> {
        let event = self.event(ops::RULE_DELETE).resource(id, None);
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            let rule =
                s.state(|st| s.engine().op_delete_rule(st, id)).ok_or_else(|| Error::from(ecp_core::Error::not_found("alarm rule", id)))?;
            Ok(((), serde_json::json!({ "name": rule.name })))
        })
        .await
    }

    /// Silences a rule until `until` (or until lifted): it raises no alarms meanwhile.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn silence_rule(&self, id: RuleId, until: Option<Timestamp>) -> Result<()> {
        self.silence(id, None, until, true).await
    }

    /// Lifts a rule's silence.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn unsilence_rule(&self, id: RuleId) -> Result<()> {
        self.silence(id, None, None, false).await
    }

    /// Silences one instance of a rule (an alarm's [`Alarm::instance`]).
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `LimitExceeded` past 10,000 silenced instances, `Backend`.
    pub async fn silence_instance(&self, id: RuleId, instance: &str, until: Option<Timestamp>) -> Result<()> {
        self.silence(id, Some(instance), until, true).await
    }

    /// Lifts an instance's silence.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn unsilence_instance(&self, id: RuleId, instance: &str) -> Result<()> {
        self.silence(id, Some(instance), None, false).await
    }

    async fn silence(&self, id: RuleId, instance: Option<&str>, until: Option<Timestamp>, on: bool) -> Result<()> {
        let event = self.event(ops::SILENCE).resource(id, instance);
        self.change(Permission::operate(ResourceKind::Alarm), event, |s| {
            let done = s.state(|st| match instance {
                None => {
                    st.silence_rule(id, until, on).then_some(()).ok_or_else(|| Error::from(ecp_core::Error::not_found("alarm rule", id)))
                }
                Some(i) => {
                    if st.rule(id).is_none() {
                        return Err(ecp_core::Error::not_found("alarm rule", id).into());
                    }
                    st.silence_instance(id, i, until, on)
                        .then_some(())
                        .ok_or_else(|| Error::from(ecp_core::Error::LimitExceeded { limit: "silenced instances per rule", max: 10_000 }))
                }
            });
            done?;
            Ok(((), serde_json::json!({ "on": on, "until": until, "instance": instance })))
        })
        .await
    }

    // --- alarms ---------------------------------------------------------------------------------

    /// Active alarms, newest first.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn active(&self, filter: &AlarmFilter) -> Result<Vec<Alarm>> {
        self.authorize(Permission::view(ResourceKind::Alarm))?;
        Ok(self.state(|st| st.active().rev().filter(|a| filter.matches(a)).take(filter.max()).cloned().collect()))
    }

    /// Alarms in history, most recently closed first.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn history(&self, filter: &AlarmFilter) -> Result<Vec<Alarm>> {
        self.authorize(Permission::view(ResourceKind::Alarm))?;
        Ok(self.state(|st| st.history().rev().filter(|a| filter.matches(a)).take(filter.max()).cloned().collect()))
    }

    /// Acknowledges an alarm (active or in history).
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn acknowledge(&self, id: AlarmId) -> Result<Alarm> {
        let event = self.event(ops::ACKNOWLEDGE).resource(id, None);
        let now = self.engine().now();
        self.change(Permission::operate(ResourceKind::Alarm), event, |s| {
            let by = s.by();
            s.state(|st| {
                let a = match st.active_mut(id) {
                    Some(a) => a,
                    None => st.history_mut(id).ok_or_else(|| Error::from(ecp_core::Error::not_found("alarm", id)))?,
                };
                a.acknowledged = Some(Acknowledgement { by, at: now });
                s.engine().alarm_changed(a);
                Ok((a.clone(), serde_json::json!({ "name": a.name, "instance": a.instance })))
            })
        })
        .await
    }

    /// Moves an active alarm to history by hand ("alarms move"). Its rule must breach N times
    /// again before it fires again.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn move_to_history(&self, id: AlarmId) -> Result<Alarm> {
        let event = self.event(ops::MOVE).resource(id, None);
        self.change(Permission::operate(ResourceKind::Alarm), event, |s| {
            let by = s.by();
            let a = s
                .state(|st| s.engine().op_close(st, id, &by))
                .ok_or_else(|| Error::from(ecp_core::Error::not_found("active alarm", id)))?;
            let details = serde_json::json!({ "name": a.name, "instance": a.instance });
            Ok((a, details))
        })
        .await
    }

    /// Removes history records; at most [`MAX_PURGE`] per call. Returns how many went.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn purge(&self, purge: Purge) -> Result<usize> {
        let event = self.event(ops::PURGE);
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            let removed = s.state(|st| match purge {
                Purge::OlderThan(t) => st.purge(Some(t), None, MAX_PURGE),
                Purge::KeepNewest(k) => st.purge(None, Some(k), MAX_PURGE),
            });
            let n = removed.len();
            s.engine().alarms_forgotten(s.project.id(), removed);
            Ok((n, serde_json::json!({ "removed": n })))
        })
        .await
    }

    // --- settings, storm, tokens ----------------------------------------------------------------

    /// The project's alarm settings.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn settings(&self) -> Result<AlarmSettings> {
        self.authorize(Permission::view(ResourceKind::Alarm))?;
        Ok(self.state(|st| st.settings()))
    }

    /// Changes the project's alarm settings.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn set_settings(&self, settings: AlarmSettings) -> Result<()> {
        let event = self.event(ops::SETTINGS);
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            s.state(|st| st.set_settings(settings));
            Ok(((), serde_json::json!({ "enabled": settings.enabled, "notify_critical_only": settings.notify_critical_only })))
        })
        .await
    }

    /// The storm guard's state.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn storm(&self) -> Result<StormStatus> {
        self.authorize(Permission::view(ResourceKind::Alarm))?;
        Ok(self.state(|st| st.storm()))
    }

    /// Clears a storm ("clear alarm"): the project's alarms resume. Returns how many alarms the
    /// storm suppressed, or `None` if there was no storm.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn clear_storm(&self) -> Result<Option<u64>> {
        let event = self.event(ops::CLEAR_STORM);
        self.change(Permission::operate(ResourceKind::Alarm), event, |s| {
            let n = s.state(|st| s.engine().op_clear_storm(st));
            Ok((n, serde_json::json!({ "suppressed": n })))
        })
        .await
    }

    /// Issues the project's custom alarm token (replacing an earlier one). The token is returned
    /// once; only its SHA-256 is kept.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn issue_custom_token(&self) -> Result<CustomToken> {
        let event = self.event(ops::TOKEN);
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw)
                .map_err(|e| Error::Core(ecp_core::Error::backend("os random", std::io::Error::other(e.to_string()))))?;
            let token = format!("ecpalarm_{}", hex::encode(raw));
            s.engine().set_token(s.scope, &token);
            Ok((CustomToken { token: SecretString::from(token), project: s.project.id() }, serde_json::json!({ "issued": true })))
        })
        .await
    }

    /// Revokes the project's custom alarm token. Returns whether there was one.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn revoke_custom_token(&self) -> Result<bool> {
        let event = self.event(ops::TOKEN);
        self.change(Permission::edit(ResourceKind::Alarm), event, |s| {
            let had = s.engine().revoke_token(s.project.id());
            Ok((had, serde_json::json!({ "revoked": had })))
        })
        .await
    }
}
