use ecp_core::prelude::*;
use std::sync::Arc;
use std::time::Duration;

use ecp_core::access::{Action, Permission, ResourceKind, Scope, Subject};
use ecp_core::clock;
use ecp_core::identity::{
    ApiKey, Binding, BindingFilter, BuiltinRole, CustomRole, LockoutRule, PasswordHash, RoleRef, SessionRecord, TokenHash, User,
    UserFilter, UserState, UserToken, UserTokenPurpose,
};
use ecp_core::{ApiKeyId, Error, Organization, PageRequest, Project, RoleId, SessionId, Store, TenancyLimits};

use super::ev;
use crate::store_conformance::Fixture;

async fn org_and_project(f: &Fixture, name: &str) -> (Organization, Project) {
    let l = TenancyLimits::default();
    let o = Organization::new(name, f.clock.now()).unwrap();
    f.store.create_org(&o, &l, &ev("organization.create")).await.unwrap();
    let p = Project::new(o.id, "p", f.clock.now()).unwrap();
    f.store.create_project(&p, &l, &ev("project.create")).await.unwrap();
    (o, p)
}

fn user(f: &Fixture, email: &str) -> User {
    User::new(email, email.split('@').next().unwrap(), UserState::Active, f.clock.now()).unwrap()
}

pub(crate) async fn users_create_find_update_delete(f: &Fixture) {
    let s = f.store.as_ref();
    let (o, p) = org_and_project(f, "acme").await;
    let ann = user(f, "Ann@Example.com");
    let hash = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA");
    let b = Binding::new(Subject::User(ann.id), RoleRef::Builtin(BuiltinRole::ProjectAdmin), p.scope(), f.clock.now());
    s.create_user(&ann, Some(&hash), &[o.id], std::slice::from_ref(&b), &ev("user.create")).await.unwrap();

    let got = s.get_user(ann.id).await.unwrap();
    assert!(got.has_password);
    assert_eq!(got.email, "Ann@Example.com");
    // Emails are matched regardless of case; the hash comes back only here.
    let creds = s.find_credentials("ann@EXAMPLE.com").await.unwrap().unwrap();
    assert_eq!(creds.user.id, ann.id);
    assert_eq!(creds.password_hash.unwrap().expose(), hash.expose());
    assert!(s.find_credentials("nobody@example.com").await.unwrap().is_none());
    assert!(s.find_credentials(&"x".repeat(10_000)).await.unwrap().is_none());
    assert!(s.create_user(&user(f, "ANN@example.com"), None, &[], &[], &ev("user.create")).await.unwrap_err().is_conflict());
    assert_eq!(s.user_orgs(ann.id).await.unwrap(), vec![o.id]);
    assert_eq!(s.list_bindings(&BindingFilter { subject: Some(Subject::User(ann.id)), ..Default::default() }).await.unwrap(), vec![b]);

    // All or nothing: a bad binding leaves no user behind.
    let bob = user(f, "bob@example.com");
    let outside = Binding::new(Subject::User(bob.id), RoleRef::Builtin(BuiltinRole::Viewer), p.scope(), f.clock.now());
    let err = s.create_user(&bob, None, &[], &[outside], &ev("user.create")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(s.get_user(bob.id).await.unwrap_err().is_not_found());
    s.create_user(&bob, None, &[o.id], &[], &ev("user.create")).await.unwrap();
    assert!(!s.get_user(bob.id).await.unwrap().has_password);

    let in_org = s.list_users(&UserFilter { org: Some(o.id), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(in_org.items.len(), 2);
    let in_project = s.list_users(&UserFilter { project: Some(p.id()), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(in_project.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ann.id]);
    let found = s.list_users(&UserFilter { search: Some("BOB".into()), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert_eq!(found.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![bob.id]);
    let none = s.list_users(&UserFilter { within_orgs: Some(vec![]), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
    assert!(none.items.is_empty());

    let mut changed = got.clone();
    changed.display_name = "Ann Lee".into();
    changed.sso_only = true;
    s.update_user(&changed, &ev("user.update")).await.unwrap();
    let reread = s.get_user(ann.id).await.unwrap();
    assert_eq!((reread.display_name.as_str(), reread.sso_only), ("Ann Lee", true));
    // Case-insensitive search folds non-ASCII letters too, on every backend.
    let mut accented = reread.clone();
    accented.display_name = "ÉMILE Ørsted".into();
    s.update_user(&accented, &ev("user.update")).await.unwrap();
    for search in ["émile", "ØRSTED", "Émile ø"] {
        let found = s.list_users(&UserFilter { search: Some(search.into()), ..Default::default() }, &PageRequest::first(10)).await.unwrap();
        assert_eq!(found.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ann.id], "{search}");
    }
    s.update_user(&reread, &ev("user.update")).await.unwrap();
    let mut taken = reread.clone();
    taken.email = "BOB@example.com".into();
    assert!(s.update_user(&taken, &ev("user.update")).await.unwrap_err().is_conflict());

    s.record_login(ann.id, f.clock.now()).await.unwrap();
    assert_eq!(s.get_user(ann.id).await.unwrap().last_login_at, Some(f.clock.now()));

    s.delete_user(ann.id, &ev("user.delete")).await.unwrap();
    assert!(s.get_user(ann.id).await.unwrap_err().is_not_found());
    assert!(s.list_bindings(&BindingFilter { subject: Some(Subject::User(ann.id)), ..Default::default() }).await.unwrap().is_empty());
    assert!(s.delete_user(ann.id, &ev("user.delete")).await.unwrap_err().is_not_found());
}

pub(crate) async fn bindings_need_membership_and_agree_with_their_scope(f: &Fixture) {
    let s = f.store.as_ref();
    let (o, p) = org_and_project(f, "acme").await;
    let (other, q) = org_and_project(f, "globex").await;
    let u = user(f, "u@example.com");
    s.create_user(&u, None, &[], &[], &ev("user.create")).await.unwrap();
    let sub = Subject::User(u.id);

    let viewer = |scope| Binding::new(sub, RoleRef::Builtin(BuiltinRole::Viewer), scope, f.clock.now());
    // Not a member yet.
    let err = s.put_binding(&viewer(p.scope()), &ev("binding.put")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    s.add_org_member(o.id, u.id, f.clock.now(), &ev("member.add")).await.unwrap();
    s.add_org_member(o.id, u.id, f.clock.now(), &ev("member.add")).await.unwrap(); // idempotent
    assert!(s.put_binding(&viewer(p.scope()), &ev("binding.put")).await.unwrap().is_none());
    // A project paired with the wrong organization is refused, whatever the caller claims, as a
    // project that does not exist is.
    let forged = Scope::Project { org: o.id, project: q.id() };
    assert!(s.put_binding(&viewer(forged), &ev("binding.put")).await.unwrap_err().is_not_found());
    // Membership in one organization is not membership in another.
    assert!(s.put_binding(&viewer(Scope::Org { org: other.id }), &ev("binding.put")).await.is_err());
    // One role per scope: putting again replaces and returns the old one.
    let admin = Binding::new(sub, RoleRef::Builtin(BuiltinRole::ProjectAdmin), p.scope(), f.clock.now());
    let replaced = s.put_binding(&admin, &ev("binding.put")).await.unwrap().unwrap();
    assert_eq!(replaced.role, RoleRef::Builtin(BuiltinRole::Viewer));
    let now = s.list_bindings(&BindingFilter { project: Some(p.id()), ..Default::default() }).await.unwrap();
    assert_eq!(now, vec![admin.clone()]);
    // System scope needs no membership.
    let sys = Binding::new(sub, RoleRef::Builtin(BuiltinRole::SystemAdmin), Scope::System, f.clock.now());
    s.put_binding(&sys, &ev("binding.put")).await.unwrap();
    // Missing things.
    let ghost =
        Binding::new(Subject::User(ecp_core::UserId::new()), RoleRef::Builtin(BuiltinRole::SystemAdmin), Scope::System, f.clock.now());
    assert!(s.put_binding(&ghost, &ev("binding.put")).await.unwrap_err().is_not_found());
    let bad_project = Scope::Project { org: o.id, project: ecp_core::ProjectId::new() };
    assert!(s.put_binding(&viewer(bad_project), &ev("binding.put")).await.unwrap_err().is_not_found());
    let system_subject = Binding::new(Subject::System, RoleRef::Builtin(BuiltinRole::SystemAdmin), Scope::System, f.clock.now());
    assert!(matches!(s.put_binding(&system_subject, &ev("binding.put")).await.unwrap_err(), Error::InvalidInput { .. }));

    let removed = s.delete_binding(sub, &p.scope(), &ev("binding.delete")).await.unwrap();
    assert_eq!(removed.id, admin.id);
    assert!(s.delete_binding(sub, &p.scope(), &ev("binding.delete")).await.unwrap_err().is_not_found());

    // Paging through every binding.
    let mut seen = 0;
    let mut page = PageRequest::first(1);
    loop {
        let got = s.all_bindings(&page).await.unwrap();
        seen += got.items.len();
        match got.next {
            Some(c) => page = PageRequest::after(1, c),
            None => break,
        }
    }
    assert_eq!(seen, 1);
}

pub(crate) async fn removing_a_member_or_project_removes_its_bindings(f: &Fixture) {
    let s = f.store.as_ref();
    let (o, p) = org_and_project(f, "acme").await;
    let u = user(f, "u@example.com");
    let w = user(f, "w@example.com");
    let bu = vec![
        Binding::new(Subject::User(u.id), RoleRef::Builtin(BuiltinRole::OrgAdmin), Scope::Org { org: o.id }, f.clock.now()),
        Binding::new(Subject::User(u.id), RoleRef::Builtin(BuiltinRole::ProjectAdmin), p.scope(), f.clock.now()),
    ];
    s.create_user(&u, None, &[o.id], &bu, &ev("user.create")).await.unwrap();
    let bw = Binding::new(Subject::User(w.id), RoleRef::Builtin(BuiltinRole::Viewer), p.scope(), f.clock.now());
    s.create_user(&w, None, &[o.id], &[bw], &ev("user.create")).await.unwrap();

    s.remove_org_member(o.id, u.id, &ev("member.remove")).await.unwrap();
    assert!(s.list_bindings(&BindingFilter { subject: Some(Subject::User(u.id)), ..Default::default() }).await.unwrap().is_empty());
    assert!(s.user_orgs(u.id).await.unwrap().is_empty());
    assert!(s.remove_org_member(o.id, u.id, &ev("member.remove")).await.unwrap_err().is_not_found());

    s.delete_project(p.id(), &ev("project.delete")).await.unwrap();
    assert!(s.list_bindings(&BindingFilter { subject: Some(Subject::User(w.id)), ..Default::default() }).await.unwrap().is_empty());
    assert_eq!(s.user_orgs(w.id).await.unwrap(), vec![o.id], "membership outlives the project");
    s.delete_org(o.id, &ev("organization.delete")).await.unwrap();
    assert!(s.user_orgs(w.id).await.unwrap().is_empty(), "memberships go with the organization");
}

pub(crate) async fn custom_roles(f: &Fixture) {
    let s = f.store.as_ref();
    let (o, p) = org_and_project(f, "acme").await;
    let (other, q) = org_and_project(f, "globex").await;
    let now = f.clock.now();
    let role = CustomRole {
        id: RoleId::new(),
        org: Some(o.id),
        name: "Operator".into(),
        description: "start and stop edge services".into(),
        permissions: vec![Permission::new(ResourceKind::EdgeService, Action::Operate), Permission::view(ResourceKind::Log)],
        created_at: now,
        updated_at: now,
    };
    s.create_role(&role, &ev("role.create")).await.unwrap();
    assert_eq!(s.get_role(role.id).await.unwrap(), role);
    let dup = CustomRole { id: RoleId::new(), ..role.clone() };
    assert!(s.create_role(&dup, &ev("role.create")).await.unwrap_err().is_conflict());
    // The same name in another owner is fine.
    let global = CustomRole { id: RoleId::new(), org: None, ..role.clone() };
    s.create_role(&global, &ev("role.create")).await.unwrap();
    assert_eq!(s.list_roles(Some(o.id)).await.unwrap().len(), 2);
    assert_eq!(s.list_roles(Some(other.id)).await.unwrap().len(), 1);
    assert_eq!(s.list_roles(None).await.unwrap().len(), 2);

    let u = user(f, "u@example.com");
    s.create_user(&u, None, &[o.id, other.id], &[], &ev("user.create")).await.unwrap();
    let bind = |scope| Binding::new(Subject::User(u.id), RoleRef::Custom(role.id), scope, f.clock.now());
    s.put_binding(&bind(p.scope()), &ev("binding.put")).await.unwrap();
    // An organization's role cannot be used in another organization (where it is not found), nor
    // at system scope.
    assert!(s.put_binding(&bind(q.scope()), &ev("binding.put")).await.unwrap_err().is_not_found());
    assert!(matches!(s.put_binding(&bind(Scope::System), &ev("binding.put")).await.unwrap_err(), Error::InvalidInput { .. }));
    assert!(
        s.put_binding(&Binding::new(Subject::User(u.id), RoleRef::Custom(RoleId::new()), q.scope(), now), &ev("b"))
            .await
            .unwrap_err()
            .is_not_found()
    );

    let mut edited = role.clone();
    edited.permissions.push(Permission::edit(ResourceKind::Tag));
    edited.name = "Line operator".into();
    s.update_role(&edited, &ev("role.update")).await.unwrap();
    assert_eq!(s.get_role(role.id).await.unwrap().permissions.len(), 3);

    let err = s.delete_role(role.id, &ev("role.delete")).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(s.list_bindings(&BindingFilter { role: Some(role.id), ..Default::default() }).await.unwrap().len(), 1);
    s.delete_binding(Subject::User(u.id), &p.scope(), &ev("binding.delete")).await.unwrap();
    s.delete_role(role.id, &ev("role.delete")).await.unwrap();
    assert!(s.get_role(role.id).await.unwrap_err().is_not_found());
}

fn session(f: &Fixture, user: ecp_core::UserId, tag: &str) -> SessionRecord {
    let now = f.clock.now();
    SessionRecord {
        id: SessionId::new(),
        user,
        access_hash: TokenHash::of(&format!("access-{tag}")),
        access_expires_at: clock::add(now, Duration::from_secs(900)),
        refresh_hash: TokenHash::of(&format!("refresh-{tag}")),
        previous_refresh_hash: None,
        refresh_expires_at: clock::add(now, Duration::from_secs(86_400)),
        created_at: now,
        revoked_at: None,
    }
}

pub(crate) async fn sessions_rotate_once_and_revoke(f: &Fixture) {
    let store: Arc<dyn Store> = f.store.clone();
    let u = user(f, "u@example.com");
    store.create_user(&u, None, &[], &[], &ev("user.create")).await.unwrap();
    let s1 = session(f, u.id, "1");
    store.create_session(&s1, &ev("session.create")).await.unwrap();
    assert_eq!(store.session_by_access(&s1.access_hash).await.unwrap().unwrap(), s1);
    assert_eq!(store.session_by_refresh(&s1.refresh_hash).await.unwrap().unwrap().id, s1.id);
    assert!(store.session_by_access(&TokenHash::of("nope")).await.unwrap().is_none());

    // Two refreshes of the same token race: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let mut next = session(f, u.id, &format!("2-{i}"));
        next.id = s1.id;
        next.previous_refresh_hash = Some(s1.refresh_hash);
        let expected = s1.refresh_hash;
        tasks.push(tokio::spawn(async move { store.rotate_session(&next, &expected).await.unwrap() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    // The rotated-away token is still found (so its reuse can be detected), with the new one current.
    let found = store.session_by_refresh(&s1.refresh_hash).await.unwrap().unwrap();
    assert_eq!(found.previous_refresh_hash, Some(s1.refresh_hash));
    assert_ne!(found.refresh_hash, s1.refresh_hash);
    assert!(store.session_by_access(&s1.access_hash).await.unwrap().is_none());

    store.revoke_session(s1.id, f.clock.now(), &ev("session.revoke")).await.unwrap();
    assert!(store.session_by_refresh(&found.refresh_hash).await.unwrap().unwrap().revoked_at.is_some());
    let mut after = session(f, u.id, "3");
    after.id = s1.id;
    assert!(!store.rotate_session(&after, &found.refresh_hash).await.unwrap(), "a revoked session never rotates");
    assert!(store.revoke_session(SessionId::new(), f.clock.now(), &ev("session.revoke")).await.unwrap_err().is_not_found());
    let orphan = session(f, ecp_core::UserId::new(), "4");
    assert!(store.create_session(&orphan, &ev("session.create")).await.unwrap_err().is_not_found());
}

pub(crate) async fn disabling_or_a_new_password_revokes_sessions(f: &Fixture) {
    let s = f.store.as_ref();
    let u = user(f, "u@example.com");
    s.create_user(&u, None, &[], &[], &ev("user.create")).await.unwrap();
    let s1 = session(f, u.id, "1");
    s.create_session(&s1, &ev("session.create")).await.unwrap();
    s.set_password(u.id, Some(&PasswordHash::new("$argon2id$new")), f.clock.now(), &ev("user.password")).await.unwrap();
    assert!(s.session_by_access(&s1.access_hash).await.unwrap().unwrap().revoked_at.is_some());

    let s2 = session(f, u.id, "2");
    s.create_session(&s2, &ev("session.create")).await.unwrap();
    let mut disabled = s.get_user(u.id).await.unwrap();
    disabled.enabled = false;
    s.update_user(&disabled, &ev("user.disable")).await.unwrap();
    assert!(s.session_by_access(&s2.access_hash).await.unwrap().unwrap().revoked_at.is_some());
    assert_eq!(s.inactive_subjects(f.clock.now()).await.unwrap(), vec![Subject::User(u.id)]);
    assert!(s.set_password(ecp_core::UserId::new(), None, f.clock.now(), &ev("user.password")).await.unwrap_err().is_not_found());
}

pub(crate) async fn api_keys(f: &Fixture) {
    let s = f.store.as_ref();
    let (o, p) = org_and_project(f, "acme").await;
    let now = f.clock.now();
    let key = ApiKey {
        id: ApiKeyId::new(),
        name: "ci deployer".into(),
        org: Some(o.id),
        created_by: Subject::System,
        created_at: now,
        expires_at: Some(clock::add(now, Duration::from_secs(3600))),
        revoked_at: None,
        last_used_at: None,
    };
    let secret = TokenHash::of("ecpk_secret");
    let b = Binding::new(Subject::ApiKey(key.id), RoleRef::Builtin(BuiltinRole::ProjectAdmin), p.scope(), now);
    s.create_api_key(&key, &secret, std::slice::from_ref(&b), &ev("api_key.create")).await.unwrap();
    let (got, hash) = s.get_api_key(key.id).await.unwrap();
    assert_eq!((got, hash), (key.clone(), secret));
    assert_eq!(s.list_api_keys(Some(o.id)).await.unwrap().len(), 1);
    assert!(s.list_api_keys(None).await.unwrap().is_empty());
    assert_eq!(s.list_bindings(&BindingFilter { subject: Some(Subject::ApiKey(key.id)), ..Default::default() }).await.unwrap(), vec![b]);
    s.touch_api_key(key.id, now).await.unwrap();
    assert_eq!(s.get_api_key(key.id).await.unwrap().0.last_used_at, Some(now));

    assert!(s.inactive_subjects(now).await.unwrap().is_empty());
    let later = clock::add(now, Duration::from_secs(7200));
    assert_eq!(s.inactive_subjects(later).await.unwrap(), vec![Subject::ApiKey(key.id)], "expired");
    s.revoke_api_key(key.id, now, &ev("api_key.revoke")).await.unwrap();
    assert_eq!(s.inactive_subjects(now).await.unwrap(), vec![Subject::ApiKey(key.id)], "revoked");
    assert!(s.revoke_api_key(ApiKeyId::new(), now, &ev("api_key.revoke")).await.unwrap_err().is_not_found());
    assert!(s.get_api_key(ApiKeyId::new()).await.unwrap_err().is_not_found());

    // Keys that hang from the revoked one (minted by it, or by a key it minted) fall with it and
    // expire no later than it; a key of a disabled or deleted user falls too.
    let minted = |by: Subject, ttl: Option<u64>| ApiKey {
        id: ApiKeyId::new(),
        name: "minted".into(),
        org: Some(o.id),
        created_by: by,
        created_at: now,
        expires_at: ttl.map(|t| clock::add(now, Duration::from_secs(t))),
        revoked_at: None,
        last_used_at: None,
    };
    let child = minted(Subject::ApiKey(key.id), None);
    let grandchild = minted(Subject::ApiKey(child.id), Some(86_400));
    for k in [&child, &grandchild] {
        s.create_api_key(k, &TokenHash::of(&k.id.to_string()), &[], &ev("api_key.create")).await.unwrap();
    }
    assert_eq!(s.api_keys_created_by(Subject::ApiKey(key.id)).await.unwrap(), vec![child.id]);
    let mut fallen = s.inactive_subjects(now).await.unwrap();
    fallen.sort_by_key(|s| s.id_string());
    let mut expected = vec![Subject::ApiKey(key.id), Subject::ApiKey(child.id), Subject::ApiKey(grandchild.id)];
    expected.sort_by_key(|s| s.id_string());
    assert_eq!(fallen, expected);
    let expiries: std::collections::HashMap<_, _> = s.api_key_expiries().await.unwrap().into_iter().collect();
    assert_eq!(expiries.get(&grandchild.id), key.expires_at.as_ref(), "the parent's hour, not its own day");
    assert_eq!(expiries.get(&child.id), key.expires_at.as_ref());

    let owner = user(f, "owner@example.com");
    s.create_user(&owner, None, &[], &[], &ev("user.create")).await.unwrap();
    let owned = minted(Subject::User(owner.id), None);
    s.create_api_key(&owned, &TokenHash::of("owned"), &[], &ev("api_key.create")).await.unwrap();
    assert_eq!(s.api_keys_created_by(Subject::User(owner.id)).await.unwrap(), vec![owned.id]);
    assert!(!s.inactive_subjects(now).await.unwrap().contains(&Subject::ApiKey(owned.id)));
    s.delete_user(owner.id, &ev("user.delete")).await.unwrap();
    assert!(s.inactive_subjects(now).await.unwrap().contains(&Subject::ApiKey(owned.id)), "its creator is gone");
}

pub(crate) async fn single_use_tokens(f: &Fixture) {
    let s = f.store.as_ref();
    let mut invited = user(f, "new@example.com");
    invited.state = UserState::Invited;
    s.create_user(&invited, None, &[], &[], &ev("user.invite")).await.unwrap();
    let now = f.clock.now();
    let token = |raw: &str, ttl| UserToken {
        id: ecp_core::id::UserTokenId::new(),
        user: invited.id,
        purpose: UserTokenPurpose::Invitation,
        token_hash: TokenHash::of(raw),
        expires_at: clock::add(now, Duration::from_secs(ttl)),
        created_at: now,
        used_at: None,
    };
    // A new token replaces the unused one.
    s.create_user_token(&token("first", 3600), &ev("user.invite")).await.unwrap();
    s.create_user_token(&token("second", 3600), &ev("user.invite")).await.unwrap();
    let pw = PasswordHash::new("$argon2id$x");
    let audit = |u: &User| {
        let mut e = ev("user.activate");
        e.resource_id = Some(u.id.to_string());
        e
    };
    let err = s.redeem_user_token(&TokenHash::of("first"), UserTokenPurpose::Invitation, &pw, now, &audit).await.unwrap_err();
    assert!(err.is_not_found());
    // Wrong purpose.
    assert!(s.redeem_user_token(&TokenHash::of("second"), UserTokenPurpose::PasswordReset, &pw, now, &audit).await.is_err());
    let activated = s.redeem_user_token(&TokenHash::of("second"), UserTokenPurpose::Invitation, &pw, now, &audit).await.unwrap();
    assert_eq!(activated.state, UserState::Active);
    assert!(activated.has_password);
    // Single use.
    assert!(
        s.redeem_user_token(&TokenHash::of("second"), UserTokenPurpose::Invitation, &pw, now, &audit).await.unwrap_err().is_not_found()
    );
    // Expired.
    s.create_user_token(&token("third", 60), &ev("user.invite")).await.unwrap();
    let late = clock::add(now, Duration::from_secs(61));
    assert!(
        s.redeem_user_token(&TokenHash::of("third"), UserTokenPurpose::Invitation, &pw, late, &audit).await.unwrap_err().is_not_found()
    );
}

pub(crate) async fn login_failures_lock_and_count_exactly(f: &Fixture) {
    let store: Arc<dyn Store> = f.store.clone();
    let rule = LockoutRule { max_failures: 3, window: Duration::from_secs(600), lock_for: Duration::from_secs(900) };
    let key = "ann@example.com";
    assert!(store.login_failures(key).await.unwrap().is_none());
    let t0 = f.clock.now();
    assert_eq!(store.record_login_failure(key, t0, &rule).await.unwrap().failures, 1);
    assert_eq!(store.record_login_failure(key, t0, &rule).await.unwrap().failures, 2);
    let locked = store.record_login_failure(key, t0, &rule).await.unwrap();
    assert_eq!(locked.locked_until, Some(clock::add(t0, Duration::from_secs(900))));
    assert_eq!(store.login_failures(key).await.unwrap().unwrap().locked_until, locked.locked_until);
    // After the window, counting starts again.
    let t1 = clock::add(t0, Duration::from_secs(1000));
    assert_eq!(store.record_login_failure(key, t1, &rule).await.unwrap().failures, 1);
    store.clear_login_failures(key).await.unwrap();
    assert!(store.login_failures(key).await.unwrap().is_none());

    // Concurrent failures are all counted.
    let wide = LockoutRule { max_failures: 1000, ..rule };
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.record_login_failure("bob@example.com", t0, &wide).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.login_failures("bob@example.com").await.unwrap().unwrap().failures, 24);
}
