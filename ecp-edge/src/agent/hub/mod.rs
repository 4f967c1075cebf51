//! [`AgentHub`]: the cloud side of the agent protocol (feature `mqtt`).
//!
//! One hub per control-plane replica holds one MQTT 5 connection. It
//!
//! - records every agent that says hello (unknown agents appear unmanaged in the store, up to
//!   [`AgentHubConfigBuilder::max_unmanaged_agents`]);
//! - tracks presence from the agents' retained status (their last will says offline), their
//!   heartbeats, and missed heartbeats (`missed_heartbeats` intervals of silence make an agent
//!   offline);
//! - sends commands as MQTT 5 requests (a response topic of its own and unique correlation data),
//!   matches replies to requests by correlation data *and* agent, and times requests out;
//! - keeps each agent's desired configuration in the store, publishes it retained, and records
//!   what the agent reports it applied; an agent that was away gets its desired configuration
//!   again when it says hello, so it converges without anyone acting.
//!
//! Replicas share the agents' work with `shared_group` (`$share/{group}/…` subscriptions for
//! hellos, events and reports); every replica hears every status and heartbeat, so each keeps the
//! whole presence; replies come back on each hub's own response topic, and a report received by one replica is
//! recorded in the store, which signals it ([`Store::signals`]), so the
//! delivery waiting for it on another replica completes at once.
//!
//! With a [`SampleSink`] configured ([`AgentHubConfigBuilder::sample_sink`]), heartbeats of
//! *managed* agents become samples of the agent's project (see [`samples`] for
//! the series), and an agent going offline gives `ecp_agent_up` 0; heartbeats of unmanaged agents
//! are dropped and counted ([`HubStats::unmanaged_heartbeats`]). With [`ControlPlaneMetrics`]
//! configured ([`AgentHubConfigBuilder::metrics`]), messages in and out are counted by kind and
//! rejections by reason.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecp_core::coalesce::Coalescer;
use ecp_core::edge::{AgentId, DesiredChange, DesiredPut};
use ecp_core::{Clock, Store};
use ecp_telemetry::MetricScope;
use rumqttc::v5::AsyncClient;
use tokio::sync::{broadcast, oneshot, watch};

use ecp_agent_proto::proto::{self, Applied, CodecStats, Heartbeat, Reply};

use crate::error::Error;

#[cfg(doc)]
use super::samples;
#[cfg(doc)]
use ecp_telemetry::SampleSink;
#[cfg(doc)]
use ecp_telemetry::own::ControlPlaneMetrics;

mod config;
mod connection;
mod credentials;
mod desired;
mod presence;
mod requests;
mod stats;
mod telemetry;

pub use config::{AgentHubConfig, AgentHubConfigBuilder};
pub use credentials::AgentCredentials;
pub use stats::{HubEvent, HubStats};

#[derive(Debug)]
struct Presence {
    online: bool,
    last_seen: Instant,
    heartbeat: Duration,
    last: Option<Heartbeat>,
}

impl Presence {
    /// An agent not seen yet, with the default heartbeat interval until its hello says otherwise.
    fn unseen() -> Self {
        Presence { online: false, last_seen: Instant::now(), heartbeat: Duration::from_secs(10), last: None }
    }
}

struct Pending {
    agent: AgentId,
    tx: oneshot::Sender<Reply>,
}

/// Deliveries waiting for reports: agent → item key → (version, waiter).
type ReportWaiters = HashMap<AgentId, HashMap<String, Vec<(u64, oneshot::Sender<Applied>)>>>;

/// What the hub looked up about an agent for its samples: its project (none while unmanaged) and
/// its services' kinds.
struct AgentScope {
    scope: Option<MetricScope>,
    kinds: HashMap<String, String>,
}

struct Inner {
    config: AgentHubConfig,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    client: AsyncClient,
    connected: watch::Sender<bool>,
    corr_prefix: u64,
    corr_next: AtomicU64,
    pending: Mutex<HashMap<u128, Pending>>,
    reports: Mutex<ReportWaiters>,
    presence: Mutex<HashMap<AgentId, Presence>>,
    events: broadcast::Sender<HubEvent>,
    codec: CodecStats,
    connects: AtomicU64,
    received: AtomicU64,
    requests: AtomicU64,
    timeouts: AtomicU64,
    overloaded: AtomicU64,
    scopes: Mutex<HashMap<AgentId, (Arc<AgentScope>, Instant)>>,
    unmanaged: AtomicU64,
    refused_hellos: AtomicU64,
    /// Concurrent deliveries' desired items, set in one store write per batch.
    puts: Coalescer<DesiredChange, ecp_core::Result<DesiredPut>>,
    /// The version of the set last published per agent: held while publishing, so this hub
    /// publishes each agent's sets in version order and never an older one after a newer.
    published: tokio::sync::Mutex<HashMap<AgentId, u64>>,
    /// Desired items refused for an agent already holding the most it takes.
    refused_items: AtomicU64,
}

/// The most desired items set in one store write.
const PUT_BATCH: usize = 500;

/// The cloud side of the agent protocol; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct AgentHub {
    inner: Arc<Inner>,
    tasks: Arc<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for AgentHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHub").field("hub_id", &self.inner.config.hub_id).field("mqtt", &self.inner.config.mqtt).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is one insert, remove or field update: a poisoned lock is usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn transport_error(what: String, retryable: bool, source: impl Into<ecp_core::BoxError>) -> Error {
    Error::Service(ecp_edge_api::Error::Transport { endpoint: what, retryable, source: source.into() })
}

fn encode_error(what: &str, e: proto::EncodeError) -> Error {
    match e {
        proto::EncodeError::TooLarge { size, limit, .. } => {
            Error::Service(ecp_edge_api::Error::TooLarge { endpoint: what.to_owned(), size, limit })
        }
        proto::EncodeError::TooManyItems { limit, .. } => {
            Error::Core(ecp_core::Error::LimitExceeded { limit: "desired items per agent", max: limit as u64 })
        }
        other => Error::Core(ecp_core::Error::invalid("message", other.to_string())),
    }
}
