//! [`AgentHub`]: the cloud side of the agent protocol (feature `mqtt`).
//!
//! One hub per control-plane replica holds one MQTT 5 connection. It
//!
//! - records every agent that says hello (unknown agents appear unmanaged in the store);
//! - tracks presence from the agents' retained status (their last will says offline), their
//!   heartbeats, and missed heartbeats (`missed_heartbeats` intervals of silence make an agent
//!   offline);
//! - sends commands as MQTT 5 requests (a response topic of its own and unique correlation data),
//!   matches replies to requests by correlation data *and* agent, and times requests out;
//! - keeps each agent's desired configuration in the store, publishes it retained, and records
//!   what the agent reports it applied; an agent that was away gets its desired configuration
//!   again when it says hello, so it converges without anyone acting.
//!
//! Replicas share the agents' traffic with `shared_group` (`$share/{group}/…` subscriptions);
//! replies come back on each hub's own response topic.
//!
//! With a [`SampleSink`] configured ([`AgentHubConfig::with_sample_sink`]), heartbeats of
//! *managed* agents become samples of the agent's project (see [`samples`] for
//! the series), and an agent going offline gives `ecp_agent_up` 0; heartbeats of unmanaged agents
//! are dropped and counted ([`HubStats::unmanaged_heartbeats`]). With [`ControlPlaneMetrics`]
//! configured ([`AgentHubConfig::with_metrics`]), messages in and out are counted by kind and
//! rejections by reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ecp_core::coalesce::Coalescer;
use ecp_core::edge::{AgentId, DesiredChange, DesiredPut, DesiredRecord, ReportedItem};
use ecp_core::{Clock, Store};
use ecp_telemetry::own::{ControlPlaneMetrics, Direction};
use ecp_telemetry::{MetricScope, SampleSink};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::mqtt::{MqttConfig, qos};
use super::proto::{
    self, Applied, CodecStats, Command, Desired, DesiredItem, Envelope, Event as AgentEvent, Heartbeat, Hello, Message, RejectReason,
    Reply, Report,
};
use super::samples;
use super::topics::{Channel, Topics, check_segment};
use crate::error::{Error, Result};
use crate::template::ConfigChange;

/// The settings of an [`AgentHub`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentHubConfig {
    /// This hub's id: its MQTT client id is `ecp-hub-{id}` and its replies come on
    /// `…/reply/{id}` (default: `hub-` and 8 random hex digits).
    pub hub_id: String,
    /// The topic layout.
    pub topics: Topics,
    /// The broker.
    pub mqtt: MqttConfig,
    /// How long a command waits for its reply by default (15 s).
    pub request_timeout: Duration,
    /// Heartbeat intervals of silence after which an agent is offline (3).
    pub missed_heartbeats: u32,
    /// The shared-subscription group of several replicas, if any.
    pub shared_group: Option<String>,
    /// The most requests waiting for replies at once (65,536).
    pub max_pending: usize,
    /// How long the broker keeps the hub's session (subscriptions and queued QoS 1 messages from
    /// agents) after its connection drops (5 min).
    pub session_expiry: Duration,
    /// Where heartbeats of managed agents go as samples (none by default).
    pub sample_sink: Option<Arc<dyn SampleSink>>,
    /// Where events of managed agents go as log records (none by default).
    pub log_sink: Option<Arc<dyn ecp_telemetry::LogSink>>,
    /// The control plane's own metrics, to count messages and rejections into (none by default).
    pub metrics: Option<ControlPlaneMetrics>,
    /// How long the hub trusts what it looked up about an agent's project for its samples (30 s):
    /// a manage, transfer or unmanage done elsewhere shows within this long, or at once after
    /// [`AgentHub::forget_scope`] or the agent's next hello.
    pub scope_ttl: Duration,
}

