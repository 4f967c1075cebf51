//! [`EdgeAgent`]: the edge side of the agent protocol (features `mqtt` and `direct`).
//!
//! An agent runs next to one or more local services (NeuronEX, Neuron, eKuiper, NanoMQ, or any
//! HTTP service), connects out to the cloud's MQTT 5 broker, and
//!
//! - says `hello` and publishes its retained `status` on every connect (its last will says
//!   offline), then sends `heartbeat`s with its services' health;
//! - answers the hub's commands ([`EdgeAgent::handle`]): `http` calls to a local service, `status`,
//!   `restart` and `apply`;
//! - applies the retained `desired` configuration, at most once per item key and version, and
//!   `report`s the outcomes;
//! - reconnects with exponential backoff and full jitter, and keeps what it has to say while
//!   disconnected in a bounded buffer (oldest dropped and counted).
//!
//! # The allow-list
//!
//! A command names its local service by `target`, a `host:port`. The agent serves only the
//! authorities of its configured services' URLs (the scheme's default port when none is given)
//! and answers anything else `forbidden` without sending a byte. A tunnelled request goes to the
//! configured service's origin (`scheme://host:port`) with the command's `path` appended (the
//! hub's tunnel sends the service's base path as part of it); a path that does not start with a
//! single `/`, or holds `\`, `#`, whitespace or control characters, is refused as `bad_request`,
//! so the host can never change.
//!
//! # Applying desired items
//!
//! The agent records, per item key, the last version it started and its outcome. Before calling
//! the service it writes the version as *started* to its state file (JSON, written atomically:
//! a temporary file, then a rename), then the outcome. An item whose version is not newer than
//! the recorded one is not applied again: the recorded outcome is returned. An item found started
//! without an outcome when the agent starts (a crash mid-apply) is recorded as failed with the
//! detail `"interrupted"` and is not re-applied; the next version applies normally. The state
//! file looks like this:
//!
//! ```json
//! {"format":1,"items":{"stream:demo":{"version":3,"outcome":{"ok":true,"detail":{"stream":"demo","created":true}}}}}
//! ```
//!
//! # Running
//!
//! ```no_run
//! # async fn demo() -> ecp_edge::Result<()> {
//! use ecp_core::edge::{AgentId, EdgeKind};
//! use ecp_edge::agent::{EdgeAgent, EdgeAgentConfig, LocalServiceConfig, MqttConfig};
//!
//! let mut config = EdgeAgentConfig::new(AgentId::new("edge-7")?, MqttConfig::new("broker.example", 1883));
//! config.services.push(LocalServiceConfig::new("kuiper", EdgeKind::Ekuiper, "http://127.0.0.1:9081"));
//! let agent = EdgeAgent::new(config)?.spawn();
//! // ... later:
//! let stats = agent.shutdown().await?;
//! println!("connected {} times", stats.connects);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ecp_core::edge::{AgentId, Credentials, EdgeKind, EdgeService, ManagementMode};
use ecp_core::task::IdempotencyKey;
use ecp_core::{ProjectId, Timestamp};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event as MqttEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, watch};

use super::mqtt::{MqttConfig, qos};
use super::proto::{
    self, Applied, CodecStats, Command, Desired, DesiredItem, Envelope, ErrorCode, Event, Heartbeat, Hello, HttpRequest, HttpResponse,
    LocalService, Message, RejectReason, Reply, Report, ServiceHealth, Status,
};
use super::topics::{Channel, Topics};
use crate::direct::{DirectDriver, DirectDriverConfig};
use crate::driver::EdgeDriver;
use crate::error::{Error, Result};
use crate::transport::{EdgeTransport, HttpTransport, HttpTransportConfig};

/// How many reconnect delays and connect times [`AgentStats`] keeps.
const HISTORY: usize = 64;
/// The longest item key accepted.
const MAX_KEY_LEN: usize = 256;
/// The longest tunnelled path accepted.
const MAX_PATH_LEN: usize = 8192;
/// The format of the state file.
const STATE_FORMAT: u32 = 1;
/// How long a clean shutdown waits to say offline and disconnect.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

fn invalid(field: &'static str, reason: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::Core(ecp_core::Error::invalid(field, reason))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a few field updates: a poisoned lock is usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One local service the agent fronts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LocalServiceConfig {
    /// Its name at the agent (unique, 1–200 characters).
    pub name: String,
    /// The product it runs.
    pub kind: EdgeKind,
    /// Where the agent reaches it (`http://127.0.0.1:8085`): its `host:port` goes on the
    /// allow-list.
    pub url: String,
    /// How the agent authenticates to it when it applies desired items and probes it (tunnelled
    /// requests carry the hub's own credentials).
    pub credentials: Credentials,
    /// The program and arguments that restart it (`["systemctl", "restart", "neuronex"]`); without
    /// one, `restart` is `unsupported`.
    pub restart_command: Option<Vec<String>>,
}

