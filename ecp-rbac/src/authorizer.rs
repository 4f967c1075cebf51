//! [`RbacAuthorizer`]: the built-in and custom roles of the store, precomputed into an in-memory
//! index so a check is a few hash lookups and never a store round trip.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ecp_core::access::{Authorizer, Denial, Permission, PermissionSet, Principal, ResourceKind, Scope, Subject, Visibility};
use ecp_core::identity::{Binding, BindingFilter, RoleRef};
use ecp_core::{ApiKeyId, Clock, OrgId, PageRequest, ProjectId, Result, RoleId, Store, Timestamp};
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

/// A binding as the index keeps it: the role and where it is bound (what checks, visibility and
/// updates need, without the binding's id and dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    role: RoleRef,
    scope: Scope,
}

impl From<&Binding> for Held {
    fn from(b: &Binding) -> Self {
        Held { role: b.role, scope: b.scope }
    }
}

/// What one subject holds: its bindings (the source of truth for updates) and what is derived from
/// them for the slower questions (visibility, access, why a check was denied).
#[derive(Debug, Clone, Default)]
struct SubjectInfo {
    active: bool,
    bindings: Vec<Held>,
}

fn role_set(role: RoleRef, roles: &Map<RoleId, PermissionSet>) -> PermissionSet {
    match role {
        RoleRef::Builtin(r) => builtin_permissions(r),
        // A binding to a role that is gone grants nothing.
        RoleRef::Custom(id) => roles.get(&id).copied().unwrap_or(PermissionSet::EMPTY),
    }
}

/// How many organization or project grants a subject keeps inline in its [`Grants`]: most
/// subjects hold one or two bindings, so a check is one lookup and a scan of the entry it finds.
const INLINE: usize = 2;

/// What a check reads about one subject, in one hash-map entry: the permissions held at system
/// scope, and those held in up to [`INLINE`] organizations or projects. A subject bound in more
/// has all of them in [`Index::spill`] instead (`spilled`).
#[derive(Debug, Clone, Copy)]
struct Grants {
    system: PermissionSet,
    /// Unused slots are `(Level::System, EMPTY)`, which no organization or project matches. Levels
    /// and permissions are kept in two arrays (not pairs, which pad each level to 24 bytes) so the
    /// entry stays small.
    levels: [Level; INLINE],
    perms: [PermissionSet; INLINE],
    spilled: bool,
    /// A disabled subject is known (its denials say why) but holds nothing.
    disabled: bool,
}

/// The index. Checks read `grants`, one entry per subject (and `spill` for the few subjects bound
/// in more than [`INLINE`] scopes): one hash lookup, where a plain map of (subject, scope) needs
/// one to three.
#[derive(Debug, Default)]
struct Index {
    roles: Map<RoleId, PermissionSet>,
    grants: Map<Subject, Grants>,
    spill: Map<(Subject, Level), PermissionSet>,
    subjects: Map<Subject, SubjectInfo>,
    /// When API keys that expire stop (the earliest of themselves and the keys that minted
    /// them): checked at decision time, so an expired key holds nothing before any reload.
    expiring: Map<Subject, Timestamp>,
}

impl Index {
    /// The permissions `s` holds at exactly `level` (not inherited from above).
    fn at(&self, s: Subject, g: &Grants, level: Level) -> PermissionSet {
        if g.spilled {
            self.spill.get(&(s, level)).copied().unwrap_or(PermissionSet::EMPTY)
        } else {
            g.levels.iter().zip(g.perms).filter(|(l, _)| **l == level).fold(PermissionSet::EMPTY, |acc, (_, p)| acc.union(p))
        }
    }

    fn lookup(&self, s: Subject, level: Level) -> PermissionSet {
        match (self.grants.get(&s), level) {
            (None, _) => PermissionSet::EMPTY,
            (Some(g), Level::System) => g.system,
            (Some(g), level) => self.at(s, g, level),
        }
    }

