//! Adversarial tests of identity: races and hostile callers that must not gain more than they
//! were given.

use std::sync::Arc;

use ecp_core::identity::{BindingFilter, BuiltinRole, RoleRef};
use ecp_core::{IdentityStore, SqlStore, SqlStoreConfig};
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params};
use secrecy::SecretString;

use crate::common;

fn config() -> AccessConfig {
    AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1).unwrap()).build().unwrap()
}

/// Six replicas (each with its own connections to one database) bootstrap at once: exactly one
/// system administrator comes out, every other call is a `Conflict`, and a later call too.
async fn race_bootstraps(url: &str) {
    let mut replicas = Vec::new();
    for _ in 0..6 {
        let store =
            Arc::new(SqlStore::connect(SqlStoreConfig::builder(SecretString::from(url.to_owned())).build().unwrap()).await.unwrap());
        replicas.push((store.clone(), AccessControl::new(store, config()).await.unwrap()));
    }
    let mut calls = tokio::task::JoinSet::new();
    for (i, (_, ac)) in replicas.iter().enumerate() {
        let ac = ac.clone();
        calls.spawn(
            async move { ac.users.bootstrap_admin(&format!("root{i}@example.com"), "Root", &common::secret("R00t-passw0rd!")).await },
        );
    }
    let results = calls.join_all().await;
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, ecp_rbac::Error::Core(e) if e.is_conflict()), "{r}");
    }
    let store = &replicas[0].0;
    let admins = store.list_bindings(&BindingFilter { system_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(admins.iter().filter(|b| b.role == RoleRef::Builtin(BuiltinRole::SystemAdmin)).count(), 1, "{admins:?}");
    let late = replicas[1].1.users.bootstrap_admin("late@example.com", "Late", &common::secret("R00t-passw0rd!")).await.unwrap_err();
    assert!(matches!(&late, ecp_rbac::Error::Core(e) if e.is_conflict()), "{late}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bootstraps_make_one_system_admin_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("shared.db").display());
    race_bootstraps(&url).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bootstraps_make_one_system_admin_on_postgres() {
    let Some(url) = ecp_testkit::postgres::fresh_database().await else { return };
    race_bootstraps(&url).await;
}

/// A login flood is refused before it costs: per claimed email, per source address, and when no
/// password hash slot frees in time. Every refusal is a `RateLimited` with a wait, and audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_rate_limited_before_it_hashes() {
    use ecp_core::audit::{AuditQuery, AuditScope};
    use ecp_core::{AuditStore, PageRequest};
    use ecp_rbac::LoginLimits;

    let store = Arc::new(SqlStore::memory().await.unwrap());
    let limits = LoginLimits::builder().per_identity(60, 3).per_source(60, 5).build().unwrap();
    let ac = AccessControl::new(
        store.clone(),
        AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1).unwrap()).login_limits(limits).build().unwrap(),
    )
    .await
    .unwrap();
    let pw = common::secret("Wr0ng-passw0rd!");
    for _ in 0..3 {
        let e = ac.auth.login("nobody@example.com", &pw).await.unwrap_err();
        assert!(matches!(e, ecp_rbac::Error::InvalidCredentials), "{e}");
    }
    let e = ac.auth.login("nobody@example.com", &pw).await.unwrap_err();
    let ecp_rbac::Error::RateLimited { retry_after } = e else { panic!("the 4th login of one email passed: {e}") };
    assert!(retry_after > std::time::Duration::ZERO && retry_after <= std::time::Duration::from_secs(1), "{retry_after:?}");
    assert!(e.is_retryable());

    let source: std::net::IpAddr = "198.51.100.9".parse().unwrap();
    for i in 0..5 {
        let e = ac.auth.login_from(source, &format!("u{i}@example.com"), &pw).await.unwrap_err();
        assert!(matches!(e, ecp_rbac::Error::InvalidCredentials), "{e}");
    }
    let e = ac.auth.login_from(source, "u5@example.com", &pw).await.unwrap_err();
    assert!(e.is_rate_limited(), "the 6th login from one source passed: {e}");
    let e = ac.auth.login_from("198.51.100.10".parse().unwrap(), "u5@example.com", &pw).await.unwrap_err();
    assert!(matches!(e, ecp_rbac::Error::InvalidCredentials), "another source is not limited: {e}");

    let q = AuditQuery { operation: Some("user.login".into()), success: Some(false), ..Default::default() };
    let failures = store.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(100)).await.unwrap().items;
    assert_eq!(failures.len(), 11, "every refused login is recorded");
    assert_eq!(failures.iter().filter(|r| format!("{:?}", r.event.outcome).contains("too many requests")).count(), 2);
}