impl LocalServiceConfig {
    /// A service without credentials or restart command.
    pub fn new(name: impl Into<String>, kind: EdgeKind, url: impl Into<String>) -> Self {
        LocalServiceConfig { name: name.into(), kind, url: url.into(), credentials: Credentials::None, restart_command: None }
    }

    /// Authenticates with `credentials`.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Restarts with `command` (a program and its arguments, run without a shell).
    #[must_use]
    pub fn restart_command(mut self, command: Vec<String>) -> Self {
        self.restart_command = Some(command);
        self
    }
}

/// The settings of an [`EdgeAgent`]: plain fields with defaults from [`new`](Self::new), checked
/// by [`EdgeAgent::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EdgeAgentConfig {
    /// The agent's id: its MQTT client id and a level of its topics.
    pub agent_id: AgentId,
    /// The topic layout (prefix `ecp`).
    pub topics: Topics,
    /// The broker (the agent's username is normally its id).
    pub mqtt: MqttConfig,
    /// The local services (none is allowed: the agent then only says hello and heartbeats).
    pub services: Vec<LocalServiceConfig>,
    /// The heartbeat interval (10 s; 100 ms to 1 h).
    pub heartbeat: Duration,
    /// The first reconnect delay's upper bound (500 ms).
    pub backoff_initial: Duration,
    /// The largest reconnect delay (30 s).
    pub backoff_max: Duration,
    /// The messages kept while disconnected (1,000); the oldest are dropped beyond.
    pub buffer_capacity: usize,
    /// Where the applied desired items are recorded; without one they are kept in memory only,
    /// so a restarted agent applies the desired configuration again.
    pub state_file: Option<PathBuf>,
    /// The time for one call to a local service, and for a restart command (15 s).
    pub request_timeout: Duration,
    /// The commands handled at once (16); more wait, up to 8 times as many.
    pub max_concurrent_commands: usize,
}

impl EdgeAgentConfig {
    /// An agent `agent_id` on `mqtt` with the default settings and no services.
    pub fn new(agent_id: AgentId, mqtt: MqttConfig) -> Self {
        EdgeAgentConfig {
            agent_id,
            topics: Topics::default(),
            mqtt,
            services: Vec::new(),
            heartbeat: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            buffer_capacity: 1000,
            state_file: None,
            request_timeout: Duration::from_secs(15),
            max_concurrent_commands: 16,
        }
    }

    /// Adds a local service.
    #[must_use]
    pub fn service(mut self, service: LocalServiceConfig) -> Self {
        self.services.push(service);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// `InvalidInput` for bad broker settings, a duplicate service name or `host:port`, a service
    /// URL that is not `http(s)://host[:port]` (optionally with a path), an empty restart command,
    /// a heartbeat outside 100 ms..=1 h, a zero backoff, buffer or concurrency, or a request
    /// timeout outside 1 ms..=1 h.
    pub fn validate(&self) -> Result<()> {
        self.mqtt.validate()?;
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.heartbeat) {
            return Err(invalid("heartbeat", "must be 100 ms to 1 hour"));
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err(invalid("backoff", "backoff_initial must not be zero nor exceed backoff_max"));
        }
        if self.buffer_capacity == 0 || self.max_concurrent_commands == 0 {
            return Err(invalid("agent", "buffer_capacity and max_concurrent_commands must be at least 1"));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&self.request_timeout) {
            return Err(invalid("request_timeout", "must be 1 ms to 1 hour"));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut authorities = std::collections::BTreeSet::new();
        for s in &self.services {
            ecp_core::tenancy::validate_resource_name(&s.name)?;
            if !names.insert(s.name.to_lowercase()) {
                return Err(invalid("service", format!("the name {:?} is used twice", s.name)));
            }
            let (_, authority) = origin(&s.url)?;
            if !authorities.insert(authority.clone()) {
                return Err(invalid("service", format!("two services are at {authority}")));
            }
            if let Some(cmd) = &s.restart_command
                && cmd.first().is_none_or(|p| p.is_empty())
            {
                return Err(invalid("restart_command", format!("of {:?} must name a program", s.name)));
            }
        }
        Ok(())
    }
}

/// The origin (`http://host:port`) and authority (`host:port`, with the scheme's default port) of
/// a service URL.
fn origin(url: &str) -> Result<(String, String)> {
    ecp_core::edge::validate_endpoint(url)?;
    let parsed = url::Url::parse(url).map_err(|_| invalid("service url", "is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("service url", "must be http or https"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("service url", "must not have a query or a fragment"));
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| invalid("service url", "has no host"))?;
    let port = parsed.port_or_known_default().ok_or_else(|| invalid("service url", "has no port"))?;
    let authority = format!("{host}:{port}");
    Ok((format!("{}://{authority}", parsed.scheme()), authority))
}

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
}

/// A message waiting to be published.
#[derive(Debug, Clone)]
struct Buffered {
    channel: Channel,
    topic: String,
    payload: Bytes,
}

/// The bounded offline buffer: oldest dropped first, drops counted.
#[derive(Debug)]
struct OfflineBuffer<T> {
    items: VecDeque<T>,
    capacity: usize,
    dropped: u64,
}

impl<T> OfflineBuffer<T> {
    fn new(capacity: usize) -> Self {
        OfflineBuffer { items: VecDeque::with_capacity(capacity.min(1024)), capacity: capacity.max(1), dropped: 0 }
    }

