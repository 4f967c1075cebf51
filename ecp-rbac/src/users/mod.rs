//! [`Users`]: accounts, invitations, passwords, memberships, role bindings, custom roles and API
//! keys, each authorized and audited.

mod accounts;
mod api_keys;
mod bindings;
mod passwords;
mod profiles;
mod roles;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ecp_core::RoleId;
use ecp_core::access::{Authorizer, Permission, Principal, ResourceKind, Scope};
use ecp_core::audit::AuditEvent;
use ecp_core::clock::Timestamp;
use ecp_core::identity::{ApiKey, BuiltinRole, RoleRef, User};
use ecp_core::scoped::Audit;
use secrecy::SecretString;

use crate::context::Context;
use crate::error::{Error, Result};

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

    /// Names the organization and project of `scope` in the audit record (empty names when they
    /// cannot be read: naming never fails the operation).
    /// Names the scope's organization and project in the record, once the scope is checked
    /// against the store (a project of another organization is not found, and named nowhere).
    async fn name_scope(&self, audit: &mut Audit, scope: &Scope) -> Result<()> {
        self.ctx.check_scope(scope).await?;
        if let Some(org) = scope.org() {
            let name = self.ctx.store.get_org(org).await.map(|o| o.name).unwrap_or_default();
            audit.org(org, &name);
        }
        if let Some(project) = scope.project() {
            let name = self.ctx.store.get_project(project).await.map(|p| p.name().to_owned()).unwrap_or_default();
            audit.project(project, &name);
        }
        Ok(())
    }
}
