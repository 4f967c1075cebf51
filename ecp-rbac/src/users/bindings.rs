//! Organization membership and role bindings of users and API keys.

use ecp_core::access::{Authorizer as _, Permission, Principal, ResourceKind, Scope, Subject};
use ecp_core::identity::{Binding, BindingFilter, RoleRef};
use ecp_core::scoped::audit_outcome;
use ecp_core::{OrgId, UserId};

use crate::error::{Error, Result};

use super::{Grant, Users, ops, user_event};

impl Users {
    /// Adds a user to an organization, optionally with a role there. Needs `edit user` in the
    /// organization (and, for a role, to hold what it grants).
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn add_to_org(&self, principal: &Principal, org: OrgId, user: UserId, role: Option<RoleRef>) -> Result<()> {
        let ctx = &self.ctx;
        let scope = Scope::Org { org };
        let event = user_event(principal, ops::ORG_ADD, None).resource(user, None).details(serde_json::json!({ "role": role }));
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            self.name_scope(audit, &scope).await?;
            match role {
                Some(r) => ctx.authorize_grant(principal, r, &scope).await?,
                None => ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "organization", &org)?,
            }
            // Another tenant's user is not this principal's to recruit (it would then see and grant
            // it): a user is added only when the principal may see it, or when it belongs to no
            // organization yet. Either way a stranger's id is answered as unknown.
            if !self.can_see(principal, user).await? && !ctx.store.user_orgs(user).await?.is_empty() {
                return Err(ecp_core::Error::not_found("user", user).into());
            }
            ctx.store.add_org_member(org, user, ctx.clock.now(), audit.in_transaction()).await?;
            Ok::<_, Error>(())
        })
        .await?;
        if let Some(role) = role {
            // The role is a second operation, with its own record: the membership stays.
            let b = Binding::new(Subject::User(user), role, scope, ctx.clock.now());
            let event = user_event(principal, ops::GRANT, None).resource(user, None).details(serde_json::json!({ "role": role }));
            audit_outcome(ctx.store.as_ref(), event, async |audit| {
                self.name_scope(audit, &scope).await?;
                ctx.store.put_binding(&b, audit.in_transaction()).await?;
                Ok::<_, Error>(())
            })
            .await?;
            // After the success record: a failure here is not the grant's.
            ctx.authz.reload_subject(Subject::User(user)).await?;
        }
        Ok(())
    }

    /// Removes a user from an organization, with every role it holds there and in its projects.
    /// Needs `edit user` in the organization.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn remove_from_org(&self, principal: &Principal, org: OrgId, user: UserId) -> Result<()> {
        let ctx = &self.ctx;
        let scope = Scope::Org { org };
        let event = user_event(principal, ops::ORG_REMOVE, None).resource(user, None);
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            self.name_scope(audit, &scope).await?;
            ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "organization", &org)?;
            // Taking roles away follows the granting rule: the principal must hold what they grant.
            let held = ctx
                .store
                .list_bindings(&BindingFilter { subject: Some(Subject::User(user)), org: Some(org), ..Default::default() })
                .await?;
            for b in &held {
                ctx.authorize_grant(principal, b.role, &b.scope).await?;
            }
            ctx.store.remove_org_member(org, user, audit.in_transaction()).await?;
            Ok::<_, Error>(())
        })
        .await?;
        // After the success record: a failure here is not the removal's.
        ctx.authz.reload_subject(Subject::User(user)).await?;
        Ok(())
    }

    /// Gives a subject (a user or an API key) a role at a scope, replacing the role it held there.
    /// Needs `edit user` at the scope and to hold everything the role grants there.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` (a user not in the organization, a role that
    /// does not fit the scope), `Backend`.
    pub async fn grant(&self, principal: &Principal, subject: Subject, grant: Grant) -> Result<Binding> {
        let ctx = &self.ctx;
        let mut event = user_event(principal, ops::GRANT, None).details(serde_json::json!({ "subject": subject, "role": grant.role }));
        event.resource_id = subject.id_string();
        let b = audit_outcome(ctx.store.as_ref(), event, async |audit| {
            self.name_scope(audit, &grant.scope).await?;
            ctx.authorize_grant(principal, grant.role, &grant.scope).await?;
            // An API key's roles stay in its organization, as its creation required. A key of an
            // organization the principal cannot see is not found, as an unknown key is.
            if let Subject::ApiKey(key) = subject
                && let Some(org) = ctx.store.get_api_key(key).await?.0.org
                && grant.scope.org() != Some(org)
            {
                if !ctx.authz.has_access(principal, &Scope::Org { org }) {
                    return Err(ecp_core::Error::not_found("api key", key).into());
                }
                return Err(ecp_core::Error::invalid("scope", "an api key's roles stay in its organization").into());
            }
            let b = Binding::new(subject, grant.role, grant.scope, ctx.clock.now());
            ctx.store.put_binding(&b, audit.in_transaction()).await?;
            Ok::<_, Error>(b)
        })
        .await?;
        // After the success record: a failure here is not the grant's.
        ctx.authz.reload_subject(subject).await?;
        Ok(b)
    }

    /// Takes a subject's role at a scope away. Needs `edit user` at the scope and to hold what the
    /// role grants.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn revoke(&self, principal: &Principal, subject: Subject, scope: Scope) -> Result<()> {
        let ctx = &self.ctx;
        let mut event = user_event(principal, ops::REVOKE, None).details(serde_json::json!({ "subject": subject }));
        event.resource_id = subject.id_string();
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            self.name_scope(audit, &scope).await?;
            let held = ctx.store.list_bindings(&BindingFilter { subject: Some(subject), ..Default::default() }).await?;
            let Some(binding) = held.into_iter().find(|b| b.scope == scope) else {
                ctx.authorize(principal, Permission::view(ResourceKind::User), &scope, "binding", &subject)?;
                return Err(ecp_core::Error::not_found("binding", format!("{subject} at {scope}")).into());
            };
            ctx.authorize_grant(principal, binding.role, &scope).await?;
            ctx.store.delete_binding(subject, &scope, audit.in_transaction()).await?;
            Ok::<_, Error>(())
        })
        .await?;
        // After the success record: a failure here is not the revocation's.
        ctx.authz.reload_subject(subject).await?;
        Ok(())
    }

    /// The bindings at or inside a scope the principal may view users in.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `Backend`.
    pub async fn list_bindings(&self, principal: &Principal, scope: Scope) -> Result<Vec<Binding>> {
        self.ctx.check_scope(&scope).await?;
        let (kind, id) = match scope {
            Scope::System => ("system", String::from("scope")),
            Scope::Org { org } => ("organization", org.to_string()),
            Scope::Project { project, .. } => ("project", project.to_string()),
        };
        self.ctx.authorize(principal, Permission::view(ResourceKind::User), &scope, kind, &id)?;
        let filter = match scope {
            Scope::System => BindingFilter::default(),
            Scope::Org { org } => BindingFilter { org: Some(org), ..Default::default() },
            Scope::Project { project, .. } => BindingFilter { project: Some(project), ..Default::default() },
        };
        Ok(self.ctx.store.list_bindings(&filter).await?)
    }
}
