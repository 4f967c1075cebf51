//! Tenant isolation, as a property: thousands of random operations by random principals of
//! several organizations (org admins, project admins, viewers, a custom-role user, an API key),
//! aimed at random targets of every organization. None of them ever reads or changes another
//! organization's data, and afterwards the store and the authorizer's index are consistent.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use ecp_core::access::{Action, Authorizer, Permission, ResourceKind, Scope, Subject};
use ecp_core::audit::AuditQuery;
use ecp_core::identity::{BindingFilter, BuiltinRole, RoleRef, UserFilter};
use ecp_core::prelude::*;
use ecp_core::store::ProjectFilter;
use ecp_core::{OrgId, PageRequest, Principal, ProjectId, UserId, verify_audit};
use ecp_rbac::{Grant, NewApiKey, NewUser, RbacAuthorizer};
use proptest::prelude::*;

use common::{World, world};

#[derive(Debug, Clone)]
enum Op {
    GetOrg(usize),
    RenameOrg(usize),
    DeleteOrg(usize),
    ListOrgs,
    CreateProject(usize),
    GetProject(usize),
    RenameProject(usize),
    DeleteProject(usize),
    ListProjects,
    Usage(usize),
    GetUser(usize),
    ListUsers,
    CreateUser(usize, u8),
    AddToOrg(usize, usize),
    RemoveFromOrg(usize, usize),
    Grant(usize, usize, u8),
    Revoke(usize, usize),
    CreateRole(usize),
    ListRoles(usize),
    QueryAudit,
    CreateApiKey(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..64usize;
    prop_oneof![
        i.clone().prop_map(Op::GetOrg),
        i.clone().prop_map(Op::RenameOrg),
        i.clone().prop_map(Op::DeleteOrg),
        Just(Op::ListOrgs),
        i.clone().prop_map(Op::CreateProject),
        i.clone().prop_map(Op::GetProject),
        i.clone().prop_map(Op::RenameProject),
        i.clone().prop_map(Op::DeleteProject),
        Just(Op::ListProjects),
        i.clone().prop_map(Op::Usage),
        i.clone().prop_map(Op::GetUser),
        Just(Op::ListUsers),
        (i.clone(), any::<u8>()).prop_map(|(a, r)| Op::CreateUser(a, r)),
        (i.clone(), i.clone()).prop_map(|(a, b)| Op::AddToOrg(a, b)),
        (i.clone(), i.clone()).prop_map(|(a, b)| Op::RemoveFromOrg(a, b)),
        (i.clone(), i.clone(), any::<u8>()).prop_map(|(a, b, r)| Op::Grant(a, b, r)),
        (i.clone(), i.clone()).prop_map(|(a, b)| Op::Revoke(a, b)),
        i.clone().prop_map(Op::CreateRole),
        i.clone().prop_map(Op::ListRoles),
        Just(Op::QueryAudit),
        i.prop_map(Op::CreateApiKey),
    ]
}

struct Run {
    w: World,
    principals: Vec<Principal>,
    orgs: Vec<OrgId>,
    projects: Vec<ProjectId>,
    users: Vec<UserId>,
    counter: usize,
}

fn pick<T: Copy>(v: &[T], i: usize) -> T {
    v[i % v.len()]
}

const ROLES: [BuiltinRole; 4] = [BuiltinRole::SystemAdmin, BuiltinRole::OrgAdmin, BuiltinRole::ProjectAdmin, BuiltinRole::Viewer];

impl Run {
    async fn new() -> Run {
        let w = world(true).await;
        let mut orgs = Vec::new();
        let mut projects = Vec::new();
        for name in ["a", "b", "c"] {
            let o = w.org(name).await;
            for p in ["one", "two"] {
                projects.push(w.project(&o, p).await.id());
            }
            orgs.push(o.id);
        }
        let scope_p = |i: usize| Scope::Project { org: orgs[i / 2], project: projects[i] };
        let mut principals = Vec::new();
        for (i, org) in orgs.iter().enumerate() {
            principals.push(w.user_with(&format!("oa{i}@example.com"), BuiltinRole::OrgAdmin, Scope::Org { org: *org }).await);
        }
        principals.push(w.user_with("pa0@example.com", BuiltinRole::ProjectAdmin, scope_p(0)).await);
        principals.push(w.user_with("pa2@example.com", BuiltinRole::ProjectAdmin, scope_p(2)).await);
        principals.push(w.user_with("v1@example.com", BuiltinRole::Viewer, scope_p(1)).await);
        principals.push(w.user_with("v3@example.com", BuiltinRole::Viewer, Scope::Org { org: orgs[1] }).await);
        let role =
            w.ac.users
                .create_role(
                    &w.admin,
                    Some(orgs[2]),
                    "Operator",
                    "",
                    &[Permission::operate(ResourceKind::EdgeService), Permission::edit(ResourceKind::User)],
                )
                .await
                .unwrap();
        let op =
            w.ac.users.create_user(&w.admin, NewUser::new("op@example.com", "Op").grant(Grant::custom(role.id, scope_p(4)))).await.unwrap();
        principals.push(Principal::user(op.id, op.email));
        let key =
            w.ac.users
                .create_api_key(&w.admin, NewApiKey::new("key").grant(Grant::builtin(BuiltinRole::ProjectAdmin, scope_p(3))))
                .await
                .unwrap();
        principals.push(Principal::api_key(key.key.id, "key"));
        let users = principals.iter().filter_map(|p| match p.subject() {
            Subject::User(u) => Some(u),
            _ => None,
        });
        let users = users.collect();
        Run { w, principals, orgs, projects, users, counter: 0 }
    }

