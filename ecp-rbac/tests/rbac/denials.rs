//! Every mutating method of user management and tenancy, called by a principal that may not make
//! the change (a project viewer): each is refused (`PermissionDenied`, or `NotFound` for what it
//! cannot see), writes a failure record of its own operation, and changes nothing. The lists of
//! methods are checked against the sources, so a method cannot be added without being classified
//! here.

use ecp_core::access::{Permission, Principal, ResourceKind, Scope, Subject};
use ecp_core::audit::{AuditQuery, AuditScope, Outcome};
use ecp_core::identity::{BuiltinRole, UserFilter};
use ecp_core::{AuditStore, PageRequest};
use ecp_rbac::{Grant, NewApiKey, NewUser, UserChanges};

use crate::common::{World, world};

const USERS_SOURCES: [&str; 7] = [
    include_str!("../../src/users/mod.rs"),
    include_str!("../../src/users/accounts.rs"),
    include_str!("../../src/users/api_keys.rs"),
    include_str!("../../src/users/bindings.rs"),
    include_str!("../../src/users/passwords.rs"),
    include_str!("../../src/users/profiles.rs"),
    include_str!("../../src/users/roles.rs"),
];

/// Reads, and what is authorized by something other than a role: the install-time bootstrap, the
/// holder of a one-time token, the user itself (self-service password change, a reset asked for
/// by email). Their refusals have tests of their own (auth.rs, services.rs).
const USERS_NOT_ROLE_CHECKED: [&str; 10] = [
    "accept_invitation",
    "bootstrap_admin",
    "change_password",
    "complete_password_reset",
    "get_user",
    "list_api_keys",
    "list_bindings",
    "list_roles",
    "list_users",
    "request_password_reset",
];

/// The mutating methods of `Users` and the audit operation each records.
const USERS_MUTATING: [(&str, &str); 15] = [
    ("add_to_org", "user.org.add"),
    ("create_api_key", "api_key.create"),
    ("create_role", "role.create"),
    ("create_user", "user.create"),
    ("delete_role", "role.delete"),
    ("delete_user", "user.delete"),
    ("grant", "user.grant"),
    ("invite_user", "user.invite"),
    ("remove_from_org", "user.org.remove"),
    ("revoke", "user.revoke"),
    ("revoke_api_key", "api_key.revoke"),
    ("set_enabled", "user.disable"),
    ("start_password_reset", "user.password_reset.start"),
    ("update_role", "role.update"),
    ("update_user", "user.update"),
];

/// Reads, and the constructor.
const TENANCY_READS: [&str; 7] = ["get_org", "get_project", "limits", "list_orgs", "list_projects", "new", "project_usage"];

const TENANCY_MUTATING: [(&str, &str); 6] = [
    ("create_org", "organization.create"),
    ("create_project", "project.create"),
    ("delete_org", "organization.delete"),
    ("delete_project", "project.delete"),
    ("rename_org", "organization.rename"),
    ("rename_project", "project.rename"),
];

fn classified<'a>(reads: &[&'a str], mutating: &[(&'a str, &'a str)]) -> Vec<String> {
    let mut all: Vec<String> = reads.iter().chain(mutating.iter().map(|(m, _)| m)).map(|m| (*m).to_owned()).collect();
    all.sort();
    all
}

#[test]
fn every_public_method_of_users_and_tenancy_is_classified() {
    let users = ecp_testkit::methods::public_methods("Users", &USERS_SOURCES);
    assert_eq!(users, classified(&USERS_NOT_ROLE_CHECKED, &USERS_MUTATING), "a public method of Users is not classified");
    let tenancy = ecp_testkit::methods::public_methods("Tenancy", &[include_str!("../../../ecp-core/src/tenancy/service.rs")]);
    assert_eq!(tenancy, classified(&TENANCY_READS, &TENANCY_MUTATING), "a public method of Tenancy is not classified");
}

/// Everything user management and tenancy can change, as the system admin sees it.
async fn snapshot(w: &World) -> String {
    let a = &w.admin;
    let users = w.ac.users.list_users(a, &UserFilter::default(), &PageRequest::first(1000)).await.unwrap().items;
    let orgs = w.ac.tenancy.list_orgs(a, &PageRequest::first(1000)).await.unwrap().items;
    let projects = w.ac.tenancy.list_projects(a, None, &PageRequest::first(1000)).await.unwrap().items;
    let mut bindings = Vec::new();
    for scope in
        std::iter::once(Scope::System).chain(orgs.iter().map(|o| Scope::Org { org: o.id })).chain(projects.iter().map(|p| p.scope()))
    {
        bindings.push(w.ac.users.list_bindings(a, scope).await.unwrap());
    }
    let roles = w.ac.users.list_roles(a, None).await.unwrap();
    let keys = w.ac.users.list_api_keys(a, None).await.unwrap();
    format!("{users:?}\n{orgs:?}\n{projects:?}\n{bindings:?}\n{roles:?}\n{keys:?}")
}