    fn held(&self, s: Subject, scope: &Scope) -> PermissionSet {
        let Some(g) = self.grants.get(&s) else { return PermissionSet::EMPTY };
        match scope {
            Scope::System => g.system,
            Scope::Org { org } => g.system.union(self.at(s, g, Level::Org(*org))),
            Scope::Project { org, project } => {
                g.system.union(self.at(s, g, Level::Org(*org))).union(self.at(s, g, Level::Project(*project)))
            }
        }
    }

    /// Replaces what a subject holds.
    fn set_subject(&mut self, s: Subject, info: SubjectInfo) {
        self.clear_grants(s);
        if info.bindings.is_empty() && info.active {
            self.subjects.remove(&s);
            return;
        }
        let mut g = Grants {
            system: PermissionSet::EMPTY,
            levels: [Level::System; INLINE],
            perms: [PermissionSet::EMPTY; INLINE],
            spilled: false,
            disabled: !info.active,
        };
        if info.active {
            // A subject holds at most one role per scope, but merge anyway: the union is the truth.
            let mut levels: Vec<(Level, PermissionSet)> = Vec::with_capacity(info.bindings.len());
            for b in &info.bindings {
                let perms = role_set(b.role, &self.roles);
                match Level::of(&b.scope) {
                    Level::System => g.system = g.system.union(perms),
                    level => match levels.iter_mut().find(|(l, _)| *l == level) {
                        Some((_, p)) => *p = p.union(perms),
                        None => levels.push((level, perms)),
                    },
                }
            }
            if levels.len() <= INLINE {
                for (i, (l, p)) in levels.into_iter().enumerate() {
                    g.levels[i] = l;
                    g.perms[i] = p;
                }
            } else {
                g.spilled = true;
                self.spill.extend(levels.into_iter().map(|(l, p)| ((s, l), p)));
            }
        }
        self.grants.insert(s, g);
        self.subjects.insert(s, info);
    }

