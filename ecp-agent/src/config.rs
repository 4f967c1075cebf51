//! The agent's settings: its id, broker, local services and limits, checked when they are built.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ecp_agent_proto::{AgentId, MqttConfig, Topics};
use ecp_edge_api::{Credentials, EdgeKind};

use crate::error::{Error, Result};

/// One local service the agent fronts. Build it with [`LocalServiceConfig::builder`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LocalServiceConfig {
    pub(crate) name: String,
    pub(crate) kind: EdgeKind,
    pub(crate) url: String,
    pub(crate) credentials: Credentials,
    pub(crate) restart_command: Option<Vec<String>>,
}

impl LocalServiceConfig {
    /// A builder of the service `name` (unique at the agent, 1–200 characters) running `kind`,
    /// reached at `url` (`http://127.0.0.1:8085`, optionally with a path: its `host:port` goes on
    /// the allow-list), without credentials or restart command.
    pub fn builder(name: impl Into<String>, kind: EdgeKind, url: impl Into<String>) -> LocalServiceConfigBuilder {
        LocalServiceConfigBuilder(LocalServiceConfig {
            name: name.into(),
            kind,
            url: url.into(),
            credentials: Credentials::None,
            restart_command: None,
        })
    }

    /// Its name at the agent.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The product it runs.
    pub fn kind(&self) -> EdgeKind {
        self.kind
    }

    /// Where the agent reaches it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How the agent authenticates to it.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The program and arguments that restart it, if any.
    pub fn restart_command(&self) -> Option<&[String]> {
        self.restart_command.as_deref()
    }
}

/// Builds a [`LocalServiceConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct LocalServiceConfigBuilder(LocalServiceConfig);

impl LocalServiceConfigBuilder {
    /// How the agent authenticates to the service when it applies desired items and probes it
    /// (default [`Credentials::None`]; tunnelled requests carry the hub's own credentials).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.0.credentials = credentials;
        self
    }

    /// The program and arguments that restart the service (`["systemctl", "restart",
    /// "neuronex"]`), run without a shell (default none: `restart` is then `unsupported`).
    pub fn restart_command(mut self, command: Vec<String>) -> Self {
        self.0.restart_command = Some(command);
        self
    }

    /// The service.
    ///
    /// # Errors
    /// `InvalidInput` for a name that is empty, over 200 characters, holds control characters or
    /// starts or ends with whitespace; a URL that is not `http(s)://host[:port]` (optionally with
    /// a path); a restart command that names no program.
    pub fn build(self) -> Result<LocalServiceConfig> {
        let s = self.0;
        check_name(&s.name)?;
        origin(&s.url)?;
        if let Some(cmd) = &s.restart_command
            && cmd.first().is_none_or(|p| p.is_empty())
        {
            return Err(Error::invalid("restart_command", format!("of {:?} must name a program", s.name)));
        }
        Ok(s)
    }
}

/// The settings of an [`EdgeAgent`](crate::EdgeAgent). Build them with
/// [`EdgeAgentConfig::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EdgeAgentConfig {
    pub(crate) agent_id: AgentId,
    pub(crate) topics: Topics,
    pub(crate) mqtt: MqttConfig,
    pub(crate) services: Vec<LocalServiceConfig>,
    pub(crate) heartbeat: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) buffer_capacity: usize,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) request_timeout: Duration,
    pub(crate) max_concurrent_commands: usize,
}

impl EdgeAgentConfig {
    /// A builder of the agent `agent_id` (its MQTT client id and a level of its topics) on the
    /// broker `mqtt` (the agent's username is normally its id), with the default settings and no
    /// services.
    pub fn builder(agent_id: AgentId, mqtt: MqttConfig) -> EdgeAgentConfigBuilder {
        EdgeAgentConfigBuilder(EdgeAgentConfig {
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
        })
    }

    /// The agent's id.
    pub fn agent_id(&self) -> &AgentId {
        &self.agent_id
    }

    /// The topic layout.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The broker.
    pub fn mqtt(&self) -> &MqttConfig {
        &self.mqtt
    }

    /// The local services.
    pub fn services(&self) -> &[LocalServiceConfig] {
        &self.services
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// The first reconnect delay's upper bound.
    pub fn backoff_initial(&self) -> Duration {
        self.backoff_initial
    }

    /// The largest reconnect delay.
    pub fn backoff_max(&self) -> Duration {
        self.backoff_max
    }

    /// The messages kept while disconnected.
    pub fn buffer_capacity(&self) -> usize {
        self.buffer_capacity
    }

    /// Where the applied desired items are recorded, if anywhere.
    pub fn state_file(&self) -> Option<&Path> {
        self.state_file.as_deref()
    }

    /// The time for one call to a local service, and for a restart command.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The commands handled at once.
    pub fn max_concurrent_commands(&self) -> usize {
        self.max_concurrent_commands
    }
}

/// Builds an [`EdgeAgentConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct EdgeAgentConfigBuilder(EdgeAgentConfig);

impl EdgeAgentConfigBuilder {
    /// The topic layout (default: prefix `ecp`).
    pub fn topics(mut self, topics: Topics) -> Self {
        self.0.topics = topics;
        self
    }