    fn push(&mut self, item: T) {
        while self.items.len() >= self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(item);
    }

    /// Puts back an item taken for sending (it keeps its place; the newest is dropped if full).
    fn push_front(&mut self, item: T) {
        if self.items.len() >= self.capacity {
            self.items.pop_back();
            self.dropped += 1;
        }
        self.items.push_front(item);
    }

    fn pop_front(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// What goes out, and whether it may go out directly: `open` once the hello and the buffer are
/// out on the current connection (`generation`).
struct Outbox {
    buffer: OfflineBuffer<Buffered>,
    open: bool,
    generation: u64,
}

/// Full-jitter exponential backoff: uniform in `[0, min(max, initial × 2^attempt)]`.
fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let cap = backoff_cap(attempt, initial, max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

fn backoff_cap(attempt: u32, initial: Duration, max: Duration) -> Duration {
    initial.saturating_mul(2u32.saturating_pow(attempt)).min(max)
}

/// The outcome of an item as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Outcome {
    ok: bool,
    #[serde(default)]
    detail: Value,
}

/// One item key's record: the last version started, and its outcome once known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default)]
    format: u32,
    #[serde(default)]
    items: BTreeMap<String, Record>,
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A configured service, ready to use.
#[derive(Debug)]
struct Service {
    config: LocalServiceConfig,
    /// As the direct driver sees it (mode direct, the configured URL and credentials).
    edge: EdgeService,
    /// The tunnel's transport, on the service's origin.
    http: HttpTransport,
}

/// The topics of this agent.
#[derive(Debug)]
struct OwnTopics {
    cmd: String,
    desired: String,
    status: String,
    hello: String,
    heartbeat: String,
    event: String,
    report: String,
}

struct Core {
    config: EdgeAgentConfig,
    topics: OwnTopics,
    services: Vec<Service>,
    /// `host:port` → index in `services`.
    allow: BTreeMap<String, usize>,
    driver: DirectDriver,
    started: Instant,
    /// The applied items; held for the whole of an apply, so applies are serial.
    state: tokio::sync::Mutex<BTreeMap<String, Record>>,
    /// key → version of the recorded items, for hellos (readable while an apply runs).
    applied_versions: Mutex<BTreeMap<String, u64>>,
    latest: Mutex<Option<Heartbeat>>,
    seq: AtomicU64,
    outbox: Mutex<Outbox>,
    client: OnceLock<AsyncClient>,
    link_up: AtomicBool,
    codec: CodecStats,
    history: Mutex<(VecDeque<Duration>, VecDeque<Instant>)>,
    connects: AtomicU64,
    heartbeats_sent: AtomicU64,
    commands_handled: AtomicU64,
    commands_refused: AtomicU64,
    items_applied: AtomicU64,
    commands: Arc<Semaphore>,
    queued: AtomicUsize,
    desired: Mutex<Option<Desired>>,
    desired_ready: Notify,
}

/// The edge agent; see the [module docs](self).
pub struct EdgeAgent {
    core: Arc<Core>,
}

impl std::fmt::Debug for EdgeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeAgent").field("config", &self.core.config).finish_non_exhaustive()
    }
}

impl EdgeAgent {
    /// Checks `config`, loads the state file (an item found started without an outcome is
    /// recorded as failed, `"interrupted"`), and makes the agent. Nothing connects until
    /// [`run`](Self::run) or [`spawn`](Self::spawn).
    ///
    /// # Errors
    /// As [`EdgeAgentConfig::validate`]; `InvalidInput` for a state file that cannot be read,
    /// parsed or written (the agent refuses to start rather than apply twice).
    pub fn new(config: EdgeAgentConfig) -> Result<Self> {
        config.validate()?;
        let connect_timeout = HttpTransportConfig::DEFAULT_CONNECT_TIMEOUT.min(config.request_timeout);
        let driver = DirectDriver::new(DirectDriverConfig::default().timeouts(connect_timeout, config.request_timeout))?;
        let project = ProjectId::new();
        let mut services = Vec::with_capacity(config.services.len());
        let mut allow = BTreeMap::new();
        for (i, s) in config.services.iter().enumerate() {
            let (origin, authority) = origin(&s.url)?;
            let http = HttpTransportConfig::new(origin)
                .connect_timeout(connect_timeout)
                .request_timeout(config.request_timeout)
                .max_body(config.mqtt.max_payload)
                .build()?;
            let edge = EdgeService::new(
                project,
                &s.name,
                s.kind,
                ManagementMode::Direct,
                &s.url,
                s.credentials.clone(),
                vec![],
                Timestamp::now(),
            )?;
            allow.insert(authority, i);
            services.push(Service { config: s.clone(), edge, http });
        }
        let items = match &config.state_file {
            Some(path) => load_state(path)?,
            None => BTreeMap::new(),
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
            driver,
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
    /// `InvalidInput` for broker settings rumqttc cannot use. Connection failures are not errors:
    /// the agent retries.
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
            Err(e) => Err(Error::Transport { endpoint: "edge agent".into(), retryable: false, source: Box::new(e) }),
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

/// Aborts tasks when dropped (also when the run future itself is dropped or aborted).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn load_state(path: &Path) -> Result<BTreeMap<String, Record>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(invalid("state_file", format!("cannot be read: {e}"))),
    };
    let mut state: StateFile = serde_json::from_slice(&bytes).map_err(|e| invalid("state_file", format!("is not a state file: {e}")))?;
    if state.format > STATE_FORMAT {
        return Err(invalid("state_file", format!("has format {}, newer than this agent's {STATE_FORMAT}", state.format)));
    }
    let mut interrupted = false;
    for (key, record) in &mut state.items {
        if record.outcome.is_none() {
            tracing::warn!(key = %key, version = record.version, "edge agent: an item was interrupted while being applied; not applied again");
            record.outcome = Some(Outcome { ok: false, detail: json!("interrupted") });
            interrupted = true;
        }
    }
    if interrupted {
        save_state_sync(path, &state.items).map_err(|e| invalid("state_file", format!("cannot be written: {e}")))?;
    }
    Ok(state.items)
}

fn state_bytes(items: &BTreeMap<String, Record>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        format: u32,
        items: &'a BTreeMap<String, Record>,
    }
    serde_json::to_vec(&Out { format: STATE_FORMAT, items }).unwrap_or_default()
}

fn save_state_sync(path: &Path, items: &BTreeMap<String, Record>) -> std::io::Result<()> {
    write_atomic(path, &state_bytes(items))
}

fn applied_view(items: &BTreeMap<String, Record>) -> BTreeMap<String, Applied> {
    items
        .iter()
        .map(|(k, r)| {
            let o = r.outcome.clone().unwrap_or(Outcome { ok: false, detail: json!("in progress") });
            (k.clone(), Applied { key: k.clone(), version: r.version, ok: o.ok, detail: o.detail })
        })
        .collect()
}

fn error_text(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

fn reply_error(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error { code, message: message.into() }
}

/// A user-given string for messages: at most 100 characters, without control characters.
fn shown(s: &str) -> String {
    s.chars().take(100).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Checks a tunnelled path: one leading `/`, no `\`, `#`, whitespace or control characters.
fn check_path(path: &str) -> std::result::Result<(), &'static str> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err("the path must start with a single '/'");
    }
    if path.len() > MAX_PATH_LEN {
        return Err("the path is too long");
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\' || c == '#') {
        return Err("the path must not hold '\\', '#', whitespace or control characters");
    }
    Ok(())
}

/// Headers a tunnel never forwards: the connection's own, and the host.
fn hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header::*;
    [HOST, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, TE, TRAILER, UPGRADE, PROXY_AUTHORIZATION, PROXY_AUTHENTICATE].contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

impl Core {
    fn service(&self, target: &str) -> Option<&Service> {
        self.allow.get(target).map(|i| &self.services[*i])
    }

