//! Desired state: delivering items, publishing them retained, and recording what agents report.

use std::time::Duration;

use ecp_core::edge::{AgentId, DesiredChange, DesiredRecord, DesiredSet, ReportedItem};
use ecp_telemetry::own::Direction;
use tokio::sync::oneshot;

use ecp_agent_proto::Channel;
use ecp_agent_proto::mqtt::qos;
use ecp_agent_proto::proto::{self, Applied, Desired, DesiredItem, Envelope, Message, Report};

use super::presence::seen;
use super::stats::count_message;
use super::{AgentHub, HubEvent, Inner, encode_error, lock, transport_error};
use crate::error::{Error, Result};
use crate::template::ConfigChange;

impl AgentHub {
    /// Sets one item of `agent`'s desired configuration and waits up to `timeout` for the agent
    /// to report it applied. The same change as already desired keeps its version, so a retried
    /// delivery is not applied twice; one already applied returns at once.
    ///
    /// When the agent is away or slow, the item stays desired: the agent applies it when it
    /// comes back (see [`converged`](Self::converged)), and this call fails with a retryable
    /// `Transport` error.
    ///
    /// # Errors
    /// `NotFound` for an unknown agent; `Transport` (retryable) when no report came in time;
    /// `TooLarge` when the agent's desired configuration would exceed the payload limit;
    /// `Backend`.
    pub async fn deliver(&self, agent: &AgentId, key: &str, target: &str, change: &ConfigChange, timeout: Duration) -> Result<Applied> {
        let inner = &self.inner;
        let value = serde_json::to_value(change).map_err(|e| Error::Core(ecp_core::Error::invalid("change", e.to_string())))?;
        let change = DesiredChange { agent: agent.clone(), key: key.to_owned(), target: target.to_owned(), change: value };
        let batched = inner
            .puts
            .call(change.clone(), |changes| async move { inner.store.put_desired_many(&changes, inner.clock.now()).await.ok() })
            .await;
        let put = match batched {
            Some(put) => put?,
            // The batch's write failed as a whole: this item alone, for its own error.
            None => inner.store.put_desired(agent, key, target, &change.change, inner.clock.now()).await?,
        };
        let record = put.item;
        if let (Some((v, ok)), Some(detail)) = (record.applied, &record.detail)
            && v >= record.version
        {
            return Ok(Applied { key: record.key, version: v, ok, detail: detail.clone() });
        }
        let (tx, rx) = oneshot::channel();
        lock(&inner.reports).entry(agent.clone()).or_default().entry(key.to_owned()).or_default().push((record.version, tx));
        // The set was read after the write: publishing it needs no second read. Its version is
        // its newest item's: the write just numbered this one past the agent's counter.
        let version = put.all.iter().map(|r| r.version).max().unwrap_or(record.version);
        if let Err(e) = publish_records(inner, agent, version, put.all).await {
            remove_waiter(inner, agent, key);
            if matches!(&e, Error::Core(ecp_core::Error::LimitExceeded { .. })) {
                // Refused, so not kept: a later delivery to this agent is not refused for it.
                inner.refused_items.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(agent = %agent, key = %key, "agent hub: a desired item over the agent's limit refused");
                if let Err(w) = withdraw(inner, agent, &[key.to_owned()]).await {
                    tracing::warn!(agent = %agent, key = %key, error = %w, "agent hub: a refused desired item could not be removed");
                }
            }
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(applied)) => Ok(applied),
            _ => {
                remove_waiter(inner, agent, key);
                Err(transport_error(
                    format!("agent {agent}"),
                    true,
                    format!("no report of {key} v{} within {timeout:?}; the agent applies it when it is back", record.version),
                ))
            }
        }
    }

    /// Publishes `agent`'s whole desired configuration, retained.
    ///
    /// # Errors
    /// `TooLarge`, `Transport`, `Backend`.
    pub async fn publish_desired(&self, agent: &AgentId) -> Result<()> {
        publish_desired(&self.inner, agent).await
    }

    /// Withdraws desired items of `agent` and publishes the set without them: the agent forgets
    /// them (what they did to its services stays). Deliveries still waiting for those items fail
    /// as not reported. Keys the agent does not hold are ignored.
    ///
    /// # Errors
    /// `NotFound` for an unknown agent, `Transport`, `Backend`.
    pub async fn withdraw(&self, agent: &AgentId, keys: &[String]) -> Result<DesiredSet> {
        withdraw(&self.inner, agent, keys).await
    }

    /// `agent`'s desired items and whether each is applied.
    ///
    /// # Errors
    /// `Backend`.
    pub async fn desired(&self, agent: &AgentId) -> Result<Vec<DesiredRecord>> {
        Ok(self.inner.store.desired(agent).await?)
    }

    /// Whether `agent` applied every desired item at its latest version.
    ///
    /// # Errors
    /// `Backend`.
    pub async fn converged(&self, agent: &AgentId) -> Result<bool> {
        Ok(self.inner.store.desired(agent).await?.iter().all(DesiredRecord::converged))
    }
}

fn remove_waiter(inner: &Inner, agent: &AgentId, key: &str) {
    let mut reports = lock(&inner.reports);
    let Some(keys) = reports.get_mut(agent) else { return };
    if let Some(list) = keys.get_mut(key) {
        list.retain(|(_, tx)| !tx.is_closed());
        if list.is_empty() {
            keys.remove(key);
        }
    }
    if keys.is_empty() {
        reports.remove(agent);
    }
}

