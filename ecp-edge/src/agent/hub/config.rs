//! [`AgentHubConfig`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use ecp_telemetry::SampleSink;
use ecp_telemetry::own::ControlPlaneMetrics;

use ecp_agent_proto::topics::check_segment;
use ecp_agent_proto::{MqttConfig, Topics};

use crate::error::{Error, Result};

#[cfg(doc)]
use super::AgentHub;

/// The settings of an [`AgentHub`]. Build them with [`AgentHubConfig::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentHubConfig {
    pub(super) hub_id: String,
    pub(super) topics: Topics,
    pub(super) mqtt: MqttConfig,
    pub(super) request_timeout: Duration,
    pub(super) missed_heartbeats: u32,
    pub(super) shared_group: Option<String>,
    pub(super) max_pending: usize,
    pub(super) session_expiry: Duration,
    pub(super) sample_sink: Option<Arc<dyn SampleSink>>,
    pub(super) log_sink: Option<Arc<dyn ecp_telemetry::LogSink>>,
    pub(super) metrics: Option<ControlPlaneMetrics>,
    pub(super) scope_ttl: Duration,
    pub(super) max_unmanaged_agents: u64,
}

impl AgentHubConfig {
    /// A builder of a hub on the broker `mqtt`, with the default settings.
    pub fn builder(mqtt: MqttConfig) -> AgentHubConfigBuilder {
        AgentHubConfigBuilder(AgentHubConfig {
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
            max_unmanaged_agents: 10_000,
        })
    }

    /// This hub's id.
    pub fn hub_id(&self) -> &str {
        &self.hub_id
    }

    /// The most unmanaged agents a hello creates.
    pub fn max_unmanaged_agents(&self) -> u64 {
        self.max_unmanaged_agents
    }

    /// The topic layout.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The broker.
    pub fn mqtt(&self) -> &MqttConfig {
        &self.mqtt
    }

    /// How long a command waits for its reply by default.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Heartbeat intervals of silence after which an agent is offline.
    pub fn missed_heartbeats(&self) -> u32 {
        self.missed_heartbeats
    }

    /// The shared-subscription group of several replicas, if any.
    pub fn shared_group(&self) -> Option<&str> {
        self.shared_group.as_deref()
    }

    /// The most requests waiting for replies at once.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// How long the broker keeps the hub's session after its connection drops.
    pub fn session_expiry(&self) -> Duration {
        self.session_expiry
    }

    /// How long the hub trusts what it looked up about an agent's project for its samples.
    pub fn scope_ttl(&self) -> Duration {
        self.scope_ttl
    }
}

/// Builds an [`AgentHubConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct AgentHubConfigBuilder(AgentHubConfig);

impl AgentHubConfigBuilder {
    /// This hub's id: its MQTT client id is `ecp-hub-{id}` and its replies come on
    /// `…/reply/{id}` (default: `hub-` and 8 random hex digits; 1 to 64 characters of
    /// `A-Z a-z 0-9 _ -`).
    pub fn hub_id(mut self, id: impl Into<String>) -> Self {
        self.0.hub_id = id.into();
        self
    }

    /// The topic layout (default: prefix `ecp`).
    pub fn topics(mut self, topics: Topics) -> Self {
        self.0.topics = topics;
        self
    }

    /// How long a command waits for its reply when it names no timeout (default 15 s; not
    /// zero).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.0.request_timeout = timeout;
        self
    }

    /// Heartbeat intervals of silence after which an agent is offline (default 3; at least 1).
    pub fn missed_heartbeats(mut self, n: u32) -> Self {
        self.0.missed_heartbeats = n;
        self
    }

    /// The shared-subscription group of several replicas (default none; 1 to 64 characters of
    /// `A-Z a-z 0-9 _ -`): the replicas share the agents' traffic through `$share/{group}/…`
    /// subscriptions.
    pub fn shared_group(mut self, group: impl Into<String>) -> Self {
        self.0.shared_group = Some(group.into());
        self
    }

    /// The most requests waiting for replies at once (default 65,536; at least 1).
    pub fn max_pending(mut self, n: usize) -> Self {
        self.0.max_pending = n;
        self
    }

    /// How long the broker keeps the hub's session (subscriptions and queued QoS 1 messages
    /// from agents) after its connection drops (default 5 min).
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.0.session_expiry = expiry;
        self
    }

    /// Turns heartbeats of managed agents into samples taken by `sink` (default: none).
    pub fn sample_sink(mut self, sink: Arc<dyn SampleSink>) -> Self {
        self.0.sample_sink = Some(sink);
        self
    }

    /// Turns events of managed agents into log records (product `agent`, service `agent:<id>`,
    /// the agent's project) written to `sink` (default: none).
    pub fn log_sink(mut self, sink: Arc<dyn ecp_telemetry::LogSink>) -> Self {
        self.0.log_sink = Some(sink);
        self
    }

    /// Counts messages and rejections into the control plane's own `metrics` (default: none).
    pub fn metrics(mut self, metrics: ControlPlaneMetrics) -> Self {
        self.0.metrics = Some(metrics);
        self
    }

    /// How long the hub trusts what it looked up about an agent's project for its samples
    /// (default 30 s): a manage, transfer or unmanage done elsewhere shows within this long, or
    /// at once after [`AgentHub::forget_scope`] or the agent's next hello.
    pub fn scope_ttl(mut self, ttl: Duration) -> Self {
        self.0.scope_ttl = ttl;
        self
    }

    /// The most unmanaged agents the store holds before hellos of agents never seen are dropped
    /// and counted ([`HubStats::refused_hellos`]) (default 10,000). An agent with credentials is
    /// known before it connects, so the cap stops only clients of a broker that lets anyone in
    /// from filling the store; agents already known always say hello.
    ///
    /// [`HubStats::refused_hellos`]: super::HubStats::refused_hellos
    pub fn max_unmanaged_agents(mut self, n: u64) -> Self {
        self.0.max_unmanaged_agents = n;
        self
    }

    /// The settings.
    ///
    /// # Errors
    /// `InvalidInput` for a hub id or shared group that is not 1 to 64 characters of
    /// `A-Z a-z 0-9 _ -`, or a zero `missed_heartbeats`, `max_pending` or `request_timeout`.
    pub fn build(self) -> Result<AgentHubConfig> {
        let c = self.0;
        check_segment("hub id", &c.hub_id, 64)?;
        if let Some(g) = &c.shared_group {
            check_segment("shared group", g, 64)?;
        }
        if c.missed_heartbeats == 0 || c.max_pending == 0 || c.request_timeout.is_zero() {
            return Err(Error::Core(ecp_core::Error::invalid("hub", "missed_heartbeats, max_pending and request_timeout must not be 0")));
        }
        Ok(c)
    }
}
