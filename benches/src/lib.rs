//! Shared set-up of the criterion benches of ecp-rs (in `benches/`): seeded tenancy and RBAC data
//! sets, loaded straight through the store.
//!
//! Run them with `cargo bench -p ecp-benches`; results and method are in `BENCHMARKS.md`.

use std::collections::HashMap;
use std::sync::Arc;

use ecp_core::access::{Action, Permission, PermissionSet, Principal, ResourceKind, Scope, Subject};
use ecp_core::audit::{AuditEvent, Operation};
use ecp_core::identity::{Binding, BuiltinRole, CustomRole, RoleRef, User, UserState};
use ecp_core::prelude::*;
use ecp_core::{OrgId, Organization, Project, RoleId, SqlStore, TenancyLimits, Timestamp};

/// A seeded data set: organizations × projects, users with one or two bindings each.
#[derive(Debug)]
pub struct DataSet {
    /// The store holding it.
    pub store: Arc<SqlStore>,
    /// Every project's scope.
    pub projects: Vec<Scope>,
    /// Every user's principal.
    pub users: Vec<Principal>,
    /// Every binding, as loaded.
    pub bindings: Vec<Binding>,
    /// The custom roles (none in [`seed`]'s data sets).
    pub roles: Vec<CustomRole>,
}

fn audit_event(op: &'static str) -> AuditEvent {
    AuditEvent::new(&Principal::system("bench"), ResourceKind::Organization, Operation::from_static(op))
}

/// A store with `orgs` organizations of `projects_per_org` projects each: the store, every
/// project's scope (organization by organization) and every organization's id.
async fn tenancy(orgs: usize, projects_per_org: usize) -> (Arc<SqlStore>, Vec<Scope>, Vec<OrgId>) {
    let store = Arc::new(SqlStore::memory().await.expect("store"));
    let limits = TenancyLimits::builder()
        .max_organizations(orgs as u64 + 1)
        .max_projects_per_org(projects_per_org as u64 + 1)
        .max_projects((orgs * projects_per_org) as u64 + 1)
        .build()
        .expect("limits");
    let now = Timestamp::now();
    let mut projects = Vec::new();
    let mut org_ids = Vec::new();
    for o in 0..orgs {
        let org = Organization::new(&format!("org {o}"), now).expect("org");
        store.create_org(&org, &limits, &audit_event("organization.create")).await.expect("create org");
        for p in 0..projects_per_org {
            let project = Project::new(org.id, &format!("p {p}"), now).expect("project");
            store.create_project(&project, &limits, &audit_event("project.create")).await.expect("create project");
            projects.push(project.scope());
        }
        org_ids.push(org.id);
    }
    (store, projects, org_ids)
}

/// Seeds `orgs` × `projects_per_org` projects and `users` users: one org admin per organization,
/// then project admins and viewers spread over the projects, a third of them also viewers of a
/// second project.
///
/// # Panics
/// If the store refuses the data (a bug).
pub async fn seed(orgs: usize, projects_per_org: usize, users: usize) -> DataSet {
    let (store, projects, org_ids) = tenancy(orgs, projects_per_org).await;
    let now = Timestamp::now();
    let mut principals = Vec::new();
    let mut bindings = Vec::new();
    for i in 0..users {
        let user = User::new(&format!("u{i}@example.com"), "u", UserState::Active, now).expect("user");
        let subject = Subject::User(user.id);
        let mut mine = Vec::new();
        if i < orgs {
            mine.push(Binding::new(subject, RoleRef::Builtin(BuiltinRole::OrgAdmin), Scope::Org { org: org_ids[i] }, now));
        } else {
            let p = projects[i % projects.len()];
            let role = if i % 4 == 0 { BuiltinRole::ProjectAdmin } else { BuiltinRole::Viewer };
            mine.push(Binding::new(subject, RoleRef::Builtin(role), p, now));
            let q = projects[(i * 7 + 3) % projects.len()];
            if i % 3 == 0 && q != p && q.org() == p.org() {
                mine.push(Binding::new(subject, RoleRef::Builtin(BuiltinRole::Viewer), q, now));
            }
        }
        let mut memberships: Vec<_> = mine.iter().filter_map(|b| b.scope.org()).collect();
        memberships.dedup();
        store.create_user(&user, None, &memberships, &mine, &audit_event("user.create")).await.expect("create user");
        principals.push(Principal::user(user.id, user.email.clone()));
        bindings.extend(mine);
    }
    DataSet { store, projects, users: principals, bindings, roles: Vec::new() }
}