    /// The organizations where `p` holds anything.
    async fn home(&self, p: &Principal) -> BTreeSet<OrgId> {
        let bindings = self.w.store.list_bindings(&BindingFilter { subject: Some(p.subject()), ..Default::default() }).await.unwrap();
        bindings.iter().filter_map(|b| b.scope.org()).collect()
    }

    /// Everything of one organization, to compare before and after an operation.
    async fn snapshot(&self, org: OrgId) -> String {
        let s = &self.w.store;
        let o = s.get_org(org).await.ok();
        let projects =
            s.list_projects(&ProjectFilter { org: Some(org), ..Default::default() }, &PageRequest::first(1000)).await.unwrap().items;
        let users = s.list_users(&UserFilter { org: Some(org), ..Default::default() }, &PageRequest::first(1000)).await.unwrap().items;
        let bindings = s.list_bindings(&BindingFilter { org: Some(org), ..Default::default() }).await.unwrap();
        let roles: Vec<_> = s.list_roles(Some(org)).await.unwrap().into_iter().filter(|r| r.org == Some(org)).collect();
        let keys = s.list_api_keys(Some(org)).await.unwrap();
        format!("{o:?}{projects:?}{users:?}{bindings:?}{roles:?}{keys:?}")
    }

    async fn project_org(&self, p: ProjectId) -> Option<OrgId> {
        self.w.store.get_project(p).await.ok().map(|p| p.org())
    }

    async fn user_orgs(&self, u: UserId) -> BTreeSet<OrgId> {
        self.w.store.user_orgs(u).await.unwrap().into_iter().collect()
    }

    fn fresh(&mut self) -> usize {
        self.counter += 1;
        self.counter
    }

