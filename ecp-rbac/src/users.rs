//! [`Users`]: accounts, invitations, passwords, memberships, role bindings, custom roles and API
//! keys, each authorized and audited.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ecp_core::access::{Authorizer, Permission, PermissionSet, Principal, ResourceKind, Scope, Subject};
use ecp_core::audit::AuditEvent;
use ecp_core::clock::{self, Timestamp};
use ecp_core::identity::{
    ApiKey, Binding, BindingFilter, BuiltinRole, CustomRole, RoleRef, TokenHash, User, UserFilter, UserState, UserToken, UserTokenPurpose,
    validate_display_name, validate_email,
};
use ecp_core::{ApiKeyId, OrgId, Page, PageRequest, RoleId, UserId};
use secrecy::{ExposeSecret, SecretString};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::roles::normalize_custom;
use crate::tokens::{API_KEY_PREFIX, INVITATION_PREFIX, MAX_TOKEN_LEN, RESET_PREFIX, random_token};

/// The audit operations of user management.
pub mod ops {
    use ecp_core::audit::Operation;

    /// The first system administrator was created.
    pub const BOOTSTRAP: Operation = Operation::from_static("user.bootstrap");
    /// A user was created.
    pub const CREATE: Operation = Operation::from_static("user.create");
    /// A user was invited.
    pub const INVITE: Operation = Operation::from_static("user.invite");
    /// An invitation was accepted.
    pub const ACTIVATE: Operation = Operation::from_static("user.activate");
    /// A user's profile was changed.
    pub const UPDATE: Operation = Operation::from_static("user.update");
    /// A user was enabled.
    pub const ENABLE: Operation = Operation::from_static("user.enable");
    /// A user was disabled.
    pub const DISABLE: Operation = Operation::from_static("user.disable");
    /// A password reset was started.
    pub const RESET_START: Operation = Operation::from_static("user.password_reset.start");
    /// A password reset was completed.
    pub const RESET_COMPLETE: Operation = Operation::from_static("user.password_reset.complete");
    /// A user changed its password.
    pub const PASSWORD_CHANGE: Operation = Operation::from_static("user.password_change");
    /// A user was deleted.
    pub const DELETE: Operation = Operation::from_static("user.delete");
    /// A user was added to an organization.
    pub const ORG_ADD: Operation = Operation::from_static("user.org.add");
    /// A user was removed from an organization.
    pub const ORG_REMOVE: Operation = Operation::from_static("user.org.remove");
    /// A role was granted.
    pub const GRANT: Operation = Operation::from_static("user.grant");
    /// A role was revoked.
    pub const REVOKE: Operation = Operation::from_static("user.revoke");
    /// A custom role was created.
    pub const ROLE_CREATE: Operation = Operation::from_static("role.create");
    /// A custom role was changed.
    pub const ROLE_UPDATE: Operation = Operation::from_static("role.update");
    /// A custom role was deleted.
    pub const ROLE_DELETE: Operation = Operation::from_static("role.delete");
    /// An API key was created.
    pub const API_KEY_CREATE: Operation = Operation::from_static("api_key.create");
    /// An API key was revoked.
    pub const API_KEY_REVOKE: Operation = Operation::from_static("api_key.revoke");
}

/// A role at a scope, to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The role.
    pub role: RoleRef,
    /// Where.
    pub scope: Scope,
}

impl Grant {
    /// A built-in role at a scope.
    pub fn builtin(role: BuiltinRole, scope: Scope) -> Self {
        Self { role: RoleRef::Builtin(role), scope }
    }

    /// A custom role at a scope.
    pub fn custom(role: RoleId, scope: Scope) -> Self {
        Self { role: RoleRef::Custom(role), scope }
    }
}

/// A user to create or invite.
#[derive(Debug, Clone)]
pub struct NewUser {
    email: String,
    display_name: String,
    password: Option<SecretString>,
    sso_only: bool,
    grants: Vec<Grant>,
}

impl NewUser {
    /// A user with an email (its login name) and a display name.
    pub fn new(email: impl Into<String>, display_name: impl Into<String>) -> Self {
        Self { email: email.into(), display_name: display_name.into(), password: None, sso_only: false, grants: Vec::new() }
    }

