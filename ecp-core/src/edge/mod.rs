//! The stored form of edge services: their kind, how they are managed, their credentials, tags and
//! health. Drivers, adapters and fleet operations are `ecp-edge`'s. The product's vocabulary
//! ([`EdgeKind`], [`Credentials`]) is `ecp-edge-api`'s and the agent id ([`AgentId`]) is the
//! agent protocol's (`ecp-agent-proto`), re-exported here.

use std::fmt;

pub use ecp_agent_proto::AgentId;
pub use ecp_edge_api::{Credentials, EdgeKind};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{EdgeServiceId, ProjectId};

mod service;

pub use service::{EdgeService, EdgeServiceBuilder};

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
    fn moving_an_endpoint_to_another_origin_drops_its_credentials() {
        let secret = || Credentials::Basic { username: "admin".into(), password: "0000".into() };
        let mut s = EdgeService::builder(ProjectId::new(), "nx", EdgeKind::NeuronEx, "http://10.0.0.5:8085")
            .credentials(secret())
            .build(Timestamp::now())
            .unwrap();
        assert!(!s.set_endpoint("http://10.0.0.5:8085/api/", None).unwrap(), "same origin");
        assert!(matches!(s.credentials, Credentials::Basic { .. }));
        assert!(s.set_endpoint("http://10.0.0.5:8086", None).unwrap());
        assert_eq!(s.credentials, Credentials::None, "a new port drops the password");
        s.set_credentials(secret());
        assert!(s.set_endpoint("http://evil.example:8086", Some(secret())).unwrap());
        assert!(matches!(s.credentials, Credentials::Basic { .. }), "credentials given with the change stay");
        assert!(s.set_endpoint("https://evil.example:8086", None).unwrap(), "a scheme change is a move");
        assert_eq!(s.credentials, Credentials::None);
        assert!(s.set_endpoint("not a url", None).is_err());
        assert_eq!(s.endpoint, "https://evil.example:8086", "a refused change changes nothing");
        s.set_endpoint("https://evil.example", Some(secret())).unwrap();
        assert!(!s.set_endpoint("https://evil.example:443/", None).unwrap(), "the default port is the same origin");
        assert!(matches!(s.credentials, Credentials::Basic { .. }));
    }

    #[test]
    fn modes() {
        assert!(ManagementMode::Docker.is_hosted() && !ManagementMode::Direct.is_hosted());
        for m in ManagementMode::ALL {
            assert_eq!(ManagementMode::parse(m.as_str()), Some(m));
        }
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
    fn edge_limits() {
        let d = EdgeLimits::builder().build().unwrap();
        assert_eq!(d, EdgeLimits::default());
        assert_eq!((d.max_tags_per_project(), d.offline_after_misses()), (100, 3));
        assert_eq!((d.max_edge_services(), d.max_tag_points()), (u64::MAX, u64::MAX));
        for bad in [EdgeLimits::builder().max_tags_per_project(0), EdgeLimits::builder().offline_after_misses(0)] {
            match bad.build() {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "edge limits"),
                other => panic!("{other:?}"),
            }
        }
        let l = EdgeLimits::builder().max_edge_services(0).max_tag_points(20).build().unwrap();
        assert_eq!((l.max_edge_services(), l.max_tag_points()), (0, 20));
        let json = serde_json::to_value(l).unwrap();
        assert_eq!(serde_json::from_value::<EdgeLimits>(json.clone()).unwrap(), l);
        let mut zero = json;
        zero["offline_after_misses"] = 0.into();
        assert!(serde_json::from_value::<EdgeLimits>(zero).is_err());
    }
}

