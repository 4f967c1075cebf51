//! An edge service as stored: its builder, its checked changes, and its read-only fields.

use super::{AgentId, Credentials, EdgeKind, EdgeStatus, ManagementMode, normalize_tags, validate_endpoint};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{EdgeServiceId, ProjectId};

/// An edge service as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeService {
    /// Its id.
    pub(crate) id: EdgeServiceId,
    /// Its project.
    pub(crate) project: ProjectId,
    /// Its name, unique in the project regardless of case (1–200 characters).
    pub(crate) name: String,
    /// The product it runs.
    pub(crate) kind: EdgeKind,
    /// How it is reached.
    pub(crate) mode: ManagementMode,
    /// Its API's base URL (`http://10.0.0.5:8085`).
    pub(crate) endpoint: String,
    /// How to authenticate to it.
    pub(crate) credentials: Credentials,
    /// The edge agent it is reached through (mode `agent`); `endpoint` is then its URL as the
    /// agent sees it.
    pub(crate) agent: Option<AgentId>,
    /// Its tags (at most 10), sorted.
    pub(crate) tags: Vec<String>,
    /// The product version it last reported.
    pub(crate) version: Option<String>,
    /// Online, offline or unknown.
    pub(crate) status: EdgeStatus,
    /// When it last answered.
    pub(crate) last_seen: Option<Timestamp>,
    /// Probes missed in a row.
    pub(crate) missed_probes: u32,
    /// When it was registered.
    pub(crate) created_at: Timestamp,
    /// When it was last changed.
    pub(crate) updated_at: Timestamp,
}

/// Changes, each checked as a new service's fields are.
impl EdgeService {
    /// Renames it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name.
    pub fn set_name(&mut self, name: impl Into<String>) -> Result<()> {
        let name = name.into();
        crate::tenancy::validate_resource_name(&name)?;
        self.name = name;
        Ok(())
    }

    /// Points it at `endpoint`. When the endpoint's origin (scheme, host, port) changes, the
    /// stored credentials are dropped unless `credentials` come with the change: a password is
    /// never sent to a host it was not given for. Returns whether the origin changed.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad endpoint.
    pub fn set_endpoint(&mut self, endpoint: impl Into<String>, credentials: Option<Credentials>) -> Result<bool> {
        let endpoint = endpoint.into();
        validate_endpoint(&endpoint)?;
        let moved = origin(&endpoint) != origin(&self.endpoint);
        self.endpoint = endpoint;
        match credentials {
            Some(c) => self.credentials = c,
            None if moved => self.credentials = Credentials::None,
            None => {}
        }
        Ok(moved)
    }

    /// Sets how to authenticate to it.
    pub fn set_credentials(&mut self, credentials: Credentials) {
        self.credentials = credentials;
    }

    /// Replaces its tags (checked, deduplicated, sorted).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad tag or more than [`MAX_TAGS_PER_SERVICE`](super::MAX_TAGS_PER_SERVICE).
    pub fn set_tags(&mut self, tags: Vec<String>) -> Result<()> {
        self.tags = normalize_tags(tags)?;
        Ok(())
    }

    /// Records a change at `now`.
    pub fn touch(&mut self, now: Timestamp) {
        self.updated_at = now;
    }

    /// Records what a probe observed: the version it reported, when it last answered, and the
    /// probes missed in a row since (the store's `record_probe` does the same in place).
    pub fn set_observed(&mut self, version: Option<String>, last_seen: Option<Timestamp>, missed_probes: u32) {
        self.version = version;
        self.last_seen = last_seen;
        self.missed_probes = missed_probes;
    }

    /// A copy reached at `endpoint`: a hosted service's driver probes it at the address it
    /// resolved (a container's IP, an in-cluster name), with the same credentials. Nothing is
    /// stored.
    #[must_use]
    pub fn reached_at(&self, endpoint: impl Into<String>) -> EdgeService {
        EdgeService { endpoint: endpoint.into(), ..self.clone() }
    }
}

/// The origin of an endpoint (scheme, host and port, lowercased; the default port made explicit),
/// as far as a checked endpoint has one.
fn origin(endpoint: &str) -> (String, String) {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default().to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !authority.ends_with(']');
    let authority = if has_port { authority } else { format!("{authority}{default_port}") };
    (scheme, authority)
}

// Read-only outside this crate: a value comes from the store or from a constructor that checks it.
impl EdgeService {
    /// Its id.
    pub fn id(&self) -> EdgeServiceId {
        self.id
    }