async fn failures(w: &World, operation: &str) -> Vec<ecp_core::AuditRecord> {
    let q = AuditQuery { operation: Some(operation.to_owned()), success: Some(false), ..Default::default() };
    w.store.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(1000)).await.unwrap().items
}

fn refused(e: &ecp_rbac::Error) -> bool {
    matches!(e, ecp_rbac::Error::Core(c) if c.is_permission_denied() || c.is_not_found())
}

async fn check(w: &World, viewer: &Principal, method: &str, operation: &str, before: &str, already: usize, err: ecp_rbac::Error) {
    assert!(refused(&err), "{method}: {err}");
    let records = failures(w, operation).await;
    assert_eq!(records.len(), already + 1, "{method} wrote no failure record of {operation}");
    let last = records.iter().max_by_key(|r| r.seq).unwrap();
    assert_eq!(last.event.actor.name, viewer.name(), "{method}");
    assert!(matches!(&last.event.outcome, Outcome::Failure { .. }), "{method}");
    assert_eq!(snapshot(w).await, before, "{method} changed something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_writes_a_failure_record_and_changes_nothing() {
    let w = world(true).await;
    let org = w.org("acme").await;
    let project = w.project(&org, "plant").await;
    let other = w.project(&org, "lab").await;
    let viewer = w.user_with("viewer@acme.example", BuiltinRole::Viewer, project.scope()).await;
    let ann = w.user_with("ann@acme.example", BuiltinRole::Viewer, project.scope()).await;
    let ann_id = match ann.subject() {
        Subject::User(id) => id,
        other => panic!("{other:?}"),
    };
    let role = w.ac.users.create_role(&w.admin, Some(org.id), "operators", "", &[Permission::view(ResourceKind::Cluster)]).await.unwrap();
    let key =
        w.ac.users
            .create_api_key(&w.admin, NewApiKey::new("ci").grant(Grant::builtin(BuiltinRole::Viewer, project.scope())))
            .await
            .unwrap();
    let u = &w.ac.users;
    let t = &w.ac.tenancy;

    let before = snapshot(&w).await;
    for (method, operation) in USERS_MUTATING {
        let already = failures(&w, operation).await.len();
        let grant = Grant::builtin(BuiltinRole::ProjectAdmin, project.scope());
        let err = match method {
            "add_to_org" => u.add_to_org(&viewer, org.id, ann_id, None).await.unwrap_err(),
            "create_api_key" => u.create_api_key(&viewer, NewApiKey::new("mine").grant(grant)).await.unwrap_err(),
            "create_role" => u.create_role(&viewer, Some(org.id), "x", "", &[Permission::view(ResourceKind::Cluster)]).await.unwrap_err(),
            "create_user" => u.create_user(&viewer, NewUser::new("bob@acme.example", "Bob").grant(grant)).await.unwrap_err(),
            "delete_role" => u.delete_role(&viewer, role.id).await.unwrap_err(),
            "delete_user" => u.delete_user(&viewer, ann_id).await.unwrap_err(),
            "grant" => u.grant(&viewer, Subject::User(ann_id), grant).await.unwrap_err(),
            "invite_user" => u.invite_user(&viewer, NewUser::new("eve@acme.example", "Eve").grant(grant)).await.unwrap_err(),
            "remove_from_org" => u.remove_from_org(&viewer, org.id, ann_id).await.unwrap_err(),
            "revoke" => u.revoke(&viewer, Subject::User(ann_id), project.scope()).await.unwrap_err(),
            "revoke_api_key" => u.revoke_api_key(&viewer, key.key.id).await.unwrap_err(),
            "set_enabled" => u.set_enabled(&viewer, ann_id, false).await.unwrap_err(),
            "start_password_reset" => u.start_password_reset(&viewer, ann_id).await.unwrap_err(),
            "update_role" => u.update_role(&viewer, role.id, "renamed", "", &[Permission::view(ResourceKind::Cluster)]).await.unwrap_err(),
            "update_user" => u
                .update_user(&viewer, ann_id, UserChanges { display_name: Some("Mallory".into()), ..Default::default() })
                .await
                .unwrap_err(),
            other => panic!("no case for {other}"),
        };
        check(&w, &viewer, method, operation, &before, already, err).await;
    }
    for (method, operation) in TENANCY_MUTATING {
        let already = failures(&w, operation).await.len();
        let err = match method {
            "create_org" => t.create_org(&viewer, "globex").await.unwrap_err(),
            "create_project" => t.create_project(&viewer, org.id, "new").await.unwrap_err(),
            "delete_org" => t.delete_org(&viewer, org.id).await.unwrap_err(),
            "delete_project" => t.delete_project(&viewer, other.id()).await.unwrap_err(),
            "rename_org" => t.rename_org(&viewer, org.id, "renamed").await.unwrap_err(),
            "rename_project" => t.rename_project(&viewer, project.id(), "renamed").await.unwrap_err(),
            other => panic!("no case for {other}"),
        };
        let err = ecp_rbac::Error::Core(err);
        check(&w, &viewer, method, operation, &before, already, err).await;
    }
}
