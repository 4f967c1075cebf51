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

/// What one subject holds, by scope.
#[derive(Debug, Clone, Default)]
struct Grants {
    active: bool,
    system: PermissionSet,
    orgs: Map<OrgId, PermissionSet>,
    projects: Map<ProjectId, (OrgId, PermissionSet)>,
    /// Organizations whose `view organization` comes from a project binding in them.
    org_views: Map<OrgId, u32>,
    bindings: Vec<Binding>,
}

impl Grants {
    fn rebuild(bindings: Vec<Binding>, roles: &Map<RoleId, PermissionSet>, active: bool) -> Self {
        let mut g = Grants { active, bindings: Vec::new(), ..Default::default() };
        for b in &bindings {
            let perms = role_set(b.role, roles);
            match b.scope {
                Scope::System => g.system = g.system.union(perms),
                Scope::Org { org } => {
                    let e = g.orgs.entry(org).or_default();
                    *e = e.union(perms);
                }
                Scope::Project { org, project } => {
                    let e = g.projects.entry(project).or_insert((org, PermissionSet::EMPTY));
                    e.1 = e.1.union(perms);
                    if perms.contains(Permission::view(ResourceKind::Organization)) {
                        *g.org_views.entry(org).or_default() += 1;
                    }
                }
            }
        }
        g.bindings = bindings;
        g
    }

    fn at(&self, scope: &Scope) -> PermissionSet {
        let mut set = self.system;
        match scope {
            Scope::System => {}
            Scope::Org { org } => {
                if let Some(p) = self.orgs.get(org) {
                    set = set.union(*p);
                }
            }
            Scope::Project { org, project } => {
                if let Some(p) = self.orgs.get(org) {
                    set = set.union(*p);
                }
                if let Some((_, p)) = self.projects.get(project) {
                    set = set.union(*p);
                }
            }
        }
        set
    }
}

fn role_set(role: RoleRef, roles: &Map<RoleId, PermissionSet>) -> PermissionSet {
    match role {
        RoleRef::Builtin(r) => builtin_permissions(r),
        // A binding to a role that is gone grants nothing.
        RoleRef::Custom(id) => roles.get(&id).copied().unwrap_or(PermissionSet::EMPTY),
    }
}

#[derive(Debug, Default)]
struct Index {
    roles: Map<RoleId, PermissionSet>,
    subjects: Map<Subject, Grants>,
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
        let this = RbacAuthorizer { store, clock, index: RwLock::new(Index::default()) };
        this.reload().await?;
        Ok(this)
    }

    /// Rebuilds the whole index from the store.
    ///
    /// # Errors
    /// `Backend` if the store fails; the old index stays in force.
    pub async fn reload(&self) -> Result<()> {
        let roles: Map<RoleId, PermissionSet> = self
            .store
            .list_roles(None)
            .await?
            .into_iter()
            .map(|r| (r.id, PermissionSet::from_permissions(r.permissions)))
            .collect();
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
        let subjects = by_subject
            .into_iter()
            .map(|(s, bindings)| {
                let active = !inactive.contains(&s);
                (s, Grants::rebuild(bindings, &roles, active))
            })
            .collect();
        *self.index.write() = Index { roles, subjects };
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
        let mut index = self.index.write();
        if bindings.is_empty() && !active {
            index.subjects.remove(&subject);
        } else {
            let g = Grants::rebuild(bindings, &index.roles, active);
            index.subjects.insert(subject, g);
        }
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
        let affected: Vec<Subject> = {
            let mut index = self.index.write();
            match perms {
                Some(p) => index.roles.insert(role, p),
                None => index.roles.remove(&role),
            };
            index
                .subjects
                .iter()
                .filter(|(_, g)| g.bindings.iter().any(|b| b.role == RoleRef::Custom(role)))
                .map(|(s, _)| *s)
                .collect()
        };
        let mut index = self.index.write();
        let roles = index.roles.clone();
        for s in affected {
            if let Some(g) = index.subjects.get_mut(&s) {
                *g = Grants::rebuild(std::mem::take(&mut g.bindings), &roles, g.active);
            }
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
                match index.subjects.get(&s) {
                    Some(g) if g.active => g.at(scope),
                    _ => PermissionSet::EMPTY,
                }
            }
        }
    }

    /// The number of subjects and custom roles in the index.
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
        let Some(g) = index.subjects.get(&subject) else { return Err(Denial::UnknownSubject) };
        if !g.active {
            return Err(Denial::SubjectDisabled);
        }
        if g.at(scope).contains(permission) {
            return Ok(());
        }
        if let (Scope::Org { org }, true) = (scope, permission == Permission::view(ResourceKind::Organization)) {
            if g.org_views.contains_key(org) {
                return Ok(());
            }
        }
        Err(Denial::NotGranted)
    }

    fn has_access(&self, principal: &Principal, scope: &Scope) -> bool {
        let subject = match principal.subject() {
            Subject::System => return true,
            Subject::Anonymous => return false,
            s => s,
        };
        let index = self.index.read();
        let Some(g) = index.subjects.get(&subject) else { return false };
        if !g.active {
            return false;
        }
        if !g.system.is_empty() {
            return true;
        }
        match scope {
            Scope::System => false,
            Scope::Org { org } => g.orgs.contains_key(org) || g.projects.values().any(|(o, _)| o == org),
            Scope::Project { org, project } => g.orgs.contains_key(org) || g.projects.contains_key(project),
        }
    }

    fn visibility(&self, principal: &Principal, permission: Permission) -> Visibility {
        let subject = match principal.subject() {
            Subject::System => return Visibility { all: true, ..Default::default() },
            Subject::Anonymous => return Visibility::default(),
            s => s,
        };
        let index = self.index.read();
        let Some(g) = index.subjects.get(&subject).filter(|g| g.active) else { return Visibility::default() };
        if g.system.contains(permission) {
            return Visibility { all: true, ..Default::default() };
        }
        let mut orgs: Vec<OrgId> = g.orgs.iter().filter(|(_, p)| p.contains(permission)).map(|(o, _)| *o).collect();
        if permission == Permission::view(ResourceKind::Organization) {
            orgs.extend(g.org_views.keys().copied());
        }
        orgs.sort_unstable();
        orgs.dedup();
        let mut projects: Vec<ProjectId> = g
            .projects
            .iter()
            .filter(|(_, (org, p))| p.contains(permission) && !orgs.contains(org))
            .map(|(id, _)| *id)
            .collect();
        projects.sort_unstable();
        Visibility { all: false, orgs, projects }
    }

    fn scope_removed(&self, scope: &Scope) {
        let mut index = self.index.write();
        let roles = index.roles.clone();
        for g in index.subjects.values_mut() {
            let before = g.bindings.len();
            g.bindings.retain(|b| !scope.contains(&b.scope));
            if g.bindings.len() != before {
                *g = Grants::rebuild(std::mem::take(&mut g.bindings), &roles, g.active);
            }
        }
    }
}
