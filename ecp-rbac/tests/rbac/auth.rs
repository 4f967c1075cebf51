//! Authentication: lockout, token expiry, rotation, revocation, disabled users, invitations,
//! password resets, API keys.

use crate::common;

use std::time::Duration;

use ecp_core::access::{Authorizer, Permission, ResourceKind, Scope, Subject};
use ecp_core::audit::AuditQuery;
use ecp_core::identity::BuiltinRole;
use ecp_core::prelude::*;
use ecp_core::{PageRequest, Principal};
use ecp_rbac::{Error, Grant, NewApiKey, NewUser, UserChanges};
use secrecy::ExposeSecret;

use common::{ADMIN_PASSWORD, secret, world, world_with};

const PW: &str = "Corr3ct-Horse!";

#[tokio::test]
async fn lockout_after_failures_within_the_window_and_for_unknown_names_too() {
    // The OWASP argon2 parameters: this is the login path as deployed.
    let w = world_with(false, |b| b.lockout(3, Duration::from_secs(600), Duration::from_secs(900))).await;
    let auth = &w.ac.auth;
    let bad = secret("Wrong-passw0rd");

    // Two failures, then a success clears the count.
    for _ in 0..2 {
        assert!(matches!(auth.login("admin@example.com", &bad).await, Err(Error::InvalidCredentials)));
    }
    auth.login("admin@example.com", &secret(ADMIN_PASSWORD)).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(auth.login("admin@example.com", &bad).await, Err(Error::InvalidCredentials)));
    }
    // The third failure within the window locks the name.
    let until = match auth.login("ADMIN@example.com", &bad).await {
        Err(Error::Locked { until }) => until,
        other => panic!("expected a lock, got {other:?}"),
    };
    assert_eq!(until.duration_since(w.clock.now()).as_secs(), 900);
    // While locked even the right password is refused.
    assert!(matches!(auth.login("admin@example.com", &secret(ADMIN_PASSWORD)).await, Err(Error::Locked { .. })));
    w.advance(899);
    assert!(matches!(auth.login("admin@example.com", &secret(ADMIN_PASSWORD)).await, Err(Error::Locked { .. })));
    w.advance(2);
    auth.login("admin@example.com", &secret(ADMIN_PASSWORD)).await.unwrap();

    // Failures spread wider than the window never lock.
    for _ in 0..5 {
        assert!(matches!(auth.login("admin@example.com", &bad).await, Err(Error::InvalidCredentials)));
        w.advance(400);
        assert!(matches!(auth.login("admin@example.com", &bad).await, Err(Error::InvalidCredentials)));
        w.advance(601);
    }

    // An unknown email is answered and locked exactly like a known one: the answer tells nothing.
    for _ in 0..2 {
        assert!(matches!(auth.login("ghost@example.com", &bad).await, Err(Error::InvalidCredentials)));
    }
    assert!(matches!(auth.login("ghost@example.com", &bad).await, Err(Error::Locked { .. })));

    // Every attempt is in the audit log, failures with their reason.
    let q = AuditQuery { operation: Some("user.login".into()), success: Some(false), ..Default::default() };
    let failures = w.ac.audit.query(&w.admin, &q, &PageRequest::first(100)).await.unwrap();
    assert!(failures.items.iter().any(|r| r.event.actor.name == "ghost@example.com"));
    assert!(failures.items.iter().any(|r| format!("{:?}", r.event.outcome).contains("locked")));
}

#[tokio::test]
async fn hostile_login_input_is_refused_cleanly() {
    let w = world(true).await;
    let auth = &w.ac.auth;
    for email in ["", "a", &"x".repeat(100_000), "admin@example.com\0", "' OR 1=1 --"] {
        let got = auth.login(email, &secret("whatever")).await;
        assert!(matches!(got, Err(Error::InvalidCredentials | Error::Locked { .. })), "{email:.20}: {got:?}");
    }
    let huge = secret(&"p".repeat(1_000_000));
    assert!(matches!(auth.login("admin@example.com", &huge).await, Err(Error::InvalidCredentials)));
    for token in ["", "ecpat_", "ecpat_x", &"ecpat_".repeat(1000), "Bearer abc", "ecprt_zzz"] {
        assert!(matches!(auth.authenticate(&secret(token)).await, Err(Error::InvalidToken)));
        assert!(matches!(auth.refresh(&secret(token)).await, Err(Error::InvalidToken)));
        assert!(matches!(auth.authenticate_api_key(&secret(token)).await, Err(Error::InvalidToken)));
    }
}

