//! Shared set-up of the criterion benches of ecp-rs (in `benches/`): seeded tenancy and RBAC data
//! sets, loaded straight through the store.
//!
//! Run them with `cargo bench -p ecp-benches`; results and method are in `BENCHMARKS.md`.

use std::sync::Arc;

use ecp_core::access::{Action, Permission, Principal, ResourceKind, Scope, Subject};
use ecp_core::audit::{AuditEvent, Operation};
use ecp_core::identity::{Binding, BuiltinRole, RoleRef, User, UserState};
use ecp_core::prelude::*;
use ecp_core::{Organization, Project, SqlStore, TenancyLimits, Timestamp};

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
}

/// Seeds `orgs` × `projects_per_org` projects and `users` users: one org admin per organization,
/// then project admins and viewers spread over the projects, a third of them also viewers of a
/// second project.
///
/// # Panics
/// If the store refuses the data (a bug).
pub async fn seed(orgs: usize, projects_per_org: usize, users: usize) -> DataSet {
    let store = Arc::new(SqlStore::memory().await.expect("store"));
    let limits = TenancyLimits::builder()
        .max_organizations(orgs as u64 + 1)
        .max_projects_per_org(projects_per_org as u64 + 1)
        .max_projects((orgs * projects_per_org) as u64 + 1)
        .build()
        .expect("limits");
    let now = Timestamp::now();
    let sys = Principal::system("bench");
    let ev = |op: &'static str| AuditEvent::new(&sys, ResourceKind::Organization, Operation::from_static(op));
    let mut projects = Vec::new();
    let mut org_ids = Vec::new();
    for o in 0..orgs {
        let org = Organization::new(&format!("org {o}"), now).expect("org");
        store.create_org(&org, &limits, &ev("organization.create")).await.expect("create org");
        for p in 0..projects_per_org {
            let project = Project::new(org.id, &format!("p {p}"), now).expect("project");
            store.create_project(&project, &limits, &ev("project.create")).await.expect("create project");
            projects.push(project.scope());
        }
        org_ids.push(org.id);
    }
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
        store.create_user(&user, None, &memberships, &mine, &ev("user.create")).await.expect("create user");
        principals.push(Principal::user(user.id, user.email.clone()));
        bindings.extend(mine);
    }
    DataSet { store, projects, users: principals, bindings }
}

/// A deterministic query mix over the data set: (principal, permission, scope), each drawn so about
/// half are allowed.
pub fn queries(ds: &DataSet, n: usize) -> Vec<(Principal, Permission, Scope)> {
    let kinds = [ResourceKind::EdgeService, ResourceKind::Cluster, ResourceKind::Alarm, ResourceKind::Project, ResourceKind::User];
    let mut out = Vec::with_capacity(n);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let user = &ds.users[(x as usize) % ds.users.len()];
        let own = ds.bindings.iter().find(|b| b.subject == user.subject()).map(|b| b.scope).unwrap_or(Scope::System);
        // Even queries aim at the user's own scope (mostly allowed), odd ones at a random project.
        let scope = if i % 2 == 0 { own } else { ds.projects[(x >> 20) as usize % ds.projects.len()] };
        let action = if (x >> 40).is_multiple_of(2) { Action::View } else { Action::Edit };
        out.push((user.clone(), Permission::new(kinds[(x >> 32) as usize % kinds.len()], action), scope));
    }
    out
}
