//! The services through principals of each role: what they may do, what they get instead
//! (PermissionDenied where they can see the thing, NotFound where they cannot), and the audit
//! records of both.

use crate::common;

use ecp_core::access::{Action, Authorizer, Permission, ResourceKind, Scope, Subject};
use ecp_core::audit::{AuditQuery, Outcome};
use ecp_core::identity::{BuiltinRole, RoleRef, UserFilter};
use ecp_core::{Error as CoreError, PageRequest, Principal};
use ecp_rbac::{Error, Grant, NewUser};

use common::{secret, world};

fn core(e: Error) -> CoreError {
    match e {
        Error::Core(c) => c,
        other => panic!("expected a core error, got {other:?}"),
    }
}

#[tokio::test]
async fn tenancy_through_each_role() {
    let w = world(true).await;
    let t = &w.ac.tenancy;
    let acme = w.org("acme").await;
    let globex = w.org("globex").await;
    let plant = w.project(&acme, "plant").await;
    let foreign = w.project(&globex, "plant").await;
    let oa = w.user_with("oa@example.com", BuiltinRole::OrgAdmin, Scope::Org { org: acme.id }).await;
    let pa = w.user_with("pa@example.com", BuiltinRole::ProjectAdmin, plant.scope()).await;
    let viewer = w.user_with("v@example.com", BuiltinRole::Viewer, plant.scope()).await;

    // Organizations: only the system admin creates and deletes them.
    assert!(t.create_org(&oa, "mine").await.unwrap_err().is_permission_denied());
    assert!(t.delete_org(&oa, acme.id).await.unwrap_err().is_permission_denied());
    assert!(t.delete_org(&oa, globex.id).await.unwrap_err().is_not_found(), "another org is invisible");
    t.rename_org(&oa, acme.id, "Acme Corp").await.unwrap();
    assert!(t.rename_org(&oa, globex.id, "pwned").await.unwrap_err().is_not_found());
    assert!(t.rename_org(&pa, acme.id, "x").await.unwrap_err().is_permission_denied(), "a project admin sees but may not edit");
    assert_eq!(t.get_org(&pa, acme.id).await.unwrap().name, "Acme Corp");
    assert!(t.get_org(&viewer, acme.id).await.unwrap_err().is_permission_denied(), "its own org: it knows it exists");
    assert!(t.get_org(&pa, globex.id).await.unwrap_err().is_not_found());
    assert_eq!(t.list_orgs(&oa, &PageRequest::first(10)).await.unwrap().items.len(), 1);
    assert_eq!(t.list_orgs(&pa, &PageRequest::first(10)).await.unwrap().items.len(), 1);
    assert!(t.list_orgs(&viewer, &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert_eq!(t.list_orgs(&w.admin, &PageRequest::first(10)).await.unwrap().items.len(), 2);

    // Projects: org admins create and delete in their org; project admins rename their own.
    let line2 = t.create_project(&oa, acme.id, "line 2").await.unwrap();
    assert!(t.create_project(&oa, globex.id, "x").await.unwrap_err().is_not_found());
    assert!(t.create_project(&pa, acme.id, "x").await.unwrap_err().is_permission_denied());
    t.rename_project(&pa, plant.id(), "plant one").await.unwrap();
    assert!(t.rename_project(&pa, line2.id(), "x").await.unwrap_err().is_not_found(), "a sibling project is invisible");
    assert!(t.rename_project(&viewer, plant.id(), "x").await.unwrap_err().is_permission_denied());
    assert!(t.delete_project(&pa, plant.id()).await.unwrap_err().is_permission_denied());
    assert!(t.get_project(&oa, foreign.id()).await.unwrap_err().is_not_found());
    let visible: Vec<_> = t.list_projects(&pa, None, &PageRequest::first(10)).await.unwrap().items.into_iter().map(|p| p.id()).collect();
    assert_eq!(visible, vec![plant.id()]);
    assert_eq!(t.list_projects(&oa, None, &PageRequest::first(10)).await.unwrap().items.len(), 2);
    t.delete_project(&oa, line2.id()).await.unwrap();
    assert!(t.project_usage(&pa, plant.id()).await.unwrap().is_empty());

    // Failures are audited with their reason; the denied actor and the target are named.
    let q = AuditQuery { success: Some(false), actor: Some(oa.subject()), ..Default::default() };
    let failed = w.ac.audit.query(&w.admin, &q, &PageRequest::first(50)).await.unwrap().items;
    assert!(failed.iter().any(|r| r.event.operation.as_str() == "organization.create"
        && matches!(&r.event.outcome, Outcome::Failure { reason } if reason.contains("permission denied"))));
    assert!(
        failed.iter().any(|r| r.event.operation.as_str() == "organization.rename"
            && r.event.resource_id.as_deref() == Some(globex.id.to_string().as_str()))
    );
    // Audit visibility: an org admin reads its org's records only, a viewer none.
    let oa_view = w.ac.audit.query(&oa, &AuditQuery::default(), &PageRequest::first(500)).await.unwrap().items;
    assert!(!oa_view.is_empty());
    assert!(oa_view.iter().all(|r| r.event.org.as_ref().map(|o| o.id) == Some(acme.id)));
    assert!(w.ac.audit.query(&viewer, &AuditQuery::default(), &PageRequest::first(10)).await.unwrap_err().is_permission_denied());
    assert!(w.ac.audit.verify(&oa, None).await.is_err());
    w.ac.audit.verify(&w.admin, None).await.unwrap();
}

#[tokio::test]
async fn nobody_grants_more_than_it_holds() {
    let w = world(true).await;
    let u = &w.ac.users;
    let acme = w.org("acme").await;
    let globex = w.org("globex").await;
    let plant = w.project(&acme, "plant").await;
    let line = w.project(&acme, "line").await;
    let oa = w.user_with("oa@example.com", BuiltinRole::OrgAdmin, Scope::Org { org: acme.id }).await;
    let pa = w.user_with("pa@example.com", BuiltinRole::ProjectAdmin, plant.scope()).await;

    // An org admin creates users in its org, not in others, and never system admins.
    let ann = u
        .create_user(&oa, NewUser::new("ann@example.com", "Ann").grant(Grant::builtin(BuiltinRole::ProjectAdmin, plant.scope())))
        .await
        .unwrap();
    assert!(
        u.create_user(&oa, NewUser::new("x@example.com", "X").grant(Grant::builtin(BuiltinRole::SystemAdmin, Scope::System)))
            .await
            .is_err()
    );
    assert!(
        core(
            u.create_user(
                &oa,
                NewUser::new("y@example.com", "Y").grant(Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org: globex.id }))
            )
            .await
            .unwrap_err()
        )
        .is_not_found()
    );
    assert!(
        u.create_user(&oa, NewUser::new("z@example.com", "Z")).await.unwrap_err().is_permission_denied(),
        "no grants needs system scope"
    );
    // Roles that do not fit their scope.
    let bad = u
        .create_user(&oa, NewUser::new("w@example.com", "W").grant(Grant::builtin(BuiltinRole::ProjectAdmin, Scope::Org { org: acme.id })))
        .await;
    assert!(matches!(bad, Err(Error::Core(CoreError::InvalidInput { .. }))));

    // A project admin grants viewer or project admin in its project only.
    let bob =
        u.create_user(&pa, NewUser::new("bob@example.com", "Bob").grant(Grant::builtin(BuiltinRole::Viewer, plant.scope()))).await.unwrap();
    assert!(
        u.grant(&pa, Subject::User(bob.id), Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org: acme.id }))
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    assert!(u.grant(&pa, Subject::User(bob.id), Grant::builtin(BuiltinRole::Viewer, line.scope())).await.unwrap_err().is_not_found());
    u.grant(&pa, Subject::User(bob.id), Grant::builtin(BuiltinRole::ProjectAdmin, plant.scope())).await.unwrap();
    let bob_p = Principal::user(bob.id, bob.email.clone());
    assert!(w.ac.authorizer.check(&bob_p, Permission::edit(ResourceKind::EdgeService), &plant.scope()).is_ok());
    // ... and cannot take away what it does not hold.
    assert!(u.revoke(&pa, Subject::User(ann.id), plant.scope()).await.is_ok(), "same role, same scope");
    u.add_to_org(&oa, acme.id, bob.id, Some(RoleRef::Builtin(BuiltinRole::OrgAdmin))).await.unwrap();
    assert!(u.revoke(&pa, Subject::User(bob.id), Scope::Org { org: acme.id }).await.unwrap_err().is_permission_denied());

    // Custom roles: an org admin defines only what it holds and binds them only in its org.
    let operator = u
        .create_role(
            &oa,
            Some(acme.id),
            "Operator",
            "start and stop",
            &[Permission::operate(ResourceKind::EdgeService), Permission::view(ResourceKind::Log)],
        )
        .await
        .unwrap();
    assert!(u.create_role(&oa, Some(acme.id), "Root", "", &[Permission::edit(ResourceKind::License)]).await.is_err());
    assert!(
        core(u.create_role(&oa, Some(globex.id), "Mine", "", &[Permission::view(ResourceKind::Log)]).await.unwrap_err()).is_not_found()
    );
    assert!(u.create_role(&oa, None, "Global", "", &[Permission::view(ResourceKind::Log)]).await.unwrap_err().is_permission_denied());
    let carl = u.create_user(&oa, NewUser::new("carl@example.com", "Carl").grant(Grant::custom(operator.id, plant.scope()))).await.unwrap();
    let carl_p = Principal::user(carl.id, carl.email.clone());
    let authz = w.ac.authorizer.as_ref();
    assert!(authz.check(&carl_p, Permission::new(ResourceKind::EdgeService, Action::Operate), &plant.scope()).is_ok());
    assert!(authz.check(&carl_p, Permission::edit(ResourceKind::EdgeService), &plant.scope()).is_err(), "start/stop-only");
    assert!(authz.check(&carl_p, Permission::operate(ResourceKind::EdgeService), &line.scope()).is_err());
    // A project admin may not hand out a role beyond its own rights (here: it may, the role is
    // within project admin's rights); a viewer may not grant at all.
    let viewer = w.user_with("v@example.com", BuiltinRole::Viewer, plant.scope()).await;
    assert!(
        u.grant(&viewer, Subject::User(carl.id), Grant::builtin(BuiltinRole::Viewer, plant.scope()))
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    // Changing the role changes what its holders may do, at once.
    u.update_role(&oa, operator.id, "Operator", "view only now", &[Permission::view(ResourceKind::EdgeService)]).await.unwrap();
    assert!(authz.check(&carl_p, Permission::operate(ResourceKind::EdgeService), &plant.scope()).is_err());
    assert!(authz.check(&carl_p, Permission::view(ResourceKind::EdgeService), &plant.scope()).is_ok());
    assert!(u.delete_role(&oa, operator.id).await.unwrap_err().is_conflict(), "still bound");
    u.revoke(&oa, Subject::User(carl.id), plant.scope()).await.unwrap();
    u.delete_role(&oa, operator.id).await.unwrap();

    // Users visible to each: an org admin its org's users, a project admin its project's.
    let oa_sees = u.list_users(&oa, &UserFilter::default(), &PageRequest::first(50)).await.unwrap().items;
    assert!(oa_sees.iter().all(|x| x.email != "admin@example.com"));
    assert!(oa_sees.iter().any(|x| x.id == ann.id));
    assert!(
        core(
            u.get_user(
                &pa,
                match w.admin.subject() {
                    Subject::User(id) => id,
                    _ => unreachable!(),
                }
            )
            .await
            .unwrap_err()
        )
        .is_not_found()
    );
    let pa_sees = u.list_users(&pa, &UserFilter::default(), &PageRequest::first(50)).await.unwrap().items;
    assert!(pa_sees.iter().any(|x| x.id == bob.id));
    assert!(pa_sees.iter().all(|x| x.email != "oa@example.com"), "org admins are not in the project");

    // Removing from the organization removes every role there.
    u.remove_from_org(&oa, acme.id, bob.id).await.unwrap();
    assert!(authz.check(&bob_p, Permission::view(ResourceKind::EdgeService), &plant.scope()).is_err());
    // Only system admins disable or delete accounts.
    assert!(u.set_enabled(&oa, ann.id, false).await.unwrap_err().is_permission_denied());
    assert!(u.delete_user(&oa, ann.id).await.unwrap_err().is_permission_denied());
    u.delete_user(&w.admin, ann.id).await.unwrap();
    assert!(u.get_user(&w.admin, ann.id).await.unwrap_err().is_not_found());
    let _ = secret("x");
}