    fn forbidden(target: &str) -> Reply {
        reply_error(ErrorCode::Forbidden, format!("target {:?} is not one of this agent's services", shown(target)))
    }

    async fn handle(&self, command: Command) -> Reply {
        let reply = match command {
            Command::Http(req) => self.http(req).await,
            Command::Status => Reply::Ok { result: serde_json::to_value(self.latest_heartbeat().await).unwrap_or(Value::Null) },
            Command::Restart { target } => self.restart(&target).await,
            Command::Apply(item) => {
                if self.service(&item.target).is_none() {
                    Self::forbidden(&item.target)
                } else {
                    let applied = self.apply(&item).await;
                    Reply::Ok { result: serde_json::to_value(applied).unwrap_or(Value::Null) }
                }
            }
        };
        self.fit(reply)
    }

    /// The reply, or `too_large` when its encoding would exceed the payload limit.
    fn fit(&self, reply: Reply) -> Reply {
        let limit = self.config.mqtt.max_payload;
        match proto::encode(&Envelope::new(Message::Reply(reply.clone())), limit) {
            Ok(_) => reply,
            Err(proto::EncodeError::TooLarge { size, limit, .. }) => reply_error(
                ErrorCode::TooLarge,
                format!(
                    "the answer is {size} bytes encoded, over the payload limit of {limit} bytes (about {} bytes of HTTP body fit)",
                    limit.saturating_sub(4096) / 4 * 3
                ),
            ),
            Err(e) => reply_error(ErrorCode::Failed, e.to_string()),
        }
    }