/// A deterministic query mix over the data set: (principal, permission, scope), each drawn so about
/// half are allowed.
pub fn queries(ds: &DataSet, n: usize) -> Vec<(Principal, Permission, Scope)> {
    let kinds = [ResourceKind::EdgeService, ResourceKind::Cluster, ResourceKind::Alarm, ResourceKind::Project, ResourceKind::User];
    // Each subject's first binding, indexed once (a scan of every binding per query is O(n²) at 100k users).
    let mut first: HashMap<Subject, Scope> = HashMap::with_capacity(ds.users.len());
    for b in &ds.bindings {
        first.entry(b.subject).or_insert(b.scope);
    }
    let mut out = Vec::with_capacity(n);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let user = &ds.users[(x as usize) % ds.users.len()];
        let own = first.get(&user.subject()).copied().unwrap_or(Scope::System);
        // Even queries aim at the user's own scope (mostly allowed), odd ones at a random project.
        let scope = if i % 2 == 0 { own } else { ds.projects[(x >> 20) as usize % ds.projects.len()] };
        let action = if (x >> 40).is_multiple_of(2) { Action::View } else { Action::Edit };
        out.push((user.clone(), Permission::new(kinds[(x >> 32) as usize % kinds.len()], action), scope));
    }
    out
}

/// The kinds of the authorization comparison of issue 7: clusters, edge services, alarms, tags,
/// config deliveries, users, audit, projects.
pub const PEER_KINDS: [ResourceKind; 8] = [
    ResourceKind::Cluster,
    ResourceKind::EdgeService,
    ResourceKind::Alarm,
    ResourceKind::Tag,
    ResourceKind::ConfigDelivery,
    ResourceKind::User,
    ResourceKind::Audit,
    ResourceKind::Project,
];

/// The custom roles of [`seed_with_custom_roles`], system-wide (bindable in every organization):
/// "operator" views everything a custom role may hold, operates clusters and alarms, and edits edge
/// services and config deliveries; "auditor" views audit, users, projects, monitoring and logs.
pub fn custom_roles(now: Timestamp) -> Vec<CustomRole> {
    use ResourceKind as K;
    let viewable = ResourceKind::ALL.into_iter().filter(|k| !matches!(k, K::SystemSettings | K::License)).map(Permission::view);
    let operator = PermissionSet::from_permissions(viewable.chain([
        Permission::operate(K::Cluster),
        Permission::operate(K::Alarm),
        Permission::edit(K::EdgeService),
        Permission::edit(K::ConfigDelivery),
    ]));
    let auditor = PermissionSet::from_permissions([K::Audit, K::User, K::Project, K::Monitoring, K::Log].map(Permission::view));
    [("operator", "runs the fleet of its scope", operator), ("auditor", "reads audit records and who may do what", auditor)]
        .into_iter()
        .map(|(name, description, set)| CustomRole {
            id: RoleId::new(),
            org: None,
            name: name.into(),
            description: description.into(),
            permissions: set.strongest(),
            created_at: now,
            updated_at: now,
        })
        .collect()
}

