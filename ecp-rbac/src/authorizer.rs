//! [`RbacAuthorizer`]: the built-in and custom roles of the store, precomputed into an in-memory
//! index so a check is a few hash lookups and never a store round trip.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ecp_core::access::{Authorizer, Denial, Permission, PermissionSet, Principal, ResourceKind, Scope, Subject, Visibility};
use ecp_core::identity::{Binding, BindingFilter, RoleRef};
use ecp_core::{Clock, OrgId, PageRequest, ProjectId, Result, RoleId, Store};
use foldhash::fast::RandomState;
use parking_lot::RwLock;

use crate::roles::builtin_permissions;

type Map<K, V> = HashMap<K, V, RandomState>;

/// A scope as a key of the flat grant map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Level {
    System,
    Org(OrgId),
    Project(ProjectId),
}

impl Level {
    fn of(scope: &Scope) -> Level {
        match scope {
            Scope::System => Level::System,
            Scope::Org { org } => Level::Org(*org),
            Scope::Project { project, .. } => Level::Project(*project),
        }
    }
}

/// What one subject holds: its bindings (the source of truth for updates) and what is derived from
/// them for the slower questions (visibility, access, why a check was denied).
#[derive(Debug, Clone, Default)]
struct SubjectInfo {
    active: bool,
    bindings: Vec<Binding>,
}

fn role_set(role: RoleRef, roles: &Map<RoleId, PermissionSet>) -> PermissionSet {
    match role {
        RoleRef::Builtin(r) => builtin_permissions(r),
        // A binding to a role that is gone grants nothing.
        RoleRef::Custom(id) => roles.get(&id).copied().unwrap_or(PermissionSet::EMPTY),
    }
}

/// One entry of the flat grant map.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    perms: PermissionSet,
    /// Set on every subject's `Level::System` entry (which exists, possibly empty, for every
    /// subject the index knows), so a denial's reason costs no extra lookup.
    known: bool,
    disabled: bool,
}

/// The index. Checks read only `grants`: a flat map from (subject, scope) to the union of the
/// permissions bound there. A check is one to three lookups in it, short-circuiting on the first
/// that grants: exactly the work of a plain hash map of bindings.
#[derive(Debug, Default)]
struct Index {
    roles: Map<RoleId, PermissionSet>,
    grants: Map<(Subject, Level), Cell>,
    subjects: Map<Subject, SubjectInfo>,
}

impl Index {
    fn lookup(&self, s: Subject, level: Level) -> PermissionSet {
        self.grants.get(&(s, level)).map_or(PermissionSet::EMPTY, |c| c.perms)
    }

    fn held(&self, s: Subject, scope: &Scope) -> PermissionSet {
        let mut set = self.lookup(s, Level::System);
        match scope {
            Scope::System => {}
            Scope::Org { org } => set = set.union(self.lookup(s, Level::Org(*org))),
            Scope::Project { org, project } => {
                set = set.union(self.lookup(s, Level::Org(*org))).union(self.lookup(s, Level::Project(*project)));
            }
        }
        set
    }

    /// Replaces what a subject holds.
    fn set_subject(&mut self, s: Subject, info: SubjectInfo) {
        self.clear_grants(s);
        if info.bindings.is_empty() && info.active {
            self.subjects.remove(&s);
            return;
        }
        self.grants.insert((s, Level::System), Cell { perms: PermissionSet::EMPTY, known: true, disabled: !info.active });
        if info.active {
            for b in &info.bindings {
                let perms = role_set(b.role, &self.roles);
                let e = self.grants.entry((s, Level::of(&b.scope))).or_default();
                e.perms = e.perms.union(perms);
            }
        }
        self.subjects.insert(s, info);
    }

    fn clear_grants(&mut self, s: Subject) {
        if let Some(old) = self.subjects.get(&s) {
            self.grants.remove(&(s, Level::System));
            for b in &old.bindings {
                self.grants.remove(&(s, Level::of(&b.scope)));
            }
        }
    }

