//! The stored form of edge services: their kind, how they are managed, their credentials, tags and
//! health. Drivers, adapters and fleet operations are `ecp-edge`'s.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{EdgeServiceId, ProjectId};

/// The product an edge service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EdgeKind {
    /// NeuronEX 3.x (`:8085`, Neuron under `/api/neuron`, eKuiper under `/api/ekuiper`).
    NeuronEx,
    /// Standalone Neuron 2.x (`:7000`, `/api/v2`).
    Neuron,
    /// eKuiper (`:9081`).
    Ekuiper,
    /// NanoMQ (`:8081`, `/api/v4`).
    NanoMq,
    /// Anything else with an HTTP endpoint.
    Custom,
}

impl EdgeKind {
    /// Every kind.
    pub const ALL: [EdgeKind; 5] = [EdgeKind::NeuronEx, EdgeKind::Neuron, EdgeKind::Ekuiper, EdgeKind::NanoMq, EdgeKind::Custom];

    /// The stable name (`"neuronex"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EdgeKind::NeuronEx => "neuronex",
            EdgeKind::Neuron => "neuron",
            EdgeKind::Ekuiper => "ekuiper",
            EdgeKind::NanoMq => "nanomq",
            EdgeKind::Custom => "custom",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The product's API `category` code (1 eKuiper, 2 Neuron, 3 NanoMQ, 4 NeuronEX, 99 custom).
    pub const fn category(self) -> u8 {
        match self {
            EdgeKind::Ekuiper => 1,
            EdgeKind::Neuron => 2,
            EdgeKind::NanoMq => 3,
            EdgeKind::NeuronEx => 4,
            EdgeKind::Custom => 99,
        }
    }

    /// The kind of a product `category` code.
    pub fn from_category(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.category() == code)
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the platform reaches an edge service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ManagementMode {
    /// Hosted: a container the platform runs on a Docker host.
    Docker,
    /// Hosted: a Deployment the platform runs on Kubernetes.
    Kubernetes,
    /// Managed: the platform calls the service's own HTTP API.
    Direct,
    /// Managed: an edge agent next to the service, over MQTT.
    Agent,
}

impl ManagementMode {
    /// Every mode.
    pub const ALL: [ManagementMode; 4] =
        [ManagementMode::Docker, ManagementMode::Kubernetes, ManagementMode::Direct, ManagementMode::Agent];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ManagementMode::Docker => "docker",
            ManagementMode::Kubernetes => "kubernetes",
            ManagementMode::Direct => "direct",
            ManagementMode::Agent => "agent",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the platform runs the service (and so can install, upgrade, start and stop it).
    pub const fn is_hosted(self) -> bool {
        matches!(self, ManagementMode::Docker | ManagementMode::Kubernetes)
    }
}

impl fmt::Display for ManagementMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an edge service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeStatus {
    /// Its last probe answered.
    Online,
    /// It missed the configured number of probes in a row.
    Offline,
    /// Not probed yet.
    Unknown,
}

impl EdgeStatus {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EdgeStatus::Online => "online",
            EdgeStatus::Offline => "offline",
            EdgeStatus::Unknown => "unknown",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        [EdgeStatus::Online, EdgeStatus::Offline, EdgeStatus::Unknown].into_iter().find(|x| x.as_str() == s)
    }
}

/// How the platform authenticates to an edge service's API. The secrets are redacted in `Debug`.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No authentication (Neuron with auth disabled, eKuiper by default).
    #[default]
    None,
    /// A user name and password (Neuron/NeuronEX login, NanoMQ HTTP Basic).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// A bearer token or JWT the service accepts as is.
    Token(SecretString),
}

impl Credentials {
    /// The stable name of the kind of credentials (`"none"`, `"basic"`, `"token"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::Basic { .. } => "basic",
            Credentials::Token(_) => "token",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"[REDACTED]").finish()
            }
            Credentials::Token(_) => f.write_str("Token([REDACTED])"),
        }
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Credentials::None, Credentials::None) => true,
            (Credentials::Basic { username: a, password: p }, Credentials::Basic { username: b, password: q }) => {
                a == b && p.expose_secret() == q.expose_secret()
            }
            (Credentials::Token(a), Credentials::Token(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        }
    }
}

/// The most tags one edge service may carry.
pub const MAX_TAGS_PER_SERVICE: usize = 10;

/// Checks a tag name: 1–10 characters, each a letter, a digit, `-` or `_`.
///
/// # Errors
/// [`Error::InvalidInput`] on the field `tag`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let n = tag.chars().take(11).count();
    if n == 0 || n > 10 {
        return Err(Error::invalid("tag", "must be 1..=10 characters"));
    }
    if let Some(c) = tag.chars().find(|c| !(c.is_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(Error::invalid("tag", format!("character {c:?} is not a letter, digit, '-' or '_'")));
    }
    Ok(())
}