/// Which edge services of a project to pick: every set field must match. Resolved by the store
/// with one query (never by loading every service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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

    /// Also carrying at least one of `tags`.
    #[must_use]
    pub fn any_tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.any_tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Only of these kinds.
    #[must_use]
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = EdgeKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Only in these modes.
    #[must_use]
    pub fn modes(mut self, modes: impl IntoIterator<Item = ManagementMode>) -> Self {
        self.modes = modes.into_iter().collect();
        self
    }

    /// Only in these states.
    #[must_use]
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = EdgeStatus>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Only reporting one of these versions (exact, or a prefix ending in `*`).
    #[must_use]
    pub fn versions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, versions: I) -> Self {
        self.versions = versions.into_iter().map(Into::into).collect();
        self
    }

    /// Only those whose name matches the glob (`*`, `?`; case-insensitive).
    #[must_use]
    pub fn name(mut self, glob: impl Into<String>) -> Self {
        self.name = Some(glob.into());
        self
    }

    /// Only those whose endpoint contains `text`.
    #[must_use]
    pub fn endpoint_contains(mut self, text: impl Into<String>) -> Self {
        self.endpoint_contains = Some(text.into());
        self
    }

    /// Only these services.
    #[must_use]
    pub fn ids(mut self, ids: impl IntoIterator<Item = EdgeServiceId>) -> Self {
        self.ids = Some(ids.into_iter().collect());
        self
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

/// Limits of edge fleets. Build with [`EdgeLimits::builder`]; `build()` validates. The default is
/// what `EdgeLimits::builder().build()` gives: 100 tags per project, offline after 3 missed probes,
/// no licensed limit on edge services or tag points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EdgeLimitsWire")]
#[non_exhaustive]
pub struct EdgeLimits {
    pub(crate) max_tags_per_project: u64,
    pub(crate) offline_after_misses: u32,
    pub(crate) max_edge_services: u64,
    pub(crate) max_tag_points: u64,
    /// When the license the counts come from is valid: from, until (exclusive).
    pub(crate) license_window: Option<(Timestamp, Timestamp)>,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            max_tags_per_project: 100,
            offline_after_misses: 3,
            max_edge_services: u64::MAX,
            max_tag_points: u64::MAX,
            license_window: None,
        }
    }
}

impl EdgeLimits {
    /// A builder starting from the defaults: 100 tags per project (the product's), offline after 3
    /// missed probes, unlimited edge services and tag points.
    pub fn builder() -> EdgeLimitsBuilder {
        EdgeLimitsBuilder(Self::default())
    }

    /// Tags defined in one project.
    pub fn max_tags_per_project(&self) -> u64 {
        self.max_tags_per_project
    }

    /// Probes missed in a row before a service is offline.
    pub fn offline_after_misses(&self) -> u32 {
        self.offline_after_misses
    }

    /// Edge services registered in the whole installation (`u64::MAX`: unlimited). Checked in the
    /// transaction that registers them.
    pub fn max_edge_services(&self) -> u64 {
        self.max_edge_services
    }

    /// Tag points over all edge services (`u64::MAX`: unlimited). Checked before a configuration
    /// delivery that adds south device tags starts.
    pub fn max_tag_points(&self) -> u64 {
        self.max_tag_points
    }

    /// When the license behind the counts is valid (from, until), if the counts come from one.
    pub fn license_window(&self) -> Option<(Timestamp, Timestamp)> {
        self.license_window
    }

    /// Checks that what draws on the license may happen at `now`: always without a license,
    /// otherwise only inside its validity, as clusters' draws are checked. Registering edge
    /// services and delivering tag points call it.
    ///
    /// # Errors
    /// `InvalidInput` on the field `license` naming why (not yet valid, expired).
    pub fn check_license(&self, now: Timestamp) -> Result<()> {
        match self.license_window {
            Some((starts, _)) if now < starts => Err(Error::invalid("license", format!("not valid before {starts}"))),
            Some((_, expires)) if now >= expires => Err(Error::invalid("license", format!("expired at {expires}"))),
            _ => Ok(()),
        }
    }
}

/// Builds [`EdgeLimits`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct EdgeLimitsBuilder(EdgeLimits);

impl EdgeLimitsBuilder {
    /// Tags defined in one project (default 100, the product's; at least 1).
    pub fn max_tags_per_project(mut self, n: u64) -> Self {
        self.0.max_tags_per_project = n;
        self
    }

    /// Probes missed in a row before a service is offline (default 3; at least 1).
    pub fn offline_after_misses(mut self, misses: u32) -> Self {
        self.0.offline_after_misses = misses;
        self
    }

    /// Edge services registered in the whole installation (default `u64::MAX`, unlimited; 0
    /// allows none). Checked in the transaction that registers them.
    pub fn max_edge_services(mut self, n: u64) -> Self {
        self.0.max_edge_services = n;
        self
    }

    /// Tag points over all edge services (default `u64::MAX`, unlimited; 0 allows none). Checked
    /// before a configuration delivery that adds south device tags starts.
    pub fn max_tag_points(mut self, n: u64) -> Self {
        self.0.max_tag_points = n;
        self
    }

