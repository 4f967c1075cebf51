//! Organizations, projects, their names and limits.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{OrgId, ProjectId};

/// Checks an organization or project name: 1–50 characters, each a letter, a digit, `-`, `_` or a
/// space, not starting or ending with a space.
///
/// Letters and digits are Unicode ones (the product is used in Chinese as well as English).
///
/// # Errors
/// [`Error::InvalidInput`] naming `field`.
pub fn validate_name(field: &'static str, name: &str, max_chars: usize) -> Result<()> {
    let count = name.chars().take(max_chars + 1).count();
    if count == 0 {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if count > max_chars {
        return Err(Error::invalid(field, format!("must be at most {max_chars} characters")));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))) {
        return Err(Error::invalid(field, format!("character {c:?} is not a letter, digit, '-', '_' or space")));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(Error::invalid(field, "must not start or end with a space"));
    }
    Ok(())
}

/// The longest name of a registered project resource (cluster, edge service ...), in characters.
pub const MAX_RESOURCE_NAME_CHARS: usize = 200;

/// Whether `c` is invisible or reorders text: format characters (zero-width spaces and joiners,
/// bidirectional embeddings, overrides and isolates, the byte order mark, soft hyphens, tags) and
/// blank fillers. Two names that differ only by one look alike.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Checks a resource name: 1–200 characters, no control or invisible characters (zero-width,
/// bidirectional formatting, byte order marks, fillers), not starting or ending with whitespace, and not starting as a spreadsheet
/// formula (`=`, `+`, `-`, `@`), since names travel in CSV exports.
///
/// # Errors
/// [`Error::InvalidInput`] on the field `name`.
pub fn validate_resource_name(name: &str) -> Result<()> {
    let n = name.chars().take(MAX_RESOURCE_NAME_CHARS + 1).count();
    if n == 0 || n > MAX_RESOURCE_NAME_CHARS {
        return Err(Error::invalid("name", format!("must be 1..={MAX_RESOURCE_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "must not contain control characters"));
    }
    if name.chars().any(is_invisible) {
        return Err(Error::invalid("name", "must not contain invisible or bidirectional formatting characters"));
    }
    if name.starts_with(['=', '+', '-', '@']) {
        return Err(Error::invalid("name", "must not start with '=', '+', '-' or '@' (a spreadsheet formula)"));
    }
    if name.trim() != name {
        return Err(Error::invalid("name", "must not start or end with whitespace"));
    }
    Ok(())
}

/// The key that makes names unique regardless of case.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The longest organization or project name, in characters.
pub const MAX_TENANT_NAME_CHARS: usize = 50;

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its name, unique across the system regardless of case.
    pub name: String,
    /// How many projects it holds.
    pub project_count: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl Organization {
    /// A new organization named `name`, created at `now`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name.
    pub fn new(name: &str, now: Timestamp) -> Result<Self> {
        validate_name("organization name", name, MAX_TENANT_NAME_CHARS)?;
        Ok(Self { id: OrgId::new(), name: name.to_owned(), project_count: 0, created_at: now, updated_at: now })
    }
}

/// A project of one organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Its id.
    pub(crate) id: ProjectId,
    /// Its organization.
    pub(crate) org: OrgId,
    /// Its name, unique within the organization regardless of case.
    pub(crate) name: String,
    /// When it was created.
    pub(crate) created_at: Timestamp,
    /// When it was last changed.
    pub(crate) updated_at: Timestamp,
}

// Read-only outside this crate: a value comes from the store or from a constructor that checks it.
impl Project {
    /// Its id.
    pub fn id(&self) -> ProjectId {
        self.id
    }

    /// Its organization.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// Its name, unique within the organization regardless of case.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When it was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When it was last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

impl Project {
    /// A new project of `org` named `name`, created at `now`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name.
    pub fn new(org: OrgId, name: &str, now: Timestamp) -> Result<Self> {
        validate_name("project name", name, MAX_TENANT_NAME_CHARS)?;
        Ok(Self { id: ProjectId::new(), org, name: name.to_owned(), created_at: now, updated_at: now })
    }

    /// The authorization scope of this project.
    pub fn scope(&self) -> crate::access::Scope {
        crate::access::Scope::Project { org: self.org, project: self.id }
    }
}

/// How many organizations and projects may exist. Build with [`TenancyLimits::builder`]; `build()`
/// validates. The default is what `TenancyLimits::builder().build()` gives, the product's limits:
/// 100 organizations, 100 projects per organization, 1,000 projects in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TenancyLimitsWire")]
#[non_exhaustive]
pub struct TenancyLimits {
    pub(crate) max_organizations: u64,
    pub(crate) max_projects_per_org: u64,
    pub(crate) max_projects: u64,
}

impl Default for TenancyLimits {
    fn default() -> Self {
        Self { max_organizations: 100, max_projects_per_org: 100, max_projects: 1000 }
    }
}

impl TenancyLimits {
    /// A builder starting from the defaults (the product's): 100 organizations, 100 projects per
    /// organization, 1,000 projects in all.
    pub fn builder() -> TenancyLimitsBuilder {
        TenancyLimitsBuilder(Self::default())
    }

    /// Organizations in the system.
    pub fn max_organizations(&self) -> u64 {
        self.max_organizations
    }

    /// Projects in one organization.
    pub fn max_projects_per_org(&self) -> u64 {
        self.max_projects_per_org
    }

    /// Projects in the system.
    pub fn max_projects(&self) -> u64 {
        self.max_projects
    }
}

/// Builds [`TenancyLimits`]; setters never fail, [`build`](Self::build) validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct TenancyLimitsBuilder(TenancyLimits);

impl TenancyLimitsBuilder {
    /// Organizations in the system (default 100; 1 to 2^53).
    pub fn max_organizations(mut self, n: u64) -> Self {
        self.0.max_organizations = n;
        self
    }

    /// Projects in one organization (default 100; 1 to 2^53).
    pub fn max_projects_per_org(mut self, n: u64) -> Self {
        self.0.max_projects_per_org = n;
        self
    }

    /// Projects in the system (default 1,000; 1 to 2^53).
    pub fn max_projects(mut self, n: u64) -> Self {
        self.0.max_projects = n;
        self
    }

    /// The limits.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when a limit is 0 or above 2^53 (the largest the stores count exactly).
    pub fn build(self) -> Result<TenancyLimits> {
        const MAX: u64 = 1 << 53;
        let l = self.0;
        for (field, v) in [
            ("limits.max_organizations", l.max_organizations),
            ("limits.max_projects_per_org", l.max_projects_per_org),
            ("limits.max_projects", l.max_projects),
        ] {
            if v == 0 || v > MAX {
                return Err(Error::invalid(field, format!("must be 1..={MAX}, got {v}")));
            }
        }
        Ok(l)
    }
}

/// The serialized form of [`TenancyLimits`], deserialized through its builder.
#[derive(Deserialize)]
struct TenancyLimitsWire {
    max_organizations: u64,
    max_projects_per_org: u64,
    max_projects: u64,
}

impl TryFrom<TenancyLimitsWire> for TenancyLimits {
    type Error = Error;

    fn try_from(w: TenancyLimitsWire) -> Result<Self> {
        TenancyLimits::builder()
            .max_organizations(w.max_organizations)
            .max_projects_per_org(w.max_projects_per_org)
            .max_projects(w.max_projects)
            .build()
    }
}

/// What a project holds that keeps it from being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProjectUsage {
    /// EMQX clusters.
    pub clusters: u64,
    /// Edge services.
    pub edge_services: u64,
    /// Other registered resources (agents, edge nodes, templates ...).
    pub other: u64,
}

impl ProjectUsage {
    /// Whether the project holds nothing.
    pub fn is_empty(&self) -> bool {
        self.clusters == 0 && self.edge_services == 0 && self.other == 0
    }
}

/// The kind of a resource registered in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProjectResourceKind {
    /// An EMQX cluster.
    Cluster,
    /// An edge service.
    EdgeService,
    /// An edge agent.
    Agent,
    /// A Docker host for hosted edge services.
    EdgeNode,
    /// A configuration template.
    ConfigTemplate,
}

impl ProjectResourceKind {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProjectResourceKind::Cluster => "cluster",
            ProjectResourceKind::EdgeService => "edge_service",
            ProjectResourceKind::Agent => "agent",
            ProjectResourceKind::EdgeNode => "edge_node",
            ProjectResourceKind::ConfigTemplate => "config_template",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Cluster, Self::EdgeService, Self::Agent, Self::EdgeNode, Self::ConfigTemplate].into_iter().find(|k| k.as_str() == s)
    }
}