/// With one hash slot and a 1 ms wait, a burst of logins for distinct emails does not queue
/// behind the hash: the ones that cannot start are refused at once, and nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hashes_are_bounded() {
    use ecp_rbac::LoginLimits;

    let store = Arc::new(SqlStore::memory().await.unwrap());
    let limits = LoginLimits::builder().max_concurrent_hashes(1).queue_wait(std::time::Duration::from_millis(1)).build().unwrap();
    let config = AccessConfig::builder().argon2(Argon2Params::new(8 * 1024, 3, 1).unwrap()).login_limits(limits).build().unwrap();
    let ac = AccessControl::new(store, config).await.unwrap();
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..20 {
        let ac = ac.clone();
        logins.spawn(async move { ac.auth.login(&format!("flood{i}@example.com"), &common::secret("Wr0ng-passw0rd!")).await });
    }
    let results = logins.join_all().await;
    let limited = results.iter().filter(|r| r.as_ref().is_err_and(ecp_rbac::Error::is_rate_limited)).count();
    let checked = results.iter().filter(|r| matches!(r, Err(ecp_rbac::Error::InvalidCredentials))).count();
    assert_eq!(limited + checked, 20, "{results:?}");
    assert!(limited > 0 && checked > 0, "limited {limited}, checked {checked}");
}

/// A store with its first administrator (`root`) and two organizations, Acme and Globex.
struct Tenants {
    store: Arc<SqlStore>,
    ac: AccessControl,
    root: ecp_core::access::Principal,
    acme: ecp_core::Organization,
    globex: ecp_core::Organization,
}

async fn two_tenants() -> Tenants {
    let store = Arc::new(SqlStore::memory().await.unwrap());
    let ac = AccessControl::new(store.clone(), config()).await.unwrap();
    let root = ac.users.bootstrap_admin("root@example.com", "Root", &common::secret("R00t-passw0rd!")).await.unwrap();
    let root = ecp_core::access::Principal::user(root.id, root.email);
    let acme = ac.tenancy.create_org(&root, "acme").await.unwrap();
    let globex = ac.tenancy.create_org(&root, "globex").await.unwrap();
    Tenants { store, ac, root, acme, globex }
}

/// An organization admin cannot recruit another tenant's user by its id: the id is answered as
/// unknown, the membership is not made, and the refusal is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_user_is_not_added_to_an_organization() {
    use ecp_core::access::{Principal, Scope};
    use ecp_rbac::{Grant, NewUser};

    let Tenants { store, ac, root, acme, globex } = two_tenants().await;
    let mk = |email: &'static str, org| {
        let (ac, root) = (ac.clone(), root.clone());
        async move {
            ac.users
                .create_user(&root, NewUser::new(email, email).grant(Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org })))
                .await
                .unwrap()
        }
    };
    let acme_admin = mk("a@acme.example", acme.id).await;
    let globex_user = mk("g@globex.example", globex.id).await;
    let acme_p = Principal::user(acme_admin.id, acme_admin.email.clone());
    let e = ac.users.add_to_org(&acme_p, acme.id, globex_user.id, None).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(ac.users.get_user(&acme_p, globex_user.id).await.unwrap_err().is_not_found(), "still invisible");
    assert_eq!(store.user_orgs(globex_user.id).await.unwrap(), vec![globex.id], "no membership was made");
}

