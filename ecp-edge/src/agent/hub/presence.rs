//! Presence: hellos, status, heartbeats and the sweep that marks silent agents offline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecp_core::edge::AgentId;
use serde_json::Value;

use ecp_agent_proto::proto::{Heartbeat, Hello, Message};

use super::desired::{publish_desired, record_reports};
use super::telemetry::{event_log, heartbeat_samples, offline_sample};
use super::{AgentHub, HubEvent, Inner, Presence, lock};
use crate::error::Result;

impl AgentHub {
    /// Whether `agent` is online as this hub knows it.
    pub fn is_online(&self, agent: &AgentId) -> bool {
        lock(&self.inner.presence).get(agent).is_some_and(|p| p.online)
    }

    /// The agents online as this hub knows them.
    pub fn online_agents(&self) -> Vec<AgentId> {
        lock(&self.inner.presence).iter().filter(|(_, p)| p.online).map(|(a, _)| a.clone()).collect()
    }

    /// The latest heartbeat of `agent`.
    pub fn last_heartbeat(&self, agent: &AgentId) -> Option<Heartbeat> {
        lock(&self.inner.presence).get(agent).and_then(|p| p.last.clone())
    }
}

pub(super) async fn handle(inner: &Arc<Inner>, agent: &AgentId, message: Message) -> Result<()> {
    let now = inner.clock.now();
    match message {
        Message::Hello(hello) => {
            let value = serde_json::to_value(&hello).unwrap_or(Value::Null);
            let cap = inner.config.max_unmanaged_agents;
            if inner.store.agent_hello(agent, &hello.agent_version, &value, now, cap).await?.is_none() {
                inner.refused_hellos.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(agent = %agent, cap, "agent hub: a hello of an unknown agent dropped, too many unmanaged agents");
                return Ok(());
            }
            // Its services (and so their kinds) may have changed: look them up again.
            lock(&inner.scopes).remove(agent);
            let was_online = seen(inner, agent, Some(&hello), None);
            let _ = inner.events.send(HubEvent::Hello(agent.clone()));
            if !was_online {
                let _ = inner.events.send(HubEvent::Online(agent.clone()));
            }
            reconcile(inner, agent, &hello).await?;
        }
        Message::Status(status) => {
            if status.online {
                // An agent the store does not know (it never said hello, or its hello was
                // refused) is not tracked: a client of an open broker cannot grow this map.
                if !inner.store.set_agent_presence(agent, true, now).await? {
                    return Ok(());
                }
                let was = seen(inner, agent, None, None);
                if !was {
                    let _ = inner.events.send(HubEvent::Online(agent.clone()));
                }
            } else {
                // The store first, so that whoever sees the agent offline here finds it so there.
                inner.store.set_agent_presence(agent, false, now).await?;
                let was = lock(&inner.presence).get_mut(agent).map(|p| std::mem::replace(&mut p.online, false));
                if was != Some(false) {
                    let _ = inner.events.send(HubEvent::Offline(agent.clone()));
                    offline_sample(inner, agent).await;
                }
            }
        }
        Message::Heartbeat(hb) => {
            if !is_online(inner, agent) {
                if !inner.store.set_agent_presence(agent, true, now).await? {
                    return Ok(());
                }
                // Its hello may have reached another replica: its heartbeat interval is in the store.
                if !lock(&inner.presence).contains_key(agent)
                    && let Ok(known) = inner.store.get_agent(agent).await
                    && let Some(secs) = known.hello.get("heartbeat_secs").and_then(serde_json::Value::as_u64)
                {
                    let mut presence = lock(&inner.presence);
                    presence.entry(agent.clone()).or_insert_with(Presence::unseen).heartbeat = Duration::from_secs(secs.clamp(1, 3600));
                }
            }
            let was = seen(inner, agent, None, Some(hb.clone()));
            if !was {
                let _ = inner.events.send(HubEvent::Online(agent.clone()));
            }
            if let Err(e) = heartbeat_samples(inner, agent, &hb).await {
                tracing::warn!(agent = %agent, error = %e, "agent hub: could not turn a heartbeat into samples");
            }
            let _ = inner.events.send(HubEvent::Heartbeat(agent.clone(), hb));
        }
        Message::Event(ev) => {
            if !is_online(inner, agent) && !inner.store.set_agent_presence(agent, true, now).await? {
                return Ok(());
            }
            seen(inner, agent, None, None);
            event_log(inner, agent, &ev).await;
            let _ = inner.events.send(HubEvent::Event(agent.clone(), ev));
        }
        Message::Report(report) => record_reports(inner, &mut vec![(agent.clone(), report)]).await,
        // Hub-bound channels never carry these kinds (decode already refused them).
        // Hub-to-agent messages, and kinds of a newer protocol (the codec refuses those already).
        _ => {}
    }
    Ok(())
}

fn is_online(inner: &Inner, agent: &AgentId) -> bool {
    lock(&inner.presence).get(agent).is_some_and(|p| p.online)
}

/// Marks `agent` seen now; returns whether it was online before.
pub(super) fn seen(inner: &Inner, agent: &AgentId, hello: Option<&Hello>, hb: Option<Heartbeat>) -> bool {
    let mut presence = lock(&inner.presence);
    let p = presence.entry(agent.clone()).or_insert_with(Presence::unseen);
    let was = p.online;
    p.online = true;
    p.last_seen = Instant::now();
    if let Some(h) = hello {
        p.heartbeat = Duration::from_secs(u64::from(h.heartbeat_secs.clamp(1, 3600)));
    }
    if hb.is_some() {
        p.last = hb;
    }
    was
}

/// Sends the desired configuration again when the agent's hello shows it is behind, or when the
/// hub has no report of an item the agent says it applied (a report lost with a connection): the
/// agent then reports its recorded outcome again, without applying anything twice.
async fn reconcile(inner: &Inner, agent: &AgentId, hello: &Hello) -> Result<()> {
    let desired = inner.store.desired(agent).await?;
    let behind = desired.iter().any(|d| !d.converged() || hello.applied.get(&d.key).is_none_or(|v| *v < d.version));
    if behind {
        publish_desired(inner, agent).await?;
    }
    Ok(())
}

/// Marks agents offline after `missed_heartbeats` intervals of silence.
pub(super) async fn sweep_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let missed = inner.config.missed_heartbeats;
        let gone: Vec<AgentId> = {
            let mut presence = lock(&inner.presence);
            presence
                .iter_mut()
                .filter(|(_, p)| p.online && p.last_seen.elapsed() > p.heartbeat.saturating_mul(missed))
                .map(|(a, p)| {
                    p.online = false;
                    a.clone()
                })
                .collect()
        };
        for agent in gone {
            if let Err(e) = inner.store.set_agent_presence(&agent, false, inner.clock.now()).await {
                tracing::warn!(agent = %agent, error = %e, "agent hub: could not record an agent offline");
            }
            offline_sample(&inner, &agent).await;
            let _ = inner.events.send(HubEvent::Offline(agent));
        }
    }
}
