//! [`EdgeAgent`] and [`AgentHandle`], and the state they share.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ecp_agent_proto::proto::{Applied, CodecStats, Command, Desired, Event, Heartbeat, Message, Reply};
use ecp_agent_proto::{AgentId, Channel};
use ecp_edge_api::{EgressPolicy, HttpTransport, HttpTransportConfig, ServiceClient};
use rumqttc::v5::AsyncClient;
use tokio::sync::{Notify, Semaphore, watch};

use crate::error::{Error, Result};
use crate::{config::*, outbox::*, run::*, state::*, stats::*};

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a few field updates: a poisoned lock is usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A configured service, ready to use.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) config: LocalServiceConfig,
    /// Its API client (the configured URL and credentials), for probes and desired items.
    pub(crate) client: ServiceClient,
    /// The tunnel's transport, on the service's origin.
    pub(crate) http: HttpTransport,
}

/// The topics of this agent.
#[derive(Debug)]
pub(crate) struct OwnTopics {
    pub(crate) cmd: String,
    pub(crate) desired: String,
    pub(crate) status: String,
    pub(crate) hello: String,
    pub(crate) heartbeat: String,
    pub(crate) event: String,
    pub(crate) report: String,
}

pub(crate) struct Core {
    pub(crate) config: EdgeAgentConfig,
    pub(crate) topics: OwnTopics,
    pub(crate) services: Vec<Service>,
    /// `host:port` → index in `services`.
    pub(crate) allow: BTreeMap<String, usize>,
    pub(crate) started: Instant,
    /// The applied items; held for the whole of an apply, so applies are serial.
    pub(crate) state: tokio::sync::Mutex<BTreeMap<String, Record>>,
    /// key → version of the recorded items, for hellos (readable while an apply runs).
    pub(crate) applied_versions: Mutex<BTreeMap<String, u64>>,
    pub(crate) latest: Mutex<Option<Heartbeat>>,
    pub(crate) seq: AtomicU64,
    pub(crate) outbox: Mutex<Outbox>,
    pub(crate) client: OnceLock<AsyncClient>,
    pub(crate) link_up: AtomicBool,
    pub(crate) codec: CodecStats,
    pub(crate) history: Mutex<(VecDeque<Duration>, VecDeque<Instant>)>,
    pub(crate) connects: AtomicU64,
    pub(crate) heartbeats_sent: AtomicU64,
    pub(crate) commands_handled: AtomicU64,
    pub(crate) commands_refused: AtomicU64,
    pub(crate) items_applied: AtomicU64,
    /// The version of the newest desired set taken: an older one (published out of order, or a
    /// stale retained message) is ignored whole. Persisted with the state.
    pub(crate) set_version: AtomicU64,
    /// Desired sets ignored for being older than `set_version`.
    pub(crate) stale_sets: AtomicU64,
    pub(crate) commands: Arc<Semaphore>,
    pub(crate) queued: AtomicUsize,
    pub(crate) desired: Mutex<Option<Desired>>,
    pub(crate) desired_ready: Notify,
}

/// The edge agent; see the [crate docs](crate).
pub struct EdgeAgent {
    core: Arc<Core>,
}

impl std::fmt::Debug for EdgeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeAgent").field("config", &self.core.config).finish_non_exhaustive()
    }
}

impl EdgeAgent {
    /// Loads the state file of `config` (an item found started without an outcome is recorded
    /// as failed, `"interrupted"`), sets up the local services' clients, and makes the agent.
    /// The settings themselves were checked by [`EdgeAgentConfigBuilder::build`]. Nothing
    /// connects until [`run`](Self::run) or [`spawn`](Self::spawn).
    ///
    /// # Errors
    /// `InvalidInput` for a state file that cannot be read, parsed or written (the agent refuses
    /// to start rather than apply twice), or a local service's HTTP client that cannot be set up.
    pub fn new(config: EdgeAgentConfig) -> Result<Self> {
        let connect_timeout = HttpTransportConfig::DEFAULT_CONNECT_TIMEOUT.min(config.request_timeout);
        // Two connection pools for all services: the tunnel's (bodies up to the payload limit)
        // and the API clients' (the default body limit). The services live next to the agent,
        // on the gateway's loopback or LAN, named in its own configuration: the allow-list of
        // configured services is the agent's egress policy, so loopback is open here.
        let tunnel = HttpTransportConfig::new("http://127.0.0.1")
            .connect_timeout(connect_timeout)
            .request_timeout(config.request_timeout)
            .max_body(config.mqtt.max_payload())
            .egress(EgressPolicy::allow_loopback())
            .build()?;
        let api = HttpTransportConfig::new("http://127.0.0.1")
            .connect_timeout(connect_timeout)
            .request_timeout(config.request_timeout)
            .egress(EgressPolicy::allow_loopback())
            .build()?;
        let mut services = Vec::with_capacity(config.services.len());
        let mut allow = BTreeMap::new();
        for (i, s) in config.services.iter().enumerate() {
            let (origin, authority) = origin(&s.url)?;
            let http = tunnel.with_base_url(&origin)?;
            let client = ServiceClient::new(s.kind, Arc::new(api.with_base_url(&s.url)?), s.credentials.clone())?;
            allow.insert(authority, i);
            services.push(Service { config: s.clone(), client, http });
        }
        let (items, set_version) = match &config.state_file {
            Some(path) => load_state(path)?,
            None => (BTreeMap::new(), 0),
        };
        let t = &config.topics;
        let a = &config.agent_id;
        let topics = OwnTopics {
            cmd: t.topic(a, Channel::Command),
            desired: t.topic(a, Channel::Desired),
            status: t.topic(a, Channel::Status),
            hello: t.topic(a, Channel::Hello),
            heartbeat: t.topic(a, Channel::Heartbeat),
            event: t.topic(a, Channel::Event),
            report: t.topic(a, Channel::Report),
        };
        let core = Core {
            topics,
            services,
            allow,
            started: Instant::now(),
            applied_versions: Mutex::new(items.iter().map(|(k, r)| (k.clone(), r.version)).collect()),
            state: tokio::sync::Mutex::new(items),
            latest: Mutex::new(None),
            seq: AtomicU64::new(0),
            outbox: Mutex::new(Outbox { buffer: OfflineBuffer::new(config.buffer_capacity), open: false, generation: 0 }),
            client: OnceLock::new(),
            link_up: AtomicBool::new(false),
            codec: CodecStats::default(),
            history: Mutex::new((VecDeque::new(), VecDeque::new())),
            connects: AtomicU64::new(0),
            heartbeats_sent: AtomicU64::new(0),
            commands_handled: AtomicU64::new(0),
            commands_refused: AtomicU64::new(0),
            items_applied: AtomicU64::new(0),
            set_version: AtomicU64::new(set_version),
            stale_sets: AtomicU64::new(0),
            commands: Arc::new(Semaphore::new(config.max_concurrent_commands)),
            queued: AtomicUsize::new(0),
            desired: Mutex::new(None),
            desired_ready: Notify::new(),
            config,
        };
        Ok(EdgeAgent { core: Arc::new(core) })
    }

