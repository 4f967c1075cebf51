//! Samples and log records from managed agents' heartbeats and events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ecp_core::edge::AgentId;
use ecp_telemetry::{MetricScope, SampleSink};

use ecp_agent_proto::proto::{self, Event as AgentEvent, Heartbeat};

use super::{AgentHub, AgentScope, Inner, lock};
use crate::agent::samples;
use crate::error::Result;

#[cfg(doc)]
use super::AgentHubConfigBuilder;

impl AgentHub {
    /// Forgets what the hub looked up about `agent`'s project, so that its next sample follows a
    /// manage, transfer or unmanage at once instead of within [`AgentHubConfigBuilder::scope_ttl`].
    pub fn forget_scope(&self, agent: &AgentId) {
        lock(&self.inner.scopes).remove(agent);
    }
}

/// The most agents whose scope the hub remembers; past it, expired entries are dropped (all of
/// them if none has expired).
const MAX_SCOPE_CACHE: usize = 65_536;

/// What the hub knows of `agent`'s project, from its cache or the store.
async fn agent_scope(inner: &Inner, agent: &AgentId) -> Result<Arc<AgentScope>> {
    let ttl = inner.config.scope_ttl;
    if let Some((s, at)) = lock(&inner.scopes).get(agent)
        && at.elapsed() < ttl
    {
        return Ok(s.clone());
    }
    let record = match inner.store.get_agent(agent).await {
        Ok(a) => a,
        // Credentials are checked by the broker, not the store: an agent that never said hello
        // is simply not managed.
        Err(e) if e.is_not_found() => {
            return Ok(Arc::new(AgentScope { scope: None, kinds: HashMap::new() }));
        }
        Err(e) => return Err(e.into()),
    };
    let scope = match record.project {
        Some(p) => Some(MetricScope::new(inner.store.get_project(p).await?.org(), p)),
        None => None,
    };
    let entry = Arc::new(AgentScope { scope, kinds: samples::service_kinds(&record.hello) });
    let mut cache = lock(&inner.scopes);
    if cache.len() >= MAX_SCOPE_CACHE {
        cache.retain(|_, (_, at)| at.elapsed() < ttl);
        if cache.len() >= MAX_SCOPE_CACHE {
            cache.clear();
        }
    }
    cache.insert(agent.clone(), (entry.clone(), Instant::now()));
    Ok(entry)
}

fn accepted(inner: &Inner, sink: &dyn SampleSink, batch: &[ecp_telemetry::Sample]) {
    let got = sink.accept(batch);
    if let Some(m) = &inner.config.metrics {
        m.agent_samples_dropped("invalid", got.invalid as u64);
        m.agent_samples_dropped("over_cardinality", got.over_cardinality as u64);
    }
}

/// Turns a heartbeat of a managed agent into samples; drops and counts those of unmanaged ones.
pub(super) async fn heartbeat_samples(inner: &Inner, agent: &AgentId, hb: &Heartbeat) -> Result<()> {
    let Some(sink) = &inner.config.sample_sink else { return Ok(()) };
    let found = agent_scope(inner, agent).await?;
    let now = inner.clock.now();
    let Some(scope) = found.scope else {
        inner.unmanaged.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &inner.config.metrics {
            m.agent_samples_dropped("unmanaged", samples::entries(hb) as u64);
        }
        return Ok(());
    };
    let (batch, skipped) = samples::heartbeat(agent, scope, &found.kinds, hb, now);
    if let Some(m) = &inner.config.metrics {
        m.agent_samples_dropped("invalid", skipped as u64);
    }
    accepted(inner, sink.as_ref(), &batch);
    Ok(())
}

/// Writes an event of a managed agent as a log record; drops and counts those of unmanaged ones.
pub(super) async fn event_log(inner: &Inner, agent: &AgentId, ev: &AgentEvent) {
    let Some(sink) = &inner.config.log_sink else { return };
    let count = |outcome: &str| {
        if let Some(m) = &inner.config.metrics {
            m.log_records(outcome, 1);
        }
    };
    let scope = match agent_scope(inner, agent).await {
        Ok(found) => found.scope,
        Err(e) => {
            tracing::warn!(agent = %agent, error = %e, "agent hub: could not look up an agent's project for its event");
            None
        }
    };
    let Some(scope) = scope else {
        count("dropped");
        return;
    };
    let level = match ev.level {
        proto::Level::Info => ecp_telemetry::Level::Informational,
        proto::Level::Warning => ecp_telemetry::Level::Warning,
        proto::Level::Error => ecp_telemetry::Level::Error,
    };
    let mut record = ecp_telemetry::LogRecord::new(
        inner.clock.now(),
        level,
        ecp_telemetry::Product::Agent,
        format!("agent:{agent}"),
        ev.message.clone(),
    )
    .with_scope(scope);
    let valid = |k: &str| {
        !k.is_empty()
            && k.len() <= ecp_telemetry::logs::MAX_FIELD_NAME_LEN
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    for (k, v) in ev.fields.iter().filter(|(k, _)| valid(k)).take(ecp_telemetry::logs::MAX_FIELDS) {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        record = record.with_field(k.clone(), v);
    }
    match record.normalized() {
        Ok(r) => match sink.write(std::slice::from_ref(&r)).await {
            Ok(()) => count("written"),
            Err(e) => {
                count("failed");
                tracing::warn!(agent = %agent, error = %e, "agent hub: the log sink refused an event");
            }
        },
        Err(e) => {
            count("invalid");
            tracing::debug!(agent = %agent, error = %e, "agent hub: an event is not a valid log record");
        }
    }
}

/// `ecp_agent_up` 0 for a managed agent that went offline.
pub(super) async fn offline_sample(inner: &Inner, agent: &AgentId) {
    let Some(sink) = &inner.config.sample_sink else { return };
    match agent_scope(inner, agent).await {
        Ok(found) => {
            if let Some(sample) = found.scope.and_then(|scope| samples::up(agent, scope, inner.clock.now(), false)) {
                accepted(inner, sink.as_ref(), &[sample]);
            }
        }
        Err(e) => tracing::warn!(agent = %agent, error = %e, "agent hub: could not look up an agent's project for its samples"),
    }
}