/// Seeds `orgs` × `projects_per_org` projects and `users` users with two bindings each (about
/// 2 × `users` bindings), built-in and custom roles mixed, every write through the store:
///
/// - users 0 and 1: system admins;
/// - the next `orgs`: one org admin per organization;
/// - the others, by index `j`: a first binding in project `j mod projects` (project admin 2 in 10,
///   "operator" 2 in 10, "auditor" 1 in 10, viewer 5 in 10), and a second one either "operator" of
///   the whole organization (1 in 20) or a role in another project of the same organization (viewer,
///   viewer, operator, project admin in turn), and 1 in 50 of those a third project (viewer).
///
/// # Panics
/// If the store refuses the data (a bug).
pub async fn seed_with_custom_roles(orgs: usize, projects_per_org: usize, users: usize) -> DataSet {
    let (store, projects, org_ids) = tenancy(orgs, projects_per_org).await;
    let now = Timestamp::now();
    let roles = custom_roles(now);
    for role in &roles {
        store.create_role(role, &audit_event("role.create")).await.expect("create role");
    }
    let (operator, auditor) = (RoleRef::Custom(roles[0].id), RoleRef::Custom(roles[1].id));
    let mut principals = Vec::with_capacity(users);
    let mut bindings = Vec::with_capacity(2 * users);
    for i in 0..users {
        let user = User::new(&format!("u{i}@example.com"), "u", UserState::Active, now).expect("user");
        let subject = Subject::User(user.id);
        let mut mine = Vec::with_capacity(2);
        if i < 2 {
            mine.push(Binding::new(subject, RoleRef::Builtin(BuiltinRole::SystemAdmin), Scope::System, now));
        } else if i < 2 + orgs {
            mine.push(Binding::new(subject, RoleRef::Builtin(BuiltinRole::OrgAdmin), Scope::Org { org: org_ids[i - 2] }, now));
        } else {
            let j = i - 2 - orgs;
            let at = j % projects.len();
            let role = match j % 10 {
                0 | 1 => RoleRef::Builtin(BuiltinRole::ProjectAdmin),
                2 | 3 => operator,
                4 => auditor,
                _ => RoleRef::Builtin(BuiltinRole::Viewer),
            };
            let p = projects[at];
            mine.push(Binding::new(subject, role, p, now));
            if j % 20 == 7 {
                mine.push(Binding::new(subject, operator, Scope::Org { org: p.org().expect("a project scope") }, now));
            } else if projects_per_org > 1 {
                let (base, local) = (at - at % projects_per_org, at % projects_per_org);
                let other = base + (local + 1 + (j / projects.len()) % (projects_per_org - 1)) % projects_per_org;
                let role = [
                    RoleRef::Builtin(BuiltinRole::Viewer),
                    RoleRef::Builtin(BuiltinRole::Viewer),
                    operator,
                    RoleRef::Builtin(BuiltinRole::ProjectAdmin),
                ][(j / 7) % 4];
                mine.push(Binding::new(subject, role, projects[other], now));
                if j % 50 == 11 && projects_per_org > 2 {
                    // A few users hold a third project.
                    let third = [local + projects_per_org - 1, local + projects_per_org - 2]
                        .map(|l| base + l % projects_per_org)
                        .into_iter()
                        .find(|t| *t != other)
                        .expect("two candidates, one differs");
                    mine.push(Binding::new(subject, RoleRef::Builtin(BuiltinRole::Viewer), projects[third], now));
                }
            }
        }
        let mut memberships: Vec<_> = mine.iter().filter_map(|b| b.scope.org()).collect();
        memberships.dedup();
        store.create_user(&user, None, &memberships, &mine, &audit_event("user.create")).await.expect("create user");
        principals.push(Principal::user(user.id, user.email.clone()));
        bindings.extend(mine);
    }
    DataSet { store, projects, users: principals, bindings, roles }
}

/// A deterministic, uniform query mix for comparing engines: `n` (principal, permission, scope) over
/// [`PEER_KINDS`] and `actions`, drawn from `seed`. Scopes: 40% one of the user's own binding scopes,
/// 30% a random project, 10% another project of the organization of the user's first binding, 10%
/// that organization, 5% a random organization, 5% the system. Allowed or not as it falls; callers
/// balance the mix themselves.
pub fn query_mix(ds: &DataSet, n: usize, actions: &[Action], seed: u64) -> Vec<(Principal, Permission, Scope)> {
    let mut own: HashMap<Subject, Vec<Scope>> = HashMap::with_capacity(ds.users.len());
    for b in &ds.bindings {
        own.entry(b.subject).or_default().push(b.scope);
    }
    let mut by_org: HashMap<OrgId, Vec<Scope>> = HashMap::new();
    for p in &ds.projects {
        by_org.entry(p.org().expect("a project scope")).or_default().push(*p);
    }
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let user = &ds.users[next() as usize % ds.users.len()];
        let mine = &own[&user.subject()];
        let home = mine[0].org().unwrap_or_else(|| ds.projects[next() as usize % ds.projects.len()].org().expect("a project scope"));
        let scope = match next() % 100 {
            0..40 => mine[next() as usize % mine.len()],
            40..70 => ds.projects[next() as usize % ds.projects.len()],
            70..80 => {
                let in_org = &by_org[&home];
                in_org[next() as usize % in_org.len()]
            }
            80..90 => Scope::Org { org: home },
            90..95 => Scope::Org { org: ds.projects[next() as usize % ds.projects.len()].org().expect("a project scope") },
            _ => Scope::System,
        };
        let kind = PEER_KINDS[next() as usize % PEER_KINDS.len()];
        let action = actions[next() as usize % actions.len()];
        out.push((user.clone(), Permission::new(kind, action), scope));
    }
    out
}
