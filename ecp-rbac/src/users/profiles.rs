//! Seeing, listing, changing, enabling and deleting users.

use ecp_core::access::{Authorizer, Permission, Principal, ResourceKind, Subject};
use ecp_core::identity::{BindingFilter, User, UserFilter, validate_display_name, validate_email};
use ecp_core::scoped::audit_outcome;
use ecp_core::{Page, PageRequest, UserId};

use crate::error::Result;

use super::{UserChanges, Users, ops, user_event};

impl Users {
    /// Whether `p` may see user `id`: itself, or `view user` where the user is a member or bound.
    pub(super) async fn can_see(&self, p: &Principal, id: UserId) -> Result<bool> {
        if p.subject() == Subject::User(id) {
            return Ok(true);
        }
        let vis = self.ctx.authz.visibility(p, Permission::view(ResourceKind::User));
        if vis.all {
            return Ok(true);
        }
        if vis.is_empty() {
            return Ok(false);
        }
        let orgs = self.ctx.store.user_orgs(id).await?;
        if orgs.iter().any(|o| vis.orgs.contains(o)) {
            return Ok(true);
        }
        if vis.projects.is_empty() {
            return Ok(false);
        }
        let bindings = self.ctx.store.list_bindings(&BindingFilter { subject: Some(Subject::User(id)), ..Default::default() }).await?;
        Ok(bindings.iter().any(|b| b.scope.project().is_some_and(|pid| vis.projects.contains(&pid))))
    }

    /// One user, if the principal may see it (itself, or a user of where it has `view user`).
    ///
    /// # Errors
    /// `NotFound` (also when it may not see the user), `Backend`.
    pub async fn get_user(&self, principal: &Principal, id: UserId) -> Result<User> {
        if !self.can_see(principal, id).await? {
            return Err(ecp_core::Error::not_found("user", id).into());
        }
        Ok(self.ctx.store.get_user(id).await?)
    }

    /// Users the principal may see, filtered.
    ///
    /// # Errors
    /// `InvalidInput`, `Backend`.
    pub async fn list_users(&self, principal: &Principal, filter: &UserFilter, page: &PageRequest) -> Result<Page<User>> {
        let vis = self.ctx.authz.visibility(principal, Permission::view(ResourceKind::User));
        let mut filter = filter.clone();
        if !vis.all {
            filter.within_orgs = Some(vis.orgs);
            filter.within_projects = vis.projects;
        }
        Ok(self.ctx.store.list_users(&filter, page).await?)
    }

    /// Changes a profile: the user itself may change its display name; a system admin may change
    /// anything.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `Conflict` for a taken email, `Backend`.
    pub async fn update_user(&self, principal: &Principal, id: UserId, changes: UserChanges) -> Result<User> {
        let ctx = &self.ctx;
        let event = user_event(principal, ops::UPDATE, None).resource(id, None);
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            let admin_only = changes.email.is_some() || changes.sso_only.is_some() || principal.subject() != Subject::User(id);
            if admin_only && let Err(e) = self.edit_users_at_system(principal) {
                return Err(if self.can_see(principal, id).await? { e } else { ecp_core::Error::not_found("user", id).into() });
            }
            let mut user = ctx.store.get_user(id).await?;
            audit.resource(user.id, Some(&user.email)).details(serde_json::json!({
                "display_name": changes.display_name.is_some(),
                "email": changes.email.as_ref().map(|e| e.chars().take(254).collect::<String>()),
                "sso_only": changes.sso_only,
            }));
            if let Some(name) = changes.display_name {
                validate_display_name(&name)?;
                user.display_name = name;
            }
            if let Some(email) = changes.email {
                validate_email(&email)?;
                user.email = email;
            }
            if let Some(sso) = changes.sso_only {
                user.sso_only = sso;
            }
            user.updated_at = ctx.clock.now();
            ctx.store.update_user(&user, audit.in_transaction()).await?;
            Ok(user)
        })
        .await
    }

    /// Enables or disables a user. Needs `edit user` at system scope; nobody disables itself.
    /// Disabling revokes every session at once and makes the user's roles grant nothing.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` for the principal itself, `Backend`.
    pub async fn set_enabled(&self, principal: &Principal, id: UserId, enabled: bool) -> Result<User> {
        let ctx = &self.ctx;
        let op = if enabled { ops::ENABLE } else { ops::DISABLE };
        let event = user_event(principal, op, None).resource(id, None);
        let user = audit_outcome(ctx.store.as_ref(), event, async |audit| {
            if let Err(e) = self.edit_users_at_system(principal) {
                return Err(if self.can_see(principal, id).await? { e } else { ecp_core::Error::not_found("user", id).into() });
            }
            if principal.subject() == Subject::User(id) && !enabled {
                return Err(ecp_core::Error::invalid("user", "nobody can disable its own account").into());
            }
            let mut user = ctx.store.get_user(id).await?;
            user.enabled = enabled;
            user.updated_at = ctx.clock.now();
            audit.resource(user.id, Some(&user.email));
            ctx.store.update_user(&user, audit.in_transaction()).await?;
            Ok(user)
        })
        .await?;
        // After the success record: a failure here is not the change's.
        ctx.authz.reload_subject(Subject::User(id)).await?;
        Ok(user)
    }

    /// Deletes a user with its memberships, bindings and sessions. Needs `edit user` at system scope;
    /// nobody deletes itself.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` for the principal itself, `Backend`.
    pub async fn delete_user(&self, principal: &Principal, id: UserId) -> Result<()> {
        let ctx = &self.ctx;
        let event = user_event(principal, ops::DELETE, None).resource(id, None);
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            if let Err(e) = self.edit_users_at_system(principal) {
                return Err(if self.can_see(principal, id).await? { e } else { ecp_core::Error::not_found("user", id).into() });
            }
            if principal.subject() == Subject::User(id) {
                return Err(ecp_core::Error::invalid("user", "nobody can delete its own account").into());
            }
            let user = ctx.store.get_user(id).await?;
            audit.resource(user.id, Some(&user.email));
            ctx.store.delete_user(id, audit.in_transaction()).await?;
            Ok(())
        })
        .await?;
        // After the success record: a failure here is not the deletion's.
        ctx.authz.reload_subject(Subject::User(id)).await?;
        Ok(())
    }
}