    /// Sets the initial password (ignored by invitations: the invitee chooses it).
    #[must_use]
    pub fn password(mut self, password: SecretString) -> Self {
        self.password = Some(password);
        self
    }

    /// Makes the user sign in through SSO only.
    #[must_use]
    pub fn sso_only(mut self, yes: bool) -> Self {
        self.sso_only = yes;
        self
    }

    /// Gives the user a role at a scope (the user becomes a member of the scope's organization).
    #[must_use]
    pub fn grant(mut self, grant: Grant) -> Self {
        self.grants.push(grant);
        self
    }
}

/// A single-use token to send to someone (an invitation, a password reset). The token is a secret.
#[derive(Debug, Clone)]
pub struct OneTimeToken {
    /// The user it is for.
    pub user: User,
    /// The token.
    pub token: SecretString,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Changes to a user's profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    /// A new display name (the user itself, or a system admin).
    pub display_name: Option<String>,
    /// A new email (a system admin).
    pub email: Option<String>,
    /// Whether the user signs in through SSO only (a system admin).
    pub sso_only: Option<bool>,
}

/// An API key to create.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    name: String,
    grants: Vec<Grant>,
    ttl: Option<Duration>,
}

impl NewApiKey {
    /// A key named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), grants: Vec::new(), ttl: None }
    }

    /// Gives the key a role at a scope. All of a key's roles must be in one organization, or all at
    /// system scope.
    #[must_use]
    pub fn grant(mut self, grant: Grant) -> Self {
        self.grants.push(grant);
        self
    }

    /// Makes the key expire after `ttl`.
    #[must_use]
    pub fn expires_after(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// A new API key and its secret, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The key.
    pub key: ApiKey,
    /// `ecpk_<id>_<secret>`: give it to the machine client; it is stored only as a hash.
    pub secret: SecretString,
}

/// User management. Every method takes the acting principal, authorizes it (organization admins
/// act only in their organizations, project admins only in their projects, and nobody grants more
/// than it holds), acts, and audits success and failure.
#[derive(Clone)]
pub struct Users {
    ctx: Arc<Context>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

fn user_event(p: &Principal, op: ecp_core::audit::Operation, user: Option<&User>) -> AuditEvent {
    let e = AuditEvent::new(p, ResourceKind::User, op);
    match user {
        Some(u) => e.resource(u.id, Some(&u.email)),
        None => e,
    }
}

impl Users {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    fn edit_users_at_system(&self, p: &Principal) -> Result<()> {
        let perm = Permission::edit(ResourceKind::User);
        self.ctx.authz.check(p, perm, &Scope::System).map_err(|d| Error::from(d.into_error(p, perm, &Scope::System)))
    }

    async fn scope_event(&self, mut e: AuditEvent, scope: &Scope) -> AuditEvent {
        if let Some(org) = scope.org() {
            let name = self.ctx.store.get_org(org).await.map(|o| o.name).unwrap_or_default();
            e = e.org(org, name);
        }
        if let Some(project) = scope.project() {
            let name = self.ctx.store.get_project(project).await.map(|p| p.name).unwrap_or_default();
            e = e.project(project, name);
        }
        e
    }