    /// The settings.
    pub fn config(&self) -> &EdgeAgentConfig {
        &self.core.config
    }

    /// The allow-list: the `host:port` of each configured service.
    pub fn allowed_targets(&self) -> Vec<String> {
        self.core.allow.keys().cloned().collect()
    }

    /// Executes one command without MQTT (what the agent does with each command it receives):
    /// `http` to an allowed target, `status`, `restart`, `apply`. A reply whose encoding would
    /// exceed the payload limit becomes a `too_large` error.
    pub async fn handle(&self, command: Command) -> Reply {
        self.core.handle(command).await
    }

    /// The recorded outcome of every desired item the agent started, by key.
    pub async fn applied(&self) -> BTreeMap<String, Applied> {
        applied_view(&*self.core.state.lock().await)
    }

    /// Sends an event to the hub (buffered while disconnected).
    pub fn event(&self, event: Event) {
        self.core.emit(Channel::Event, Message::Event(event));
    }

    /// Counters and connection history.
    pub fn stats(&self) -> AgentStats {
        self.core.stats()
    }

    /// Connects and serves until `shutdown` completes, then publishes its retained status
    /// offline and disconnects cleanly. Reconnects on its own (backoff with full jitter) for as
    /// long as it runs.
    ///
    /// # Errors
    /// `InvalidInput` if the agent is already running. Connection failures are not errors: the
    /// agent retries.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<AgentStats> {
        run(self.core, shutdown).await
    }

    /// Runs the agent on a spawned task; see [`run`](Self::run).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(self) -> AgentHandle {
        let (stop, mut stopped) = watch::channel(false);
        let core = self.core.clone();
        let task = tokio::spawn(run(self.core, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        AgentHandle { core, stop, task }
    }
}

/// A running agent (from [`EdgeAgent::spawn`]).
#[derive(Debug)]
pub struct AgentHandle {
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<AgentStats>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("agent_id", &self.config.agent_id).finish_non_exhaustive()
    }
}

impl AgentHandle {
    /// Counters and connection history.
    pub fn stats(&self) -> AgentStats {
        self.core.stats()
    }

    /// Whether the agent is connected to the broker now.
    pub fn is_connected(&self) -> bool {
        self.core.link_up.load(Ordering::Relaxed)
    }

    /// The agent's id.
    pub fn agent_id(&self) -> &AgentId {
        &self.core.config.agent_id
    }

    /// Executes one command locally; see [`EdgeAgent::handle`].
    pub async fn handle(&self, command: Command) -> Reply {
        self.core.handle(command).await
    }

    /// Sends an event to the hub (buffered while disconnected).
    pub fn event(&self, event: Event) {
        self.core.emit(Channel::Event, Message::Event(event));
    }

    /// Says offline, disconnects cleanly and waits for the agent to stop.
    ///
    /// # Errors
    /// As [`EdgeAgent::run`]; `Transport` if the agent's task panicked.
    pub async fn shutdown(self) -> Result<AgentStats> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r,
            Err(source) => Err(Error::Task { source }),
        }
    }

    /// Stops the agent at once without saying goodbye, as a crash or a power cut would: the
    /// connection drops and the broker publishes the agent's last will.
    pub fn abort(self) -> AgentStats {
        self.task.abort();
        self.core.link_down();
        self.core.stats()
    }
}
