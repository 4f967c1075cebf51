//! Counters and connection history ([`AgentStats`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ecp_agent_proto::proto::RejectReason;

use crate::agent::*;

/// How many reconnect delays and connect times [`AgentStats`] keeps.
pub(crate) const HISTORY: usize = 64;

/// Counters and connection history of an agent.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct AgentStats {
    /// Connections the broker accepted.
    pub connects: u64,
    /// Whether the agent is connected now.
    pub connected: bool,
    /// When the broker last accepted the connection.
    pub last_connect: Option<Instant>,
    /// When the broker accepted the latest connections (the last 64).
    pub connect_times: Vec<Instant>,
    /// The delays slept before the latest connection attempts (the last 64), each uniform in
    /// `[0, min(backoff_max, backoff_initial × 2^attempt)]`.
    pub reconnect_delays: Vec<Duration>,
    /// Heartbeats published.
    pub heartbeats_sent: u64,
    /// Messages waiting in the offline buffer.
    pub buffered: usize,
    /// Messages dropped from the full offline buffer.
    pub dropped: u64,
    /// Commands answered.
    pub commands_handled: u64,
    /// Commands refused without an answer (no or foreign response topic, no correlation data) or
    /// answered busy.
    pub commands_refused: u64,
    /// Rejected messages, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Desired items sent to a service (at most once per key and version).
    pub items_applied: u64,
    /// Desired sets ignored for being older than the newest taken.
    pub stale_sets: u64,
    /// The version of the newest desired set taken.
    pub set_version: u64,
}

impl Core {
    pub(crate) fn stats(&self) -> AgentStats {
        let (buffered, dropped) = {
            let o = lock(&self.outbox);
            (o.buffer.len(), o.buffer.dropped)
        };
        let (delays, times) = {
            let h = lock(&self.history);
            (h.0.iter().copied().collect(), h.1.iter().copied().collect::<Vec<_>>())
        };
        AgentStats {
            connects: self.connects.load(Ordering::Relaxed),
            connected: self.link_up.load(Ordering::Relaxed),
            last_connect: times.last().copied(),
            connect_times: times,
            reconnect_delays: delays,
            heartbeats_sent: self.heartbeats_sent.load(Ordering::Relaxed),
            buffered,
            dropped,
            commands_handled: self.commands_handled.load(Ordering::Relaxed),
            commands_refused: self.commands_refused.load(Ordering::Relaxed),
            rejected: self.codec.snapshot(),
            items_applied: self.items_applied.load(Ordering::Relaxed),
            stale_sets: self.stale_sets.load(Ordering::Relaxed),
            set_version: self.set_version.load(Ordering::SeqCst),
        }
    }

    pub(crate) fn record_connect(&self) -> u64 {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.link_up.store(true, Ordering::Relaxed);
        let mut h = lock(&self.history);
        if h.1.len() >= HISTORY {
            h.1.pop_front();
        }
        h.1.push_back(Instant::now());
        drop(h);
        let mut outbox = lock(&self.outbox);
        outbox.generation += 1;
        outbox.open = false;
        outbox.generation
    }

    pub(crate) fn record_delay(&self, delay: Duration) {
        let mut h = lock(&self.history);
        if h.0.len() >= HISTORY {
            h.0.pop_front();
        }
        h.0.push_back(delay);
    }
}