    /// Creates the first system administrator of a new installation (the product's install-time
    /// superuser). Refused once any system administrator exists.
    ///
    /// # Errors
    /// `Conflict` if a system administrator exists, `InvalidInput`, [`Error::WeakPassword`],
    /// `Backend`.
    pub async fn bootstrap_admin(&self, email: &str, display_name: &str, password: &SecretString) -> Result<User> {
        let ctx = &self.ctx;
        let actor = Principal::system("bootstrap");
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
        ctx.store.create_user(&user, Some(&hash), &[], &[binding], &event).await?;
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

    async fn insert_user(&self, p: &Principal, new: NewUser, state: UserState, op: ecp_core::audit::Operation) -> Result<User> {
        let ctx = &self.ctx;
        let mut event = user_event(p, op, None);
        event.resource_name = Some(new.email.chars().take(254).collect());
        let orgs = match self.check_grants(p, &new.grants).await {
            Ok(orgs) => orgs,
            Err(e) => return ctx.fail(event, e).await,
        };
        let mut user = match User::new(&new.email, &new.display_name, state, ctx.clock.now()) {
            Ok(u) => u,
            Err(e) => return ctx.fail(event, e).await,
        };
        user.sso_only = new.sso_only;
        let hash = match (&new.password, state, new.sso_only) {
            (Some(pw), UserState::Active, false) => {
                if let Err(e) = ctx.config.policy.check(pw) {
                    return ctx.fail(event, e).await;
                }
                user.has_password = true;
                Some(ctx.hasher.hash(pw).await?)
            }
            (Some(_), _, _) => {
                return ctx.fail(event, ecp_core::Error::invalid("password", "invited and sso-only users set no password")).await;
            }
            _ => None,
        };
        let bindings: Vec<Binding> =
            new.grants.iter().map(|g| Binding::new(Subject::User(user.id), g.role, g.scope, user.created_at)).collect();
        let event = user_event(p, event.operation.clone(), Some(&user)).details(serde_json::json!({
            "organizations": orgs,
            "grants": new.grants.iter().map(|g| serde_json::json!({ "role": g.role, "scope": g.scope })).collect::<Vec<_>>(),
            "sso_only": user.sso_only,
        }));
        let event = match new.grants.first() {
            Some(g) => self.scope_event(event, &g.scope).await,
            None => event,
        };
        if let Err(e) = ctx.store.create_user(&user, hash.as_ref(), &orgs, &bindings, &event).await {
            return ctx.fail(event, e).await;
        }
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
        self.issue_token(principal, user, UserTokenPurpose::Invitation, ops::INVITE).await
    }

    async fn issue_token(
        &self,
        p: &Principal,
        user: User,
        purpose: UserTokenPurpose,
        op: ecp_core::audit::Operation,
    ) -> Result<OneTimeToken> {
        let ctx = &self.ctx;
        let (prefix, ttl) = match purpose {
            UserTokenPurpose::Invitation => (INVITATION_PREFIX, ctx.config.invitation_ttl),
            UserTokenPurpose::PasswordReset => (RESET_PREFIX, ctx.config.reset_ttl),
        };
        let token = random_token(prefix)?;
        let now = ctx.clock.now();
        let record = UserToken {
            id: ecp_core::id::UserTokenId::new(),
            user: user.id,
            purpose,
            token_hash: TokenHash::of(token.expose_secret()),
            expires_at: clock::add(now, ttl),
            created_at: now,
            used_at: None,
        };
        let event = user_event(p, op, Some(&user)).details(serde_json::json!({ "token_issued": purpose, "expires_at": record.expires_at }));
        if let Err(e) = ctx.store.create_user_token(&record, &event).await {
            return ctx.fail(event, e).await;
        }
        Ok(OneTimeToken { user, token, expires_at: record.expires_at })
    }

    async fn redeem(&self, token: &SecretString, purpose: UserTokenPurpose, password: &SecretString) -> Result<User> {
        let ctx = &self.ctx;
        let (prefix, op) = match purpose {
            UserTokenPurpose::Invitation => (INVITATION_PREFIX, ops::ACTIVATE),
            UserTokenPurpose::PasswordReset => (RESET_PREFIX, ops::RESET_COMPLETE),
        };
        let raw = token.expose_secret();
        if raw.len() > MAX_TOKEN_LEN || !raw.starts_with(prefix) {
            return Err(Error::InvalidToken);
        }
        ctx.config.policy.check(password)?;
        let hash = ctx.hasher.hash(password).await?;
        let audit = move |u: &User| user_event(&Principal::user(u.id, u.email.clone()), op.clone(), Some(u));
        match ctx.store.redeem_user_token(&TokenHash::of(raw), purpose, &hash, ctx.clock.now(), &audit).await {
            Ok(user) => Ok(user),
            Err(e) if e.is_not_found() => Err(Error::InvalidToken),
            Err(e) => Err(e.into()),
        }
    }

    /// Accepts an invitation: sets the first password and activates the account. The token works
    /// once, until it expires.
    ///
    /// # Errors
    /// [`Error::InvalidToken`] (unknown, used or expired), [`Error::WeakPassword`], `Backend`.
    pub async fn accept_invitation(&self, token: &SecretString, password: &SecretString) -> Result<User> {
        self.redeem(token, UserTokenPurpose::Invitation, password).await
    }

    /// Starts a password reset for a user (an administrator's "reset password"). Needs `edit user`
    /// at system scope. Returns the token to send to the user.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Backend`.
    pub async fn start_password_reset(&self, principal: &Principal, user: UserId) -> Result<OneTimeToken> {
        let event = user_event(principal, ops::RESET_START, None).resource(user, None);
        if let Err(e) = self.edit_users_at_system(principal) {
            return self.ctx.fail(event, e).await;
        }
        let target = match self.ctx.store.get_user(user).await {
            Ok(u) => u,
            Err(e) => return self.ctx.fail(event, e).await,
        };
        self.issue_token(principal, target, UserTokenPurpose::PasswordReset, ops::RESET_START).await
    }

    /// A self-service "forgot password": a reset token for the account with this email, or `None`
    /// when there is none. The host sends the token by email and must answer the requester the same
    /// way in both cases.
    ///
    /// # Errors
    /// `Backend`.
    pub async fn request_password_reset(&self, email: &str) -> Result<Option<OneTimeToken>> {
        let Some(creds) = self.ctx.store.find_credentials(email).await? else { return Ok(None) };
        if !creds.user.enabled || creds.user.sso_only {
            return Ok(None);
        }
        let actor = Principal::anonymous(creds.user.email.clone());
        self.issue_token(&actor, creds.user, UserTokenPurpose::PasswordReset, ops::RESET_START).await.map(Some)
    }

    /// Completes a password reset with its token; every session of the user is revoked.
    ///
    /// # Errors
    /// [`Error::InvalidToken`], [`Error::WeakPassword`], `Backend`.
    pub async fn complete_password_reset(&self, token: &SecretString, new_password: &SecretString) -> Result<User> {
        self.redeem(token, UserTokenPurpose::PasswordReset, new_password).await
    }

    /// Changes the principal's own password, given the current one; every session of the user is
    /// revoked.
    ///
    /// # Errors
    /// [`Error::InvalidCredentials`] for a wrong current password, [`Error::WeakPassword`],
    /// `InvalidInput` for a principal that is not a user, `Backend`.
    pub async fn change_password(&self, principal: &Principal, current: &SecretString, new: &SecretString) -> Result<()> {
        let ctx = &self.ctx;
        let Subject::User(id) = principal.subject() else {
            return Err(ecp_core::Error::invalid("principal", "only users have passwords").into());
        };
        let event = user_event(principal, ops::PASSWORD_CHANGE, None).resource(id, Some(principal.name()));
        let user = ctx.store.get_user(id).await?;
        let creds = ctx.store.find_credentials(&user.email).await?;
        let hash = creds.as_ref().and_then(|c| c.password_hash.as_ref());
        if !ctx.hasher.verify(current, hash).await {
            return ctx.fail(event, Error::InvalidCredentials).await;
        }
        if let Err(e) = ctx.config.policy.check(new) {
            return ctx.fail(event, e).await;
        }
        let hash = ctx.hasher.hash(new).await?;
        if let Err(e) = ctx.store.set_password(id, Some(&hash), ctx.clock.now(), &event).await {
            return ctx.fail(event, e).await;
        }
        Ok(())
    }

    /// Whether `p` may see user `id`: itself, or `view user` where the user is a member or bound.
    async fn can_see(&self, p: &Principal, id: UserId) -> Result<bool> {
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
        let admin_only = changes.email.is_some() || changes.sso_only.is_some() || principal.subject() != Subject::User(id);
        if admin_only && let Err(e) = self.edit_users_at_system(principal) {
            let e = if self.can_see(principal, id).await? { e } else { ecp_core::Error::not_found("user", id).into() };
            return ctx.fail(event, e).await;
        }
        let mut user = match ctx.store.get_user(id).await {
            Ok(u) => u,
            Err(e) => return ctx.fail(event, e).await,
        };
        let event = user_event(principal, ops::UPDATE, Some(&user)).details(serde_json::json!({
            "display_name": changes.display_name.is_some(),
            "email": changes.email.as_ref().map(|e| e.chars().take(254).collect::<String>()),
            "sso_only": changes.sso_only,
        }));
        if let Some(name) = changes.display_name {
            if let Err(e) = validate_display_name(&name) {
                return ctx.fail(event, e).await;
            }
            user.display_name = name;
        }
        if let Some(email) = changes.email {
            if let Err(e) = validate_email(&email) {
                return ctx.fail(event, e).await;
            }
            user.email = email;
        }
        if let Some(sso) = changes.sso_only {
            user.sso_only = sso;
        }
        user.updated_at = ctx.clock.now();
        if let Err(e) = ctx.store.update_user(&user, &event).await {
            return ctx.fail(event, e).await;
        }
        Ok(user)
    }

    /// Enables or disables a user. Needs `edit user` at system scope; nobody disables itself.
    /// Disabling revokes every session at once and makes the user's roles grant nothing.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` for the principal itself, `Backend`.
    pub async fn set_enabled(&self, principal: &Principal, id: UserId, enabled: bool) -> Result<User> {
        let ctx = &self.ctx;
        let op = if enabled { ops::ENABLE } else { ops::DISABLE };
        let event = user_event(principal, op.clone(), None).resource(id, None);
        if let Err(e) = self.edit_users_at_system(principal) {
            let e = if self.can_see(principal, id).await? { e } else { ecp_core::Error::not_found("user", id).into() };
            return ctx.fail(event, e).await;
        }
        if principal.subject() == Subject::User(id) && !enabled {
            return ctx.fail(event, ecp_core::Error::invalid("user", "nobody can disable its own account")).await;
        }
        let mut user = match ctx.store.get_user(id).await {
            Ok(u) => u,
            Err(e) => return ctx.fail(event, e).await,
        };
        user.enabled = enabled;
        user.updated_at = ctx.clock.now();
        let event = user_event(principal, op, Some(&user));
        if let Err(e) = ctx.store.update_user(&user, &event).await {
            return ctx.fail(event, e).await;
        }
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
        if let Err(e) = self.edit_users_at_system(principal) {
            let e = if self.can_see(principal, id).await? { e } else { ecp_core::Error::not_found("user", id).into() };
            return ctx.fail(event, e).await;
        }
        if principal.subject() == Subject::User(id) {
            return ctx.fail(event, ecp_core::Error::invalid("user", "nobody can delete its own account")).await;
        }
        let user = match ctx.store.get_user(id).await {
            Ok(u) => u,
            Err(e) => return ctx.fail(event, e).await,
        };
        let event = user_event(principal, ops::DELETE, Some(&user));
        if let Err(e) = ctx.store.delete_user(id, &event).await {
            return ctx.fail(event, e).await;
        }
        ctx.authz.reload_subject(Subject::User(id)).await?;
        Ok(())
    }

    /// Adds a user to an organization, optionally with a role there. Needs `edit user` in the
    /// organization (and, for a role, to hold what it grants).
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn add_to_org(&self, principal: &Principal, org: OrgId, user: UserId, role: Option<RoleRef>) -> Result<()> {
        let ctx = &self.ctx;
        let scope = Scope::Org { org };
        let event = self.scope_event(user_event(principal, ops::ORG_ADD, None).resource(user, None), &scope).await;
        let event = event.details(serde_json::json!({ "role": role }));
        let checked = match role {
            Some(r) => ctx.authorize_grant(principal, r, &scope).await,
            None => ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "organization", &org),
        };
        if let Err(e) = checked {
            return ctx.fail(event, e).await;
        }
        if let Err(e) = ctx.store.add_org_member(org, user, ctx.clock.now(), &event).await {
            return ctx.fail(event, e).await;
        }
        if let Some(role) = role {
            let b = Binding::new(Subject::User(user), role, scope, ctx.clock.now());
            let grant_event = self.scope_event(user_event(principal, ops::GRANT, None).resource(user, None), &scope).await;
            let grant_event = grant_event.details(serde_json::json!({ "role": role }));
            if let Err(e) = ctx.store.put_binding(&b, &grant_event).await {
                return ctx.fail(grant_event, e).await;
            }
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
        let event = self.scope_event(user_event(principal, ops::ORG_REMOVE, None).resource(user, None), &scope).await;
        if let Err(e) = ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "organization", &org) {
            return ctx.fail(event, e).await;
        }
        // Taking roles away follows the granting rule: the principal must hold what they grant.
        let held =
            ctx.store.list_bindings(&BindingFilter { subject: Some(Subject::User(user)), org: Some(org), ..Default::default() }).await?;
        for b in &held {
            if let Err(e) = ctx.authorize_grant(principal, b.role, &b.scope).await {
                return ctx.fail(event, e).await;
            }
        }
        if let Err(e) = ctx.store.remove_org_member(org, user, &event).await {
            return ctx.fail(event, e).await;
        }
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
        let event = user_event(principal, ops::GRANT, None);
        let event = self.scope_event(event, &grant.scope).await;
        let mut event = event.details(serde_json::json!({ "subject": subject, "role": grant.role }));
        event.resource_id = subject.id_string();
        if let Err(e) = ctx.authorize_grant(principal, grant.role, &grant.scope).await {
            return ctx.fail(event, e).await;
        }
        let b = Binding::new(subject, grant.role, grant.scope, ctx.clock.now());
        if let Err(e) = ctx.store.put_binding(&b, &event).await {
            return ctx.fail(event, e).await;
        }
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
        let event = self.scope_event(user_event(principal, ops::REVOKE, None), &scope).await;
        let mut event = event.details(serde_json::json!({ "subject": subject }));
        event.resource_id = subject.id_string();
        let held = ctx.store.list_bindings(&BindingFilter { subject: Some(subject), ..Default::default() }).await?;
        let Some(binding) = held.into_iter().find(|b| b.scope == scope) else {
            let err: Error = match ctx.authorize(principal, Permission::view(ResourceKind::User), &scope, "binding", &subject) {
                Ok(()) => ecp_core::Error::not_found("binding", format!("{subject} at {scope}")).into(),
                Err(e) => e,
            };
            return ctx.fail(event, err).await;
        };
        if let Err(e) = ctx.authorize_grant(principal, binding.role, &scope).await {
            return ctx.fail(event, e).await;
        }
        if let Err(e) = ctx.store.delete_binding(subject, &scope, &event).await {
            return ctx.fail(event, e).await;
        }
        ctx.authz.reload_subject(subject).await?;
        Ok(())
    }