/// Checks an endpoint: an absolute `http` or `https` URL with a host, at most 2048 bytes, without
/// user info (credentials go in [`Credentials`]).
///
/// # Errors
/// [`Error::InvalidInput`] on the field `endpoint`.
pub fn validate_endpoint(endpoint: &str) -> Result<()> {
    if endpoint.len() > 2048 {
        return Err(Error::invalid("endpoint", "longer than 2048 bytes"));
    }
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(|| Error::invalid("endpoint", "must be an http:// or https:// url"))?;
    if !matches!(scheme, "http" | "https") {
        return Err(Error::invalid("endpoint", "the scheme must be http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(Error::invalid("endpoint", "has no host"));
    }
    if authority.contains('@') {
        return Err(Error::invalid("endpoint", "must not hold credentials"));
    }
    if endpoint.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid("endpoint", "must not contain whitespace or control characters"));
    }
    Ok(())
}

/// An edge service as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeService {
    /// Its id.
    pub id: EdgeServiceId,
    /// Its project.
    pub project: ProjectId,
    /// Its name, unique in the project regardless of case (1–200 characters).
    pub name: String,
    /// The product it runs.
    pub kind: EdgeKind,
    /// How it is reached.
    pub mode: ManagementMode,
    /// Its API's base URL (`http://10.0.0.5:8085`).
    pub endpoint: String,
    /// How to authenticate to it.
    pub credentials: Credentials,
    /// Its tags (at most 10), sorted.
    pub tags: Vec<String>,
    /// The product version it last reported.
    pub version: Option<String>,
    /// Online, offline or unknown.
    pub status: EdgeStatus,
    /// When it last answered.
    pub last_seen: Option<Timestamp>,
    /// Probes missed in a row.
    pub missed_probes: u32,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl EdgeService {
    /// A new, unprobed service; checks its fields.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name, endpoint or tag, or more than 10 tags.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        project: ProjectId,
        name: &str,
        kind: EdgeKind,
        mode: ManagementMode,
        endpoint: &str,
        credentials: Credentials,
        tags: Vec<String>,
        now: Timestamp,
    ) -> Result<Self> {
        crate::tenancy::validate_resource_name(name)?;
        validate_endpoint(endpoint)?;
        let tags = normalize_tags(tags)?;
        Ok(EdgeService {
            id: EdgeServiceId::new(),
            project,
            name: name.to_owned(),
            kind,
            mode,
            endpoint: endpoint.to_owned(),
            credentials,
            tags,
            version: None,
            status: EdgeStatus::Unknown,
            last_seen: None,
            missed_probes: 0,
            created_at: now,
            updated_at: now,
        })
    }
}

/// Checks tags, drops duplicates and sorts them.
///
/// # Errors
/// [`Error::InvalidInput`] for a bad tag or more than [`MAX_TAGS_PER_SERVICE`].
pub fn normalize_tags(mut tags: Vec<String>) -> Result<Vec<String>> {
    for t in &tags {
        validate_tag(t)?;
    }
    tags.sort();
    tags.dedup();
    if tags.len() > MAX_TAGS_PER_SERVICE {
        return Err(Error::invalid("tags", format!("at most {MAX_TAGS_PER_SERVICE} per edge service, got {}", tags.len())));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_categories() {
        for k in EdgeKind::ALL {
            assert_eq!(EdgeKind::parse(k.as_str()), Some(k));
            assert_eq!(EdgeKind::from_category(k.category()), Some(k));
        }
        assert_eq!(EdgeKind::from_category(5), None);
        assert!(ManagementMode::Docker.is_hosted() && !ManagementMode::Direct.is_hosted());
    }

    #[test]
    fn tags_and_endpoints() {
        validate_tag("line-1").unwrap();
        for bad in ["", "elevenchars", "a b", "x;y"] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_tags(vec!["b".into(), "a".into(), "b".into()]).unwrap(), vec!["a", "b"]);
        assert!(normalize_tags((0..11).map(|i| format!("t{i}")).collect()).is_err());
        validate_endpoint("http://10.0.0.5:8085").unwrap();
        validate_endpoint("https://edge.example/api").unwrap();
        for bad in ["ftp://x", "http://", "10.0.0.5:8085", "http://u:p@h", "http://h /x", &format!("http://{}", "a".repeat(3000))] {
            assert!(validate_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials::Basic { username: "admin".into(), password: SecretString::from("hunter2") };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Token(SecretString::from("tok3n"))).contains("tok3n"));
    }
}