    async fn http(&self, req: HttpRequest) -> Reply {
        let Some(service) = self.service(&req.target) else {
            return Self::forbidden(&req.target);
        };
        if let Err(why) = check_path(&req.path) {
            return reply_error(ErrorCode::BadRequest, why);
        }
        // Belt and braces: the URL the transport will make must stay on the target.
        let stays = url::Url::parse(&format!("{}{}", service.http.base_url(), req.path))
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .is_some_and(|a| a == req.target);
        if !stays {
            return reply_error(ErrorCode::BadRequest, "the path would leave the target");
        }
        let Ok(method) = http::Method::from_bytes(req.method.as_bytes()) else {
            return reply_error(ErrorCode::BadRequest, format!("{:?} is not an HTTP method", shown(&req.method)));
        };
        let body = match req.body.as_deref().map(proto::decode_body).transpose() {
            Ok(b) => Bytes::from(b.unwrap_or_default()),
            Err(e) => return reply_error(ErrorCode::BadRequest, format!("the body is not base64: {e}")),
        };
        let mut builder = http::Request::builder().method(method).uri(req.path.as_str());
        for (name, value) in &req.headers {
            let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return reply_error(ErrorCode::BadRequest, format!("{:?} is not a header name", shown(name)));
            };
            let Ok(value) = http::HeaderValue::from_str(value) else {
                return reply_error(ErrorCode::BadRequest, format!("the value of {name} is not a header value"));
            };
            if !hop_by_hop(&name) {
                builder = builder.header(name, value);
            }
        }
        let request = match builder.body(body) {
            Ok(r) => r,
            Err(e) => return reply_error(ErrorCode::BadRequest, format!("not a valid request: {e}")),
        };
        match service.http.send(request).await {
            Ok(response) => {
                let headers =
                    response.headers().iter().filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned()))).collect();
                let answer = HttpResponse { status: response.status().as_u16(), headers, body: proto::encode_body(response.body()) };
                Reply::Ok { result: serde_json::to_value(answer).unwrap_or(Value::Null) }
            }
            Err(Error::TooLarge { size, limit, .. }) => reply_error(
                ErrorCode::TooLarge,
                format!("the answer's body ({size} bytes or more) exceeds the payload limit of {limit} bytes"),
            ),
            Err(e @ Error::Transport { .. }) => reply_error(ErrorCode::Unreachable, error_text(&e)),
            Err(e) => reply_error(ErrorCode::Failed, error_text(&e)),
        }
    }

    async fn restart(&self, target: &str) -> Reply {
        let Some(service) = self.service(target) else {
            return Self::forbidden(target);
        };
        let Some(command) = service.config.restart_command.as_ref().filter(|c| !c.is_empty()) else {
            return reply_error(ErrorCode::Unsupported, format!("service {:?} has no restart command", service.config.name));
        };
        let name = &service.config.name;
        tracing::info!(service = %name, "edge agent: restarting a service");
        // std's process API with polling keeps tokio's `process` feature out of the library.
        let spawned = std::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return reply_error(ErrorCode::Failed, format!("cannot run the restart command of {name:?}: {e}")),
        };
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Reply::Ok { result: json!({}) },
                Ok(Some(status)) => return reply_error(ErrorCode::Failed, format!("the restart command of {name:?} failed: {status}")),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return reply_error(
                        ErrorCode::Failed,
                        format!("the restart command of {name:?} did not finish within {:?}", self.config.request_timeout),
                    );
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return reply_error(ErrorCode::Failed, format!("the restart command of {name:?}: {e}")),
            }
        }
    }

    /// Applies `item` at most once per (key, version); returns the fresh or recorded outcome.
    async fn apply(&self, item: &DesiredItem) -> Applied {
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
        let key = IdempotencyKey(format!("{}:{}:{}", self.config.agent_id, item.key, item.version));
        self.items_applied.fetch_add(1, Ordering::Relaxed);
        let outcome = match self.driver.apply(&service.edge, &item.change, &key).await {
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

    async fn persist(&self, items: &BTreeMap<String, Record>) -> std::io::Result<()> {
        let Some(path) = self.config.state_file.clone() else { return Ok(()) };
        let bytes = state_bytes(items);
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes)).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Applies every item of `desired` newer than recorded, in version order, and returns what to
    /// report: those outcomes, and the recorded outcomes of items at their recorded version.
    async fn apply_desired(&self, desired: Desired) -> Vec<Applied> {
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

    async fn probe_all(&self) -> Vec<ServiceHealth> {
        let limit = self.config.request_timeout.min(self.config.heartbeat.max(Duration::from_secs(1)));
        futures::future::join_all(self.services.iter().map(|s| async move {
            let start = Instant::now();
            let up = matches!(tokio::time::timeout(limit, self.driver.probe(&s.edge)).await, Ok(Ok(_)));
            let latency_ms = up.then(|| u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
            ServiceHealth { name: s.config.name.clone(), up, latency_ms }
        }))
        .await
    }

    async fn make_heartbeat(&self) -> Heartbeat {
        let services = self.probe_all().await;
        let stats = self.stats();
        let metrics = [
            ("buffered", stats.buffered as f64),
            ("dropped", stats.dropped as f64),
            ("connects", stats.connects as f64),
            ("commands_handled", stats.commands_handled as f64),
            ("commands_refused", stats.commands_refused as f64),
            ("rejected", stats.rejected.values().sum::<u64>() as f64),
            ("items_applied", stats.items_applied as f64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let hb = Heartbeat {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            uptime_secs: self.started.elapsed().as_secs(),
            services,
            metrics,
        };
        *lock(&self.latest) = Some(hb.clone());
        hb
    }

    async fn latest_heartbeat(&self) -> Heartbeat {
        let latest = lock(&self.latest).clone();
        match latest {
            Some(hb) => hb,
            None => self.make_heartbeat().await,
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            heartbeat_secs: u32::try_from(self.config.heartbeat.as_secs().max(1)).unwrap_or(u32::MAX),
            services: self
                .services
                .iter()
                .map(|s| LocalService {
                    name: s.config.name.clone(),
                    kind: s.config.kind.as_str().to_owned(),
                    url: s.config.url.clone(),
                    restartable: s.config.restart_command.is_some(),
                })
                .collect(),
            applied: lock(&self.applied_versions).clone(),
        }
    }

    fn stats(&self) -> AgentStats {
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
        }
    }

    fn topic_of(&self, channel: Channel) -> &str {
        match channel {
            Channel::Hello => &self.topics.hello,
            Channel::Status => &self.topics.status,
            Channel::Heartbeat => &self.topics.heartbeat,
            Channel::Report => &self.topics.report,
            _ => &self.topics.event,
        }
    }

    /// Publishes at once when connected and nothing is waiting, else buffers (in order).
    fn emit(self: &Arc<Self>, channel: Channel, message: Message) {
        let envelope = Envelope::new(message);
        let payload = match proto::encode(&envelope, self.config.mqtt.max_payload) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::warn!(error = %e, "edge agent: a message was not sent");
                return;
            }
        };
        let item = Buffered { channel, topic: self.topic_of(channel).to_owned(), payload };
        let mut outbox = lock(&self.outbox);
        if outbox.open
            && let Some(client) = self.client.get()
        {
            match client.try_publish(item.topic.clone(), qos(channel), false, item.payload.clone()) {
                Ok(()) => {
                    if channel == Channel::Heartbeat {
                        self.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(_) => {
                    // rumqttc's queue is full: keep the order by buffering, and drain from a task.
                    outbox.open = false;
                    let generation = outbox.generation;
                    outbox.buffer.push(item);
                    drop(outbox);
                    tokio::spawn(flush(self.clone(), client.clone(), generation));
                    return;
                }
            }
        }
        outbox.buffer.push(item);
    }

    fn link_down(&self) -> bool {
        let mut outbox = lock(&self.outbox);
        outbox.open = false;
        outbox.generation += 1;
        self.link_up.swap(false, Ordering::Relaxed)
    }

    fn on_publish(self: &Arc<Self>, publish: Publish) {
        let topic = std::str::from_utf8(&publish.topic).unwrap_or_default();
        if topic == self.topics.cmd {
            self.on_command(publish);
        } else if topic == self.topics.desired {
            if publish.payload.is_empty() {
                return; // A cleared retained message.
            }
            match proto::decode(Channel::Desired, &publish.payload, self.config.mqtt.max_payload) {
                Ok(Envelope { message: Message::Desired(d), .. }) => {
                    *lock(&self.desired) = Some(d);
                    self.desired_ready.notify_one();
                }
                Ok(_) => {}
                Err(e) => {
                    self.codec.count(e.reason());
                    tracing::debug!(error = %e, "edge agent: desired configuration rejected");
                }
            }
        } else {
            self.codec.count(RejectReason::BadTopic);
        }
    }

    fn on_command(self: &Arc<Self>, publish: Publish) {
        let props = publish.properties.unwrap_or_default();
        let response_topic = props.response_topic.filter(|t| {
            let own = self.config.topics.parse(t).is_some_and(|(a, c)| a == self.config.agent_id && c == Channel::Reply);
            own && t.starts_with(&format!("{}/agents/{}/reply/", self.config.topics.prefix(), self.config.agent_id))
        });
        let correlation = props.correlation_data.filter(|c| !c.is_empty() && c.len() <= 256);
        let (Some(response_topic), Some(correlation)) = (response_topic, correlation) else {
            self.commands_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("edge agent: a command without a response topic of its own or correlation data was dropped");
            return;
        };
        let decoded = proto::decode(Channel::Command, &publish.payload, self.config.mqtt.max_payload);
        let core = self.clone();
        let waiting = self.queued.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let reply = if waiting >= core.config.max_concurrent_commands.saturating_mul(8) {
                core.commands_refused.fetch_add(1, Ordering::Relaxed);
                reply_error(ErrorCode::Failed, "the agent is busy: too many commands in progress")
            } else {
                match decoded {
                    Ok(Envelope { message: Message::Command(command), .. }) => {
                        let permit = core.commands.clone().acquire_owned().await;
                        let reply = core.handle(command).await;
                        drop(permit);
                        core.commands_handled.fetch_add(1, Ordering::Relaxed);
                        reply
                    }
                    Ok(_) => reply_error(ErrorCode::BadRequest, "not a command"),
                    Err(e) => {
                        core.codec.count(e.reason());
                        reply_error(ErrorCode::BadRequest, e.to_string())
                    }
                }
            };
            core.queued.fetch_sub(1, Ordering::Relaxed);
            core.send_reply(response_topic, correlation, reply).await;
        });
    }

    async fn send_reply(&self, topic: String, correlation: Bytes, reply: Reply) {
        let (Some(client), true) = (self.client.get(), self.link_up.load(Ordering::Relaxed)) else {
            tracing::debug!("edge agent: a reply was dropped: not connected");
            return;
        };
        let payload = match proto::encode(&Envelope::new(Message::Reply(reply)), self.config.mqtt.max_payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "edge agent: a reply could not be encoded");
                return;
            }
        };
        let properties = PublishProperties { correlation_data: Some(correlation), ..PublishProperties::default() };
        let publish = client.publish_with_properties(topic, qos(Channel::Reply), false, payload, properties);
        if !matches!(tokio::time::timeout(self.config.request_timeout, publish).await, Ok(Ok(()))) {
            tracing::debug!("edge agent: a reply could not be queued");
        }
    }

    fn status_payload(&self, online: bool) -> Vec<u8> {
        proto::encode(&Envelope::new(Message::Status(Status { online })), self.config.mqtt.max_payload).unwrap_or_default()
    }

    fn record_connect(&self) -> u64 {
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

    fn record_delay(&self, delay: Duration) {
        let mut h = lock(&self.history);
        if h.0.len() >= HISTORY {
            h.0.pop_front();
        }
        h.0.push_back(delay);
    }
}

