//! Applying the desired configuration: at most once per item key and version, in version order,
//! and reporting the outcomes in messages that fit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ecp_agent_proto::Channel;
use ecp_agent_proto::proto::{self, Applied, Desired, DesiredItem, Envelope, Message, Report};
use serde_json::{Value, json};

use crate::{agent::*, commands::*, state::*};

/// The longest item key accepted.
pub(crate) const MAX_KEY_LEN: usize = 256;

impl Core {
    /// Applies `item` at most once per (key, version); returns the fresh or recorded outcome.
    pub(crate) async fn apply(&self, item: &DesiredItem) -> Applied {
        let fail = |detail: String| Applied { key: item.key.clone(), version: item.version, ok: false, detail: Value::String(detail) };
        if item.key.is_empty() || item.key.len() > MAX_KEY_LEN || item.key.chars().any(char::is_control) {
            return fail(format!("the key must be 1 to {MAX_KEY_LEN} characters without control characters"));
        }
        let Some(service) = self.service(&item.target) else {
            return fail(format!("forbidden: target {:?} is not one of this agent's services", shown(&item.target)));
        };
        let mut state = self.state.lock().await;
        if let Some(record) = state.get(&item.key)
            && item.version <= record.version
        {
            let o = record.outcome.clone().unwrap_or(Outcome { ok: false, detail: json!("in progress") });
            return Applied { key: item.key.clone(), version: record.version, ok: o.ok, detail: o.detail };
        }
        // Write ahead: the version is recorded as started before the service hears of it.
        let previous = state.insert(item.key.clone(), Record { version: item.version, outcome: None });
        if let Err(e) = self.persist(&state).await {
            match previous {
                Some(p) => state.insert(item.key.clone(), p),
                None => state.remove(&item.key),
            };
            tracing::error!(key = %item.key, error = %e, "edge agent: cannot record an item as started; not applied");
            return fail(format!("not applied: the agent cannot record it: {e}"));
        }
        lock(&self.applied_versions).insert(item.key.clone(), item.version);
        let key = format!("{}:{}:{}", self.config.agent_id, item.key, item.version);
        self.items_applied.fetch_add(1, Ordering::Relaxed);
        let outcome = match service.client.apply(&item.change, &key).await {
            Ok(detail) => Outcome { ok: true, detail },
            Err(e) => Outcome { ok: false, detail: Value::String(error_text(&e)) },
        };
        tracing::info!(key = %item.key, version = item.version, ok = outcome.ok, "edge agent: desired item applied");
        state.insert(item.key.clone(), Record { version: item.version, outcome: Some(outcome.clone()) });
        if let Err(e) = self.persist(&state).await {
            tracing::error!(key = %item.key, error = %e, "edge agent: cannot record an item's outcome");
        }
        Applied { key: item.key.clone(), version: item.version, ok: outcome.ok, detail: outcome.detail }
    }

    /// Applies every item of `desired` newer than recorded, in version order, and returns what to
    /// report: those outcomes, and the recorded outcomes of items at their recorded version.
    ///
    /// A set older than the newest taken is ignored whole (it was published out of order, or is a
    /// stale retained message); the items recorded here that a newer set no longer holds were
    /// withdrawn, and are forgotten: their effect on the service stays, and a later version of
    /// the same key applies as a new item.
    pub(crate) async fn apply_desired(&self, desired: Desired) -> Vec<Applied> {
        let taken = self.set_version.load(Ordering::SeqCst);
        if desired.version < taken {
            self.stale_sets.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(version = desired.version, newest = taken, "edge agent: an older desired set than the newest taken; ignored");
            return Vec::new();
        }
        if desired.version > taken {
            let mut state = self.state.lock().await;
            let holds: std::collections::BTreeSet<&str> = desired.items.iter().map(|i| i.key.as_str()).collect();
            let withdrawn: Vec<String> = state.keys().filter(|k| !holds.contains(k.as_str())).cloned().collect();
            for key in &withdrawn {
                state.remove(key);
                lock(&self.applied_versions).remove(key);
                tracing::info!(key = %key, "edge agent: desired item withdrawn; forgotten");
            }
            self.set_version.store(desired.version, Ordering::SeqCst);
            if let Err(e) = self.persist(&state).await {
                tracing::error!(error = %e, "edge agent: cannot record the desired set's version");
            }
        }
        let mut latest: BTreeMap<String, DesiredItem> = BTreeMap::new();
        for item in desired.items {
            if latest.get(&item.key).is_none_or(|i| i.version < item.version) {
                latest.insert(item.key.clone(), item);
            }
        }
        let mut items: Vec<DesiredItem> = latest.into_values().collect();
        items.sort_by_key(|i| i.version);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let recorded = self.state.lock().await.get(&item.key).map(|r| r.version);
            if recorded.is_some_and(|v| item.version < v) {
                continue; // An older desired set than what was applied: nothing to say.
            }
            out.push(self.apply(&item).await);
        }
        out
    }
}

pub(crate) async fn desired_loop(core: Arc<Core>) {
    loop {
        core.desired_ready.notified().await;
        loop {
            let Some(desired) = lock(&core.desired).take() else { break };
            let items = core.apply_desired(desired).await;
            for chunk in report_chunks(items, core.config.mqtt.max_payload()) {
                core.emit(Channel::Report, Message::Report(Report { items: chunk }));
            }
        }
    }
}

/// Splits outcomes into reports that each fit in one message; an outcome whose detail alone is
/// too large keeps its key, version and result with a shortened detail.
pub(crate) fn report_chunks(items: Vec<Applied>, limit: usize) -> Vec<Vec<Applied>> {
    if items.is_empty() {
        return Vec::new();
    }
    let fits = |items: &[Applied]| proto::encode(&Envelope::new(Message::Report(Report { items: items.to_vec() })), limit).is_ok();
    if fits(&items) {
        return vec![items];
    }
    if items.len() == 1 {
        let mut item = items.into_iter().next().unwrap_or_else(|| unreachable!());
        item.detail = json!("the detail is too large to report");
        return vec![vec![item]];
    }
    let mut first = items;
    let second = first.split_off(first.len() / 2);
    let mut out = report_chunks(first, limit);
    out.extend(report_chunks(second, limit));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_split_to_fit() {
        let item = |i: u64| Applied { key: format!("k{i}"), version: i, ok: true, detail: json!("x".repeat(300)) };
        let chunks = report_chunks((0..20).map(item).collect(), 2048);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 20);
        let big = Applied { key: "k".into(), version: 1, ok: false, detail: json!("y".repeat(5000)) };
        let chunks = report_chunks(vec![big], 2048);
        assert_eq!(chunks[0][0].detail, json!("the detail is too large to report"));
    }
}