/// A stolen refresh token that the thief rotates twice does not keep the session: when the owner's
/// (long rotated-away) token comes back, the session ends for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_is_caught_after_any_number_of_rotations() {
    let store = Arc::new(SqlStore::memory().await.unwrap());
    let ac = AccessControl::new(store, config()).await.unwrap();
    let pw = common::secret("R00t-passw0rd!");
    ac.users.bootstrap_admin("root@example.com", "Root", &pw).await.unwrap();
    let owner = ac.auth.login("root@example.com", &pw).await.unwrap();
    let t2 = ac.auth.refresh(&owner.refresh_token).await.unwrap();
    let t3 = ac.auth.refresh(&t2.refresh_token).await.unwrap();
    let t4 = ac.auth.refresh(&t3.refresh_token).await.unwrap();
    // The owner's first token, three rotations old, comes back.
    assert!(matches!(ac.auth.refresh(&owner.refresh_token).await, Err(ecp_rbac::Error::InvalidToken)));
    assert!(
        matches!(ac.auth.refresh(&t4.refresh_token).await, Err(ecp_rbac::Error::InvalidToken)),
        "the thief's token died with the session"
    );
    assert!(ac.auth.authenticate(&t4.access_token).await.is_err(), "and its access token");
}

/// A scope names its project's real organization or nothing: an organization admin who names
/// another tenant's project under its own organization lists nothing, grants nothing, and the
/// refusal it can read names nothing of the other tenant. An API key's roles stay in its
/// organization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_is_checked_against_the_store_before_anything() {
    use ecp_core::access::{Principal, Scope, Subject};
    use ecp_core::audit::{AuditQuery, AuditScope};
    use ecp_core::{AuditStore, PageRequest};
    use ecp_rbac::{Grant, NewApiKey, NewUser};

    let Tenants { store, ac, root, acme, globex } = two_tenants().await;
    let theirs = ac.tenancy.create_project(&root, globex.id, "secret-plant-x").await.unwrap();
    let admin = ac
        .users
        .create_user(&root, NewUser::new("a@acme.example", "A").grant(Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org: acme.id })))
        .await
        .unwrap();
    let admin_p = Principal::user(admin.id, admin.email.clone());
    let mixed = Scope::Project { org: acme.id, project: theirs.id() };

    assert!(ac.users.list_bindings(&admin_p, mixed).await.unwrap_err().is_not_found());
    let e = ac.users.grant(&admin_p, Subject::User(admin.id), Grant::builtin(BuiltinRole::Viewer, mixed)).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let q = AuditQuery { operation: Some("user.grant".into()), success: Some(false), ..Default::default() };
    let records = store.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(records.len(), 1);
    assert!(!format!("{:?}", records[0].event).contains("secret-plant-x"), "{:?}", records[0].event);

    // A key of Acme's cannot be bound in Globex, even by someone who may grant there.
    let key = ac
        .users
        .create_api_key(&root, NewApiKey::new("ci").grant(Grant::builtin(BuiltinRole::Viewer, Scope::Org { org: acme.id })))
        .await
        .unwrap();
    let e = ac
        .users
        .grant(&root, Subject::ApiKey(key.key.id), Grant::builtin(BuiltinRole::Viewer, Scope::Org { org: globex.id }))
        .await
        .unwrap_err();
    assert!(matches!(&e, ecp_rbac::Error::Core(c) if c.is_invalid_input()), "{e}");
}