#[tokio::test]
async fn access_tokens_expire_refresh_rotates_and_logout_revokes() {
    let w = world_with(true, |b| b.access_token_ttl(Duration::from_secs(60)).refresh_token_ttl(Duration::from_secs(3600))).await;
    let auth = &w.ac.auth;
    let t1 = auth.login("admin@example.com", &secret(ADMIN_PASSWORD)).await.unwrap();
    assert!(t1.access_token.expose_secret().starts_with("ecpat_"));
    let p = auth.authenticate(&t1.access_token).await.unwrap();
    assert_eq!(p, w.admin);

    w.advance(61);
    assert!(matches!(auth.authenticate(&t1.access_token).await, Err(Error::TokenExpired)));
    let t2 = auth.refresh(&t1.refresh_token).await.unwrap();
    assert_eq!(t2.session, t1.session);
    auth.authenticate(&t2.access_token).await.unwrap();
    // The old refresh token was used: presenting it again revokes the session for everyone.
    assert!(matches!(auth.refresh(&t1.refresh_token).await, Err(Error::InvalidToken)));
    assert!(matches!(auth.authenticate(&t2.access_token).await, Err(Error::InvalidToken)));
    assert!(matches!(auth.refresh(&t2.refresh_token).await, Err(Error::InvalidToken)));
    let reuse = AuditQuery { operation: Some("user.session.refresh_reuse".into()), ..Default::default() };
    assert_eq!(w.ac.audit.query(&w.admin, &reuse, &PageRequest::first(10)).await.unwrap().items.len(), 1);

    // Refresh tokens expire too.
    let t3 = auth.login("admin@example.com", &secret(ADMIN_PASSWORD)).await.unwrap();
    w.advance(3601);
    assert!(matches!(auth.refresh(&t3.refresh_token).await, Err(Error::TokenExpired)));

    // Logout revokes at once.
    let t4 = auth.login("admin@example.com", &secret(ADMIN_PASSWORD)).await.unwrap();
    auth.logout(&t4.access_token).await.unwrap();
    assert!(matches!(auth.authenticate(&t4.access_token).await, Err(Error::InvalidToken)));
    assert!(matches!(auth.refresh(&t4.refresh_token).await, Err(Error::InvalidToken)));
    assert!(matches!(auth.logout(&t4.access_token).await, Err(Error::InvalidToken)));
}