    /// The bindings at or inside a scope the principal may view users in.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `Backend`.
    pub async fn list_bindings(&self, principal: &Principal, scope: Scope) -> Result<Vec<Binding>> {
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

    fn role_scope(org: Option<OrgId>) -> (Scope, &'static str, String) {
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
        let mut event = self.scope_event(AuditEvent::new(principal, ResourceKind::User, ops::ROLE_CREATE), &scope).await;
        event.resource_name = Some(name.chars().take(50).collect());
        if let Err(e) = ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, kind, &id) {
            return ctx.fail(event, e).await;
        }
        let role = match self.build_role(principal, RoleId::new(), org, name, description, permissions, &scope) {
            Ok(r) => r,
            Err(e) => return ctx.fail(event, e).await,
        };
        let event = event.resource(role.id, Some(&role.name)).details(serde_json::json!({ "permissions": role.permissions }));
        if let Err(e) = ctx.store.create_role(&role, &event).await {
            return ctx.fail(event, e).await;
        }
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
        let existing = match ctx.store.get_role(id).await {
            Ok(r) => r,
            Err(e) => return ctx.fail(event, e).await,
        };
        let (scope, kind, sid) = Self::role_scope(existing.org);
        let event = self.scope_event(event, &scope).await;
        if let Err(e) = ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "role", &id) {
            let _ = (kind, sid);
            return ctx.fail(event, e).await;
        }
        let mut role = match self.build_role(principal, id, existing.org, name, description, permissions, &scope) {
            Ok(r) => r,
            Err(e) => return ctx.fail(event, e).await,
        };
        role.created_at = existing.created_at;
        let event = event.resource(id, Some(&role.name)).details(serde_json::json!({
            "from": existing.permissions, "to": role.permissions,
        }));
        if let Err(e) = ctx.store.update_role(&role, &event).await {
            return ctx.fail(event, e).await;
        }
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
        let existing = match ctx.store.get_role(id).await {
            Ok(r) => r,
            Err(e) => return ctx.fail(event, e).await,
        };
        let (scope, _, _) = Self::role_scope(existing.org);
        let event = self.scope_event(event.resource(id, Some(&existing.name)), &scope).await;
        if let Err(e) = ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "role", &id) {
            return ctx.fail(event, e).await;
        }
        if let Err(e) = ctx.store.delete_role(id, &event).await {
            return ctx.fail(event, e).await;
        }
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