/// An API key stands only while whoever made it does: disabling or deleting its creator, or
/// revoking the key that minted it, takes it down at once (authentication and every check, on
/// this replica and, after a sync, on another one); an expired key holds nothing the moment it
/// expires, before any reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_fall_with_their_creator_and_their_expiry() {
    use ecp_core::access::{Authorizer, Permission, Principal, ResourceKind, Scope};
    use ecp_core::{Clock, ManualClock};
    use ecp_rbac::{Grant, NewApiKey, NewUser};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("keys.db").display());
    let connect =
        async || Arc::new(SqlStore::connect(SqlStoreConfig::builder(SecretString::from(url.clone())).build().unwrap()).await.unwrap());
    let clock = ManualClock::starting_now();
    let config = || AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1).unwrap()).clock(Arc::new(clock.clone())).build().unwrap();
    let ac = AccessControl::new(connect().await, config()).await.unwrap();
    let root = ac.users.bootstrap_admin("root@example.com", "Root", &common::secret("R00t-passw0rd!")).await.unwrap();
    let root = Principal::user(root.id, root.email);
    let acme = ac.tenancy.create_org(&root, "acme").await.unwrap();
    let in_acme = Scope::Org { org: acme.id };
    let admin = ac
        .users
        .create_user(&root, NewUser::new("a@acme.example", "A").grant(Grant::builtin(BuiltinRole::OrgAdmin, in_acme)))
        .await
        .unwrap();
    let admin_p = Principal::user(admin.id, admin.email.clone());
    let parent =
        ac.users.create_api_key(&admin_p, NewApiKey::new("ci").grant(Grant::builtin(BuiltinRole::OrgAdmin, in_acme))).await.unwrap();
    let parent_p = ac.auth.authenticate_api_key(&parent.secret).await.unwrap();
    let child =
        ac.users.create_api_key(&parent_p, NewApiKey::new("ci-child").grant(Grant::builtin(BuiltinRole::Viewer, in_acme))).await.unwrap();
    let child_p = Principal::api_key(child.key.id, "ci-child");
    let view = Permission::view(ResourceKind::Monitoring);
    let other = AccessControl::new(connect().await, config()).await.unwrap(); // a second replica

    let stands = async |ac: &AccessControl, key: &ecp_rbac::CreatedApiKey, p: &Principal| {
        let authn = ac.auth.authenticate_api_key(&key.secret).await.is_ok();
        let authz = ac.authorizer.check(p, view, &in_acme).is_ok();
        assert_eq!(authn, authz, "authentication and authorization disagree for {}", key.key.name);
        authn
    };
    assert!(stands(&ac, &parent, &parent_p).await && stands(&ac, &child, &child_p).await);
    assert!(stands(&other, &parent, &parent_p).await && stands(&other, &child, &child_p).await);

    // The creator disabled: both keys fall, here and on the other replica after its sync.
    ac.users.set_enabled(&root, admin.id, false).await.unwrap();
    assert!(!stands(&ac, &parent, &parent_p).await && !stands(&ac, &child, &child_p).await);
    other.authorizer.sync().await.unwrap();
    assert!(!stands(&other, &parent, &parent_p).await && !stands(&other, &child, &child_p).await);
    let fresh = AccessControl::new(connect().await, config()).await.unwrap(); // loads it all
    assert!(!stands(&fresh, &child, &child_p).await);
    // Enabled again: they stand again.
    ac.users.set_enabled(&root, admin.id, true).await.unwrap();
    assert!(stands(&ac, &parent, &parent_p).await && stands(&ac, &child, &child_p).await);

    // The minting key revoked: the key it minted falls with it, everywhere.
    ac.users.revoke_api_key(&root, parent.key.id).await.unwrap();
    assert!(!stands(&ac, &child, &child_p).await);
    other.authorizer.sync().await.unwrap();
    assert!(!stands(&other, &child, &child_p).await);
    assert!(!stands(&AccessControl::new(connect().await, config()).await.unwrap(), &child, &child_p).await);

    // The creator deleted: its other key falls.
    let second =
        ac.users.create_api_key(&admin_p, NewApiKey::new("ops").grant(Grant::builtin(BuiltinRole::Viewer, in_acme))).await.unwrap();
    let second_p = Principal::api_key(second.key.id, "ops");
    assert!(stands(&ac, &second, &second_p).await);
    ac.users.delete_user(&root, admin.id).await.unwrap();
    assert!(!stands(&ac, &second, &second_p).await);
    assert!(!stands(&AccessControl::new(connect().await, config()).await.unwrap(), &second, &second_p).await);

    // Expiry: the key holds nothing from the moment it expires, with no reload in between; a key
    // it minted expires with it however long its own life.
    let short = ac
        .users
        .create_api_key(
            &root,
            NewApiKey::new("short").grant(Grant::builtin(BuiltinRole::OrgAdmin, in_acme)).expires_after(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let short_p = ac.auth.authenticate_api_key(&short.secret).await.unwrap();
    let long = ac
        .users
        .create_api_key(
            &short_p,
            NewApiKey::new("long").grant(Grant::builtin(BuiltinRole::Viewer, in_acme)).expires_after(Duration::from_secs(86_400)),
        )
        .await
        .unwrap();
    let long_p = Principal::api_key(long.key.id, "long");
    assert!(stands(&ac, &short, &short_p).await && stands(&ac, &long, &long_p).await);
    clock.advance(Duration::from_secs(61));
    assert!(clock.now() > short.key.expires_at.unwrap());
    assert!(ac.authorizer.check(&short_p, view, &in_acme).is_err(), "an expired key's cached rights");
    assert!(!ac.authorizer.has_access(&long_p, &in_acme), "a key minted by an expired key");
    assert!(!stands(&ac, &short, &short_p).await && !stands(&ac, &long, &long_p).await);
}

/// A stranger learns nothing from error kinds: every call naming another tenant's organization,
/// project, user, role or key is answered exactly as the same call naming an id that never
/// existed (the same error, the id aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_answer_like_ids_that_never_existed() {
    use ecp_core::access::{Permission, Principal, ResourceKind, Scope, Subject};
    use ecp_core::{ApiKeyId, OrgId, PageRequest, ProjectId, RoleId, UserId};
    use ecp_rbac::{Grant, NewApiKey, NewUser, UserChanges};

    let Tenants { ac, root, acme, globex, .. } = two_tenants().await;
    let theirs = ac.tenancy.create_project(&root, globex.id, "plant-x").await.unwrap();
    let ours = ac.tenancy.create_project(&root, acme.id, "plant-a").await.unwrap();
    let mk = |email: &'static str, scope| {
        let (ac, root) = (ac.clone(), root.clone());
        async move {
            let u =
                ac.users.create_user(&root, NewUser::new(email, email).grant(Grant::builtin(BuiltinRole::OrgAdmin, scope))).await.unwrap();
            (u.id, Principal::user(u.id, u.email))
        }
    };
    let (_, me) = mk("a@acme.example", Scope::Org { org: acme.id }).await;
    let (their_user, their_admin) = mk("g@globex.example", Scope::Org { org: globex.id }).await;
    let their_role = ac.users.create_role(&root, Some(globex.id), "ops", "", &[Permission::view(ResourceKind::EdgeService)]).await.unwrap();
    let their_key = ac
        .users
        .create_api_key(&their_admin, NewApiKey::new("ci").grant(Grant::builtin(BuiltinRole::Viewer, Scope::Org { org: globex.id })))
        .await
        .unwrap();
    let their_key = their_key.key.id;
    let (no_org, no_project, no_user, no_role, no_key) = (OrgId::new(), ProjectId::new(), UserId::new(), RoleId::new(), ApiKeyId::new());
    let in_acme = Scope::Org { org: acme.id };

    let mut differ: Vec<String> = Vec::new();
    // Each call twice: with the foreign id, then with the unknown one.
    macro_rules! same {
        ($what:literal, |$id:ident| $call:expr, $foreign:expr, $unknown:expr) => {{
            let answer = async |$id| -> String {
                match $call.await {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("{:?}", std::mem::discriminant(&e)) + &e.to_string(),
                }
            };
            let (foreign, unknown) = (answer($foreign).await, answer($unknown).await);
            let foreign = foreign.replace(&$foreign.to_string(), "ID");
            let unknown = unknown.replace(&$unknown.to_string(), "ID");
            if foreign != unknown {
                differ.push(format!("{}: {foreign} / {unknown}", $what));
            }
        }};
    }
    let page = PageRequest::first(10);
    same!("get_org", |id| ac.tenancy.get_org(&me, id), globex.id, no_org);
    same!("rename_org", |id| ac.tenancy.rename_org(&me, id, "x"), globex.id, no_org);
    same!("delete_org", |id| ac.tenancy.delete_org(&me, id), globex.id, no_org);
    same!("create_project", |id| ac.tenancy.create_project(&me, id, "x"), globex.id, no_org);
    same!("list_projects", |id| ac.tenancy.list_projects(&me, Some(id), &page), globex.id, no_org);
    same!("get_project", |id| ac.tenancy.get_project(&me, id), theirs.id(), no_project);
    same!("rename_project", |id| ac.tenancy.rename_project(&me, id, "x"), theirs.id(), no_project);
    same!("delete_project", |id| ac.tenancy.delete_project(&me, id), theirs.id(), no_project);
    same!("project_usage", |id| ac.tenancy.project_usage(&me, id), theirs.id(), no_project);
    same!("get_user", |id| ac.users.get_user(&me, id), their_user, no_user);
    same!(
        "update_user",
        |id| ac.users.update_user(&me, id, UserChanges { display_name: Some("x".into()), ..Default::default() }),
        their_user,
        no_user
    );
    same!("set_enabled", |id| ac.users.set_enabled(&me, id, false), their_user, no_user);
    same!("delete_user", |id| ac.users.delete_user(&me, id), their_user, no_user);
    same!("start_password_reset", |id| ac.users.start_password_reset(&me, id), their_user, no_user);
    same!("add_to_org (user)", |id| ac.users.add_to_org(&me, acme.id, id, None), their_user, no_user);
    same!("add_to_org (org)", |id| ac.users.add_to_org(&me, id, their_user, None), globex.id, no_org);
    same!("remove_from_org (org)", |id| ac.users.remove_from_org(&me, id, their_user), globex.id, no_org);
    same!("remove_from_org (user)", |id| ac.users.remove_from_org(&me, acme.id, id), their_user, no_user);
    same!("grant (user)", |id| ac.users.grant(&me, Subject::User(id), Grant::builtin(BuiltinRole::Viewer, in_acme)), their_user, no_user);
    same!("grant (key)", |id| ac.users.grant(&me, Subject::ApiKey(id), Grant::builtin(BuiltinRole::Viewer, in_acme)), their_key, no_key);
    same!("grant (role)", |id| ac.users.grant(&me, Subject::User(their_user), Grant::custom(id, in_acme)), their_role.id, no_role);
    same!(
        "grant (project)",
        |id| ac.users.grant(
            &me,
            Subject::User(their_user),
            Grant::builtin(BuiltinRole::Viewer, Scope::Project { org: acme.id, project: id })
        ),
        theirs.id(),
        no_project
    );
    same!("revoke (user)", |id| ac.users.revoke(&me, Subject::User(id), in_acme), their_user, no_user);
    same!("revoke (key)", |id| ac.users.revoke(&me, Subject::ApiKey(id), in_acme), their_key, no_key);
    same!("list_bindings", |id| ac.users.list_bindings(&me, Scope::Org { org: id }), globex.id, no_org);
    same!("list_api_keys", |id| ac.users.list_api_keys(&me, Some(id)), globex.id, no_org);
    same!("revoke_api_key", |id| ac.users.revoke_api_key(&me, id), their_key, no_key);
    same!(
        "update_role",
        |id| ac.users.update_role(&me, id, "x", "", &[Permission::view(ResourceKind::EdgeService)]),
        their_role.id,
        no_role
    );
    same!("delete_role", |id| ac.users.delete_role(&me, id), their_role.id, no_role);
    same!("list_roles", |id| ac.users.list_roles(&me, Some(id)), globex.id, no_org);
    same!(
        "create_role",
        |id| ac.users.create_role(&me, Some(id), "x", "", &[Permission::view(ResourceKind::EdgeService)]),
        globex.id,
        no_org
    );
    let _ = ours;
    assert!(differ.is_empty(), "another tenant's ids answered differently:\n{}", differ.join("\n"));
}