    /// Projects where a subject's bindings grant `view organization`, by organization.
    fn org_view_via_project(&self, s: Subject, org: OrgId) -> bool {
        self.subjects.get(&s).is_some_and(|info| {
            info.active
                && info.bindings.iter().any(|b| {
                    matches!(b.scope, Scope::Project { org: o, .. } if o == org)
                        && role_set(b.role, &self.roles).contains(Permission::view(ResourceKind::Organization))
                })
        })
    }
}

/// The role-based [`Authorizer`] of ecp-rs.
///
/// Loaded from the store at start ([`RbacAuthorizer::load`]); the services of this crate keep it up
/// to date as they change bindings, roles and users. Several replicas of a host share one store but
/// each has its own index: call [`RbacAuthorizer::reload`] (or [`RbacAuthorizer::reload_subject`]
/// for one subject) when another replica may have changed access.
///
/// Checks take a read lock and do at most three hash lookups; nothing allocates.
pub struct RbacAuthorizer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    index: RwLock<Index>,
    /// The last audit record [`RbacAuthorizer::sync`] has seen.
    synced_seq: tokio::sync::Mutex<u64>,
}

impl fmt::Debug for RbacAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.index.read();
        f.debug_struct("RbacAuthorizer")
            .field("subjects", &index.subjects.len())
            .field("custom_roles", &index.roles.len())
            .finish_non_exhaustive()
    }
}

impl RbacAuthorizer {
    /// Loads every binding and custom role of the store.
    ///
    /// # Errors
    /// `Backend` if the store fails.
    pub async fn load(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self> {
        let this = RbacAuthorizer { store, clock, index: RwLock::new(Index::default()), synced_seq: tokio::sync::Mutex::new(0) };
        this.reload().await?;
        Ok(this)
    }

    /// Rebuilds the whole index from the store.
    ///
    /// # Errors
    /// `Backend` if the store fails; the old index stays in force.
    pub async fn reload(&self) -> Result<()> {
        let mut synced = self.synced_seq.lock().await;
        let head = self.store.audit_head().await?.seq;
        self.reload_all().await?;
        *synced = head;
        Ok(())
    }

    /// Catches up with changes other replicas made to the shared store: reads the audit records
    /// appended since the last sync (every change of access is one) and reloads what they touched —
    /// the subject of a grant, revocation or user change, a custom role, an API key, a deleted
    /// organization or project. Cheap when nothing changed (one query). Returns how many records it
    /// read.
    ///
    /// Call it periodically on every replica ([`RbacAuthorizer::spawn_sync`] does), or before a
    /// decision that must see the latest grants.
    ///
    /// # Errors
    /// `Backend`; the index keeps what it had, and the next sync retries from the same record.
    pub async fn sync(&self) -> Result<usize> {
        let mut synced = self.synced_seq.lock().await;
        let mut read = 0;
        loop {
            let page = self.store.audit_records_after(*synced, 1000).await?;
            let n = page.len();
            for stored in &page {
                self.apply_record(&stored.record).await?;
                *synced = stored.record.seq;
            }
            read += n;
            if n < 1000 {
                return Ok(read);
            }
        }
    }

    async fn apply_record(&self, record: &ecp_core::AuditRecord) -> Result<()> {
        use ecp_core::audit::Outcome;
        let e = &record.event;
        if e.outcome != Outcome::Success {
            return Ok(());
        }
        let op = e.operation.as_str();
        let id = e.resource_id.as_deref().unwrap_or_default();
        match e.resource_kind {
            ResourceKind::Organization if op == "organization.delete" => {
                if let Some(org) = e.org.as_ref() {
                    self.scope_removed(&Scope::Org { org: org.id });
                }
            }
            ResourceKind::Project if op == "project.delete" => {
                if let (Some(org), Some(project)) = (e.org.as_ref(), e.project.as_ref()) {
                    self.scope_removed(&Scope::Project { org: org.id, project: project.id });
                }
            }
            ResourceKind::User if op.starts_with("role.") => {
                if let Ok(role) = id.parse::<RoleId>() {
                    self.reload_role(role).await?;
                }
            }
            ResourceKind::User if op.starts_with("api_key.") => {
                if let Ok(key) = id.parse() {
                    self.reload_subject(Subject::ApiKey(key)).await?;
                }
            }
            ResourceKind::User if (op == "user.grant" || op == "user.revoke") && e.details.get("subject").is_some() => {
                if let Ok(subject) = serde_json::from_value::<Subject>(e.details["subject"].clone()) {
                    self.reload_subject(subject).await?;
                }
            }
            ResourceKind::User => {
                if let Ok(user) = id.parse() {
                    self.reload_subject(Subject::User(user)).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs [`RbacAuthorizer::sync`] every `every` until the returned task is aborted or the
    /// authorizer dropped.
    pub fn spawn_sync(self: &Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                if let Err(e) = this.sync().await {
                    tracing::warn!(error = %e, "syncing the authorizer with the store failed");
                }
            }
        })
    }

    async fn reload_all(&self) -> Result<()> {
        let roles: Map<RoleId, PermissionSet> =
            self.store.list_roles(None).await?.into_iter().map(|r| (r.id, PermissionSet::from_permissions(r.permissions))).collect();
        let mut by_subject: Map<Subject, Vec<Binding>> = Map::default();
        let mut page = PageRequest::first(1000);
        loop {
            let got = self.store.all_bindings(&page).await?;
            for b in got.items {
                by_subject.entry(b.subject).or_default().push(b);
            }
            match got.next {
                Some(cursor) => page = PageRequest::after(1000, cursor),
                None => break,
            }
        }
        let inactive: std::collections::HashSet<Subject> = self.store.inactive_subjects(self.clock.now()).await?.into_iter().collect();
        let mut index = Index { roles, ..Index::default() };
        for (s, bindings) in by_subject {
            let active = !inactive.contains(&s);
            index.set_subject(s, SubjectInfo { active, bindings });
        }
        *self.index.write() = index;
        Ok(())
    }

    /// Reloads one subject's bindings and whether it may act.
    ///
    /// # Errors
    /// `Backend` if the store fails.
    pub async fn reload_subject(&self, subject: Subject) -> Result<()> {
        if matches!(subject, Subject::System | Subject::Anonymous) {
            return Ok(());
        }
        let bindings = self.store.list_bindings(&BindingFilter { subject: Some(subject), ..Default::default() }).await?;
        let active = match subject {
            Subject::User(id) => match self.store.get_user(id).await {
                Ok(u) => u.enabled,
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e),
            },
            Subject::ApiKey(id) => match self.store.get_api_key(id).await {
                Ok((k, _)) => k.revoked_at.is_none() && k.expires_at.is_none_or(|t| t > self.clock.now()),
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e),
            },
            Subject::System | Subject::Anonymous => true,
        };
        self.index.write().set_subject(subject, SubjectInfo { active, bindings });
        Ok(())
    }

