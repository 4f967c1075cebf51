//! The vocabulary of access control: who acts ([`Principal`]), on what ([`ResourceKind`] at a
//! [`Scope`]), how ([`Action`]), and the [`Authorizer`] seam that decides.
//!
//! The decision engine lives in `ecp-rbac`; this module holds only the shared types, so every crate
//! can authorize without depending on the engine.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::id::{ApiKeyId, OrgId, ProjectId, UserId};

/// The kinds of thing a permission is about: the modules of the product's permission matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceKind {
    /// Organization management (name, members).
    Organization,
    /// Project management (create, rename, delete, settings).
    Project,
    /// User management and user authorization (accounts, memberships, role bindings, API keys).
    User,
    /// The operation audit log.
    Audit,
    /// System settings.
    SystemSettings,
    /// The license.
    License,
    /// EMQX clusters.
    Cluster,
    /// Edge services.
    EdgeService,
    /// Alarms and alarm rules.
    Alarm,
    /// Tags of edge services.
    Tag,
    /// Edge configuration templates and their delivery.
    ConfigDelivery,
    /// Monitoring (metrics, statistics).
    Monitoring,
    /// Logs.
    Log,
}

impl ResourceKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ResourceKind; 13] = [
        ResourceKind::Organization,
        ResourceKind::Project,
        ResourceKind::User,
        ResourceKind::Audit,
        ResourceKind::SystemSettings,
        ResourceKind::License,
        ResourceKind::Cluster,
        ResourceKind::EdgeService,
        ResourceKind::Alarm,
        ResourceKind::Tag,
        ResourceKind::ConfigDelivery,
        ResourceKind::Monitoring,
        ResourceKind::Log,
    ];

    /// The stable snake_case name (`"edge_service"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Organization => "organization",
            ResourceKind::Project => "project",
            ResourceKind::User => "user",
            ResourceKind::Audit => "audit",
            ResourceKind::SystemSettings => "system_settings",
            ResourceKind::License => "license",
            ResourceKind::Cluster => "cluster",
            ResourceKind::EdgeService => "edge_service",
            ResourceKind::Alarm => "alarm",
            ResourceKind::Tag => "tag",
            ResourceKind::ConfigDelivery => "config_delivery",
            ResourceKind::Monitoring => "monitoring",
            ResourceKind::Log => "log",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    const fn index(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// What is done to a resource. Each action implies the ones below it: `Edit` ⊃ `Operate` ⊃ `View`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read.
    View,
    /// Run without changing the definition: start, stop, restart, acknowledge. Lets a custom role
    /// make "start/stop-only" operators.
    Operate,
    /// Create, change, delete.
    Edit,
}

impl Action {
    /// Every action, weakest first.
    pub const ALL: [Action; 3] = [Action::View, Action::Operate, Action::Edit];

    /// The stable name (`"view"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Operate => "operate",
            Action::Edit => "edit",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action on a kind of resource: the unit that roles grant and checks ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    /// The kind of resource.
    pub kind: ResourceKind,
    /// The action.
    pub action: Action,
}

impl Permission {
    /// `action` on `kind`.
    pub const fn new(kind: ResourceKind, action: Action) -> Self {
        Self { kind, action }
    }

    /// View `kind`.
    pub const fn view(kind: ResourceKind) -> Self {
        Self::new(kind, Action::View)
    }

    /// Operate `kind`.
    pub const fn operate(kind: ResourceKind) -> Self {
        Self::new(kind, Action::Operate)
    }

    /// Edit `kind`.
    pub const fn edit(kind: ResourceKind) -> Self {
        Self::new(kind, Action::Edit)
    }

    const fn bit(self) -> u64 {
        1u64 << (self.kind.index() * 3 + self.action as u32)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.kind)
    }
}

