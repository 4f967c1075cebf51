//! Accessors of project state for the project handle.

use ecp_core::Timestamp;

use crate::alarm::rule::{AlarmRule, RuleId};

use super::{Alarm, AlarmId, AlarmSettings, ProjectState, StormStatus};

impl ProjectState {
    pub(crate) fn rules(&self) -> Vec<AlarmRule> {
        self.rules.values().map(|s| s.rule.clone()).collect()
    }

    pub(crate) fn rule(&self, id: RuleId) -> Option<&AlarmRule> {
        self.rules.get(&id).map(|s| &s.rule)
    }

    pub(crate) fn active(&self) -> impl DoubleEndedIterator<Item = &Alarm> {
        self.active.values()
    }

    pub(crate) fn history(&self) -> impl DoubleEndedIterator<Item = &Alarm> {
        self.history.iter()
    }

    pub(crate) fn active_mut(&mut self, id: AlarmId) -> Option<&mut Alarm> {
        self.active.get_mut(&id)
    }

    pub(crate) fn history_mut(&mut self, id: AlarmId) -> Option<&mut Alarm> {
        self.history.iter_mut().find(|a| a.id == id)
    }

    pub(crate) fn settings(&self) -> AlarmSettings {
        self.settings
    }

    pub(crate) fn set_settings(&mut self, s: AlarmSettings) {
        self.settings = s;
    }

    pub(crate) fn storm(&self) -> StormStatus {
        StormStatus {
            paused_since: self.paused_since,
            recent: u32::try_from(self.recent.len()).unwrap_or(u32::MAX),
            suppressed: self.suppressed_in_storm,
        }
    }

    pub(crate) fn silence_rule(&mut self, id: RuleId, until: Option<Timestamp>, on: bool) -> bool {
        match self.rules.get_mut(&id) {
            Some(slot) => {
                slot.silence = on.then_some(until);
                true
            }
            None => false,
        }
    }

    pub(crate) fn silence_instance(&mut self, id: RuleId, instance: &str, until: Option<Timestamp>, on: bool) -> bool {
        match self.rules.get_mut(&id) {
            Some(slot) => {
                if on {
                    if slot.silenced_instances.len() >= 10_000 && !slot.silenced_instances.contains_key(instance) {
                        return false;
                    }
                    slot.silenced_instances.insert(instance.to_string(), until);
                } else {
                    slot.silenced_instances.remove(instance);
                }
                true
            }
            None => false,
        }
    }

    /// Removes history records: older than `before`, and beyond the newest `keep`; at most `max`.
    /// Returns the ids removed.
    pub(crate) fn purge(&mut self, before: Option<Timestamp>, keep: Option<usize>, max: usize) -> Vec<AlarmId> {
        let mut removed = Vec::new();
        // History is in closing order, oldest first.
        while removed.len() < max {
            let over_count = keep.is_some_and(|k| self.history.len() > k);
            let too_old = before.is_some_and(|b| self.history.front().is_some_and(|a| a.closed_at.unwrap_or(a.fired_at) < b));
            if !(over_count || too_old) {
                break;
            }
            match self.history.pop_front() {
                Some(a) => removed.push(a.id),
                None => break,
            }
        }
        removed
    }
}