    /// The license's edge service and tag point counts, as [`max_edge_services`](Self::max_edge_services)
    /// and [`max_tag_points`](Self::max_tag_points), and its validity: once it expires, nothing
    /// new draws on it (default: no license, unlimited).
    pub fn license(mut self, license: &crate::license::License) -> Self {
        self.0.license_window = Some((license.starts_at, license.expires_at));
        self.max_edge_services(license.max_edge_services).max_tag_points(license.max_tag_points)
    }

    /// The limits.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on the field `edge limits` for zero tags per project or zero missed
    /// probes.
    pub fn build(self) -> Result<EdgeLimits> {
        let l = self.0;
        if l.max_tags_per_project == 0 {
            return Err(Error::invalid("edge limits", "max_tags_per_project must be positive"));
        }
        if l.offline_after_misses == 0 {
            return Err(Error::invalid("edge limits", "offline_after_misses must be positive"));
        }
        Ok(l)
    }
}

/// The serialized form of [`EdgeLimits`], deserialized through its builder.
#[derive(Deserialize)]
struct EdgeLimitsWire {
    max_tags_per_project: u64,
    offline_after_misses: u32,
    max_edge_services: u64,
    max_tag_points: u64,
    #[serde(default)]
    license_window: Option<(Timestamp, Timestamp)>,
}

impl TryFrom<EdgeLimitsWire> for EdgeLimits {
    type Error = Error;

    fn try_from(w: EdgeLimitsWire) -> Result<Self> {
        let mut limits = EdgeLimits::builder()
            .max_tags_per_project(w.max_tags_per_project)
            .offline_after_misses(w.offline_after_misses)
            .max_edge_services(w.max_edge_services)
            .max_tag_points(w.max_tag_points);
        limits.0.license_window = w.license_window;
        limits.build()
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
    pub id: crate::id::TemplateId,
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
    /// Whether a claim code issued with its credentials is still unused: whoever holds it may
    /// manage the agent into a project ([`ClaimCode`]).
    pub claimable: bool,
    /// When it last said anything.
    pub last_seen: Option<Timestamp>,
    /// When it was first seen or provisioned.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// Random bytes in a [`ClaimCode`] (22 characters of base64url).
pub const CLAIM_CODE_BYTES: usize = 16;

/// The proof that whoever manages an unmanaged agent into a project owns it: issued once with
/// the agent's broker credentials, handed with them to whoever installs the agent, used once.
/// Only its SHA-256 digest is stored ([`digest`](Self::digest)); 128 random bits make a fast
/// digest enough, as for an API key.
///
/// `Debug` never shows it; read it with [`as_secret`](Self::as_secret) and `ExposeSecret`.
pub struct ClaimCode(secrecy::SecretString);

impl ClaimCode {
    /// A new code from the operating system's random source.
    ///
    /// # Errors
    /// A `Backend` error (`os-rng`) when the random source fails.
    pub fn generate() -> Result<Self> {
        use base64::Engine as _;
        let mut bytes = [0u8; CLAIM_CODE_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::backend("os-rng", e.to_string()))?;
        Ok(ClaimCode(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes).into()))
    }

    /// The code as someone typed it (surrounding white space ignored).
    pub fn new(code: secrecy::SecretString) -> Self {
        use secrecy::ExposeSecret as _;
        let trimmed = code.expose_secret().trim();
        if trimmed.len() == code.expose_secret().len() { ClaimCode(code) } else { ClaimCode(trimmed.to_owned().into()) }
    }

    /// The code itself.
    pub fn as_secret(&self) -> &secrecy::SecretString {
        &self.0
    }

    /// What is stored in its place: the hex SHA-256 of the code, under a label of its own.
    pub fn digest(&self) -> String {
        use secrecy::ExposeSecret as _;
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"ecp agent claim code\0");
        h.update(self.0.expose_secret().as_bytes());
        hex::encode(h.finalize())
    }
}

impl fmt::Debug for ClaimCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimCode([REDACTED])")
    }
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

/// An agent's whole desired configuration and its version, which increases with every change
/// (a put or a withdrawal): agents ignore a set older than the newest they took, so sets
/// published out of order never undo a newer one.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSet {
    /// The set's version.
    pub version: u64,
    /// Its items, by key.
    pub items: Vec<DesiredRecord>,
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