#[tokio::test]
async fn disabled_users_are_refused_everywhere() {
    let w = world(true).await;
    let org = w.org("acme").await;
    let u =
        w.ac.users
            .create_user(
                &w.admin,
                NewUser::new("ann@example.com", "Ann")
                    .password(secret(PW))
                    .grant(Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org: org.id })),
            )
            .await
            .unwrap();
    let ann = Principal::user(u.id, u.email.clone());
    let tokens = w.ac.auth.login("ann@example.com", &secret(PW)).await.unwrap();
    assert!(w.ac.authorizer.check(&ann, Permission::edit(ResourceKind::Project), &Scope::Org { org: org.id }).is_ok());

    w.ac.users.set_enabled(&w.admin, u.id, false).await.unwrap();
    assert!(matches!(w.ac.auth.login("ann@example.com", &secret(PW)).await, Err(Error::Disabled)));
    // A wrong password still says only "invalid": being disabled is told to the owner only.
    assert!(matches!(w.ac.auth.login("ann@example.com", &secret("nope-nope-1!")).await, Err(Error::InvalidCredentials)));
    assert!(w.ac.auth.authenticate(&tokens.access_token).await.is_err());
    assert!(w.ac.auth.refresh(&tokens.refresh_token).await.is_err());
    assert!(w.ac.authorizer.check(&ann, Permission::view(ResourceKind::Project), &Scope::Org { org: org.id }).is_err());
    assert!(w.ac.tenancy.create_project(&ann, org.id, "x").await.is_err());

    w.ac.users.set_enabled(&w.admin, u.id, true).await.unwrap();
    w.ac.auth.login("ann@example.com", &secret(PW)).await.unwrap();
    w.ac.tenancy.create_project(&ann, org.id, "x").await.unwrap();
    // Nobody disables itself.
    assert!(
        w.ac.users
            .set_enabled(
                &w.admin,
                match w.admin.subject() {
                    Subject::User(id) => id,
                    _ => unreachable!(),
                },
                false
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn invitations_and_password_resets_are_single_use_and_expire() {
    let w = world_with(true, |b| b.invitation_ttl(Duration::from_secs(3600)).password_reset_ttl(Duration::from_secs(600))).await;
    let inv = w.ac.users.invite_user(&w.admin, NewUser::new("new@example.com", "New")).await.unwrap();
    assert_eq!(inv.user.state, ecp_core::identity::UserState::Invited);
    // No password yet: no login.
    assert!(matches!(w.ac.auth.login("new@example.com", &secret(PW)).await, Err(Error::InvalidCredentials)));
    // The policy applies to the first password.
    assert!(matches!(w.ac.users.accept_invitation(&inv.token, &secret("weak")).await, Err(Error::WeakPassword { .. })));
    let active = w.ac.users.accept_invitation(&inv.token, &secret(PW)).await.unwrap();
    assert_eq!(active.state, ecp_core::identity::UserState::Active);
    assert!(matches!(w.ac.users.accept_invitation(&inv.token, &secret(PW)).await, Err(Error::InvalidToken)));
    let session = w.ac.auth.login("new@example.com", &secret(PW)).await.unwrap();

    // An invitation that expired.
    let late = w.ac.users.invite_user(&w.admin, NewUser::new("late@example.com", "Late")).await.unwrap();
    w.advance(3601);
    assert!(matches!(w.ac.users.accept_invitation(&late.token, &secret(PW)).await, Err(Error::InvalidToken)));

    // An administrator's reset: single use, expires, and ends every session.
    let reset = w.ac.users.start_password_reset(&w.admin, active.id).await.unwrap();
    assert!(
        matches!(w.ac.users.complete_password_reset(&inv.token, &secret("N3w-passw0rd!")).await, Err(Error::InvalidToken)),
        "an invitation is no reset"
    );
    w.ac.users.complete_password_reset(&reset.token, &secret("N3w-passw0rd!")).await.unwrap();
    assert!(w.ac.auth.authenticate(&session.access_token).await.is_err());
    assert!(matches!(w.ac.auth.login("new@example.com", &secret(PW)).await, Err(Error::InvalidCredentials)));
    w.ac.auth.login("new@example.com", &secret("N3w-passw0rd!")).await.unwrap();
    assert!(w.ac.users.complete_password_reset(&reset.token, &secret("Other-passw0rd!")).await.is_err());
    let expiring = w.ac.users.request_password_reset("NEW@example.com").await.unwrap().unwrap();
    w.advance(601);
    assert!(matches!(w.ac.users.complete_password_reset(&expiring.token, &secret("Other-passw0rd!")).await, Err(Error::InvalidToken)));
    assert!(w.ac.users.request_password_reset("nobody@example.com").await.unwrap().is_none());

    // Changing one's own password needs the current one and ends the other sessions.
    let me = Principal::user(active.id, active.email.clone());
    let s = w.ac.auth.login("new@example.com", &secret("N3w-passw0rd!")).await.unwrap();
    assert!(matches!(
        w.ac.users.change_password(&me, &secret("wrong-Passw0rd!"), &secret("Next-passw0rd1!")).await,
        Err(Error::InvalidCredentials)
    ));
    w.ac.users.change_password(&me, &secret("N3w-passw0rd!"), &secret("Next-passw0rd1!")).await.unwrap();
    assert!(w.ac.auth.authenticate(&s.access_token).await.is_err());
    w.ac.auth.login("new@example.com", &secret("Next-passw0rd1!")).await.unwrap();
}

#[tokio::test]
async fn sso_only_users_never_log_in_with_a_password() {
    let w = world(true).await;
    let u = w.ac.users.create_user(&w.admin, NewUser::new("sso@example.com", "Sso").sso_only(true)).await.unwrap();
    assert!(!u.has_password);
    assert!(matches!(w.ac.auth.login("sso@example.com", &secret(PW)).await, Err(Error::InvalidCredentials)));
    assert!(w.ac.users.create_user(&w.admin, NewUser::new("sso2@example.com", "S").sso_only(true).password(secret(PW))).await.is_err());
    // Turning a password user into an SSO user stops password logins.
    let p = w.ac.users.create_user(&w.admin, NewUser::new("pw@example.com", "Pw").password(secret(PW))).await.unwrap();
    w.ac.users.update_user(&w.admin, p.id, UserChanges { sso_only: Some(true), ..Default::default() }).await.unwrap();
    assert!(matches!(w.ac.auth.login("pw@example.com", &secret(PW)).await, Err(Error::SsoOnly)));
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked_or_expired() {
    let w = world(true).await;
    let org = w.org("acme").await;
    let project = w.project(&org, "plant").await;
    let created = w
        .ac
        .users
        .create_api_key(
            &w.admin,
            NewApiKey::new("ci").grant(Grant::builtin(BuiltinRole::ProjectAdmin, project.scope())).expires_after(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let raw = created.secret.expose_secret().to_owned();
    assert!(raw.starts_with("ecpk_"));
    let p = w.ac.auth.authenticate_api_key(&created.secret).await.unwrap();
    assert_eq!(p.subject(), Subject::ApiKey(created.key.id));
    assert!(w.ac.authorizer.check(&p, Permission::edit(ResourceKind::EdgeService), &project.scope()).is_ok());
    assert!(w.ac.authorizer.check(&p, Permission::edit(ResourceKind::EdgeService), &Scope::Org { org: org.id }).is_err());

    // A wrong secret for a real id, a truncated key.
    let mut forged = raw.clone();
    forged.pop();
    forged.push(if raw.ends_with('A') { 'B' } else { 'A' });
    assert!(matches!(w.ac.auth.authenticate_api_key(&secret(&forged)).await, Err(Error::InvalidToken)));
    assert!(matches!(w.ac.auth.authenticate_api_key(&secret(&raw[..raw.len() - 5])).await, Err(Error::InvalidToken)));

    w.advance(3601);
    assert!(matches!(w.ac.auth.authenticate_api_key(&created.secret).await, Err(Error::TokenExpired)));
    w.ac.authorizer.reload().await.unwrap();
    assert!(w.ac.authorizer.check(&p, Permission::view(ResourceKind::EdgeService), &project.scope()).is_err(), "expired keys hold nothing");

    let forever =
        w.ac.users
            .create_api_key(&w.admin, NewApiKey::new("ops").grant(Grant::builtin(BuiltinRole::Viewer, project.scope())))
            .await
            .unwrap();
    let p2 = w.ac.auth.authenticate_api_key(&forever.secret).await.unwrap();
    w.ac.users.revoke_api_key(&w.admin, forever.key.id).await.unwrap();
    assert!(matches!(w.ac.auth.authenticate_api_key(&forever.secret).await, Err(Error::InvalidToken)));
    assert!(w.ac.authorizer.check(&p2, Permission::view(ResourceKind::EdgeService), &project.scope()).is_err());

    // Keys get no more than their creator holds, in one organization.
    let other = w.org("globex").await;
    let oa = w.user_with("oa@example.com", BuiltinRole::OrgAdmin, Scope::Org { org: org.id }).await;
    assert!(
        w.ac.users.create_api_key(&oa, NewApiKey::new("x").grant(Grant::builtin(BuiltinRole::SystemAdmin, Scope::System))).await.is_err()
    );
    assert!(
        w.ac.users
            .create_api_key(&oa, NewApiKey::new("x").grant(Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org: other.id })))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(w.ac.users.create_api_key(&oa, NewApiKey::new("x")).await.is_err());
    w.ac.users.create_api_key(&oa, NewApiKey::new("x").grant(Grant::builtin(BuiltinRole::Viewer, project.scope()))).await.unwrap();
}

/// Any string presented as a token, a refresh token, an API key or an invitation is refused with a
/// typed error, never a panic, and changes nothing.
#[test]
fn hostile_tokens_are_refused_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt.block_on(world(true));
    let head_before = rt.block_on(w.store.audit_head()).unwrap();
    let strategy = prop_oneof![
        ".{0,200}",
        "ecpat_[A-Za-z0-9_-]{0,60}",
        "ecprt_[A-Za-z0-9_-]{0,60}",
        "ecpk_[0-9a-f]{0,40}_[A-Za-z0-9_-]{0,60}",
        "ecpk_[0-9a-f-]{36}_.{0,10}",
        "ecpinv_[A-Za-z0-9_-]{0,60}",
        "ecprst_.{0,60}",
    ];
    let mut runner = TestRunner::new(Config::with_cases(600));
    runner
        .run(&strategy, |s| {
            rt.block_on(async {
                let t = secret(&s);
                assert!(w.ac.auth.authenticate(&t).await.unwrap_err().is_unauthenticated());
                assert!(w.ac.auth.refresh(&t).await.unwrap_err().is_unauthenticated());
                assert!(w.ac.auth.authenticate_api_key(&t).await.unwrap_err().is_unauthenticated());
                assert!(w.ac.auth.logout(&t).await.unwrap_err().is_unauthenticated());
                let weak_or_bad = w.ac.users.accept_invitation(&t, &secret("Str0ng-passw0rd!")).await.unwrap_err();
                assert!(matches!(weak_or_bad, Error::InvalidToken));
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(rt.block_on(w.store.audit_head()).unwrap(), head_before, "refused tokens change nothing");
}
