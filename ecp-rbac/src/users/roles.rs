//! Custom roles: creating, changing, deleting and listing them.

use ecp_core::access::{Permission, PermissionSet, Principal, ResourceKind, Scope};
use ecp_core::audit::AuditEvent;
use ecp_core::identity::CustomRole;
use ecp_core::scoped::audit_outcome;
use ecp_core::{OrgId, RoleId};

use crate::error::{Error, Result};
use crate::roles::normalize_custom;

use super::{Users, ops};

impl Users {
    pub(super) fn role_scope(org: Option<OrgId>) -> (Scope, &'static str, String) {
        match org {
            Some(org) => (Scope::Org { org }, "organization", org.to_string()),
            None => (Scope::System, "system", "scope".to_owned()),
        }
    }

    /// Creates a custom role: of an organization (needs `edit user` there) or system-wide (needs it at
    /// system scope). A role may only contain permissions the principal holds at that scope.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `InvalidInput` (name, empty or system-only permissions),
    /// `Conflict` for a taken name, `Backend`.
    pub async fn create_role(
        &self,
        principal: &Principal,
        org: Option<OrgId>,
        name: &str,
        description: &str,
        permissions: &[Permission],
    ) -> Result<CustomRole> {
        let ctx = &self.ctx;
        let (scope, kind, id) = Self::role_scope(org);
        let mut event = AuditEvent::new(principal, ResourceKind::User, ops::ROLE_CREATE);
        event.resource_name = Some(name.chars().take(50).collect());
        let role = audit_outcome(ctx.store.as_ref(), event, async |audit| {
            self.name_scope(audit, &scope).await?;
            ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, kind, &id)?;
            let role = self.build_role(principal, RoleId::new(), org, name, description, permissions, &scope)?;
            audit.resource(role.id, Some(&role.name)).details(serde_json::json!({ "permissions": role.permissions }));
            ctx.store.create_role(&role, audit.in_transaction()).await?;
            Ok::<_, Error>(role)
        })
        .await?;
        // After the success record: a failure here is not the creation's.
        ctx.authz.reload_role(role.id).await?;
        Ok(role)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_role(
        &self,
        p: &Principal,
        id: RoleId,
        org: Option<OrgId>,
        name: &str,
        description: &str,
        permissions: &[Permission],
        scope: &Scope,
    ) -> Result<CustomRole> {
        ecp_core::tenancy::validate_name("role name", name, 50)?;
        if description.chars().count() > 500 || description.chars().any(char::is_control) {
            return Err(ecp_core::Error::invalid("description", "at most 500 characters, no control characters").into());
        }
        let permissions = normalize_custom(permissions)?;
        let held = self.ctx.authz.permissions_at(p, scope);
        if !held.is_superset(PermissionSet::from_permissions(permissions.iter().copied())) {
            return Err(ecp_core::Error::PermissionDenied {
                principal: p.to_string(),
                permission: "define a role with these permissions".into(),
                scope: scope.to_string(),
                reason: "a principal can only grant what it holds itself".into(),
            }
            .into());
        }
        let now = self.ctx.clock.now();
        Ok(CustomRole {
            id,
            org,
            name: name.to_owned(),
            description: description.to_owned(),
            permissions,
            created_at: now,
            updated_at: now,
        })
    }

    /// Changes a custom role's name, description and permissions; every subject bound to it gets the
    /// new permissions at once.
    ///
    /// # Errors
    /// As [`Users::create_role`], and `NotFound` for the role.
    pub async fn update_role(
        &self,
        principal: &Principal,
        id: RoleId,
        name: &str,
        description: &str,
        permissions: &[Permission],
    ) -> Result<CustomRole> {
        let ctx = &self.ctx;
        let event = AuditEvent::new(principal, ResourceKind::User, ops::ROLE_UPDATE).resource(id, None);
        let role = audit_outcome(ctx.store.as_ref(), event, async |audit| {
            let existing = ctx.store.get_role(id).await?;
            let (scope, _, _) = Self::role_scope(existing.org);
            self.name_scope(audit, &scope).await?;
            ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "role", &id)?;
            let mut role = self.build_role(principal, id, existing.org, name, description, permissions, &scope)?;
            role.created_at = existing.created_at;
            audit.resource(id, Some(&role.name)).details(serde_json::json!({
                "from": existing.permissions, "to": role.permissions,
            }));
            ctx.store.update_role(&role, audit.in_transaction()).await?;
            Ok::<_, Error>(role)
        })
        .await?;
        // After the success record: a failure here is not the change's.
        ctx.authz.reload_role(id).await?;
        Ok(role)
    }

    /// Deletes a custom role nobody is bound to.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Conflict` while bound, `Backend`.
    pub async fn delete_role(&self, principal: &Principal, id: RoleId) -> Result<()> {
        let ctx = &self.ctx;
        let event = AuditEvent::new(principal, ResourceKind::User, ops::ROLE_DELETE).resource(id, None);
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            let existing = ctx.store.get_role(id).await?;
            let (scope, _, _) = Self::role_scope(existing.org);
            audit.resource(id, Some(&existing.name));
            self.name_scope(audit, &scope).await?;
            ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "role", &id)?;
            ctx.store.delete_role(id, audit.in_transaction()).await?;
            Ok::<_, Error>(())
        })
        .await?;
        // After the success record: a failure here is not the deletion's.
        ctx.authz.reload_role(id).await?;
        Ok(())
    }

    /// The custom roles usable in an organization (its own and the system's). Needs `view user`
    /// there.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `Backend`.
    pub async fn list_roles(&self, principal: &Principal, org: Option<OrgId>) -> Result<Vec<CustomRole>> {
        let (scope, kind, id) = Self::role_scope(org);
        self.ctx.authorize(principal, Permission::view(ResourceKind::User), &scope, kind, &id)?;
        Ok(self.ctx.store.list_roles(org).await?)
    }
}