impl std::str::FromStr for Permission {
    type Err = Error;
    /// Parses `"edge_service:edit"`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("permission", format!("{:?} is not <resource kind>:<view|operate|edit>", truncate(s)));
        let (kind, action) = s.split_once(':').ok_or_else(bad)?;
        Ok(Permission::new(ResourceKind::parse(kind).ok_or_else(bad)?, Action::parse(action).ok_or_else(bad)?))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A set of permissions, closed under implication (holding `Edit` holds `Operate` and `View`).
/// A bitset: union and membership are single instructions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u64);

impl PermissionSet {
    /// No permission.
    pub const EMPTY: PermissionSet = PermissionSet(0);

    /// A set from permissions, adding what each implies.
    pub fn from_permissions(perms: impl IntoIterator<Item = Permission>) -> Self {
        let mut set = Self::EMPTY;
        for p in perms {
            set.insert(p);
        }
        set
    }

    /// Adds a permission and what it implies.
    pub fn insert(&mut self, p: Permission) {
        for a in Action::ALL {
            if a <= p.action {
                self.0 |= Permission::new(p.kind, a).bit();
            }
        }
    }

    /// Whether `p` is held.
    #[inline]
    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether every permission of `other` is held.
    pub const fn is_superset(self, other: PermissionSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// The union.
    #[must_use]
    pub const fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    /// Whether no permission is held.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The strongest action held for each kind, in kind order: the canonical, minimal listing.
    pub fn strongest(self) -> Vec<Permission> {
        let mut out = Vec::new();
        for kind in ResourceKind::ALL {
            if let Some(action) = Action::ALL.into_iter().rev().find(|a| self.contains(Permission::new(kind, *a))) {
                out.push(Permission::new(kind, action));
            }
        }
        out
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.strongest().iter().map(|p| p.to_string())).finish()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self::from_permissions(iter)
    }
}

/// Where a permission applies: the whole system, one organization (and all its projects), or one
/// project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "snake_case")]
pub enum Scope {
    /// The whole system.
    System,
    /// One organization and everything in it.
    Org {
        /// The organization.
        org: OrgId,
    },
    /// One project. Services build it from the stored project, never from caller input, so the
    /// organization is always the project's real one.
    Project {
        /// The project's organization.
        org: OrgId,
        /// The project.
        project: ProjectId,
    },
}

impl Scope {
    /// The organization of this scope, if any.
    pub fn org(&self) -> Option<OrgId> {
        match self {
            Scope::System => None,
            Scope::Org { org } | Scope::Project { org, .. } => Some(*org),
        }
    }

    /// The project of this scope, if any.
    pub fn project(&self) -> Option<ProjectId> {
        match self {
            Scope::Project { project, .. } => Some(*project),
            _ => None,
        }
    }

    /// Whether `self` contains `inner` (a scope contains itself).
    pub fn contains(&self, inner: &Scope) -> bool {
        match (self, inner) {
            (Scope::System, _) => true,
            (Scope::Org { org }, Scope::Org { org: o } | Scope::Project { org: o, .. }) => org == o,
            (Scope::Project { project, .. }, Scope::Project { project: p, .. }) => project == p,
            _ => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::System => f.write_str("system"),
            Scope::Org { org } => write!(f, "organization {org}"),
            Scope::Project { project, .. } => write!(f, "project {project}"),
        }
    }
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subject {
    /// A user account.
    User(UserId),
    /// A machine client's API key.
    ApiKey(ApiKeyId),
    /// The control plane itself (background jobs, resumed tasks). Authorizers allow it everything.
    System,
    /// Nobody authenticated yet: the actor of a login, a token refresh, an invitation being
    /// accepted. Authorizers allow it nothing.
    Anonymous,
}

impl Subject {
    /// The stable kind name (`"user"`, `"api_key"`, `"system"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::ApiKey(_) => "api_key",
            Subject::System => "system",
            Subject::Anonymous => "anonymous",
        }
    }

