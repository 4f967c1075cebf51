//! Two replicas of a host share one store: a change of access made through one reaches the other's
//! authorizer with `sync()`, read from the audit log, and on its own.

use crate::common;

use std::sync::Arc;

use ecp_core::access::{Authorizer, Permission, Principal, ResourceKind, Scope, Subject};
use ecp_core::identity::BuiltinRole;
use ecp_core::{SqlStore, SqlStoreConfig};
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params, Grant, NewApiKey, NewUser};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_revocations_and_deletions_reach_the_other_replica() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let store =
        |p: std::path::PathBuf| async move { Arc::new(SqlStore::connect(SqlStoreConfig::sqlite_file(p).build().unwrap()).await.unwrap()) };
    // These replicas sync when told to (the test's steps), the third one (below) on its own.
    let config = || {
        AccessConfig::builder()
            .argon2(Argon2Params::new(1024, 1, 1).unwrap())
            .sync_every(std::time::Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let a = AccessControl::new(store(path.clone()).await, config()).await.unwrap();
    let root = a.users.bootstrap_admin("root@example.com", "Root", &common::secret("R00t-passw0rd!")).await.unwrap();
    let root = Principal::user(root.id, root.email);
    let b = AccessControl::new(store(path.clone()).await, config()).await.unwrap();

    let org = a.tenancy.create_org(&root, "acme").await.unwrap();
    let project = a.tenancy.create_project(&root, org.id, "plant").await.unwrap();
    let ann = a
        .users
        .create_user(&root, NewUser::new("ann@example.com", "Ann").grant(Grant::builtin(BuiltinRole::Viewer, project.scope())))
        .await
        .unwrap();
    let ann_p = Principal::user(ann.id, ann.email.clone());
    let view = Permission::view(ResourceKind::EdgeService);
    let edit = Permission::edit(ResourceKind::EdgeService);

    assert!(b.authorizer.check(&ann_p, view, &project.scope()).is_err(), "b has not synced yet");
    assert!(b.authorizer.sync().await.unwrap() > 0);
    assert!(b.authorizer.check(&ann_p, view, &project.scope()).is_ok());
    assert_eq!(b.authorizer.sync().await.unwrap(), 0, "nothing new");

    a.users.grant(&root, Subject::User(ann.id), Grant::builtin(BuiltinRole::ProjectAdmin, project.scope())).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&ann_p, edit, &project.scope()).is_ok());

    let role = a.users.create_role(&root, Some(org.id), "Operator", "", &[Permission::operate(ResourceKind::EdgeService)]).await.unwrap();
    a.users.add_to_org(&root, org.id, ann.id, Some(ecp_core::identity::RoleRef::Custom(role.id))).await.unwrap();
    b.authorizer.sync().await.unwrap();
    let org_scope = Scope::Org { org: org.id };
    assert!(b.authorizer.check(&ann_p, Permission::operate(ResourceKind::EdgeService), &org_scope).is_ok());
    a.users.update_role(&root, role.id, "Operator", "", &[Permission::view(ResourceKind::EdgeService)]).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&ann_p, Permission::operate(ResourceKind::EdgeService), &org_scope).is_err());

    a.users.set_enabled(&root, ann.id, false).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&ann_p, view, &project.scope()).is_err(), "disabled everywhere");

    let key =
        a.users.create_api_key(&root, NewApiKey::new("ci").grant(Grant::builtin(BuiltinRole::Viewer, project.scope()))).await.unwrap();
    let key_p = Principal::api_key(key.key.id, "ci");
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&key_p, view, &project.scope()).is_ok());
    a.users.revoke_api_key(&root, key.key.id).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&key_p, view, &project.scope()).is_err());

    a.users.set_enabled(&root, ann.id, true).await.unwrap();
    a.users.revoke(&root, Subject::User(ann.id), project.scope()).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&ann_p, edit, &project.scope()).is_err(), "the project role is gone");
    assert!(b.authorizer.check(&ann_p, view, &project.scope()).is_ok(), "the organization's custom role still lets her view");
    a.users.remove_from_org(&root, org.id, ann.id).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&ann_p, view, &project.scope()).is_err(), "no membership, no role");
    a.users.add_to_org(&root, org.id, ann.id, None).await.unwrap();

    // A deleted project takes its grants with it on every replica.
    let temp = a.tenancy.create_project(&root, org.id, "temporary").await.unwrap();
    a.users.grant(&root, Subject::User(ann.id), Grant::builtin(BuiltinRole::ProjectAdmin, temp.scope())).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&ann_p, edit, &temp.scope()).is_ok());
    a.tenancy.delete_project(&root, temp.id()).await.unwrap();
    b.authorizer.sync().await.unwrap();
    assert!(b.authorizer.check(&ann_p, edit, &temp.scope()).is_err());

    // A replica follows on its own (SQLite does not signal: every `sync_every`).
    let following = AccessConfig::builder()
        .argon2(Argon2Params::new(1024, 1, 1).unwrap())
        .sync_every(std::time::Duration::from_millis(20))
        .build()
        .unwrap();
    let c = AccessControl::new(store(path.clone()).await, following).await.unwrap();
    a.users.grant(&root, Subject::User(ann.id), Grant::builtin(BuiltinRole::Viewer, project.scope())).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.authorizer.check(&ann_p, view, &project.scope()).is_err() {
        assert!(std::time::Instant::now() < deadline, "the background sync did not catch up");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// On PostgreSQL a change of access reaches the other replicas by NOTIFY, at once: their own
/// periodic sync is an hour away here, so only the signal can explain the refusal.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_revoked_on_one_replica_is_refused_on_another_within_a_second() {
    use secrecy::SecretString;
    use std::time::{Duration, Instant};

    let Some(url) = ecp_testkit::postgres::fresh_database().await else { return };
    let store = || async {
        let config = SqlStoreConfig::builder(SecretString::from(url.clone())).build().unwrap();
        Arc::new(SqlStore::connect(config).await.unwrap())
    };
    let config =
        || AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1).unwrap()).sync_every(Duration::from_secs(3600)).build().unwrap();
    let a = AccessControl::new(store().await, config()).await.unwrap();
    let root = a.users.bootstrap_admin("root@example.com", "Root", &common::secret("R00t-passw0rd!")).await.unwrap();
    let root = Principal::user(root.id, root.email);
    let b = AccessControl::new(store().await, config()).await.unwrap();
    let org = a.tenancy.create_org(&root, "acme").await.unwrap();
    let project = a.tenancy.create_project(&root, org.id, "plant").await.unwrap();
    let edit = Permission::edit(ResourceKind::EdgeService);

    let mut latencies = Vec::new();
    for round in 0..5 {
        let user = a
            .users
            .create_user(
                &root,
                NewUser::new(format!("op{round}@example.com"), "Op").grant(Grant::builtin(BuiltinRole::ProjectAdmin, project.scope())),
            )
            .await
            .unwrap();
        let p = Principal::user(user.id, user.email.clone());
        let t0 = Instant::now();
        while b.authorizer.check(&p, edit, &project.scope()).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(5), "the grant never reached replica b");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        a.users.revoke(&root, Subject::User(user.id), project.scope()).await.unwrap();
        let t0 = Instant::now();
        while b.authorizer.check(&p, edit, &project.scope()).is_ok() {
            assert!(t0.elapsed() < Duration::from_secs(5), "the revocation never reached replica b");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t0.elapsed());
    }
    eprintln!("revocation latency across replicas: {latencies:?}");
    assert!(latencies.iter().all(|l| *l < Duration::from_secs(1)), "{latencies:?}");
}
