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
    /// The edge agent it is reached through (mode `agent`); `endpoint` is then its URL as the
    /// agent sees it.
    pub agent: Option<AgentId>,
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
            agent: None,
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

impl EdgeService {
    /// Makes the service one reached through `agent` (mode `agent`).
    #[must_use]
    pub fn through_agent(mut self, agent: AgentId) -> Self {
        self.mode = ManagementMode::Agent;
        self.agent = Some(agent);
        self
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

/// Which edge services of a project to pick: every set field must match. Resolved by the store
/// with one query (never by loading every service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSelector {
    /// Carrying every one of these tags.
    #[serde(default)]
    pub all_tags: Vec<String>,
    /// Carrying at least one of these tags.
    #[serde(default)]
    pub any_tags: Vec<String>,
    /// Of one of these kinds.
    #[serde(default)]
    pub kinds: Vec<EdgeKind>,
    /// In one of these modes.
    #[serde(default)]
    pub modes: Vec<ManagementMode>,
    /// In one of these states.
    #[serde(default)]
    pub statuses: Vec<EdgeStatus>,
    /// Reporting one of these versions (exactly, or a prefix ending in `*`: `"3.6*"`).
    #[serde(default)]
    pub versions: Vec<String>,
    /// Whose name matches this glob (`*` any run, `?` one character; case-insensitive).
    #[serde(default)]
    pub name: Option<String>,
    /// Whose endpoint contains this.
    #[serde(default)]
    pub endpoint_contains: Option<String>,
    /// Only these services.
    #[serde(default)]
    pub ids: Option<Vec<EdgeServiceId>>,
}

impl EdgeSelector {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Services carrying every one of `tags`.
    pub fn with_tags<I: IntoIterator<Item = S>, S: Into<String>>(tags: I) -> Self {
        Self { all_tags: tags.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// Checks the sizes and the tags.
    ///
    /// # Errors
    /// [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        for t in self.all_tags.iter().chain(&self.any_tags) {
            validate_tag(t)?;
        }
        if self.all_tags.len() + self.any_tags.len() > 100 || self.versions.len() > 100 {
            return Err(Error::invalid("selector", "at most 100 tags and 100 versions"));
        }
        if self.versions.iter().any(|v| v.is_empty() || v.len() > 64) {
            return Err(Error::invalid("selector.versions", "1..=64 bytes each"));
        }
        if self.name.as_ref().is_some_and(|n| n.is_empty() || n.chars().count() > 200) {
            return Err(Error::invalid("selector.name", "1..=200 characters"));
        }
        if self.endpoint_contains.as_ref().is_some_and(|e| e.len() > 2048) {
            return Err(Error::invalid("selector.endpoint_contains", "longer than 2048 bytes"));
        }
        if self.ids.as_ref().is_some_and(|ids| ids.len() > 10_000) {
            return Err(Error::invalid("selector.ids", "at most 10000"));
        }
        Ok(())
    }
}

/// What a health probe of one service found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Whether it answered.
    pub answered: bool,
    /// The version it reported, if it answered with one.
    pub version: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// Limits of edge fleets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EdgeLimits {
    /// Tags defined in one project (the product's 100).
    pub max_tags_per_project: u64,
    /// Probes missed in a row before a service is offline.
    pub offline_after_misses: u32,
    /// Edge services registered in the whole installation (the license's `max_edge_services`;
    /// unlimited by default). Checked in the transaction that registers them.
    pub max_edge_services: u64,
    /// Tag points over all edge services (the license's `max_tag_points`; unlimited by default).
    /// Checked before a configuration delivery that adds south device tags starts.
    pub max_tag_points: u64,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self { max_tags_per_project: 100, offline_after_misses: 3, max_edge_services: u64::MAX, max_tag_points: u64::MAX }
    }
}

impl EdgeLimits {
    /// Limits with `max_tags_per_project` tags and offline after `misses` missed probes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for zeros.
    pub fn new(max_tags_per_project: u64, offline_after_misses: u32) -> Result<Self> {
        if max_tags_per_project == 0 || offline_after_misses == 0 {
            return Err(Error::invalid("edge limits", "must be positive"));
        }
        Ok(Self { max_tags_per_project, offline_after_misses, max_edge_services: u64::MAX, max_tag_points: u64::MAX })
    }

    /// With the license's edge service count.
    #[must_use]
    pub fn with_license(mut self, license: &crate::license::License) -> Self {
        self.max_edge_services = license.max_edge_services;
        self.max_tag_points = license.max_tag_points;
        self
    }
}