    fn clear_grants(&mut self, s: Subject) {
        if let Some(g) = self.grants.remove(&s)
            && g.spilled
            && let Some(old) = self.subjects.get(&s)
        {
            for b in &old.bindings {
                self.spill.remove(&(s, Level::of(&b.scope)));
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

/// The most subjects one [`RbacAuthorizer::reload_subject`] walks (a subject and the keys that
/// hang from it).
const MAX_DEPENDENTS: usize = 10_000;

/// The longest chain of keys minting keys that is followed; a longer one does not stand.
const MAX_KEY_CHAIN: usize = 64;

async fn user_enabled(store: &dyn Store, id: ecp_core::UserId) -> Result<bool> {
    match store.get_user(id).await {
        Ok(u) => Ok(u.enabled),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether an API key stands: it is not revoked, and its creator stands (an enabled user, the
/// system, or a key that stands, however far up). `Some` with the earliest expiry along the way
/// (the caller compares it with its clock), `None` when it does not stand whatever the time.
///
/// # Errors
/// `Backend`.
pub(crate) async fn api_key_standing(store: &dyn Store, id: ApiKeyId) -> Result<Option<Option<Timestamp>>> {
    let mut expires: Option<Timestamp> = None;
    let mut current = id;
    for _ in 0..MAX_KEY_CHAIN {
        let key = match store.get_api_key(current).await {
            Ok((key, _)) => key,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        if let Some(t) = key.expires_at {
            expires = Some(expires.map_or(t, |e| e.min(t)));
        }
        match key.created_by {
            Subject::ApiKey(parent) => current = parent,
            Subject::User(user) => return Ok(user_enabled(store, user).await?.then_some(expires)),
            Subject::System => return Ok(Some(expires)),
            Subject::Anonymous => return Ok(None),
        }
    }
    Ok(None)
}

/// The role-based [`Authorizer`] of ecp-rs.
///
/// Loaded from the store at start ([`RbacAuthorizer::load`]); the services of this crate keep it up
/// to date as they change bindings, roles and users. Several replicas of a host share one store but
/// each has its own index: call [`RbacAuthorizer::reload`] (or [`RbacAuthorizer::reload_subject`]
/// for one subject) when another replica may have changed access.
///
/// Checks take a read lock and do one hash lookup (three for a subject bound in more than two
/// organizations or projects); nothing allocates.
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
    /// [`RbacAuthorizer::spawn_follow`] calls it whenever the store signals a change, and
    /// periodically; call it yourself before a decision that must see the latest grants.
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

    /// Keeps the index in step with the other replicas sharing the store, without being asked:
    /// on a store that signals ([`Store::signals`], PostgreSQL) it syncs as soon as an audit record
    /// is committed anywhere (signals that pile up during a sync make one more sync, not one each)
    /// and after a lost connection; on every store, also every `every` (a store that does not
    /// signal relies on that alone). Runs until the returned task is aborted or the authorizer
    /// dropped. [`AccessControl::new`](crate::AccessControl::new) starts it.
    pub fn spawn_follow(self: &Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        use ecp_core::StoreSignal;
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};

        let weak = Arc::downgrade(self);
        let mut signals = self.store.signals();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let heard = async {
                    match signals.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tick.tick() => {}
                    got = heard => match got {
                        Ok(StoreSignal::Audit | StoreSignal::Resync) | Err(RecvError::Lagged(_)) => {
                            // One sync reads every record appended so far: what else waits is covered.
                            if let Some(rx) = signals.as_mut() {
                                while !matches!(rx.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
                            }
                        }
                        Ok(_) => continue,
                        Err(RecvError::Closed) => {
                            signals = None;
                            continue;
                        }
                    },
                }
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
        let mut by_subject: Map<Subject, Vec<Held>> = Map::default();
        let mut page = PageRequest::first(1000);
        loop {
            let got = self.store.all_bindings(&page).await?;
            for b in got.items {
                by_subject.entry(b.subject).or_default().push(Held::from(&b));
            }
            match got.next {
                Some(cursor) => page = PageRequest::after(1000, cursor),
                None => break,
            }
        }
        let inactive: std::collections::HashSet<Subject> = self.store.inactive_subjects(self.clock.now()).await?.into_iter().collect();
        let expiring = self.store.api_key_expiries().await?.into_iter().map(|(k, t)| (Subject::ApiKey(k), t)).collect();
        let mut index = Index { roles, expiring, ..Index::default() };
        for (s, bindings) in by_subject {
            let active = !inactive.contains(&s);
            index.set_subject(s, SubjectInfo { active, bindings });
        }
        *self.index.write() = index;
        Ok(())
    }

    /// Reloads one subject's bindings and whether it may act, then the same for every API key it
    /// created, and the keys those minted (a key stands only while its creator does).
    ///
    /// # Errors
    /// `Backend` if the store fails.
    pub async fn reload_subject(&self, subject: Subject) -> Result<()> {
        if matches!(subject, Subject::System | Subject::Anonymous) {
            return Ok(());
        }
        let mut todo = vec![subject];
        let mut seen = std::collections::HashSet::new();
        while let Some(s) = todo.pop() {
            if !seen.insert(s) || seen.len() > MAX_DEPENDENTS {
                continue;
            }
            self.reload_one(s).await?;
            todo.extend(self.store.api_keys_created_by(s).await?.into_iter().map(Subject::ApiKey));
        }
        Ok(())
    }

    async fn reload_one(&self, subject: Subject) -> Result<()> {
        let bindings = self.store.list_bindings(&BindingFilter { subject: Some(subject), ..Default::default() }).await?;
        let (active, expires) = match subject {
            Subject::User(id) => (user_enabled(self.store.as_ref(), id).await?, None),
            Subject::ApiKey(id) => match api_key_standing(self.store.as_ref(), id).await? {
                Some(expires) => (expires.is_none_or(|t| t > self.clock.now()), expires),
                None => (false, None),
            },
            Subject::System | Subject::Anonymous => (true, None),
        };
        let bindings = bindings.iter().map(Held::from).collect();
        let mut index = self.index.write();
        index.set_subject(subject, SubjectInfo { active, bindings });
        match expires {
            Some(t) => index.expiring.insert(subject, t),
            None => index.expiring.remove(&subject),
        };
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
            s => {
                let index = self.index.read();
                if self.expired(&index, s) { PermissionSet::EMPTY } else { index.held(s, scope) }
            }
        }
    }

    /// The number of subjects with bindings, and of custom roles, in the index.
    pub fn len(&self) -> (usize, usize) {
        let index = self.index.read();
        (index.subjects.len(), index.roles.len())
    }

    /// Whether `subject` is an API key past its expiry (or its minting key's).
    fn expired(&self, index: &Index, subject: Subject) -> bool {
        matches!(subject, Subject::ApiKey(_)) && index.expiring.get(&subject).is_some_and(|t| *t <= self.clock.now())
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
        let Some(g) = index.grants.get(&subject) else { return Err(Denial::UnknownSubject) };
        if self.expired(&index, subject) {
            return Err(Denial::SubjectDisabled);
        }
        let granted = |level| index.at(subject, g, level).contains(permission);
        let allowed = g.system.contains(permission)
            || match scope {
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
        Err(if g.disabled { Denial::SubjectDisabled } else { Denial::NotGranted })
    }

    fn has_access(&self, principal: &Principal, scope: &Scope) -> bool {
        let subject = match principal.subject() {
            Subject::System => return true,
            Subject::Anonymous => return false,
            s => s,
        };
        let index = self.index.read();
        let Some(info) = index.subjects.get(&subject).filter(|i| i.active && !self.expired(&index, subject)) else { return false };
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
        let Some(info) = index.subjects.get(&subject).filter(|i| i.active && !self.expired(&index, subject)) else {
            return Visibility::default();
        };
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

#[cfg(test)]
mod tests {
    use ecp_core::UserId;
    use ecp_core::identity::BuiltinRole;

    use super::*;

    fn held(role: BuiltinRole, scope: Scope) -> Held {
        Held { role: RoleRef::Builtin(role), scope }
    }

    #[test]
    fn grants_inline_then_spilled_then_inline_again() {
        let org = OrgId::new();
        let [p1, p2, p3] = [(); 3].map(|()| Scope::Project { org, project: ProjectId::new() });
        let other = Scope::Project { org, project: ProjectId::new() };
        let s = Subject::User(UserId::new());
        let edit = Permission::edit(ResourceKind::EdgeService);
        let view = Permission::view(ResourceKind::EdgeService);
        let mut index = Index::default();

        let two = vec![held(BuiltinRole::ProjectAdmin, p1), held(BuiltinRole::Viewer, p2)];
        index.set_subject(s, SubjectInfo { active: true, bindings: two });
        assert!(!index.grants[&s].spilled);
        assert!(index.held(s, &p1).contains(edit));
        assert!(index.held(s, &p2).contains(view) && !index.held(s, &p2).contains(edit));
        assert!(index.held(s, &other).is_empty());

        let three = vec![held(BuiltinRole::ProjectAdmin, p1), held(BuiltinRole::Viewer, p2), held(BuiltinRole::Viewer, p3)];
        index.set_subject(s, SubjectInfo { active: true, bindings: three });
        assert!(index.grants[&s].spilled);
        assert_eq!(index.spill.len(), 3);
        assert!(index.held(s, &p1).contains(edit));
        assert!(index.held(s, &p3).contains(view) && !index.held(s, &p3).contains(edit));
        assert!(index.held(s, &other).is_empty());

        index.set_subject(s, SubjectInfo { active: true, bindings: vec![held(BuiltinRole::OrgAdmin, Scope::Org { org })] });
        assert!(!index.grants[&s].spilled);
        assert!(index.spill.is_empty(), "a subject's spilled grants go when it is replaced");
        assert!(index.held(s, &other).contains(edit), "an organization grant covers its projects");
        assert!(index.held(s, &Scope::System).is_empty());

        index.set_subject(s, SubjectInfo { active: false, bindings: vec![held(BuiltinRole::OrgAdmin, Scope::Org { org })] });
        assert!(index.grants[&s].disabled);
        assert!(index.held(s, &other).is_empty(), "a disabled subject holds nothing");

        index.set_subject(s, SubjectInfo { active: true, bindings: Vec::new() });
        assert!(!index.grants.contains_key(&s) && !index.subjects.contains_key(&s));
    }
}