/// Takes the deliveries waiting for `agent`'s `key` at `version` or older.
fn take_waiters(inner: &Inner, agent: &AgentId, key: &str, version: u64) -> Vec<oneshot::Sender<Applied>> {
    let mut reports = lock(&inner.reports);
    let Some(keys) = reports.get_mut(agent) else { return Vec::new() };
    let Some(list) = keys.remove(key) else { return Vec::new() };
    let (done, keep): (Vec<_>, Vec<_>) = list.into_iter().partition(|(v, _)| *v <= version);
    if !keep.is_empty() {
        keys.insert(key.to_owned(), keep);
    }
    if keys.is_empty() {
        reports.remove(agent);
    }
    done.into_iter().map(|(_, tx)| tx).collect()
}

/// Wakes the deliveries waiting for reports of `agent` that the store has (recorded by another
/// replica that received them).
pub(super) async fn wake_recorded(inner: &Inner, agent: &AgentId) {
    if !lock(&inner.reports).contains_key(agent) {
        return;
    }
    let records = match inner.store.desired(agent).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(agent = %agent, error = %e, "agent hub: could not read recorded reports");
            return;
        }
    };
    for r in records {
        let (Some((version, ok)), Some(detail)) = (r.applied, r.detail) else { continue };
        let applied = Applied { key: r.key, version, ok, detail };
        for tx in take_waiters(inner, agent, &applied.key, version) {
            let _ = tx.send(applied.clone());
        }
    }
}

/// Follows the store's signals: reports another replica recorded wake this hub's deliveries.
pub(super) async fn follow_reports(inner: std::sync::Arc<Inner>, mut signals: tokio::sync::broadcast::Receiver<ecp_core::StoreSignal>) {
    use ecp_core::StoreSignal;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let agents: Vec<AgentId> = match signals.recv().await {
            Ok(StoreSignal::Reported(agent)) => vec![agent],
            Ok(StoreSignal::Resync) | Err(RecvError::Lagged(_)) => lock(&inner.reports).keys().cloned().collect(),
            Ok(_) => continue,
            Err(RecvError::Closed) => return,
        };
        for agent in agents {
            wake_recorded(&inner, &agent).await;
        }
    }
}

pub(super) async fn publish_desired(inner: &Inner, agent: &AgentId) -> Result<()> {
    let set = inner.store.desired_set(agent).await?;
    publish_records(inner, agent, set.version, set.items).await
}

async fn withdraw(inner: &Inner, agent: &AgentId, keys: &[String]) -> Result<DesiredSet> {
    let set = inner.store.withdraw_desired(agent, keys, inner.clock.now()).await?;
    {
        let mut waiting = lock(&inner.reports);
        if let Some(waiting_keys) = waiting.get_mut(agent) {
            for key in keys {
                waiting_keys.remove(key);
            }
            if waiting_keys.is_empty() {
                waiting.remove(agent);
            }
        }
    }
    publish_records(inner, agent, set.version, set.items.clone()).await?;
    Ok(set)
}

/// Publishes `records` as `agent`'s whole desired configuration at `version`, retained: unless
/// this hub already published a newer one (agents ignore older sets anyway; this keeps the
/// retained message the newest).
async fn publish_records(inner: &Inner, agent: &AgentId, version: u64, records: Vec<DesiredRecord>) -> Result<()> {
    let mut items = Vec::with_capacity(records.len());
    for r in records {
        let change: ConfigChange = match serde_json::from_value(r.change) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(agent = %agent, key = %r.key, error = %e, "a stored desired item is not a change this version knows; skipped");
                continue;
            }
        };
        items.push(DesiredItem { key: r.key, version: r.version, target: r.target, change });
    }
    let what = format!("agent {agent}");
    let payload = proto::encode(&Envelope::new(Message::Desired(Desired { version, items })), inner.config.mqtt.max_payload())
        .map_err(|e| encode_error(&what, e))?;
    let mut published = inner.published.lock().await;
    if published.get(agent).is_some_and(|&v| v > version) {
        return Ok(());
    }
    inner
        .client
        .publish(inner.config.topics.topic(agent, Channel::Desired), qos(Channel::Desired), true, payload)
        .await
        .map_err(|e| transport_error(what, true, e))?;
    published.insert(agent.clone(), version);
    drop(published);
    count_message(inner, Direction::Out, "desired");
    Ok(())
}

/// Records `reports` (emptying it) in one store write, then wakes the deliveries waiting for
/// them. When the write fails the waiters are not woken: their deliveries time out, retryable,
/// and the agents report again on their next hello.
pub(super) async fn record_reports(inner: &Inner, reports: &mut Vec<(AgentId, Report)>) {
    if reports.is_empty() {
        return;
    }
    let items: Vec<ReportedItem> = reports
        .iter()
        .flat_map(|(agent, report)| {
            report.items.iter().map(|a| ReportedItem {
                agent: agent.clone(),
                key: a.key.clone(),
                version: a.version,
                ok: a.ok,
                detail: a.detail.clone(),
            })
        })
        .collect();
    for (agent, _) in reports.iter() {
        seen(inner, agent, None, None);
    }
    if let Err(e) = inner.store.record_reports(&items, inner.clock.now()).await {
        tracing::warn!(reports = items.len(), error = %e, "agent hub: could not record reports");
        reports.clear();
        return;
    }
    for (agent, report) in reports.drain(..) {
        for applied in report.items {
            for tx in take_waiters(inner, &agent, &applied.key, applied.version) {
                let _ = tx.send(applied.clone());
            }
            let _ = inner.events.send(HubEvent::Applied(agent.clone(), applied));
        }
    }
}
