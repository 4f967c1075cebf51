//! Every cell of the product's permission matrix (`reference/ecp-features.md` §2), checked through
//! the authorizer for each built-in role, at its own scope and outside it.

use crate::common;

use ecp_core::access::{Action, Authorizer, Denial, Permission, ResourceKind, Scope};
use ecp_core::identity::BuiltinRole;

use common::world;

#[derive(Clone, Copy, Debug, PartialEq)]
enum L {
    /// edit (and so operate and view)
    E,
    /// view only
    V,
    /// nothing
    N,
}
use L::{E, N, V};

/// Columns: system admin, org admin, project admin, viewer (the regular user).
const MATRIX: &[(ResourceKind, [L; 4])] = &[
    (ResourceKind::Organization, [E, E, V, N]),
    (ResourceKind::Project, [E, E, E, N]),
    (ResourceKind::User, [E, E, E, N]),
    (ResourceKind::Audit, [V, V, V, N]),
    (ResourceKind::SystemSettings, [E, N, N, N]),
    (ResourceKind::License, [E, N, N, N]),
    (ResourceKind::Cluster, [E, E, E, V]),
    (ResourceKind::EdgeService, [E, E, E, V]),
    (ResourceKind::Alarm, [E, E, E, V]),
    (ResourceKind::Tag, [E, E, E, V]),
    (ResourceKind::ConfigDelivery, [E, E, E, V]),
    (ResourceKind::Monitoring, [V, V, V, V]),
    (ResourceKind::Log, [V, V, V, V]),
];

fn allowed(level: L, action: Action) -> bool {
    match level {
        E => true,
        V => action == Action::View,
        N => false,
    }
}

#[tokio::test]
async fn every_cell_of_the_matrix() {
    let w = world(true).await;
    assert_eq!(MATRIX.len(), ResourceKind::ALL.len(), "the table covers every kind");
    let org = w.org("acme").await;
    let project = w.project(&org, "plant").await;
    let other_org = w.org("globex").await;
    let other_project = w.project(&other_org, "plant").await;
    let same_org_project = w.project(&org, "line 2").await;

    let org_scope = Scope::Org { org: org.id };
    let proj_scope = project.scope();
    let sys = w.admin.clone();
    let org_admin = w.user_with("oa@example.com", BuiltinRole::OrgAdmin, org_scope).await;
    let proj_admin = w.user_with("pa@example.com", BuiltinRole::ProjectAdmin, proj_scope).await;
    let viewer = w.user_with("v@example.com", BuiltinRole::Viewer, proj_scope).await;
    let authz = w.ac.authorizer.as_ref();

    let mut cells = 0;
    for (kind, levels) in MATRIX {
        // Where each role works: the system admin everywhere (checked at system scope for system
        // modules and in the project otherwise), the others at their own scope.
        let system_module = matches!(kind, ResourceKind::SystemSettings | ResourceKind::License);
        let org_module = matches!(kind, ResourceKind::Organization);
        let cases = [
            (&sys, if system_module { Scope::System } else { proj_scope }, levels[0]),
            (
                &org_admin,
                if system_module {
                    Scope::System
                } else if org_module {
                    org_scope
                } else {
                    proj_scope
                },
                levels[1],
            ),
            (
                &proj_admin,
                if system_module {
                    Scope::System
                } else if org_module {
                    org_scope
                } else {
                    proj_scope
                },
                levels[2],
            ),
            (
                &viewer,
                if system_module {
                    Scope::System
                } else if org_module {
                    org_scope
                } else {
                    proj_scope
                },
                levels[3],
            ),
        ];
        for (who, scope, level) in cases {
            for action in Action::ALL {
                let got = authz.check(who, Permission::new(*kind, action), &scope).is_ok();
                assert_eq!(got, allowed(level, action), "{who} {action} {kind} at {scope}: expected {level:?}");
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 13 * 4 * 3);

    // (O) and (P): nothing outside their own organization or project.
    for (kind, _) in MATRIX {
        for action in Action::ALL {
            let p = Permission::new(*kind, action);
            for who in [&org_admin, &proj_admin, &viewer] {
                assert!(authz.check(who, p, &other_project.scope()).is_err(), "{who} {p} in another org's project");
                assert!(authz.check(who, p, &Scope::Org { org: other_org.id }).is_err(), "{who} {p} in another org");
            }
            // Project admins and viewers see nothing of the other projects of their organization.
            for who in [&proj_admin, &viewer] {
                assert!(authz.check(who, p, &same_org_project.scope()).is_err(), "{who} {p} in a sibling project");
            }
        }
    }
    // Organization admins' rights reach every project of their organization.
    assert!(authz.check(&org_admin, Permission::edit(ResourceKind::EdgeService), &same_org_project.scope()).is_ok());
    // Only the system admin acts at system scope on tenant modules (creating organizations ...).
    for who in [&org_admin, &proj_admin, &viewer] {
        assert!(authz.check(who, Permission::edit(ResourceKind::Organization), &Scope::System).is_err());
        assert!(authz.check(who, Permission::view(ResourceKind::Audit), &Scope::System).is_err());
    }
    // Denials say why.
    assert_eq!(authz.check(&viewer, Permission::edit(ResourceKind::Cluster), &proj_scope), Err(Denial::NotGranted));
    let stranger = ecp_core::Principal::user(ecp_core::UserId::new(), "nobody");
    assert_eq!(authz.check(&stranger, Permission::view(ResourceKind::Log), &proj_scope), Err(Denial::UnknownSubject));
    let anon = ecp_core::Principal::anonymous("x");
    assert!(authz.check(&anon, Permission::view(ResourceKind::Log), &proj_scope).is_err());
    assert!(authz.check(&ecp_core::Principal::system("job"), Permission::edit(ResourceKind::License), &Scope::System).is_ok());
}

#[tokio::test]
async fn a_viewer_bound_to_an_organization_reads_all_its_projects() {
    let w = world(true).await;
    let org = w.org("acme").await;
    let p1 = w.project(&org, "one").await;
    let p2 = w.project(&org, "two").await;
    let viewer = w.user_with("v@example.com", BuiltinRole::Viewer, Scope::Org { org: org.id }).await;
    let authz = w.ac.authorizer.as_ref();
    for p in [&p1, &p2] {
        assert!(authz.check(&viewer, Permission::view(ResourceKind::EdgeService), &p.scope()).is_ok());
        assert!(authz.check(&viewer, Permission::edit(ResourceKind::EdgeService), &p.scope()).is_err());
    }
    assert!(authz.check(&viewer, Permission::view(ResourceKind::Organization), &Scope::Org { org: org.id }).is_err());
}
