//! The settings of the Docker cluster backend and their builder.

use std::time::Duration;

use ecp_hosting::docker::DockerAddress;

use crate::error::{Error, Result};

/// The configuration of a [`DockerClusterDriver`](super::DockerClusterDriver). Build with [`DockerClusterConfig::builder`];
/// `build()` validates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerClusterConfig {
    pub(super) address: DockerAddress,
    pub(super) request_timeout: Duration,
    pub(super) stop_timeout: Duration,
    pub(super) ready_timeout: Duration,
    pub(super) settle: Duration,
}

impl DockerClusterConfig {
    /// A builder for the engine at `address`, starting from the defaults: requests of at most
    /// 60 s, 30 s for a node to stop, 60 s for a re-created node to run, which must then stay
    /// running 2 s.
    pub fn builder(address: DockerAddress) -> DockerClusterConfigBuilder {
        DockerClusterConfigBuilder(DockerClusterConfig {
            address,
            request_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(60),
            settle: Duration::from_secs(2),
        })
    }

    /// The engine.
    pub fn address(&self) -> &DockerAddress {
        &self.address
    }

    /// How long a request to the engine may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How long a node has to stop before it is killed.
    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout
    }

    /// How long a re-created node has to run before the change is rolled back.
    pub fn ready_timeout(&self) -> Duration {
        self.ready_timeout
    }

    /// How long a re-created node must stay running to count.
    pub fn settle(&self) -> Duration {
        self.settle
    }
}

/// Builds a [`DockerClusterConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct DockerClusterConfigBuilder(DockerClusterConfig);

impl DockerClusterConfigBuilder {
    /// How long a request to the engine may take (default 60 s; positive, counted in whole
    /// seconds, at least one).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.0.request_timeout = t;
        self
    }

    /// How long a node has to stop before it is killed (default 30 s; whole seconds, 0 kills at
    /// once).
    pub fn stop_timeout(mut self, t: Duration) -> Self {
        self.0.stop_timeout = t;
        self
    }

    /// How long a re-created node has to run before the change is rolled back (default 60 s;
    /// positive).
    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.0.ready_timeout = t;
        self
    }

    /// How long a re-created node must stay running to count (default 2 s; shorter than the
    /// ready timeout).
    pub fn settle(mut self, t: Duration) -> Self {
        self.0.settle = t;
        self
    }

    /// The configuration.
    ///
    /// # Errors
    /// `InvalidInput` for an empty address or file path, a zero request or ready timeout, or a
    /// settle time not shorter than it.
    pub fn build(self) -> Result<DockerClusterConfig> {
        let c = self.0;
        c.address.validate()?;
        if c.request_timeout.is_zero() || c.ready_timeout.is_zero() || c.settle >= c.ready_timeout {
            return Err(Error::invalid("docker config", "timeouts must be positive and settle shorter than ready_timeout"));
        }
        Ok(c)
    }
}
