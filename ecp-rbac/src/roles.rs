//! What each role grants: the product's permission matrix, and custom roles.
//!
//! | module | system admin | org admin | project admin | viewer (regular user) |
//! |---|---|---|---|---|
//! | organization | edit | edit (its org) | view | – |
//! | project | edit | edit (its org) | edit (its project) | – |
//! | users, user authorization | edit | edit (its org) | edit (its project) | – |
//! | operation audit | view | view (its org) | view (its project) | – |
//! | system settings, license | edit | – | – | – |
//! | clusters, edge services, alarms, tags, config delivery | edit | edit | edit | view |
//! | monitoring, logs | view | view | view | view |
//!
//! Choices where the product's documents disagree or are silent:
//! - **Audit for system admins is `view`** (the Chinese page) rather than `edit` (the English one):
//!   the log is append-only and hash-chained, so nobody may edit it.
//! - **Creating and deleting organizations** needs `edit organization` at system scope; an
//!   organization admin's `edit` covers renaming its own organization and managing its members.
//! - **Creating and deleting projects** needs `edit project` in the organization (org admins);
//!   a project admin's `edit` covers renaming its project and its settings.
//! - **`view organization` for project admins** is their organization only (the one of their
//!   project).
//! - **Custom roles** may grant anything but system settings and the license, which exist only at
//!   system scope.

use ecp_core::access::{Action, Permission, PermissionSet, ResourceKind};
use ecp_core::identity::BuiltinRole;

use ResourceKind as K;

const FLEET: [ResourceKind; 5] = [K::Cluster, K::EdgeService, K::Alarm, K::Tag, K::ConfigDelivery];

/// What a built-in role grants, at the scope it is bound.
pub fn builtin_permissions(role: BuiltinRole) -> PermissionSet {
    let mut set = PermissionSet::EMPTY;
    let mut edit = |kinds: &[ResourceKind]| {
        for k in kinds {
            set.insert(Permission::edit(*k));
        }
    };
    match role {
        BuiltinRole::SystemAdmin => {
            edit(&[K::Organization, K::Project, K::User, K::SystemSettings, K::License]);
            edit(&FLEET);
        }
        BuiltinRole::OrgAdmin => {
            edit(&[K::Organization, K::Project, K::User]);
            edit(&FLEET);
        }
        BuiltinRole::ProjectAdmin => {
            edit(&[K::Project, K::User]);
            edit(&FLEET);
            set.insert(Permission::view(K::Organization));
        }
        BuiltinRole::Viewer => {
            for k in FLEET {
                set.insert(Permission::view(k));
            }
        }
        // Future built-in roles grant nothing until they are given a row in this match.
        #[allow(unreachable_patterns)]
        _ => {}
    }
    if role != BuiltinRole::Viewer {
        set.insert(Permission::view(K::Audit));
    }
    set.insert(Permission::view(K::Monitoring));
    set.insert(Permission::view(K::Log));
    set
}

/// Checks the permissions of a custom role and returns them in canonical form (the strongest
/// action per kind, sorted).
///
/// # Errors
/// `InvalidInput` for an empty list or a system-only kind.
pub fn normalize_custom(perms: &[Permission]) -> ecp_core::Result<Vec<Permission>> {
    if perms.is_empty() {
        return Err(ecp_core::Error::invalid("permissions", "a role must grant at least one permission"));
    }
    if let Some(p) = perms.iter().find(|p| matches!(p.kind, K::SystemSettings | K::License)) {
        return Err(ecp_core::Error::invalid("permissions", format!("{p} exists only at system scope and cannot be in a custom role")));
    }
    Ok(PermissionSet::from_permissions(perms.iter().copied()).strongest())
}

/// Whether `action` on `kind` is in `set` (a shorthand for tests and callers).
pub fn grants(set: PermissionSet, kind: ResourceKind, action: Action) -> bool {
    set.contains(Permission::new(kind, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_nested() {
        let sys = builtin_permissions(BuiltinRole::SystemAdmin);
        let org = builtin_permissions(BuiltinRole::OrgAdmin);
        let proj = builtin_permissions(BuiltinRole::ProjectAdmin);
        let viewer = builtin_permissions(BuiltinRole::Viewer);
        assert!(sys.is_superset(org));
        assert!(org.is_superset(proj));
        assert!(proj.is_superset(viewer));
        assert!(!proj.is_superset(org));
        assert!(!sys.contains(Permission::edit(K::Audit)), "nobody edits the audit log");
    }

    #[test]
    fn custom_roles_are_normalized_and_checked() {
        let got =
            normalize_custom(&[Permission::view(K::EdgeService), Permission::operate(K::EdgeService), Permission::view(K::Log)]).unwrap();
        assert_eq!(got, vec![Permission::operate(K::EdgeService), Permission::view(K::Log)]);
        assert!(normalize_custom(&[]).is_err());
        assert!(normalize_custom(&[Permission::edit(K::License)]).is_err());
    }
}
