//! The hub's events and counters, and counting messages into the control plane's metrics.

use std::sync::atomic::Ordering;

use ecp_core::edge::AgentId;
use ecp_telemetry::own::Direction;
use tokio::sync::broadcast;

use ecp_agent_proto::proto::{Applied, Event as AgentEvent, Heartbeat, RejectReason};

use super::{AgentHub, Inner};

/// Something the hub heard, for hosts that watch agents (telemetry, logs, UIs).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HubEvent {
    /// An agent said hello.
    Hello(AgentId),
    /// An agent came online.
    Online(AgentId),
    /// An agent went offline (its will, its own status, or missed heartbeats).
    Offline(AgentId),
    /// A heartbeat.
    Heartbeat(AgentId, Heartbeat),
    /// An event from the edge.
    Event(AgentId, AgentEvent),
    /// A desired item was applied (or failed).
    Applied(AgentId, Applied),
}

/// Counters of the hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Connections to the broker made.
    pub connects: u64,
    /// Messages received from agents.
    pub received: u64,
    /// Commands sent.
    pub requests: u64,
    /// Commands that timed out.
    pub timeouts: u64,
    /// Messages dropped because the hub's queue was full.
    pub overloaded: u64,
    /// Rejected messages, by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Heartbeats of unmanaged agents, not turned into samples (counted only with a sample sink).
    pub unmanaged_heartbeats: u64,
    /// Hellos of agents never seen, dropped because the store held the most unmanaged agents
    /// allowed ([`AgentHubConfigBuilder::max_unmanaged_agents`](super::AgentHubConfigBuilder::max_unmanaged_agents)).
    pub refused_hellos: u64,
    /// Desired items refused because their agent already held the most it takes
    /// ([`MAX_DESIRED_ITEMS`](ecp_agent_proto::proto::MAX_DESIRED_ITEMS)).
    pub refused_items: u64,
}

impl AgentHub {
    /// Events from agents.
    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    /// Counters.
    pub fn stats(&self) -> HubStats {
        let i = &self.inner;
        HubStats {
            connects: i.connects.load(Ordering::Relaxed),
            received: i.received.load(Ordering::Relaxed),
            requests: i.requests.load(Ordering::Relaxed),
            timeouts: i.timeouts.load(Ordering::Relaxed),
            overloaded: i.overloaded.load(Ordering::Relaxed),
            rejected: i.codec.snapshot().into_iter().map(|(r, n)| (r.as_str().to_owned(), n)).collect(),
            unmanaged_heartbeats: i.unmanaged.load(Ordering::Relaxed),
            refused_hellos: i.refused_hellos.load(Ordering::Relaxed),
            refused_items: i.refused_items.load(Ordering::Relaxed),
        }
    }

    /// The rejections of `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.inner.codec.get(reason)
    }
}

/// Counts a rejected message (and into the control plane's metrics, when configured).
pub(super) fn reject(inner: &Inner, reason: RejectReason) {
    inner.codec.count(reason);
    if let Some(m) = &inner.config.metrics {
        m.agent_message_rejected(reason.as_str());
    }
}

pub(super) fn count_message(inner: &Inner, direction: Direction, kind: &str) {
    if let Some(m) = &inner.config.metrics {
        m.agent_message(direction, kind);
    }
}