    /// Creates an API key for a machine client with roles, under the same rules as granting them.
    /// The secret is returned once.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `InvalidInput` (no roles, roles in several organizations, a bad
    /// name), `Backend`.
    pub async fn create_api_key(&self, principal: &Principal, new: NewApiKey) -> Result<CreatedApiKey> {
        let ctx = &self.ctx;
        let mut event = AuditEvent::new(principal, ResourceKind::User, ops::API_KEY_CREATE);
        event.resource_name = Some(new.name.chars().take(100).collect());
        let orgs: Vec<Option<OrgId>> = new.grants.iter().map(|g| g.scope.org()).collect();
        let org = match orgs.first() {
            None => return ctx.fail(event, ecp_core::Error::invalid("grants", "an api key needs at least one role")).await,
            Some(first) if orgs.iter().any(|o| o != first) => {
                return ctx.fail(event, ecp_core::Error::invalid("grants", "all roles of a key must be in one organization")).await;
            }
            Some(first) => *first,
        };
        if new.name.is_empty() || new.name.chars().count() > 100 || new.name.chars().any(char::is_control) {
            return ctx.fail(event, ecp_core::Error::invalid("name", "1-100 characters, no control characters")).await;
        }
        for g in &new.grants {
            if let Err(e) = ctx.authorize_grant(principal, g.role, &g.scope).await {
                return ctx.fail(event, e).await;
            }
        }
        let now = ctx.clock.now();
        let id = ApiKeyId::new();
        let mut secret_part = random_token("x")?.expose_secret().to_owned();
        secret_part.drain(..2);
        let secret = SecretString::from(format!("{API_KEY_PREFIX}_{}_{}", id.as_uuid().simple(), secret_part));
        let key = ApiKey {
            id,
            name: new.name.clone(),
            org,
            created_by: principal.subject(),
            created_at: now,
            expires_at: new.ttl.map(|t| clock::add(now, t)),
            revoked_at: None,
            last_used_at: None,
        };
        let bindings: Vec<Binding> = new.grants.iter().map(|g| Binding::new(Subject::ApiKey(id), g.role, g.scope, now)).collect();
        let event = match new.grants.first() {
            Some(g) => self.scope_event(event, &g.scope).await,
            None => event,
        };
        let event = event.resource(id, Some(&key.name)).details(serde_json::json!({
            "grants": new.grants.iter().map(|g| serde_json::json!({ "role": g.role, "scope": g.scope })).collect::<Vec<_>>(),
            "expires_at": key.expires_at,
        }));
        if let Err(e) = ctx.store.create_api_key(&key, &TokenHash::of(secret.expose_secret()), &bindings, &event).await {
            return ctx.fail(event, e).await;
        }
        ctx.authz.reload_subject(Subject::ApiKey(id)).await?;
        Ok(CreatedApiKey { key, secret })
    }