    /// Adds a local service (default none: the agent then only says hello and heartbeats).
    pub fn service(mut self, service: LocalServiceConfig) -> Self {
        self.0.services.push(service);
        self
    }

    /// The heartbeat interval (default 10 s; 100 ms to 1 h).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.0.heartbeat = interval;
        self
    }

    /// The first reconnect delay's upper bound (default 500 ms; not zero, at most
    /// [`backoff_max`](Self::backoff_max)).
    pub fn backoff_initial(mut self, delay: Duration) -> Self {
        self.0.backoff_initial = delay;
        self
    }

    /// The largest reconnect delay (default 30 s).
    pub fn backoff_max(mut self, delay: Duration) -> Self {
        self.0.backoff_max = delay;
        self
    }

    /// The messages kept while disconnected (default 1,000; at least 1); the oldest are dropped
    /// beyond.
    pub fn buffer_capacity(mut self, messages: usize) -> Self {
        self.0.buffer_capacity = messages;
        self
    }

    /// Where the applied desired items are recorded (default none: they are kept in memory only,
    /// so a restarted agent applies the desired configuration again).
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.state_file = Some(path.into());
        self
    }

    /// The time for one call to a local service, and for a restart command (default 15 s; 1 ms
    /// to 1 h).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.0.request_timeout = timeout;
        self
    }

    /// The commands handled at once (default 16; at least 1); more wait, up to 8 times as many.
    pub fn max_concurrent_commands(mut self, n: usize) -> Self {
        self.0.max_concurrent_commands = n;
        self
    }

    /// The settings.
    ///
    /// # Errors
    /// `InvalidInput` for a duplicate service name (case-insensitive) or `host:port`, a heartbeat
    /// outside 100 ms..=1 h, a zero backoff or one whose initial delay exceeds the largest, a zero
    /// buffer or concurrency, or a request timeout outside 1 ms..=1 h.
    pub fn build(self) -> Result<EdgeAgentConfig> {
        let c = self.0;
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&c.heartbeat) {
            return Err(Error::invalid("heartbeat", "must be 100 ms to 1 hour"));
        }
        if c.backoff_initial.is_zero() || c.backoff_max < c.backoff_initial {
            return Err(Error::invalid("backoff", "backoff_initial must not be zero nor exceed backoff_max"));
        }
        if c.buffer_capacity == 0 || c.max_concurrent_commands == 0 {
            return Err(Error::invalid("agent", "buffer_capacity and max_concurrent_commands must be at least 1"));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&c.request_timeout) {
            return Err(Error::invalid("request_timeout", "must be 1 ms to 1 hour"));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut authorities = std::collections::BTreeSet::new();
        for s in &c.services {
            if !names.insert(s.name.to_lowercase()) {
                return Err(Error::invalid("service", format!("the name {:?} is used twice", s.name)));
            }
            let (_, authority) = origin(&s.url)?;
            if !authorities.insert(authority.clone()) {
                return Err(Error::invalid("service", format!("two services are at {authority}")));
            }
        }
        Ok(c)
    }
}

/// The longest local service name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// Checks a local service's name: 1–200 characters, no control characters, no whitespace at
/// either end (the hub matches services by it).
fn check_name(name: &str) -> Result<()> {
    let n = name.chars().take(MAX_NAME_CHARS + 1).count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(Error::invalid("name", format!("must be 1..={MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err(Error::invalid("name", "must not hold control characters nor start or end with whitespace"));
    }
    Ok(())
}

/// The origin (`http://host:port`) and authority (`host:port`, with the scheme's default port) of
/// a service URL.
pub(crate) fn origin(url: &str) -> Result<(String, String)> {
    let parsed = ecp_http::check_base_url(url).map_err(|e| match e {
        ecp_http::Error::InvalidInput { reason, .. } => Error::invalid("service url", reason),
        other => Error::invalid("service url", other.to_string()),
    })?;
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| Error::invalid("service url", "has no host"))?;
    let port = parsed.port_or_known_default().ok_or_else(|| Error::invalid("service url", "has no port"))?;
    let authority = format!("{host}:{port}");
    Ok((format!("{}://{authority}", parsed.scheme()), authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_authorities() {
        assert_eq!(origin("http://127.0.0.1:8085").unwrap(), ("http://127.0.0.1:8085".into(), "127.0.0.1:8085".into()));
        assert_eq!(origin("https://edge.local/api").unwrap(), ("https://edge.local:443".into(), "edge.local:443".into()));
        assert_eq!(origin("http://[::1]:80/").unwrap().1, "[::1]:80");
        for bad in ["ftp://x", "127.0.0.1:80", "http://u:p@h:1", "http://h:1/?q"] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}