/// Sends the buffer in order on connection `generation`, then opens the outbox.
async fn flush(core: Arc<Core>, client: AsyncClient, generation: u64) {
    loop {
        let item = {
            let mut outbox = lock(&core.outbox);
            if outbox.generation != generation || outbox.open {
                return;
            }
            match outbox.buffer.pop_front() {
                Some(item) => item,
                None => {
                    outbox.open = true;
                    return;
                }
            }
        };
        let publish = client.publish(item.topic.clone(), qos(item.channel), false, item.payload.clone());
        match tokio::time::timeout(core.config.request_timeout, publish).await {
            Ok(Ok(())) => {
                if item.channel == Channel::Heartbeat {
                    core.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                let mut outbox = lock(&core.outbox);
                if outbox.generation == generation {
                    outbox.buffer.push_front(item);
                }
                return;
            }
        }
    }
}

/// After a ConnAck: subscribe, say online and hello, then send what was buffered.
async fn on_connect(core: Arc<Core>, client: AsyncClient, generation: u64) {
    let current = || lock(&core.outbox).generation == generation;
    for topic in [&core.topics.cmd, &core.topics.desired] {
        if let Err(e) = client.subscribe(topic.clone(), QoS::AtLeastOnce).await {
            tracing::warn!(error = %e, "edge agent: cannot subscribe");
        }
    }
    if !current() {
        return;
    }
    let _ = client.publish(core.topics.status.clone(), qos(Channel::Status), true, core.status_payload(true)).await;
    match proto::encode(&Envelope::new(Message::Hello(core.hello())), core.config.mqtt.max_payload) {
        Ok(payload) => {
            let _ = client.publish(core.topics.hello.clone(), qos(Channel::Hello), false, payload).await;
        }
        Err(e) => tracing::error!(error = %e, "edge agent: the hello does not fit in one message"),
    }
    if current() {
        flush(core, client, generation).await;
    }
}

async fn heartbeat_loop(core: Arc<Core>) {
    let mut tick = tokio::time::interval(core.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let hb = core.make_heartbeat().await;
        core.emit(Channel::Heartbeat, Message::Heartbeat(hb));
    }
}

async fn desired_loop(core: Arc<Core>) {
    loop {
        core.desired_ready.notified().await;
        loop {
            let Some(desired) = lock(&core.desired).take() else { break };
            let items = core.apply_desired(desired).await;
            for chunk in report_chunks(items, core.config.mqtt.max_payload) {
                core.emit(Channel::Report, Message::Report(Report { items: chunk }));
            }
        }
    }
}

/// Splits outcomes into reports that each fit in one message; an outcome whose detail alone is
/// too large keeps its key, version and result with a shortened detail.
fn report_chunks(items: Vec<Applied>, limit: usize) -> Vec<Vec<Applied>> {
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

async fn run(core: Arc<Core>, shutdown: impl Future<Output = ()> + Send) -> Result<AgentStats> {
    let c = &core.config;
    let will = LastWill::new(core.topics.status.clone(), core.status_payload(false), QoS::AtLeastOnce, true, None);
    let options = c.mqtt.options(c.agent_id.as_str(), Some(will))?;
    let capacity = options.request_channel_capacity();
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    if core.client.set(client.clone()).is_err() {
        return Err(invalid("edge agent", "is already running"));
    }
    let _tasks = AbortOnDrop(vec![
        tokio::spawn(heartbeat_loop(core.clone())).abort_handle(),
        tokio::spawn(desired_loop(core.clone())).abort_handle(),
    ]);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut attempt = 0u32;
    let agent = c.agent_id.clone();
    loop {
        let event = tokio::select! {
            () = &mut shutdown => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                let generation = core.record_connect();
                tracing::info!(agent = %agent, "edge agent: connected");
                // Publishing from another task: this one drains rumqttc's request queue.
                tokio::spawn(on_connect(core.clone(), client.clone(), generation));
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => core.on_publish(p),
            Ok(_) => {}
            Err(e) => {
                let was_up = core.link_down();
                let delay = backoff_delay(attempt, c.backoff_initial, c.backoff_max);
                attempt = attempt.saturating_add(1);
                core.record_delay(delay);
                if was_up {
                    tracing::warn!(agent = %agent, error = %e, "edge agent: connection lost; reconnecting in {delay:?}");
                } else {
                    tracing::debug!(agent = %agent, error = %e, attempt, "edge agent: cannot connect; retrying in {delay:?}");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    if core.link_up.load(Ordering::Relaxed) {
        let offline = core.status_payload(false);
        let status = core.topics.status.clone();
        let c2 = client.clone();
        tokio::spawn(async move {
            let _ = c2.publish(status, qos(Channel::Status), true, offline).await;
            let _ = c2.disconnect().await;
        });
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    core.link_down();
    tracing::info!(agent = %agent, "edge agent: stopped");
    Ok(core.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_cap_that_grows_then_saturates() {
        let (initial, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let caps: Vec<Duration> = (0..12).map(|a| backoff_cap(a, initial, max)).collect();
        assert_eq!(caps[0], initial);
        assert_eq!(caps[1], Duration::from_secs(1));
        assert_eq!(caps[5], Duration::from_secs(16));
        assert!(caps.windows(2).all(|w| w[0] <= w[1]));
        assert!(caps[6..].iter().all(|c| *c == max), "{caps:?}");
        assert_eq!(backoff_cap(u32::MAX, initial, max), max);
        for attempt in [0, 1, 3, 10, 40, u32::MAX] {
            let cap = backoff_cap(attempt, initial, max);
            for _ in 0..200 {
                assert!(backoff_delay(attempt, initial, max) <= cap);
            }
        }
        // Full jitter: the delays spread over the whole range, down to near zero.
        let delays: Vec<Duration> = (0..2000).map(|_| backoff_delay(20, initial, max)).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(3)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(27)));
        let mean = delays.iter().sum::<Duration>() / 2000;
        assert!((Duration::from_secs(12)..Duration::from_secs(18)).contains(&mean), "{mean:?}");
    }

    #[test]
    fn the_offline_buffer_drops_the_oldest_and_counts() {
        let mut b = OfflineBuffer::new(3);
        for i in 0..5 {
            b.push(i);
        }
        assert_eq!((b.len(), b.dropped), (3, 2));
        assert_eq!(b.pop_front(), Some(2));
        b.push_front(2);
        b.push(5);
        assert_eq!((b.len(), b.dropped), (3, 3));
        assert_eq!(std::iter::from_fn(|| b.pop_front()).collect::<Vec<_>>(), vec![3, 4, 5]);
        // A put-back item keeps its place; the newest gives way when full.
        let mut b = OfflineBuffer::new(2);
        b.push(1);
        b.push(2);
        b.push_front(0);
        assert_eq!((b.pop_front(), b.pop_front(), b.dropped), (Some(0), Some(1), 1));
    }

    #[test]
    fn paths_stay_on_the_target() {
        for good in ["/", "/api/version?x=1", "/a@b/c", "/%2F%2Fevil"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "x", "//evil.example/x", "@evil/x", "/a\\b", "/a b", "/a\nb", "/a#f", "http://evil/"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_and_authorities() {
        assert_eq!(origin("http://127.0.0.1:8085").unwrap(), ("http://127.0.0.1:8085".into(), "127.0.0.1:8085".into()));
        assert_eq!(origin("https://edge.local/api").unwrap(), ("https://edge.local:443".into(), "edge.local:443".into()));
        assert_eq!(origin("http://[::1]:80/").unwrap().1, "[::1]:80");
        for bad in ["ftp://x", "127.0.0.1:80", "http://u:p@h:1", "http://h:1/?q"] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

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