impl AgentHubConfig {
    /// A hub on `mqtt` with the default settings.
    pub fn new(mqtt: MqttConfig) -> Self {
        AgentHubConfig {
            hub_id: format!("hub-{:08x}", fastrand::u32(..)),
            topics: Topics::default(),
            mqtt,
            request_timeout: Duration::from_secs(15),
            missed_heartbeats: 3,
            shared_group: None,
            max_pending: 65_536,
            session_expiry: Duration::from_secs(300),
            sample_sink: None,
            log_sink: None,
            metrics: None,
            scope_ttl: Duration::from_secs(30),
        }
    }

    /// Turns heartbeats of managed agents into samples taken by `sink`.
    #[must_use]
    pub fn with_sample_sink(mut self, sink: Arc<dyn SampleSink>) -> Self {
        self.sample_sink = Some(sink);
        self
    }

    /// Turns events of managed agents into log records (product `agent`, service `agent:<id>`,
    /// the agent's project) written to `sink`.
    #[must_use]
    pub fn with_log_sink(mut self, sink: Arc<dyn ecp_telemetry::LogSink>) -> Self {
        self.log_sink = Some(sink);
        self
    }

    /// Counts messages and rejections into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: ControlPlaneMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn validate(&self) -> Result<()> {
        check_segment("hub id", &self.hub_id, 64)?;
        if let Some(g) = &self.shared_group {
            check_segment("shared group", g, 64)?;
        }
        if self.missed_heartbeats == 0 || self.max_pending == 0 || self.request_timeout.is_zero() {
            return Err(Error::Core(ecp_core::Error::invalid("hub", "missed_heartbeats, max_pending and request_timeout must not be 0")));
        }
        self.mqtt.validate()
    }
}

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
}

#[derive(Debug)]
struct Presence {
    online: bool,
    last_seen: Instant,
    heartbeat: Duration,
    last: Option<Heartbeat>,
}

struct Pending {
    agent: AgentId,
    tx: oneshot::Sender<Reply>,
}

type ReportWaiters = HashMap<(AgentId, String), Vec<(u64, oneshot::Sender<Applied>)>>;

/// What the hub looked up about an agent for its samples: its project (none while unmanaged) and
/// its services' kinds.
struct AgentScope {
    scope: Option<MetricScope>,
    kinds: HashMap<String, String>,
}

/// The most agents whose scope the hub remembers; past it, expired entries are dropped (all of
/// them if none has expired).
const MAX_SCOPE_CACHE: usize = 65_536;

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
    /// Concurrent deliveries' desired items, set in one store write per batch.
    puts: Coalescer<DesiredChange, ecp_core::Result<DesiredPut>>,
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
    Error::Transport { endpoint: what, retryable, source: source.into() }
}

