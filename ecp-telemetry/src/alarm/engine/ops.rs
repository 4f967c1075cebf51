//! Operations used by the project handle, and the custom and send-failed alarms raised from outside.

use std::collections::HashMap;

use ecp_core::identity::TokenHash;
use ecp_core::{ProjectId, Timestamp};
use serde::Deserialize;

use crate::alarm::rule::{AlarmRule, RuleId};
use crate::error::{Error, Result};
use crate::sample::{Labels, MetricScope, Severity};

use super::{
    Alarm, AlarmEngine, AlarmEvent, AlarmId, AlarmOrigin, AlarmState, Closure, CustomOutcome, MAX_CUSTOM_BODY, ProjectState, RuleSlot,
    SEND_FAILED,
};

/// The body of a custom alarm push, as the product documents it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomBody {
    message: String,
    timestamp: serde_json::Value,
    #[serde(default)]
    severity: Option<serde_json::Value>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
}

impl AlarmEngine {
    pub(crate) fn with_state<T>(&self, scope: MetricScope, f: impl FnOnce(&mut ProjectState) -> T) -> T {
        self.attach(scope);
        let st = self.state(scope.project).unwrap_or_else(|| unreachable!("attached just above"));
        let mut st = st.lock();
        f(&mut st)
    }

    /// Pushes a custom alarm with a project's token and the product's JSON body
    /// (`message`, `timestamp` in seconds, `severity` 0 or 1, `tag`, `uuid`).
    ///
    /// # Errors
    /// `PermissionDenied` for an unknown token; `InvalidInput` for a malformed, oversized or
    /// future-dated body.
    pub fn push_custom(&self, token: &str, body: &[u8]) -> Result<CustomOutcome> {
        let hash = TokenHash::of(token);
        let scope = self.inner.tokens.read().get(&hash).copied().ok_or_else(|| {
            Error::Core(ecp_core::Error::PermissionDenied {
                principal: "custom alarm pusher".into(),
                permission: "push custom alarm".into(),
                scope: "project".into(),
                reason: "unknown or revoked custom alarm token".into(),
            })
        })?;
        if body.len() > MAX_CUSTOM_BODY {
            return Err(Error::TooLarge { what: "custom alarm body", size: body.len(), limit: MAX_CUSTOM_BODY });
        }
        let b: CustomBody = serde_json::from_slice(body).map_err(|e| Error::invalid("body", format!("not a custom alarm: {e}")))?;
        let message = b.message.trim();
        if message.is_empty() || message.chars().count() > 4096 {
            return Err(Error::invalid("message", "must be 1 to 4096 characters"));
        }
        let secs: i64 = match &b.timestamp {
            serde_json::Value::String(s) => {
                s.trim().parse().map_err(|_| Error::invalid("timestamp", "must be a number of seconds since the epoch"))?
            }
            serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| Error::invalid("timestamp", "must be a whole number of seconds"))?,
            _ => return Err(Error::invalid("timestamp", "must be a number of seconds since the epoch")),
        };
        let at = Timestamp::from_second(secs).map_err(|_| Error::invalid("timestamp", "out of range"))?;
        let severity = match &b.severity {
            None | Some(serde_json::Value::Null) => Severity::Normal,
            Some(v) => match v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
                Some(0) => Severity::Normal,
                Some(1) => Severity::Critical,
                _ => return Err(Error::invalid("severity", "must be 0 (normal) or 1 (critical)")),
            },
        };
        let tag = b.tag.filter(|t| !t.is_empty());
        if tag.as_ref().is_some_and(|t| t.len() > 64) {
            return Err(Error::invalid("tag", "longer than 64 bytes"));
        }
        let uuid = match b.uuid.filter(|u| !u.is_empty()) {
            Some(u) if u.len() > 128 => return Err(Error::invalid("uuid", "longer than 128 bytes")),
            Some(u) => u,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let now = self.now();
        if at < ecp_core::clock::sub(now, self.inner.config.custom_max_age) {
            return Ok(CustomOutcome::TooOld);
        }
        if at > ecp_core::clock::add(now, self.inner.config.custom_max_skew) {
            return Err(Error::invalid("timestamp", "is in the future"));
        }
        Ok(self.with_state(scope, |st| {
            if let Some(id) = st.custom_active.get(&uuid).copied()
                && let Some(a) = st.active.get_mut(&id)
            {
                a.message = message.to_string();
                a.severity = severity;
                a.tags = tag.into_iter().collect();
                self.alarm_changed(a);
                return CustomOutcome::Updated(id);
            }
            let alarm = Alarm {
                id: AlarmId::new(),
                scope,
                origin: AlarmOrigin::Custom { uuid: uuid.clone() },
                name: "custom alarm".into(),
                instance: uuid.clone(),
                labels: Labels::empty(),
                severity,
                message: message.to_string(),
                tags: tag.into_iter().collect(),
                value: None,
                fired_at: at,
                state: AlarmState::Active,
                closed_at: None,
                closure: None,
                acknowledged: None,
            };
            match self.raise(st, alarm, now) {
                Some(id) => {
                    st.custom_active.insert(uuid, id);
                    CustomOutcome::Raised(id)
                }
                None => CustomOutcome::Suppressed,
            }
        }))
    }

    /// Raises (or refreshes) the project's "notification send failed" alarm, of normal severity,
    /// as the product does when an email or webhook cannot be sent. It is closed by hand.
    pub fn raise_send_failed(&self, scope: MetricScope, reason: &str) {
        let now = self.now();
        let key = format!("system:{SEND_FAILED}");
        let message: String = format!("{SEND_FAILED}: {reason}").chars().take(1024).collect();
        self.with_state(scope, |st| {
            if let Some(id) = st.custom_active.get(&key).copied()
                && let Some(a) = st.active.get_mut(&id)
            {
                a.message = message;
                a.value = Some(a.value.unwrap_or(1.0) + 1.0);
                self.alarm_changed(a);
                return;
            }
            let alarm = Alarm {
                id: AlarmId::new(),
                scope,
                origin: AlarmOrigin::System { what: SEND_FAILED.into() },
                name: SEND_FAILED.into(),
                instance: key.clone(),
                labels: Labels::empty(),
                severity: Severity::Normal,
                message,
                tags: Vec::new(),
                value: Some(1.0),
                fired_at: now,
                state: AlarmState::Active,
                closed_at: None,
                closure: None,
                acknowledged: None,
            };
            if let Some(id) = self.raise(st, alarm, now) {
                st.custom_active.insert(key, id);
            }
        });
    }

    pub(crate) fn set_token(&self, scope: MetricScope, token: &str) {
        let hash = TokenHash::of(token);
        let mut tokens = self.inner.tokens.write();
        tokens.retain(|_, s| s.project != scope.project);
        tokens.insert(hash, scope);
    }

    pub(crate) fn revoke_token(&self, project: ProjectId) -> bool {
        let mut tokens = self.inner.tokens.write();
        let before = tokens.len();
        tokens.retain(|_, s| s.project != project);
        tokens.len() != before
    }

    pub(crate) fn op_close(&self, st: &mut ProjectState, id: AlarmId, by: &str) -> Option<Alarm> {
        let now = self.now();
        let rule = match st.active.get(&id)?.origin {
            AlarmOrigin::Rule { rule } => Some(rule),
            AlarmOrigin::Custom { .. } | AlarmOrigin::System { .. } => None,
        };
        if let Some(slot) = rule.and_then(|r| st.rules.get_mut(&r)) {
            for inst in slot.instances.values_mut() {
                if inst.active == Some(id) {
                    // Moved by hand: the instance must breach N times again before it fires again.
                    inst.active = None;
                    inst.breaches = 0;
                }
            }
        }
        self.close(st, id, Closure::Manual { by: by.to_string() }, now)
    }

    pub(crate) fn op_clear_storm(&self, st: &mut ProjectState) -> Option<u64> {
        st.paused_since?;
        let suppressed = st.suppressed_in_storm;
        st.paused_since = None;
        st.suppressed_in_storm = 0;
        st.storm_keys.clear();
        st.recent.clear();
        self.emit(AlarmEvent::StormCleared { scope: st.scope, suppressed }, false);
        Some(suppressed)
    }

    pub(crate) fn op_delete_rule(&self, st: &mut ProjectState, id: RuleId) -> Option<AlarmRule> {
        let slot = st.rules.remove(&id)?;
        let now = self.now();
        for inst in slot.instances.values() {
            if let Some(a) = inst.active {
                self.close(st, a, Closure::RuleDeleted, now);
            }
        }
        Some(slot.rule)
    }

    pub(crate) fn op_put_rule(&self, st: &mut ProjectState, rule: AlarmRule) -> Result<()> {
        rule.validate()?;
        if st.rules.values().any(|s| s.rule.id != rule.id && s.rule.name.eq_ignore_ascii_case(&rule.name)) {
            return Err(Error::Core(ecp_core::Error::conflict("alarm rule", &rule.name, "a rule of this name exists in the project")));
        }
        match st.rules.get_mut(&rule.id) {
            Some(slot) => {
                // A changed condition or counts start counting afresh; active alarms stay until they recover.
                if slot.rule.condition != rule.condition {
                    slot.instances.retain(|_, i| i.active.is_some());
                    for i in slot.instances.values_mut() {
                        i.breaches = 0;
                        i.healthy = 0;
                        i.last_value = None;
                    }
                }
                slot.rule = rule;
            }
            None => {
                if st.rules.len() >= self.inner.config.max_rules {
                    return Err(Error::Core(ecp_core::Error::LimitExceeded {
                        limit: "alarm rules per project",
                        max: self.inner.config.max_rules as u64,
                    }));
                }
                st.rules.insert(rule.id, RuleSlot { rule, instances: HashMap::new(), silence: None, silenced_instances: HashMap::new() });
            }
        }
        Ok(())
    }
}