    /// The id as text (`None` for [`Subject::System`]).
    pub fn id_string(&self) -> Option<String> {
        match self {
            Subject::User(id) => Some(id.to_string()),
            Subject::ApiKey(id) => Some(id.to_string()),
            Subject::System | Subject::Anonymous => None,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(id) => write!(f, "user {id}"),
            Subject::ApiKey(id) => write!(f, "api key {id}"),
            Subject::System => f.write_str("system"),
            Subject::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// An authenticated actor: the first argument of every service method.
///
/// A `Principal` is the host's assertion that the subject has been authenticated: `ecp-rbac`'s
/// authentication hands them out after a login, a token or an API key check; a host with its own
/// authentication may build them with [`Principal::user`]. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    subject: Subject,
    name: Arc<str>,
}

impl Principal {
    /// A user, with the name that audit records show (its email).
    pub fn user(id: UserId, name: impl Into<Arc<str>>) -> Self {
        Self { subject: Subject::User(id), name: name.into() }
    }

    /// An API key, with the name that audit records show.
    pub fn api_key(id: ApiKeyId, name: impl Into<Arc<str>>) -> Self {
        Self { subject: Subject::ApiKey(id), name: name.into() }
    }

    /// The control plane itself, named for the job that acts (`"task-engine"`).
    ///
    /// **The trusted escape of the trust boundary**: it is allowed everything, in every tenant, and
    /// no authorizer refuses it. Use it for the platform's own background work (the task engine's
    /// records, a collector, a bootstrap script of the host) and never on behalf of a request from
    /// outside: a handler that answers a user or an API key acts with *their* principal, as the
    /// SDK's own paths do. Its audit records name it as `system` with the job's name, so its use
    /// stays visible.
    pub fn system(job: impl Into<Arc<str>>) -> Self {
        Self { subject: Subject::System, name: job.into() }
    }

    /// Someone not (yet) authenticated, named by what they claim (a login name), for the audit
    /// records of logins and token redemptions. Allowed nothing.
    pub fn anonymous(claimed: impl Into<Arc<str>>) -> Self {
        Self { subject: Subject::Anonymous, name: claimed.into() }
    }

    /// Who acts.
    pub fn subject(&self) -> Subject {
        self.subject
    }

    /// The display name (an email, a key name, a job name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is [`Subject::System`].
    pub fn is_system(&self) -> bool {
        self.subject == Subject::System
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({}, {:?})", self.subject, self.name)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.subject)
    }
}

/// Why a check was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// No role held by the subject grants the permission at that scope.
    NotGranted,
    /// The subject is disabled (a disabled user, a revoked or expired API key).
    SubjectDisabled,
    /// The authorizer does not know the subject.
    UnknownSubject,
}

impl Denial {
    /// A lowercase explanation.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NotGranted => "no role grants it at this scope",
            Denial::SubjectDisabled => "the subject is disabled",
            Denial::UnknownSubject => "the subject is unknown",
        }
    }

    /// The [`Error::PermissionDenied`] for this denial.
    pub fn into_error(self, principal: &Principal, permission: Permission, scope: &Scope) -> Error {
        Error::PermissionDenied {
            principal: principal.to_string(),
            permission: permission.to_string(),
            scope: scope.to_string(),
            reason: self.reason().into(),
        }
    }
}

/// The organizations and projects where a principal holds a permission: what a listing may show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Visibility {
    /// Held at system scope: everything is visible.
    pub all: bool,
    /// Organizations where it is held (and so in all their projects).
    pub orgs: Vec<OrgId>,
    /// Single projects where it is held.
    pub projects: Vec<ProjectId>,
}

impl Visibility {
    /// Nothing is visible.
    pub fn is_empty(&self) -> bool {
        !self.all && self.orgs.is_empty() && self.projects.is_empty()
    }
}

