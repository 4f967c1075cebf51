//! Hosted edge services: instances the platform runs itself (feature `docker`: containers on Docker
//! hosts, see [`docker`]).
//!
//! A hosted service is an [`EdgeService`](ecp_core::edge::EdgeService) of mode `docker` plus a [`HostedSpec`]: the image, the
//! port its API listens on inside the container, environment, command arguments, restart policy,
//! network, and the Docker host (node) it runs on. The spec is given to the driver at install
//! ([`DockerDriver::install_with`](docker::DockerDriver::install_with), or registered beforehand
//! with [`DockerDriver::set_spec`](docker::DockerDriver::set_spec) for the
//! [`EdgeDriver::install`](crate::driver::EdgeDriver::install) of the trait), and kept by the
//! instance itself (labels and config of the container), so a restarted process finds, upgrades
//! and removes what an earlier one installed. ecp-core's schema is unchanged: the stored endpoint
//! of a hosted service is a placeholder (`http://<container name>:<port>`); the driver resolves
//! the real one (`http://<container ip>:<port>` on the spec's network) on every call.
//!
//! Batch installs and upgrades run as tasks of the task engine ([`HostedTasks`]), under rollout
//! policies like configuration deliveries.

#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "docker")]
mod tasks;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Result;
#[cfg(feature = "docker")]
pub use tasks::{BatchInstall, HostedTasks, INSTALL_KIND, UPGRADE_KIND};

/// The label naming the project of a hosted instance.
pub const LABEL_PROJECT: &str = "io.ecp.project";
/// The label naming the edge service of a hosted instance.
pub const LABEL_SERVICE: &str = "io.ecp.service";
/// The label naming who manages the instance (`ecp-rs`).
pub const LABEL_MANAGED_BY: &str = "io.ecp.managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "ecp-rs";
/// The label holding the instance's final name (a new instance runs under a temporary name while
/// it is checked during an upgrade).
pub const LABEL_NAME: &str = "io.ecp.name";
/// The label holding the API port inside the instance.
pub const LABEL_PORT: &str = "io.ecp.port";
/// The label holding the network the API is reached on.
pub const LABEL_NETWORK: &str = "io.ecp.network";
/// The label holding the names of the environment variables the spec set (comma-separated), so
/// that an upgrade carries exactly those over to the new image.
pub const LABEL_ENV_KEYS: &str = "io.ecp.env-keys";
/// The label holding the spec's command arguments (JSON), when it set any.
pub const LABEL_ARGS: &str = "io.ecp.args";
/// The label holding the host port the API is published on, when it is.
pub const LABEL_PUBLISH: &str = "io.ecp.publish";

/// When a stopped instance is started again by its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Never.
    No,
    /// Always, also after the host restarts.
    Always,
    /// Always, unless it was stopped on purpose (the default).
    #[default]
    UnlessStopped,
    /// When it exits with a non-zero status, at most `max_retries` times (0: no limit).
    OnFailure {
        /// The most restarts (0: no limit).
        max_retries: u32,
    },
}

/// How to run a hosted service. Build it with [`HostedSpec::builder`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostedSpec {
    /// The image (`repo:tag`).
    pub image: String,
    /// The port the service's API listens on inside the instance.
    pub port: u16,
    /// `http` or `https`: the scheme of the API.
    pub scheme: String,
    /// Environment variables. Their values may be secrets: they are never shown by `Debug`.
    pub env: BTreeMap<String, String>,
    /// Command arguments (`None`: the image's own).
    pub args: Option<Vec<String>>,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// The network the instance joins and is reached on (`None`: the host's default).
    pub network: Option<String>,
    /// A host port to publish the API port on (`None`: not published). An upgrade of a
    /// published service stops the old instance before it starts the new one (they cannot share
    /// the host port); otherwise both run while the new one is checked.
    pub publish: Option<u16>,
    /// The node (Docker host) it runs on (`None`: the driver's only or first node).
    pub node: Option<String>,
    /// The instance's name (`None`: derived from the service's name and id).
    pub container_name: Option<String>,
}

impl fmt::Debug for HostedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostedSpec")
            .field("image", &self.image)
            .field("port", &self.port)
            .field("scheme", &self.scheme)
            .field("env", &self.env.keys().map(|k| (k, "<redacted>")).collect::<BTreeMap<_, _>>())
            .field("args", &self.args)
            .field("restart", &self.restart)
            .field("network", &self.network)
            .field("publish", &self.publish)
            .field("node", &self.node)
            .field("container_name", &self.container_name)
            .finish()
    }
}

impl HostedSpec {
    /// A builder for `image` serving its API on `port`.
    pub fn builder(image: impl Into<String>, port: u16) -> HostedSpecBuilder {
        HostedSpecBuilder(HostedSpec {
            image: image.into(),
            port,
            scheme: "http".into(),
            env: BTreeMap::new(),
            args: None,
            restart: RestartPolicy::default(),
            network: None,
            publish: None,
            node: None,
            container_name: None,
        })
    }