impl AgentHub {
    /// Connects to the broker and starts serving; returns once the broker accepted the
    /// connection (within the configured connect timeout).
    ///
    /// # Errors
    /// `InvalidInput` for bad settings; `Transport` when the broker cannot be reached or refuses
    /// the hub's credentials in time.
    pub async fn connect(config: AgentHubConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        let mut options = config.mqtt.options(&format!("ecp-hub-{}", config.hub_id), None)?;
        // A session that outlives a dropped connection: the broker keeps the hub's subscriptions
        // and queues the agents' QoS 1 messages (hellos, reports, events) until it is back.
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(u32::try_from(config.session_expiry.as_secs()).unwrap_or(u32::MAX)));
        let (client, eventloop) = AsyncClient::new(options, usize::from(config.mqtt.inflight).max(64) * 4);
        let (connected, mut ready) = watch::channel(false);
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            store,
            clock,
            client,
            connected,
            corr_prefix: fastrand::u64(..),
            corr_next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            reports: Mutex::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            events,
            codec: CodecStats::default(),
            connects: AtomicU64::new(0),
            received: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            scopes: Mutex::new(HashMap::new()),
            unmanaged: AtomicU64::new(0),
            puts: Coalescer::new(PUT_BATCH),
            config,
        });
        let (work_tx, work_rx) = mpsc::channel(16_384);
        let (fail_tx, mut fail_rx) = mpsc::channel::<String>(1);
        let poll = tokio::spawn(poll_loop(inner.clone(), eventloop, work_tx, fail_tx));
        let work = tokio::spawn(work_loop(inner.clone(), work_rx));
        let sweep = tokio::spawn(sweep_loop(inner.clone()));
        let hub = AgentHub { inner: inner.clone(), tasks: Arc::new(vec![poll.abort_handle(), work.abort_handle(), sweep.abort_handle()]) };
        let deadline = inner.config.mqtt.connect_timeout + Duration::from_secs(2);
        let outcome = tokio::time::timeout(deadline, async {
            tokio::select! {
                r = ready.wait_for(|c| *c) => r.map(|_| ()).map_err(|_| "the hub stopped".to_owned()),
                Some(e) = fail_rx.recv() => Err(e),
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(hub),
            Ok(Err(e)) => {
                hub.shutdown();
                Err(transport_error(hub.broker(), false, e))
            }
            Err(_) => {
                hub.shutdown();
                Err(transport_error(hub.broker(), true, "the broker did not accept the connection in time"))
            }
        }
    }

    fn broker(&self) -> String {
        format!("mqtt://{}:{}", self.inner.config.mqtt.host, self.inner.config.mqtt.port)
    }

    /// Stops the hub's tasks (requests in flight fail).
    pub fn shutdown(&self) {
        let _ = self.inner.client.try_disconnect();
        for t in self.tasks.iter() {
            t.abort();
        }
        let _ = self.inner.connected.send_replace(false);
    }

    /// This hub's id.
    pub fn hub_id(&self) -> &str {
        &self.inner.config.hub_id
    }

    /// The topic layout.
    pub fn topics(&self) -> &Topics {
        &self.inner.config.topics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Whether the hub is connected to the broker now.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

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
        }
    }

    /// Forgets what the hub looked up about `agent`'s project, so that its next sample follows a
    /// manage, transfer or unmanage at once instead of within [`AgentHubConfig::scope_ttl`].
    pub fn forget_scope(&self, agent: &AgentId) {
        lock(&self.inner.scopes).remove(agent);
    }

    /// The rejections of `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.inner.codec.get(reason)
    }

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

    /// Sends `command` to `agent` and waits up to `timeout` (default: the configured request
    /// timeout) for its reply.
    ///
    /// # Errors
    /// `Transport` (retryable) when the hub is not connected, the agent is offline, or it does
    /// not answer in time; `TooLarge` for a command over the payload limit.
    pub async fn request(&self, agent: &AgentId, command: Command, timeout: Option<Duration>) -> Result<Reply> {
        let inner = &self.inner;
        let what = format!("agent {agent}");
        if !self.is_connected() {
            return Err(transport_error(what, true, "the hub is not connected to the broker"));
        }
        if lock(&inner.presence).get(agent).is_some_and(|p| !p.online) {
            return Err(transport_error(what, true, "the agent is offline"));
        }
        let payload =
            proto::encode(&Envelope::new(Message::Command(command)), inner.config.mqtt.max_payload).map_err(|e| encode_error(&what, e))?;
        let corr = (u128::from(inner.corr_prefix) << 64) | u128::from(inner.corr_next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&inner.pending);
            if pending.len() >= inner.config.max_pending {
                return Err(transport_error(what, true, "too many requests are waiting for replies"));
            }
            pending.insert(corr, Pending { agent: agent.clone(), tx });
        }
        let properties = PublishProperties {
            response_topic: Some(inner.config.topics.reply(agent, &inner.config.hub_id)),
            correlation_data: Some(Bytes::copy_from_slice(&corr.to_be_bytes())),
            ..PublishProperties::default()
        };
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let topic = inner.config.topics.topic(agent, Channel::Command);
        if let Err(e) = inner.client.publish_with_properties(topic, qos(Channel::Command), false, payload, properties).await {
            lock(&inner.pending).remove(&corr);
            return Err(transport_error(what, true, e));
        }
        count_message(inner, Direction::Out, "command");
        let timeout = timeout.unwrap_or(inner.config.request_timeout);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(transport_error(what, true, "the hub stopped")),
            Err(_) => {
                lock(&inner.pending).remove(&corr);
                inner.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(transport_error(what, true, format!("no reply within {timeout:?}")))
            }
        }
    }

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
        lock(&inner.reports).entry((agent.clone(), key.to_owned())).or_default().push((record.version, tx));
        // The set was read after the write: publishing it needs no second read.
        if let Err(e) = publish_records(inner, agent, put.all).await {
            remove_waiter(inner, agent, key);
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

    /// Issues new broker credentials to `agent` (creating it, unmanaged, when it was never seen)
    /// and returns its secret, which is shown this once: only its mosquitto hash is stored. Any
    /// previous secret stops working once the broker's files are regenerated
    /// ([`broker_acl`](Self::broker_acl)) and reloaded. Needs `edit system settings` at system
    /// scope; audited.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn issue_credentials(
        &self,
        authz: &dyn ecp_core::Authorizer,
        principal: &ecp_core::Principal,
        agent: &AgentId,
    ) -> Result<super::acl::AgentSecret> {
        let event = credentials_event(principal, agent, "agent.credentials.issue");
        if let Err(e) = authorize_system(authz, principal) {
            ecp_core::audit::record_failure(self.inner.store.as_ref(), event, &e).await;
            return Err(e);
        }
        let secret = super::acl::AgentSecret::generate()?;
        let hash = super::acl::mosquitto_hash(secret.as_secret())?;
        self.inner.store.set_agent_secret(agent, Some(&hash), self.inner.clock.now(), &event).await?;
        Ok(secret)
    }

    /// Revokes `agent`'s broker credentials (effective once the broker's files are regenerated
    /// and reloaded). Needs `edit system settings` at system scope; audited.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn revoke_credentials(
        &self,
        authz: &dyn ecp_core::Authorizer,
        principal: &ecp_core::Principal,
        agent: &AgentId,
    ) -> Result<()> {
        let event = credentials_event(principal, agent, "agent.credentials.revoke");
        if let Err(e) = authorize_system(authz, principal) {
            ecp_core::audit::record_failure(self.inner.store.as_ref(), event, &e).await;
            return Err(e);
        }
        Ok(self.inner.store.set_agent_secret(agent, None, self.inner.clock.now(), &event).await?)
    }

    /// The broker's access control for every agent with credentials, plus the hub's own user
    /// (`hub_user` with its mosquitto hash): write it with [`BrokerAcl::write_files`] and reload
    /// the broker.
    ///
    /// [`BrokerAcl::write_files`]: super::acl::BrokerAcl::write_files
    ///
    /// # Errors
    /// `InvalidInput` for a bad hub user, `Backend`.
    pub async fn broker_acl(&self, hub_user: &str, hub_hash: &str) -> Result<super::acl::BrokerAcl> {
        let agents = self.inner.store.agent_secrets().await?;
        super::acl::BrokerAcl::new(self.inner.config.topics.clone(), hub_user, hub_hash, agents)
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

fn credentials_event(principal: &ecp_core::Principal, agent: &AgentId, op: &'static str) -> ecp_core::AuditEvent {
    ecp_core::AuditEvent::new(principal, ecp_core::ResourceKind::SystemSettings, ecp_core::Operation::from_static(op)).resource(agent, None)
}

fn authorize_system(authz: &dyn ecp_core::Authorizer, principal: &ecp_core::Principal) -> Result<()> {
    let perm = ecp_core::Permission::edit(ecp_core::ResourceKind::SystemSettings);
    let scope = ecp_core::Scope::System;
    authz.check(principal, perm, &scope).map_err(|d| Error::Core(d.into_error(principal, perm, &scope)))
}

fn encode_error(what: &str, e: proto::EncodeError) -> Error {
    match e {
        proto::EncodeError::TooLarge { size, limit, .. } => Error::TooLarge { endpoint: what.to_owned(), size, limit },
        other => Error::Core(ecp_core::Error::invalid("message", other.to_string())),
    }
}

fn remove_waiter(inner: &Inner, agent: &AgentId, key: &str) {
    let mut reports = lock(&inner.reports);
    if let Some(list) = reports.get_mut(&(agent.clone(), key.to_owned())) {
        list.retain(|(_, tx)| !tx.is_closed());
        if list.is_empty() {
            reports.remove(&(agent.clone(), key.to_owned()));
        }
    }
}

async fn publish_desired(inner: &Inner, agent: &AgentId) -> Result<()> {
    publish_records(inner, agent, inner.store.desired(agent).await?).await
}

/// Publishes `records` as `agent`'s whole desired configuration, retained.
async fn publish_records(inner: &Inner, agent: &AgentId, records: Vec<DesiredRecord>) -> Result<()> {
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
    let version = items.iter().map(|i| i.version).max().unwrap_or(0);
    let what = format!("agent {agent}");
    let payload = proto::encode(&Envelope::new(Message::Desired(Desired { version, items })), inner.config.mqtt.max_payload)
        .map_err(|e| encode_error(&what, e))?;
    inner
        .client
        .publish(inner.config.topics.topic(agent, Channel::Desired), qos(Channel::Desired), true, payload)
        .await
        .map_err(|e| transport_error(what, true, e))?;
    count_message(inner, Direction::Out, "desired");
    Ok(())
}

/// Counts a rejected message (and into the control plane's metrics, when configured).
fn reject(inner: &Inner, reason: RejectReason) {
    inner.codec.count(reason);
    if let Some(m) = &inner.config.metrics {
        m.agent_message_rejected(reason.as_str());
    }
}

fn count_message(inner: &Inner, direction: Direction, kind: &str) {
    if let Some(m) = &inner.config.metrics {
        m.agent_message(direction, kind);
    }
}

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
        Some(p) => Some(MetricScope::new(inner.store.get_project(p).await?.org, p)),
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
async fn heartbeat_samples(inner: &Inner, agent: &AgentId, hb: &Heartbeat) -> Result<()> {
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
async fn event_log(inner: &Inner, agent: &AgentId, ev: &AgentEvent) {
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
async fn offline_sample(inner: &Inner, agent: &AgentId) {
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

/// Polls the connection: (re)subscribes on every ConnAck, answers replies at once, and hands
/// everything else to the worker.
async fn poll_loop(inner: Arc<Inner>, mut eventloop: EventLoop, work: mpsc::Sender<Publish>, fail: mpsc::Sender<String>) {
    let mut attempt = 0u32;
    let mut awaiting_suback = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                inner.connects.fetch_add(1, Ordering::Relaxed);
                let c = &inner.config;
                let mut filters: Vec<String> = [Channel::Hello, Channel::Status, Channel::Heartbeat, Channel::Event, Channel::Report]
                    .into_iter()
                    .map(|ch| {
                        let f = c.topics.all_agents(ch, &c.hub_id);
                        match &c.shared_group {
                            Some(g) => format!("$share/{g}/{f}"),
                            None => f,
                        }
                    })
                    .collect();
                filters.push(c.topics.all_agents(Channel::Reply, &c.hub_id));
                // One SUBSCRIBE for all filters, sent from another task (this loop drains the
                // request channel); the hub counts as connected once its SUBACK is back, so that
                // nothing an agent says after that is missed.
                let client = inner.client.clone();
                tokio::spawn(async move {
                    let filters = filters.into_iter().map(|f| Filter::new(f, rumqttc::v5::mqttbytes::QoS::AtLeastOnce));
                    if let Err(e) = client.subscribe_many(filters).await {
                        tracing::warn!(error = %e, "agent hub: could not subscribe");
                    }
                });
                awaiting_suback = true;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) if awaiting_suback => {
                awaiting_suback = false;
                if let Some(code) = ack.return_codes.iter().find(|c| !matches!(c, SubscribeReasonCode::Success(_))) {
                    tracing::error!(?code, "agent hub: the broker refused a subscription; check the hub user's ACL");
                }
                inner.connected.send_replace(true);
                // Deliveries still waiting may have lost their desired message with the old
                // connection (or the broker its retained copy): send them again.
                let inner2 = inner.clone();
                tokio::spawn(async move {
                    let waiting: std::collections::BTreeSet<AgentId> = lock(&inner2.reports).keys().map(|(a, _)| a.clone()).collect();
                    for agent in waiting {
                        if let Err(e) = publish_desired(&inner2, &agent).await {
                            tracing::warn!(agent = %agent, error = %e, "agent hub: could not resend a desired configuration");
                        }
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                inner.received.fetch_add(1, Ordering::Relaxed);
                let channel = std::str::from_utf8(&p.topic).ok().and_then(|t| inner.config.topics.parse(t));
                match channel {
                    Some((agent, Channel::Reply)) => on_reply(&inner, &agent, &p),
                    Some(_) => {
                        if work.try_send(p).is_err() {
                            inner.overloaded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => reject(&inner, RejectReason::BadTopic),
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = inner.connected.send_replace(false);
                if let ConnectionError::ConnectionRefused(code) = &e {
                    let _ = fail.try_send(format!("the broker refused the hub: {code:?}"));
                }
                tracing::warn!(error = %e, "agent hub: connection to the broker lost");
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

/// Full-jitter exponential backoff: uniform in [0, min(30 s, 250 ms × 2^attempt)].
pub(crate) fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let cap = initial.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(max);
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ms))
}

fn backoff(attempt: u32) -> Duration {
    backoff_delay(attempt, Duration::from_millis(250), Duration::from_secs(30))
}

fn on_reply(inner: &Inner, agent: &AgentId, p: &Publish) {
    let corr = p
        .properties
        .as_ref()
        .and_then(|pr| pr.correlation_data.as_ref())
        .and_then(|c| <[u8; 16]>::try_from(c.as_ref()).ok())
        .map(u128::from_be_bytes);
    let Some(corr) = corr else {
        reject(inner, RejectReason::UnknownCorrelation);
        return;
    };
    let envelope = match proto::decode(Channel::Reply, &p.payload, inner.config.mqtt.max_payload) {
        Ok(e) => e,
        Err(e) => {
            reject(inner, e.reason());
            return;
        }
    };
    let Message::Reply(reply) = envelope.message else { return };
    let mut pending = lock(&inner.pending);
    match pending.get(&corr) {
        // A reply must come from the agent the request went to: another agent that learned
        // the correlation data cannot answer in its place.
        Some(entry) if &entry.agent == agent => {
            if let Some(entry) = pending.remove(&corr) {
                let _ = entry.tx.send(reply);
            }
            count_message(inner, Direction::In, "reply");
        }
        Some(_) => reject(inner, RejectReason::BadTopic),
        None => reject(inner, RejectReason::UnknownCorrelation),
    }
}

/// How many received messages the work loop takes at once: their reports are recorded in one
/// store write.
const WORK_BATCH: usize = 256;

async fn work_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Publish>) {
    let mut batch = Vec::with_capacity(WORK_BATCH);
    let mut reports: Vec<(AgentId, Report)> = Vec::new();
    while rx.recv_many(&mut batch, WORK_BATCH).await > 0 {
        for p in batch.drain(..) {
            let Some((agent, channel)) = std::str::from_utf8(&p.topic).ok().and_then(|t| inner.config.topics.parse(t)) else {
                continue;
            };
            let envelope = match proto::decode(channel, &p.payload, inner.config.mqtt.max_payload) {
                Ok(e) => e,
                Err(e) => {
                    reject(&inner, e.reason());
                    tracing::debug!(agent = %agent, error = %e, "agent hub: message rejected");
                    continue;
                }
            };
            count_message(&inner, Direction::In, envelope.message.kind());
            if let Message::Report(report) = envelope.message {
                reports.push((agent, report));
                continue;
            }
            // Anything else is handled in order, after the reports received before it.
            record_reports(&inner, &mut reports).await;
            if let Err(e) = handle(&inner, &agent, envelope.message).await {
                tracing::warn!(agent = %agent, error = %e, "agent hub: could not record a message");
            }
        }
        record_reports(&inner, &mut reports).await;
    }
}

/// Records `reports` (emptying it) in one store write, then wakes the deliveries waiting for
/// them. When the write fails the waiters are not woken: their deliveries time out, retryable,
/// and the agents report again on their next hello.
async fn record_reports(inner: &Inner, reports: &mut Vec<(AgentId, Report)>) {
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
            let waiters = {
                let mut waiting = lock(&inner.reports);
                let k = (agent.clone(), applied.key.clone());
                let (done, keep): (Vec<_>, Vec<_>) =
                    waiting.remove(&k).unwrap_or_default().into_iter().partition(|(v, _)| *v <= applied.version);
                if !keep.is_empty() {
                    waiting.insert(k, keep);
                }
                done
            };
            for (_, tx) in waiters {
                let _ = tx.send(applied.clone());
            }
            let _ = inner.events.send(HubEvent::Applied(agent.clone(), applied));
        }
    }
}

async fn handle(inner: &Arc<Inner>, agent: &AgentId, message: Message) -> Result<()> {
    let now = inner.clock.now();
    match message {
        Message::Hello(hello) => {
            let value = serde_json::to_value(&hello).unwrap_or(Value::Null);
            inner.store.agent_hello(agent, &hello.agent_version, &value, now).await?;
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
                let was = seen(inner, agent, None, None);
                inner.store.set_agent_presence(agent, true, now).await?;
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
            let was = seen(inner, agent, None, Some(hb.clone()));
            if !was {
                inner.store.set_agent_presence(agent, true, now).await?;
                let _ = inner.events.send(HubEvent::Online(agent.clone()));
            }
            if let Err(e) = heartbeat_samples(inner, agent, &hb).await {
                tracing::warn!(agent = %agent, error = %e, "agent hub: could not turn a heartbeat into samples");
            }
            let _ = inner.events.send(HubEvent::Heartbeat(agent.clone(), hb));
        }
        Message::Event(ev) => {
            seen(inner, agent, None, None);
            event_log(inner, agent, &ev).await;
            let _ = inner.events.send(HubEvent::Event(agent.clone(), ev));
        }
        Message::Report(report) => record_reports(inner, &mut vec![(agent.clone(), report)]).await,
        // Hub-bound channels never carry these kinds (decode already refused them).
        Message::Command(_) | Message::Reply(_) | Message::Desired(_) => {}
    }
    Ok(())
}

/// Marks `agent` seen now; returns whether it was online before.
fn seen(inner: &Inner, agent: &AgentId, hello: Option<&Hello>, hb: Option<Heartbeat>) -> bool {
    let mut presence = lock(&inner.presence);
    let p = presence.entry(agent.clone()).or_insert_with(|| Presence {
        online: false,
        last_seen: Instant::now(),
        heartbeat: Duration::from_secs(10),
        last: None,
    });
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
async fn sweep_loop(inner: Arc<Inner>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_has_full_jitter_under_a_growing_cap() {
        for attempt in 0..40 {
            let cap = Duration::from_millis(100)
                .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
                .min(Duration::from_secs(5));
            for _ in 0..50 {
                let d = backoff_delay(attempt, Duration::from_millis(100), Duration::from_secs(5));
                assert!(d <= cap, "{d:?} > {cap:?}");
            }
        }
        let spread: std::collections::HashSet<_> =
            (0..100).map(|_| backoff_delay(6, Duration::from_millis(100), Duration::from_secs(5))).collect();
        assert!(spread.len() > 50, "delays are spread, not fixed");
    }
}
