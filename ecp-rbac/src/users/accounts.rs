//! Creating users: the first system administrator, new and invited accounts with their grants.

use ecp_core::OrgId;
use ecp_core::access::{Principal, Scope, Subject};
use ecp_core::audit::Operation;
use ecp_core::identity::{Binding, BindingFilter, BuiltinRole, RoleRef, User, UserState, UserTokenPurpose};
use ecp_core::scoped::audit_outcome;
use secrecy::SecretString;

use crate::error::{Error, Result};

use super::{Grant, NewUser, OneTimeToken, Users, ops, user_event};

impl Users {
    /// Creates the first system administrator of a new installation (the product's install-time
    /// superuser). Refused once any system administrator exists.
    ///
    /// # Errors
    /// `Conflict` if a system administrator exists, `InvalidInput`, [`Error::WeakPassword`],
    /// `Backend`.
    pub async fn bootstrap_admin(&self, email: &str, display_name: &str, password: &SecretString) -> Result<User> {
        let ctx = &self.ctx;
        let actor = Principal::system("bootstrap");
        // A cheap early answer; the store's transaction is what makes two concurrent calls safe.
        let existing = ctx.store.list_bindings(&BindingFilter { system_only: true, ..Default::default() }).await?;
        if existing.iter().any(|b| b.role == RoleRef::Builtin(BuiltinRole::SystemAdmin)) {
            return Err(ecp_core::Error::conflict("system admin", email, "a system administrator already exists").into());
        }
        ctx.config.policy.check(password)?;
        let mut user = User::new(email, display_name, UserState::Active, ctx.clock.now())?;
        let hash = ctx.hasher.hash(password).await?;
        user.has_password = true;
        let binding = Binding::new(Subject::User(user.id), RoleRef::Builtin(BuiltinRole::SystemAdmin), Scope::System, ctx.clock.now());
        let event = user_event(&actor, ops::BOOTSTRAP, Some(&user));
        ctx.store.create_first_admin(&user, &hash, &binding, &event).await?;
        ctx.authz.reload_subject(Subject::User(user.id)).await?;
        Ok(user)
    }

    /// Checks a new user's grants and returns the organizations it joins.
    async fn check_grants(&self, p: &Principal, grants: &[Grant]) -> Result<Vec<OrgId>> {
        if grants.is_empty() {
            self.edit_users_at_system(p)?;
        }
        let mut orgs = Vec::new();
        for g in grants {
            self.ctx.authorize_grant(p, g.role, &g.scope).await?;
            if let Some(org) = g.scope.org()
                && !orgs.contains(&org)
            {
                orgs.push(org);
            }
        }
        Ok(orgs)
    }

    async fn insert_user(&self, p: &Principal, new: NewUser, state: UserState, op: Operation) -> Result<User> {
        let ctx = &self.ctx;
        let mut event = user_event(p, op, None);
        event.resource_name = Some(new.email.chars().take(254).collect());
        let user = audit_outcome(ctx.store.as_ref(), event, async |audit| {
            let orgs = self.check_grants(p, &new.grants).await?;
            let mut user = User::new(&new.email, &new.display_name, state, ctx.clock.now())?;
            user.sso_only = new.sso_only;
            let hash = match (&new.password, state, new.sso_only) {
                (Some(pw), UserState::Active, false) => {
                    ctx.config.policy.check(pw)?;
                    user.has_password = true;
                    Some(ctx.hasher.hash(pw).await?)
                }
                (Some(_), _, _) => {
                    return Err(Error::from(ecp_core::Error::invalid("password", "invited and sso-only users set no password")));
                }
                _ => None,
            };
            let bindings: Vec<Binding> =
                new.grants.iter().map(|g| Binding::new(Subject::User(user.id), g.role, g.scope, user.created_at)).collect();
            audit.resource(user.id, Some(&user.email)).details(serde_json::json!({
                "organizations": orgs,
                "grants": new.grants.iter().map(|g| serde_json::json!({ "role": g.role, "scope": g.scope })).collect::<Vec<_>>(),
                "sso_only": user.sso_only,
            }));
            if let Some(g) = new.grants.first() {
                self.name_scope(audit, &g.scope).await?;
            }
            ctx.store.create_user(&user, hash.as_ref(), &orgs, &bindings, audit.in_transaction()).await?;
            Ok(user)
        })
        .await?;
        // After the success record: a failure here is not the creation's.
        ctx.authz.reload_subject(Subject::User(user.id)).await?;
        Ok(user)
    }

    /// Creates an active user (the product's invite method "None"). With no grants it needs `edit
    /// user` at system scope; each grant needs `edit user` at its scope and no more than the
    /// principal holds there.
    ///
    /// # Errors
    /// `PermissionDenied`/`NotFound`, `InvalidInput`, [`Error::WeakPassword`], `Conflict` for a taken
    /// email, `Backend`.
    pub async fn create_user(&self, principal: &Principal, new: NewUser) -> Result<User> {
        self.insert_user(principal, new, UserState::Active, ops::CREATE).await
    }

    /// Invites a user: the account waits, without a password, until the invitee redeems the returned
    /// token with [`Users::accept_invitation`]. Same rules as [`Users::create_user`].
    ///
    /// # Errors
    /// As [`Users::create_user`].
    pub async fn invite_user(&self, principal: &Principal, new: NewUser) -> Result<OneTimeToken> {
        let user = self.insert_user(principal, new, UserState::Invited, ops::INVITE).await?;
        let event = user_event(principal, ops::INVITE, Some(&user));
        audit_outcome(self.ctx.store.as_ref(), event, async |audit| self.issue_token(audit, user, UserTokenPurpose::Invitation).await).await
    }
}
