//! [`DockerNode`], [`DockerDriverConfig`] and their builders.

use std::path::PathBuf;
use std::time::Duration;

use ecp_hosting::docker::DockerAddress;

use crate::direct::DirectDriverConfig;
use crate::error::Result;
use crate::hosted::valid_name;

#[cfg(doc)]
use super::DockerDriver;
#[cfg(doc)]
use crate::hosted::HostedSpec;

/// A Docker host edge services run on. Build it with [`DockerNode::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DockerNode {
    /// Its name (what [`HostedSpec::node`] refers to).
    pub name: String,
    /// Where its engine listens.
    pub address: DockerAddress,
    /// The time one Engine API request may take (default 120 s).
    pub timeout: Duration,
}

impl DockerNode {
    /// A builder for node `name` on the local engine (`/var/run/docker.sock`).
    pub fn builder(name: impl Into<String>) -> DockerNodeBuilder {
        DockerNodeBuilder(DockerNode {
            name: name.into(),
            address: DockerAddress::Socket(PathBuf::from("/var/run/docker.sock")),
            timeout: Duration::from_secs(120),
        })
    }
}

/// Builds a [`DockerNode`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct DockerNodeBuilder(DockerNode);

impl DockerNodeBuilder {
    /// Where the engine listens.
    #[must_use]
    pub fn address(mut self, address: DockerAddress) -> Self {
        self.0.address = address;
        self
    }

    /// The engine's unix socket.
    #[must_use]
    pub fn socket(self, path: impl Into<PathBuf>) -> Self {
        self.address(DockerAddress::socket(path))
    }

    /// The engine over plain TCP (`tcp://host:2375`).
    #[must_use]
    pub fn tcp(self, addr: impl Into<String>) -> Self {
        self.address(DockerAddress::tcp(addr))
    }

    /// The engine over TCP with TLS (`tcp://host:2376`) and a client certificate.
    #[must_use]
    pub fn tls(self, addr: impl Into<String>, ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.address(DockerAddress::tls(addr, ca, cert, key))
    }

    /// The time one request may take (1 s ..= 1 h).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    /// Checks and returns the node.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name, an empty address or path, or a timeout out of range.
    pub fn build(self) -> Result<DockerNode> {
        let n = self.0;
        let invalid = |field: &'static str, why: &str| Err(ecp_core::Error::invalid(field, why.to_owned()).into());
        if !valid_name(&n.name) {
            return invalid("node", "must be 1-128 characters of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&n.timeout) {
            return invalid("timeout", "must be 1 s to 1 h");
        }
        n.address.validate()?;
        Ok(n)
    }
}

/// The settings of a [`DockerDriver`]. Build it with [`DockerDriverConfig::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerDriverConfig {
    /// The nodes, by name.
    pub nodes: Vec<DockerNode>,
    /// How long a new instance may take to answer its probe (default 30 s).
    pub health_timeout: Duration,
    /// The pause between probes of a new instance (default 250 ms).
    pub health_interval: Duration,
    /// How long `stop` waits before it kills (default 10 s).
    pub stop_timeout: Duration,
    /// The network of installs whose spec names none (`None`: the engine's default).
    pub default_network: Option<String>,
    /// Whether an image the node does not have is pulled (default on; off for hosts without a
    /// registry, where a missing image then fails the create check at once).
    pub pull_missing: bool,
    /// The settings of the direct driver that probes, syncs and configures the instances.
    pub direct: DirectDriverConfig,
}

impl DockerDriverConfig {
    /// A builder with no node.
    pub fn builder() -> DockerDriverConfigBuilder {
        DockerDriverConfigBuilder(DockerDriverConfig {
            nodes: Vec::new(),
            health_timeout: Duration::from_secs(30),
            health_interval: Duration::from_millis(250),
            stop_timeout: Duration::from_secs(10),
            default_network: None,
            pull_missing: true,
            direct: DirectDriverConfig::default().timeouts(Duration::from_secs(2), Duration::from_secs(10)),
        })
    }
}

/// Builds a [`DockerDriverConfig`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct DockerDriverConfigBuilder(DockerDriverConfig);

impl DockerDriverConfigBuilder {
    /// Adds a node.
    #[must_use]
    pub fn node(mut self, node: DockerNode) -> Self {
        self.0.nodes.push(node);
        self
    }

    /// How long a new instance may take to answer, and the pause between probes.
    #[must_use]
    pub fn health(mut self, timeout: Duration, interval: Duration) -> Self {
        self.0.health_timeout = timeout;
        self.0.health_interval = interval;
        self
    }

    /// How long `stop` waits before it kills.
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.0.stop_timeout = timeout;
        self
    }

    /// The network of installs whose spec names none.
    #[must_use]
    pub fn default_network(mut self, network: impl Into<String>) -> Self {
        self.0.default_network = Some(network.into());
        self
    }

    /// Whether missing images are pulled.
    #[must_use]
    pub fn pull_missing(mut self, yes: bool) -> Self {
        self.0.pull_missing = yes;
        self
    }

    /// The direct driver's settings.
    #[must_use]
    pub fn direct(mut self, direct: DirectDriverConfig) -> Self {
        self.0.direct = direct;
        self
    }

    /// Checks and returns the config.
    ///
    /// # Errors
    /// `InvalidInput` without a node, for two nodes of one name, a health timeout outside
    /// 1 s..=1 h or an interval outside 10 ms..=the timeout, a stop timeout over 10 min, a bad
    /// network name.
    pub fn build(self) -> Result<DockerDriverConfig> {
        let c = self.0;
        let invalid = |field: &'static str, why: &str| Err(ecp_core::Error::invalid(field, why.to_owned()).into());
        if c.nodes.is_empty() {
            return invalid("nodes", "at least one node is needed");
        }
        let mut names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return invalid("nodes", "node names must be unique");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&c.health_timeout) {
            return invalid("health_timeout", "must be 1 s to 1 h");
        }
        if c.health_interval < Duration::from_millis(10) || c.health_interval > c.health_timeout {
            return invalid("health_interval", "must be 10 ms to the health timeout");
        }
        if c.stop_timeout > Duration::from_secs(600) {
            return invalid("stop_timeout", "must be at most 10 min");
        }
        if c.default_network.as_deref().is_some_and(|n| !valid_name(n)) {
            return invalid("default_network", "not a valid network name");
        }
        Ok(c)
    }
}