/// Decides whether a principal may do something. Object-safe; checks are synchronous and must not
/// touch the store (implementations keep a precomputed index).
///
/// Contract, for every implementation:
/// - [`Subject::System`] is allowed everything; [`Subject::Anonymous`] nothing.
/// - A permission held at a scope holds in every scope inside it (system ⊃ organization ⊃ project).
/// - `View` of [`ResourceKind::Organization`] held in a project also holds for that project's
///   organization (a project admin sees the organization it works in).
pub trait Authorizer: Send + Sync + fmt::Debug + 'static {
    /// Allows, or says why not.
    ///
    /// # Errors
    /// The [`Denial`]; turn it into an [`Error`] with [`Denial::into_error`].
    fn check(&self, principal: &Principal, permission: Permission, scope: &Scope) -> Result<(), Denial>;

    /// Whether the principal holds any permission at all at `scope`, or (for an organization) in one
    /// of its projects. Services answer `NotFound` instead of `PermissionDenied` to a principal for
    /// whom this is false, so ids of other tenants' resources leak nothing.
    fn has_access(&self, principal: &Principal, scope: &Scope) -> bool;

    /// Where the principal holds `permission`.
    fn visibility(&self, principal: &Principal, permission: Permission) -> Visibility;

    /// Told when an organization or project is deleted (with everything bound in it), so an
    /// implementation can drop what it precomputed for it. The default does nothing.
    fn scope_removed(&self, scope: &Scope) {
        let _ = scope;
    }
}

/// Checks `permission` and turns a denial into the right error: `PermissionDenied` where the
/// principal can see the scope, `NotFound { kind: not_found_kind, id: not_found_id }` where it cannot.
///
/// # Errors
/// [`Error::PermissionDenied`] or [`Error::NotFound`].
pub fn authorize(
    authorizer: &dyn Authorizer,
    principal: &Principal,
    permission: Permission,
    scope: &Scope,
    not_found_kind: &'static str,
    not_found_id: &dyn fmt::Display,
) -> Result<(), Error> {
    match authorizer.check(principal, permission, scope) {
        Ok(()) => Ok(()),
        Err(denial) if authorizer.has_access(principal, scope) || matches!(scope, Scope::System) => {
            Err(denial.into_error(principal, permission, scope))
        }
        Err(_) => Err(Error::not_found(not_found_kind, not_found_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_implies_operate_implies_view() {
        let set = PermissionSet::from_permissions([Permission::edit(ResourceKind::Cluster)]);
        assert!(set.contains(Permission::view(ResourceKind::Cluster)));
        assert!(set.contains(Permission::operate(ResourceKind::Cluster)));
        assert!(set.contains(Permission::edit(ResourceKind::Cluster)));
        assert!(!set.contains(Permission::view(ResourceKind::EdgeService)));
        let op = PermissionSet::from_permissions([Permission::operate(ResourceKind::EdgeService)]);
        assert!(op.contains(Permission::view(ResourceKind::EdgeService)));
        assert!(!op.contains(Permission::edit(ResourceKind::EdgeService)));
        assert!(set.union(op).is_superset(op));
        assert!(!op.is_superset(set));
        assert_eq!(set.strongest(), vec![Permission::edit(ResourceKind::Cluster)]);
    }

    #[test]
    fn every_bit_fits_and_is_distinct() {
        let mut seen = std::collections::HashSet::new();
        for kind in ResourceKind::ALL {
            for action in Action::ALL {
                assert!(seen.insert(Permission::new(kind, action).bit()));
            }
        }
        assert_eq!(seen.len(), 39);
    }

    #[test]
    fn permission_parses_and_rejects() {
        let p: Permission = "edge_service:operate".parse().unwrap();
        assert_eq!(p, Permission::operate(ResourceKind::EdgeService));
        for bad in ["", "edge_service", "edge_service:fly", "nope:view", ":view", &"x".repeat(5000)] {
            let err = bad.parse::<Permission>().unwrap_err();
            assert!(err.to_string().len() < 200, "{err}");
        }
        for kind in ResourceKind::ALL {
            assert_eq!(ResourceKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn scope_containment() {
        let (o1, o2) = (OrgId::new(), OrgId::new());
        let p1 = ProjectId::new();
        let proj = Scope::Project { org: o1, project: p1 };
        assert!(Scope::System.contains(&proj));
        assert!(Scope::Org { org: o1 }.contains(&proj));
        assert!(!Scope::Org { org: o2 }.contains(&proj));
        assert!(proj.contains(&proj));
        assert!(!proj.contains(&Scope::Org { org: o1 }));
    }
}