    /// Reloads a custom role's permissions and every subject bound to it.
    ///
    /// # Errors
    /// `Backend` if the store fails.
    pub async fn reload_role(&self, role: RoleId) -> Result<()> {
        let perms = match self.store.get_role(role).await {
            Ok(r) => Some(PermissionSet::from_permissions(r.permissions)),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let mut index = self.index.write();
        match perms {
            Some(p) => index.roles.insert(role, p),
            None => index.roles.remove(&role),
        };
        let affected: Vec<(Subject, SubjectInfo)> = index
            .subjects
            .iter()
            .filter(|(_, info)| info.bindings.iter().any(|b| b.role == RoleRef::Custom(role)))
            .map(|(s, info)| (*s, info.clone()))
            .collect();
        for (s, info) in affected {
            index.set_subject(s, info);
        }
        Ok(())
    }

    /// What `principal` holds at `scope` (for "can only grant what it holds" rules and UIs).
    pub fn permissions_at(&self, principal: &Principal, scope: &Scope) -> PermissionSet {
        match principal.subject() {
            Subject::System => PermissionSet::from_permissions(
                ResourceKind::ALL.into_iter().map(Permission::edit).filter(|p| p.kind != ResourceKind::Audit),
            )
            .union(PermissionSet::from_permissions([Permission::view(ResourceKind::Audit)])),
            Subject::Anonymous => PermissionSet::EMPTY,
            s => self.index.read().held(s, scope),
        }
    }

    /// The number of subjects with bindings, and of custom roles, in the index.
    pub fn len(&self) -> (usize, usize) {
        let index = self.index.read();
        (index.subjects.len(), index.roles.len())
    }

    /// Whether the index holds no subject.
    pub fn is_empty(&self) -> bool {
        self.index.read().subjects.is_empty()
    }
}

impl Authorizer for RbacAuthorizer {
    fn check(&self, principal: &Principal, permission: Permission, scope: &Scope) -> Result<(), Denial> {
        let subject = match principal.subject() {
            Subject::System => return Ok(()),
            Subject::Anonymous => return Err(Denial::UnknownSubject),
            s => s,
        };
        let index = self.index.read();
        let head = index.grants.get(&(subject, Level::System)).copied().unwrap_or_default();
        if head.perms.contains(permission) {
            return Ok(());
        }
        let granted = |level| index.grants.get(&(subject, level)).is_some_and(|c| c.perms.contains(permission));
        let allowed = match scope {
            Scope::System => false,
            Scope::Org { org } => granted(Level::Org(*org)),
            Scope::Project { org, project } => granted(Level::Org(*org)) || granted(Level::Project(*project)),
        };
        if allowed {
            return Ok(());
        }
        // The slow path: the exception for organization views, and why not.
        if let Scope::Org { org } = scope
            && permission == Permission::view(ResourceKind::Organization)
            && index.org_view_via_project(subject, *org)
        {
            return Ok(());
        }
        Err(match (head.known, head.disabled) {
            (false, _) => Denial::UnknownSubject,
            (true, true) => Denial::SubjectDisabled,
            (true, false) => Denial::NotGranted,
        })
    }