/// A resource registered in a project: the registry that lets a project know what it holds, keeps
/// names unique per kind, and moves resources between projects. Domain crates keep their own
/// details in their own tables, keyed by the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectResource {
    /// Its id (the cluster's, edge service's ... id).
    pub id: uuid::Uuid,
    /// Its kind.
    pub kind: ProjectResourceKind,
    /// The project holding it.
    pub project: ProjectId,
    /// Its name, unique per kind within the project regardless of case.
    pub name: String,
    /// When it was registered.
    pub created_at: Timestamp,
}

impl ProjectResource {
    /// A resource to register.
    pub fn new(id: uuid::Uuid, kind: ProjectResourceKind, project: ProjectId, name: impl Into<String>, now: Timestamp) -> Self {
        Self { id, kind, project, name: name.into(), created_at: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_refuse_look_alikes_and_formulas() {
        for ok in ["line 1", "東京-ライン 1", "O'Brien \"quoted\"", "emoji 🚀", "a-b", "a=b"] {
            validate_resource_name(ok).unwrap();
        }
        for bad in [
            "line\u{200B}1",
            "\u{202E}1 enil",
            "line\u{2066}1\u{2069}",
            "\u{FEFF}line",
            "soft\u{00AD}hyphen",
            "tag\u{E0041}",
            "=HYPERLINK(\"x\")",
            "+1",
            "-1",
            "@SUM(A1)",
            "nul\0",
        ] {
            assert!(validate_resource_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_follow_the_product_rule() {
        for ok in ["a", "Plant-7_line 2", "工厂一", &"x".repeat(50)] {
            validate_name("name", ok, 50).unwrap();
        }
        for bad in ["", " lead", "trail ", "semi;colon", "tab\t", "new\nline", &"x".repeat(51), "emoji🙂"] {
            assert!(validate_name("name", bad, 50).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits_validate() {
        assert_eq!(TenancyLimits::default(), TenancyLimits::builder().build().unwrap());
        assert!(TenancyLimits::builder().max_projects(0).build().is_err());
        let l = TenancyLimits::builder().max_organizations(3).build().unwrap();
        assert_eq!((l.max_organizations(), l.max_projects_per_org(), l.max_projects()), (3, 100, 1000));
        let json = serde_json::to_value(l).unwrap();
        assert_eq!(serde_json::from_value::<TenancyLimits>(json.clone()).unwrap(), l);
        let mut zero = json;
        zero["max_projects"] = 0.into();
        assert!(serde_json::from_value::<TenancyLimits>(zero).is_err());
    }
}
