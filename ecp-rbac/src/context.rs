//! What the services of this crate share.

use std::fmt;
use std::sync::Arc;

use ecp_core::access::{Permission, PermissionSet, Principal, ResourceKind, Scope};
use ecp_core::identity::{BuiltinRole, RoleRef};
use ecp_core::{Clock, Store};

use crate::authorizer::RbacAuthorizer;
use crate::config::AccessConfig;
use crate::error::{Error, Result};
use crate::password::Hasher;
use crate::roles::builtin_permissions;

pub(crate) struct Context {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) authz: Arc<RbacAuthorizer>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: AccessConfig,
    pub(crate) hasher: Hasher,
    pub(crate) throttle: crate::throttle::Throttle,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("store", &self.store).field("authz", &self.authz).finish_non_exhaustive()
    }
}

impl Context {
    /// Checks `perm` at `scope`: `PermissionDenied` where the principal has some access to the
    /// scope, `NotFound { kind, id }` where it has none.
    pub(crate) fn authorize(
        &self,
        p: &Principal,
        perm: Permission,
        scope: &Scope,
        kind: &'static str,
        id: &dyn fmt::Display,
    ) -> Result<()> {
        ecp_core::access::authorize(self.authz.as_ref(), p, perm, scope, kind, id).map_err(Error::from)
    }

    /// Checks a scope a caller gave against the store: a project scope must name the project's
    /// real organization. `Scope::Project { org: mine, project: theirs }` is answered as an
    /// unknown project, before any decision or record names it.
    ///
    /// # Errors
    /// `NotFound` for a missing organization or project, or one of another organization.
    pub(crate) async fn check_scope(&self, scope: &Scope) -> Result<()> {
        match *scope {
            Scope::System => Ok(()),
            Scope::Org { org } => {
                self.store.get_org(org).await?;
                Ok(())
            }
            Scope::Project { org, project } => match self.store.get_project(project).await {
                Ok(p) if p.org() == org => Ok(()),
                Ok(_) => Err(ecp_core::Error::not_found("project", project).into()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// What a role grants.
    pub(crate) async fn role_permissions(&self, role: RoleRef) -> Result<PermissionSet> {
        Ok(match role {
            RoleRef::Builtin(r) => builtin_permissions(r),
            RoleRef::Custom(id) => PermissionSet::from_permissions(self.store.get_role(id).await?.permissions),
        })
    }

    /// The rule for giving or taking a role at a scope: the role must fit the scope, the principal
    /// needs `edit user` there, and may only grant (or revoke) what it holds there itself.
    pub(crate) async fn authorize_grant(&self, p: &Principal, role: RoleRef, scope: &Scope) -> Result<()> {
        self.check_scope(scope).await?;
        let edit_users = Permission::edit(ResourceKind::User);
        let (kind, id): (&'static str, String) = match scope {
            Scope::System => ("system", "scope".into()),
            Scope::Org { org } => ("organization", org.to_string()),
            Scope::Project { project, .. } => ("project", project.to_string()),
        };
        self.authorize(p, edit_users, scope, kind, &id)?;
        match role {
            RoleRef::Builtin(r) if !r.bindable_at(scope) => {
                return Err(ecp_core::Error::invalid("role", format!("{r} cannot be bound at {}", scope_level(scope))).into());
            }
            RoleRef::Builtin(BuiltinRole::SystemAdmin) | RoleRef::Builtin(_) => {}
            RoleRef::Custom(id) => {
                let custom = self.store.get_role(id).await?;
                match (custom.org, scope.org()) {
                    (_, None) => {
                        return Err(ecp_core::Error::invalid("role", "custom roles are bound at organization or project scope").into());
                    }
                    (Some(owner), Some(org)) if owner != org => {
                        return Err(ecp_core::Error::not_found("role", id).into());
                    }
                    _ => {}
                }
            }
        }
        let wanted = self.role_permissions(role).await?;
        let held = self.authz.permissions_at(p, scope);
        if !held.is_superset(wanted) {
            return Err(ecp_core::Error::PermissionDenied {
                principal: p.to_string(),
                permission: format!("grant {role}"),
                scope: scope.to_string(),
                reason: "a principal can only grant what it holds itself".into(),
            }
            .into());
        }
        Ok(())
    }
}

fn scope_level(scope: &Scope) -> &'static str {
    match scope {
        Scope::System => "system scope",
        Scope::Org { .. } => "organization scope",
        Scope::Project { .. } => "project scope",
    }
}