    fn has_access(&self, principal: &Principal, scope: &Scope) -> bool {
        let subject = match principal.subject() {
            Subject::System => return true,
            Subject::Anonymous => return false,
            s => s,
        };
        let index = self.index.read();
        let Some(info) = index.subjects.get(&subject).filter(|i| i.active) else { return false };
        info.bindings.iter().any(|b| match (b.scope, scope) {
            (Scope::System, _) => true,
            (Scope::Org { org: o }, Scope::Org { org } | Scope::Project { org, .. }) => o == *org,
            (Scope::Project { org: o, .. }, Scope::Org { org }) => o == *org,
            (Scope::Project { project: p, .. }, Scope::Project { project, .. }) => p == *project,
            _ => false,
        })
    }

    fn visibility(&self, principal: &Principal, permission: Permission) -> Visibility {
        let subject = match principal.subject() {
            Subject::System => return Visibility { all: true, ..Default::default() },
            Subject::Anonymous => return Visibility::default(),
            s => s,
        };
        let index = self.index.read();
        let Some(info) = index.subjects.get(&subject).filter(|i| i.active) else { return Visibility::default() };
        if index.lookup(subject, Level::System).contains(permission) {
            return Visibility { all: true, ..Default::default() };
        }
        let org_view = permission == Permission::view(ResourceKind::Organization);
        let mut orgs = Vec::new();
        let mut projects = Vec::new();
        for b in &info.bindings {
            let perms = role_set(b.role, &index.roles);
            match b.scope {
                Scope::Org { org } if perms.contains(permission) => orgs.push(org),
                Scope::Project { org, .. } if org_view && perms.contains(permission) => orgs.push(org),
                Scope::Project { org, project } if perms.contains(permission) => {
                    projects.push((org, project));
                }
                _ => {}
            }
        }
        orgs.sort_unstable();
        orgs.dedup();
        let mut projects: Vec<ProjectId> = projects.into_iter().filter(|(o, _)| !orgs.contains(o)).map(|(_, p)| p).collect();
        projects.sort_unstable();
        projects.dedup();
        Visibility { all: false, orgs, projects }
    }

    fn scope_removed(&self, scope: &Scope) {
        let mut index = self.index.write();
        let affected: Vec<(Subject, SubjectInfo)> = index
            .subjects
            .iter()
            .filter(|(_, info)| info.bindings.iter().any(|b| scope.contains(&b.scope)))
            .map(|(s, info)| {
                let mut info = info.clone();
                info.bindings.retain(|b| !scope.contains(&b.scope));
                (*s, info)
            })
            .collect();
        for (s, info) in affected {
            index.set_subject(s, info);
        }
    }
}