    /// Its project.
    pub fn project(&self) -> ProjectId {
        self.project
    }

    /// Its name, unique in the project regardless of case (1–200 characters).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The product it runs.
    pub fn kind(&self) -> EdgeKind {
        self.kind
    }

    /// How it is reached.
    pub fn mode(&self) -> ManagementMode {
        self.mode
    }

    /// Its API's base URL (`http://10.0.0.5:8085`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How to authenticate to it.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The edge agent it is reached through (mode `agent`); `endpoint` is then its URL as the
    /// agent sees it.
    pub fn agent(&self) -> Option<&AgentId> {
        self.agent.as_ref()
    }

    /// Its tags (at most 10), sorted.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The product version it last reported.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Online, offline or unknown.
    pub fn status(&self) -> EdgeStatus {
        self.status
    }

    /// When it last answered.
    pub fn last_seen(&self) -> Option<Timestamp> {
        self.last_seen
    }

    /// Probes missed in a row.
    pub fn missed_probes(&self) -> u32 {
        self.missed_probes
    }

    /// When it was registered.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When it was last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

impl EdgeService {
    /// A new, unprobed service of `project` named `name`, running `kind`, whose API is at
    /// `endpoint`: managed directly with no credentials and no tags unless the builder says
    /// otherwise. [`EdgeServiceBuilder::build`] checks the fields.
    ///
    /// ```
    /// # fn demo() -> ecp_core::Result<()> {
    /// use ecp_core::edge::{EdgeKind, EdgeService, ManagementMode};
    /// use ecp_core::{ProjectId, Timestamp};
    ///
    /// let service = EdgeService::builder(ProjectId::new(), "line-1", EdgeKind::NeuronEx, "http://10.0.0.5:8085")
    ///     .mode(ManagementMode::Docker)
    ///     .tags(["hall-a", "press"])
    ///     .build(Timestamp::now())?;
    /// assert_eq!(service.tags(), ["hall-a", "press"]);
    /// # Ok(()) }
    /// ```
    pub fn builder(project: ProjectId, name: impl Into<String>, kind: EdgeKind, endpoint: impl Into<String>) -> EdgeServiceBuilder {
        EdgeServiceBuilder {
            project,
            name: name.into(),
            kind,
            mode: ManagementMode::Direct,
            endpoint: endpoint.into(),
            credentials: Credentials::None,
            agent: None,
            tags: Vec::new(),
        }
    }
}

/// Builds an [`EdgeService`]; made by [`EdgeService::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EdgeServiceBuilder {
    project: ProjectId,
    name: String,
    kind: EdgeKind,
    mode: ManagementMode,
    endpoint: String,
    credentials: Credentials,
    agent: Option<AgentId>,
    tags: Vec<String>,
}

impl EdgeServiceBuilder {
    /// How it is reached (default [`ManagementMode::Direct`]). For [`ManagementMode::Agent`]
    /// use [`through_agent`](Self::through_agent).
    pub fn mode(mut self, mode: ManagementMode) -> Self {
        self.mode = mode;
        if mode != ManagementMode::Agent {
            self.agent = None;
        }
        self
    }

    /// Reached through the edge agent `agent` (mode [`ManagementMode::Agent`]); the endpoint is
    /// then the service's URL as the agent sees it.
    pub fn through_agent(mut self, agent: AgentId) -> Self {
        self.mode = ManagementMode::Agent;
        self.agent = Some(agent);
        self
    }

    /// How to authenticate to it (default [`Credentials::None`]).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Its tags (at most [`MAX_TAGS_PER_SERVICE`](super::MAX_TAGS_PER_SERVICE); duplicates are dropped, the rest sorted).
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The service, registered at `now`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name, endpoint or tag, more than
    /// [`MAX_TAGS_PER_SERVICE`](super::MAX_TAGS_PER_SERVICE) tags, or mode [`ManagementMode::Agent`] without an agent.
    pub fn build(self, now: Timestamp) -> Result<EdgeService> {
        crate::tenancy::validate_resource_name(&self.name)?;
        validate_endpoint(&self.endpoint)?;
        let tags = normalize_tags(self.tags)?;
        if self.mode == ManagementMode::Agent && self.agent.is_none() {
            return Err(Error::invalid("agent", "a service in mode agent is reached through an agent: name it"));
        }
        Ok(EdgeService {
            id: EdgeServiceId::new(),
            project: self.project,
            name: self.name,
            kind: self.kind,
            mode: self.mode,
            endpoint: self.endpoint,
            credentials: self.credentials,
            agent: self.agent,
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