    /// Checks the spec.
    ///
    /// # Errors
    /// `InvalidInput` for an empty or odd image reference, port 0, a scheme other than http or
    /// https, an environment variable name that is empty or holds `=`, a bad network, node or
    /// container name.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, why: &str| Err(ecp_core::Error::invalid(field, why.to_owned()).into());
        if !valid_image(&self.image) {
            return invalid("image", "must be a non-empty image reference without whitespace (at most 512 bytes)");
        }
        if self.port == 0 || self.publish == Some(0) {
            return invalid("port", "must not be 0");
        }
        if self.scheme != "http" && self.scheme != "https" {
            return invalid("scheme", "must be http or https");
        }
        if self.env.keys().any(|k| k.is_empty() || k.contains('=') || k.contains(',') || k.chars().any(char::is_control)) {
            return invalid("env", "names must be non-empty, without '=', ',' or control characters");
        }
        if self.env.values().any(|v| v.contains('\0')) {
            return invalid("env", "values must not contain NUL");
        }
        if self.args.as_ref().is_some_and(|a| a.iter().any(|a| a.contains('\0'))) {
            return invalid("args", "must not contain NUL");
        }
        for (field, name) in [("network", &self.network), ("node", &self.node), ("container_name", &self.container_name)] {
            if name.as_deref().is_some_and(|n| !valid_name(n)) {
                return invalid(field, "must be 1-128 characters of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit");
            }
        }
        Ok(())
    }
}

/// Builds a [`HostedSpec`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct HostedSpecBuilder(HostedSpec);

impl HostedSpecBuilder {
    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.env.insert(name.into(), value.into());
        self
    }

    /// Sets the command arguments.
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.0.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the restart policy.
    #[must_use]
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.0.restart = policy;
        self
    }

    /// Joins `network` and reaches the API on it.
    #[must_use]
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.0.network = Some(network.into());
        self
    }

    /// Publishes the API port on `host_port`.
    #[must_use]
    pub fn publish(mut self, host_port: u16) -> Self {
        self.0.publish = Some(host_port);
        self
    }

    /// Runs on `node`.
    #[must_use]
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.0.node = Some(node.into());
        self
    }

    /// Names the instance.
    #[must_use]
    pub fn container_name(mut self, name: impl Into<String>) -> Self {
        self.0.container_name = Some(name.into());
        self
    }

    /// Uses `https` for the API.
    #[must_use]
    pub fn https(mut self) -> Self {
        self.0.scheme = "https".into();
        self
    }

    /// Checks and returns the spec.
    ///
    /// # Errors
    /// As [`HostedSpec::validate`].
    pub fn build(self) -> Result<HostedSpec> {
        self.0.validate()?;
        Ok(self.0)
    }
}

/// Whether `image` looks like an image reference (Docker checks the rest).
pub(crate) fn valid_image(image: &str) -> bool {
    !image.is_empty() && image.len() <= 512 && !image.starts_with('-') && !image.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `name` is a valid Docker object name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128).
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg_attr(not(feature = "docker"), allow(dead_code))]
/// A container name from a service name: invalid characters become `-`, at most 48 of them, then
/// `-` and the last 8 hex digits of the id (names are unique on a host; ids make them so).
pub(crate) fn container_name_for(name: &str, id: &str) -> String {
    let mut base: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).take(48).collect();
    if !base.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        base.insert_str(0, "ecp");
    }
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    format!("{base}-{}", &hex[hex.len().saturating_sub(8)..])
}

/// Where a hosted instance is: its node, container, image and API endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostedInstance {
    /// The node (Docker host).
    pub node: String,
    /// The container id.
    pub container_id: String,
    /// The container name.
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// The API's base URL (`http://<container ip>:<port>`), while it runs.
    pub endpoint: Option<String>,
}

/// The run state of a hosted instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Being restarted by its restart policy.
    Restarting,
    /// Exited (see [`HostedStatus::exit_code`]).
    Exited,
    /// Paused.
    Paused,
    /// Being removed.
    Removing,
    /// Dead (the host could not stop or remove it).
    Dead,
    /// A state this crate does not know.
    Unknown,
}

/// What a hosted instance is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostedStatus {
    /// Where it is.
    pub instance: HostedInstance,
    /// Its run state.
    pub state: RunState,
    /// Its last exit status (meaningful once it exited).
    pub exit_code: Option<i64>,
    /// How often its host restarted it.
    pub restart_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_validate_and_hide_env_values() {
        let spec = HostedSpec::builder("emqx/neuronex:3.6.0", 8085)
            .env("PASSWORD", "sentinel-secret")
            .args(["--x"])
            .network("edge-net")
            .restart(RestartPolicy::OnFailure { max_retries: 3 })
            .build()
            .unwrap();
        let debug = format!("{spec:?}");
        assert!(debug.contains("PASSWORD") && !debug.contains("sentinel-secret"), "{debug}");
        assert!(HostedSpec::builder("", 1).build().is_err());
        assert!(HostedSpec::builder("a b", 1).build().is_err());
        assert!(HostedSpec::builder("img", 0).build().is_err());
        assert!(HostedSpec::builder("img", 1).env("A=B", "x").build().is_err());
        assert!(HostedSpec::builder("img", 1).network("-bad").build().is_err());
        assert!(HostedSpec::builder("img", 1).container_name("ok_name.1-x").build().is_ok());
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(serde_json::from_value::<HostedSpec>(json).unwrap(), spec);
    }

    #[test]
    fn container_names_are_valid() {
        let n = container_name_for("Line 1/Press #2", "0190f3c2-1111-7000-8000-00000000abcd");
        assert_eq!(n, "Line-1-Press--2-0000abcd");
        assert!(valid_name(&n));
        assert!(valid_name(&container_name_for("-x", "ab")));
        assert!(valid_name(&container_name_for(&"é".repeat(300), "0")));
    }
}
