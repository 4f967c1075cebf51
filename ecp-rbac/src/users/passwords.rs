//! Single-use tokens (invitations, password resets) and password changes.

use ecp_core::UserId;
use ecp_core::access::{Permission, Principal, ResourceKind, Scope, Subject};
use ecp_core::clock;
use ecp_core::identity::{TokenHash, User, UserToken, UserTokenPurpose};
use ecp_core::scoped::{Audit, audit_outcome, audited};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::tokens::{INVITATION_PREFIX, MAX_TOKEN_LEN, RESET_PREFIX, random_token};

use super::{OneTimeToken, Users, ops, user_event};

impl Users {
    /// Issues a single-use token for `user`, inside the audited operation `audit` (an invitation,
    /// a password reset): the record names the user and the token's expiry, and is written in the
    /// token's transaction.
    pub(super) async fn issue_token(&self, audit: &mut Audit, user: User, purpose: UserTokenPurpose) -> Result<OneTimeToken> {
        let ctx = &self.ctx;
        audit.resource(user.id, Some(&user.email));
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
        audit.details(serde_json::json!({ "token_issued": purpose, "expires_at": record.expires_at }));
        ctx.store.create_user_token(&record, audit.in_transaction()).await?;
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
        let ctx = &self.ctx;
        let event = user_event(principal, ops::RESET_START, None).resource(user, None);
        let perm = Permission::edit(ResourceKind::User);
        audited(ctx.store.as_ref(), ctx.authz.as_ref(), principal, &Scope::System, perm, event, async |audit| {
            let target = ctx.store.get_user(user).await?;
            self.issue_token(audit, target, UserTokenPurpose::PasswordReset).await
        })
        .await
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
        let event = user_event(&actor, ops::RESET_START, Some(&creds.user));
        let issued = audit_outcome(self.ctx.store.as_ref(), event, async |audit| {
            self.issue_token(audit, creds.user, UserTokenPurpose::PasswordReset).await
        })
        .await?;
        Ok(Some(issued))
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
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            let user = ctx.store.get_user(id).await?;
            let creds = ctx.store.find_credentials(&user.email).await?;
            let hash = creds.as_ref().and_then(|c| c.password_hash.as_ref());
            if !ctx.hasher.verify(current, hash).await? {
                return Err(Error::InvalidCredentials);
            }
            ctx.config.policy.check(new)?;
            let hash = ctx.hasher.hash(new).await?;
            ctx.store.set_password(id, Some(&hash), ctx.clock.now(), audit.in_transaction()).await?;
            Ok(())
        })
        .await
    }
}