    /// Revokes an API key. Needs `edit user` in its organization (or at system scope for a system
    /// key).
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn revoke_api_key(&self, principal: &Principal, id: ApiKeyId) -> Result<()> {
        let ctx = &self.ctx;
        let event = AuditEvent::new(principal, ResourceKind::User, ops::API_KEY_REVOKE).resource(id, None);
        let (key, _) = match ctx.store.get_api_key(id).await {
            Ok(k) => k,
            Err(e) => return ctx.fail(event, e).await,
        };
        let (scope, _, _) = Self::role_scope(key.org);
        let event = self.scope_event(event.resource(id, Some(&key.name)), &scope).await;
        if let Err(e) = ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "api key", &id) {
            return ctx.fail(event, e).await;
        }
        if let Err(e) = ctx.store.revoke_api_key(id, ctx.clock.now(), &event).await {
            return ctx.fail(event, e).await;
        }
        ctx.authz.reload_subject(Subject::ApiKey(id)).await?;
        Ok(())
    }

    /// The API keys of an organization (or the system's). Needs `view user` there.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `Backend`.
    pub async fn list_api_keys(&self, principal: &Principal, org: Option<OrgId>) -> Result<Vec<ApiKey>> {
        let (scope, kind, id) = Self::role_scope(org);
        self.ctx.authorize(principal, Permission::view(ResourceKind::User), &scope, kind, &id)?;
        Ok(self.ctx.store.list_api_keys(org).await?)
    }
}