    /// Runs one operation by `p`, checks what it read, and returns the organizations it aimed at.
    async fn apply(&mut self, p: &Principal, op: &Op, home: &BTreeSet<OrgId>) -> (Vec<OrgId>, bool) {
        let n = self.fresh();
        let ac = self.w.ac.clone();
        let read_ok = |org: Option<OrgId>| org.is_some_and(|o| home.contains(&o));
        match *op {
            Op::GetOrg(i) => {
                let o = pick(&self.orgs, i);
                let r = ac.tenancy.get_org(p, o).await;
                (vec![o], r.is_ok())
            }
            Op::RenameOrg(i) => {
                let o = pick(&self.orgs, i);
                (vec![o], ac.tenancy.rename_org(p, o, &format!("renamed {n}")).await.is_ok())
            }
            Op::DeleteOrg(i) => {
                let o = pick(&self.orgs, i);
                (vec![o], ac.tenancy.delete_org(p, o).await.is_ok())
            }
            Op::ListOrgs => {
                for o in ac.tenancy.list_orgs(p, &PageRequest::first(1000)).await.unwrap().items {
                    assert!(home.contains(&o.id), "{p} listed a foreign organization");
                }
                (vec![], false)
            }
            Op::CreateProject(i) => {
                let o = pick(&self.orgs, i);
                let r = ac.tenancy.create_project(p, o, &format!("new {n}")).await;
                if let Ok(pr) = &r {
                    self.projects.push(pr.id());
                }
                (vec![o], r.is_ok())
            }
            Op::GetProject(i) | Op::Usage(i) => {
                let pr = pick(&self.projects, i);
                let org = self.project_org(pr).await;
                let ok = match op {
                    Op::GetProject(_) => ac.tenancy.get_project(p, pr).await.is_ok(),
                    _ => ac.tenancy.project_usage(p, pr).await.is_ok(),
                };
                (org.into_iter().collect(), ok)
            }
            Op::RenameProject(i) => {
                let pr = pick(&self.projects, i);
                let org = self.project_org(pr).await;
                (org.into_iter().collect(), ac.tenancy.rename_project(p, pr, &format!("p {n}")).await.is_ok())
            }
            Op::DeleteProject(i) => {
                let pr = pick(&self.projects, i);
                let org = self.project_org(pr).await;
                (org.into_iter().collect(), ac.tenancy.delete_project(p, pr).await.is_ok())
            }
            Op::ListProjects => {
                for pr in ac.tenancy.list_projects(p, None, &PageRequest::first(1000)).await.unwrap().items {
                    assert!(home.contains(&pr.org()), "{p} listed a foreign project");
                }
                (vec![], false)
            }
            Op::GetUser(i) => {
                let u = pick(&self.users, i);
                let orgs = self.user_orgs(u).await;
                if ac.users.get_user(p, u).await.is_ok() && p.subject() != Subject::User(u) {
                    assert!(orgs.iter().any(|o| home.contains(o)), "{p} read a user of other organizations only");
                }
                (vec![], false)
            }
            Op::ListUsers => {
                for u in ac.users.list_users(p, &UserFilter::default(), &PageRequest::first(1000)).await.unwrap().items {
                    let orgs = self.user_orgs(u.id).await;
                    assert!(orgs.iter().any(|o| home.contains(o)), "{p} listed a user of other organizations only");
                }
                (vec![], false)
            }
            Op::CreateUser(i, r) => {
                let pr = pick(&self.projects, i);
                let Some(org) = self.project_org(pr).await else { return (vec![], false) };
                let role = ROLES[r as usize % 4];
                let scope = if role == BuiltinRole::OrgAdmin { Scope::Org { org } } else { Scope::Project { org, project: pr } };
                let r = ac.users.create_user(p, NewUser::new(format!("u{n}@example.com"), "U").grant(Grant::builtin(role, scope))).await;
                if let Ok(u) = &r {
                    self.users.push(u.id);
                }
                (vec![org], r.is_ok())
            }
            Op::AddToOrg(i, j) => {
                let o = pick(&self.orgs, i);
                let u = pick(&self.users, j);
                (vec![o], ac.users.add_to_org(p, o, u, None).await.is_ok())
            }
            Op::RemoveFromOrg(i, j) => {
                let o = pick(&self.orgs, i);
                let u = pick(&self.users, j);
                (vec![o], ac.users.remove_from_org(p, o, u).await.is_ok())
            }
            Op::Grant(i, j, r) => {
                let pr = pick(&self.projects, i);
                let Some(org) = self.project_org(pr).await else { return (vec![], false) };
                let u = pick(&self.users, j);
                let role = ROLES[r as usize % 4];
                let scope = if role == BuiltinRole::OrgAdmin { Scope::Org { org } } else { Scope::Project { org, project: pr } };
                (vec![org], ac.users.grant(p, Subject::User(u), Grant::builtin(role, scope)).await.is_ok())
            }
            Op::Revoke(i, j) => {
                let pr = pick(&self.projects, i);
                let Some(org) = self.project_org(pr).await else { return (vec![], false) };
                let u = pick(&self.users, j);
                (vec![org], ac.users.revoke(p, Subject::User(u), Scope::Project { org, project: pr }).await.is_ok())
            }
            Op::CreateRole(i) => {
                let o = pick(&self.orgs, i);
                let r = ac.users.create_role(p, Some(o), &format!("role {n}"), "", &[Permission::view(ResourceKind::Log)]).await;
                (vec![o], r.is_ok())
            }
            Op::ListRoles(i) => {
                let o = pick(&self.orgs, i);
                if let Ok(roles) = ac.users.list_roles(p, Some(o)).await {
                    assert!(home.contains(&o), "{p} listed the roles of a foreign organization");
                    assert!(roles.iter().all(|r| r.org.is_none() || r.org == Some(o)));
                }
                (vec![], false)
            }
            Op::QueryAudit => {
                if let Ok(page) = ac.audit.query(p, &AuditQuery::default(), &PageRequest::first(1000)).await {
                    for r in page.items {
                        let org = r.event.org.as_ref().map(|o| o.id);
                        assert!(read_ok(org), "{p} read a foreign audit record: {:?}", r.event.operation);
                    }
                }
                (vec![], false)
            }
            Op::CreateApiKey(i) => {
                let pr = pick(&self.projects, i);
                let Some(org) = self.project_org(pr).await else { return (vec![], false) };
                let grant = Grant::builtin(BuiltinRole::Viewer, Scope::Project { org, project: pr });
                (vec![org], ac.users.create_api_key(p, NewApiKey::new(format!("k{n}")).grant(grant)).await.is_ok())
            }
        }
    }
}

async fn scenario(ops: Vec<(usize, Op)>) {
    let mut run = Run::new().await;
    for (who, op) in &ops {
        let p = run.principals[who % run.principals.len()].clone();
        let home = run.home(&p).await;
        let foreign: Vec<OrgId> = run.orgs.iter().copied().filter(|o| !home.contains(o)).collect();
        let mut before = Vec::new();
        for o in &foreign {
            before.push(run.snapshot(*o).await);
        }
        let (targets, succeeded) = run.apply(&p, op, &home).await;
        if succeeded {
            for t in &targets {
                assert!(home.contains(t), "{p} succeeded at {op:?} in a foreign organization");
            }
        }
        for (o, was) in foreign.iter().zip(before) {
            assert_eq!(run.snapshot(*o).await, was, "{p} changed foreign organization {o} with {op:?}");
        }
    }

    // The store is consistent: counters match rows and the audit chain is whole.
    let s = run.w.store.clone();
    let orgs = s.list_orgs(None, &PageRequest::first(1000)).await.unwrap().items;
    for o in &orgs {
        let rows = s.list_projects(&ProjectFilter { org: Some(o.id), ..Default::default() }, &PageRequest::first(1000)).await.unwrap();
        assert_eq!(o.project_count, rows.items.len() as u64);
    }
    verify_audit(s.as_ref(), None).await.unwrap();

    // The index, kept up to date change by change, decides exactly like one loaded afresh.
    let fresh = RbacAuthorizer::load(s.clone(), Arc::new(run.w.clock.clone())).await.unwrap();
    let live = run.w.ac.authorizer.as_ref();
    let mut scopes = vec![Scope::System];
    for o in &orgs {
        scopes.push(Scope::Org { org: o.id });
    }
    for pr in s.list_projects(&ProjectFilter::default(), &PageRequest::first(1000)).await.unwrap().items {
        scopes.push(pr.scope());
    }
    let mut everyone = run.principals.clone();
    for u in &run.users {
        everyone.push(Principal::user(*u, "u"));
    }
    for p in &everyone {
        for scope in &scopes {
            for kind in ResourceKind::ALL {
                for action in Action::ALL {
                    let perm = Permission::new(kind, action);
                    assert_eq!(live.check(p, perm, scope).is_ok(), fresh.check(p, perm, scope).is_ok(), "{p} {perm} at {scope}");
                }
            }
            assert_eq!(live.has_access(p, scope), fresh.has_access(p, scope));
        }
        for kind in ResourceKind::ALL {
            let perm = Permission::view(kind);
            assert_eq!(live.visibility(p, perm), fresh.visibility(p, perm), "{p} visibility of {perm}");
        }
    }
    let _: Option<RoleRef> = None;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_principal_ever_touches_another_organization(ops in prop::collection::vec((0..64usize, op()), 20..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(scenario(ops));
    }
}