/// A tag of a project and how many services carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagUsage {
    /// The tag.
    pub name: String,
    /// Services carrying it.
    pub services: u64,
}

/// One version of a configuration template, as stored. What the body means is `ecp-edge`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// The template (the same across versions).
    pub id: uuid::Uuid,
    /// Its version, from 1.
    pub version: u32,
    /// Its project.
    pub project: ProjectId,
    /// Its name, unique in the project.
    pub name: String,
    /// Its kind (`"neuron_south_device"`, `"ekuiper_rule"` ...).
    pub kind: String,
    /// The template itself.
    pub body: serde_json::Value,
    /// Who saved this version.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// An edge agent's id: 1–64 characters of `A-Z a-z 0-9 _ -`. It is also the agent's MQTT username
/// and client id and a level of its topics, so it can never hold a topic wildcard or separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    /// The longest id.
    pub const MAX_LEN: usize = 64;

    /// Checks `id`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when it is empty, too long, or holds another character.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() || id.len() > Self::MAX_LEN {
            return Err(Error::invalid("agent id", format!("must be 1 to {} characters", Self::MAX_LEN)));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(Error::invalid("agent id", "may hold only A-Z, a-z, 0-9, '_' and '-'"));
        }
        Ok(AgentId(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AgentId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        AgentId::new(value)
    }
}

impl From<AgentId> for String {
    fn from(value: AgentId) -> Self {
        value.0
    }
}

impl std::str::FromStr for AgentId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AgentId::new(s)
    }
}

/// An edge agent as stored: unmanaged until an admin manages it into a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Its id.
    pub id: AgentId,
    /// Its project once managed.
    pub project: Option<ProjectId>,
    /// The name it was managed under.
    pub name: Option<String>,
    /// Whether it is connected, as last known.
    pub online: bool,
    /// Its software version, from its last hello.
    pub version: Option<String>,
    /// Its last hello (services it fronts, heartbeat interval ...).
    pub hello: serde_json::Value,
    /// Whether broker credentials were issued to it.
    pub has_secret: bool,
    /// When it last said anything.
    pub last_seen: Option<Timestamp>,
    /// When it was first seen or provisioned.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// Which agents to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Of this project.
    pub project: Option<ProjectId>,
    /// Only managed (`Some(true)`) or unmanaged (`Some(false)`) agents.
    pub managed: Option<bool>,
    /// Only online (`Some(true)`) or offline agents.
    pub online: Option<bool>,
}

/// One item of an agent's desired configuration, as stored; what `change` means is `ecp-edge`'s.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRecord {
    /// The agent.
    pub agent: AgentId,
    /// What it configures (`stream:demo`).
    pub key: String,
    /// Its version (increasing per agent).
    pub version: u64,
    /// The local service it applies to (`host:port`).
    pub target: String,
    /// The change.
    pub change: serde_json::Value,
    /// The version the agent last reported for this key, and whether it was applied.
    pub applied: Option<(u64, bool)>,
    /// The agent's answer for that version.
    pub detail: Option<serde_json::Value>,
    /// When it was last set.
    pub updated_at: Timestamp,
}

impl DesiredRecord {
    /// Whether the agent applied this version (or a later one) successfully.
    pub fn converged(&self) -> bool {
        matches!(self.applied, Some((v, true)) if v >= self.version)
    }
}

/// What [`AgentStore::put_desired`](crate::store::AgentStore::put_desired) stored: the item as it
/// now is, and the agent's whole desired configuration read after the write (what to publish).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPut {
    /// The item under the key: the new version, the same item when target and change were already
    /// stored, or a newer version written concurrently (which supersedes this one).
    pub item: DesiredRecord,
    /// The agent's desired items, by key, this one included.
    pub all: Vec<DesiredRecord>,
}

/// A desired item to set, for [`AgentStore::put_desired_many`](crate::store::AgentStore::put_desired_many).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredChange {
    /// The agent.
    pub agent: AgentId,
    /// What it configures: 1 to 200 bytes.
    pub key: String,
    /// The local service it applies to (`host:port`).
    pub target: String,
    /// The change.
    pub change: serde_json::Value,
}

/// What an agent reported for one desired item, for
/// [`AgentStore::record_reports`](crate::store::AgentStore::record_reports).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedItem {
    /// The agent.
    pub agent: AgentId,
    /// The item's key.
    pub key: String,
    /// The version it reported.
    pub version: u64,
    /// Whether it was applied.
    pub ok: bool,
    /// The service's answer, or why it failed.
    pub detail: serde_json::Value,
}
