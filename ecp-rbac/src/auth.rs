//! [`Authenticator`]: logins with lockout, access and refresh tokens, logout, API keys.

use std::fmt;
use std::sync::Arc;

use ecp_core::access::{Principal, ResourceKind};
use ecp_core::audit::{AuditEvent, Operation};
use ecp_core::clock::{self, Timestamp};
use ecp_core::identity::{SessionRecord, TokenHash, email_key};
use ecp_core::scoped::audit_outcome;
use ecp_core::{ApiKeyId, SessionId, UserId};
use secrecy::{ExposeSecret, SecretString};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::tokens::{ACCESS_PREFIX, API_KEY_PREFIX, MAX_TOKEN_LEN, REFRESH_PREFIX, random_token};

/// The audit operations of authentication.
pub mod ops {
    use ecp_core::audit::Operation;

    /// A login (success or failure).
    pub const LOGIN: Operation = Operation::from_static("user.login");
    /// A logout.
    pub const LOGOUT: Operation = Operation::from_static("user.logout");
    /// A rotated-away refresh token was presented again: the session was revoked.
    pub const REFRESH_REUSE: Operation = Operation::from_static("user.session.refresh_reuse");
}

/// The tokens of a session. The tokens are secrets: `Debug` shows them redacted.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    /// The session.
    pub session: SessionId,
    /// The user.
    pub user: UserId,
    /// Sent as `Authorization: Bearer <token>` on every request.
    pub access_token: SecretString,
    /// When the access token expires.
    pub access_expires_at: Timestamp,
    /// Exchanged for new tokens with [`Authenticator::refresh`]; each one works once.
    pub refresh_token: SecretString,
    /// When the refresh token expires.
    pub refresh_expires_at: Timestamp,
}

/// Turns credentials into [`Principal`]s.
///
/// - **Passwords**: argon2id; an unknown email takes as long as a known one (it is checked against a
///   dummy hash) and is counted toward lockout the same way, so neither the time nor the lock tells
///   whether an account exists. After `max_failures` failures within the window the login name is
///   locked for the configured time, whatever password comes next.
/// - **Sessions**: random access and refresh tokens stored only as SHA-256 hashes. A refresh
///   rotates both; presenting a rotated-away refresh token again revokes the session (it was
///   stolen). Logout revokes. Disabled users, expired and revoked tokens are refused.
/// - **API keys**: `ecpk_<id>_<secret>`, the secret stored hashed, checked in constant time.
#[derive(Clone)]
pub struct Authenticator {
    ctx: Arc<Context>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

fn claimed(email: &str) -> String {
    email.chars().take(254).collect()
}

impl Authenticator {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// Logs in with an email and a password. Logins are rate-limited per claimed email and their
    /// password hashes bounded (see [`LoginLimits`](crate::LoginLimits)); a host that knows the
    /// caller's address uses [`login_from`](Self::login_from).
    ///
    /// # Errors
    /// [`Error::RateLimited`], [`Error::Locked`] while the login name is locked,
    /// [`Error::InvalidCredentials`], [`Error::Disabled`] or [`Error::SsoOnly`] (only after the
    /// right password), `Backend`.
    pub async fn login(&self, email: &str, password: &SecretString) -> Result<SessionTokens> {
        self.login_inner(None, email, password).await
    }

    /// [`login`](Self::login) from the address `source`, also rate-limited per source.
    ///
    /// # Errors
    /// As [`login`](Self::login).
    pub async fn login_from(&self, source: std::net::IpAddr, email: &str, password: &SecretString) -> Result<SessionTokens> {
        self.login_inner(Some(source), email, password).await
    }

    async fn login_inner(&self, source: Option<std::net::IpAddr>, email: &str, password: &SecretString) -> Result<SessionTokens> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let key = email_key(&claimed(email));
        // Until the password is right, a failure is recorded by the claimed name and names no
        // account, whether it exists or not (a wrong password and an unknown email look alike).
        let event = AuditEvent::new(&Principal::anonymous(claimed(email)), ResourceKind::User, ops::LOGIN);
        let (user, tokens) = audit_outcome(ctx.store.as_ref(), event, async |audit| {
            // Before anything costs: a flood is refused here, recorded, and never hashes.
            ctx.throttle.admit(&key, source)?;
            if let Some(f) = ctx.store.login_failures(&key).await?
                && let Some(until) = f.locked_until.filter(|u| *u > now)
            {
                return Err(Error::Locked { until });
            }
            let creds = if email.len() <= ecp_core::identity::MAX_EMAIL_LEN { ctx.store.find_credentials(email).await? } else { None };
            let hash = creds.as_ref().and_then(|c| c.password_hash.as_ref());
            let ok = password.expose_secret().len() <= ctx.config.policy.max_length * 4 && ctx.hasher.verify(password, hash).await?;
            let Some(creds) = creds.filter(|_| ok) else {
                let state = ctx.store.record_login_failure(&key, now, &ctx.config.lockout).await?;
                return Err(match state.locked_until {
                    Some(until) if until > now => Error::Locked { until },
                    _ => Error::InvalidCredentials,
                });
            };
            let user = creds.user;
            audit.resource(user.id, Some(&user.email));
            if !user.enabled {
                return Err(Error::Disabled);
            }
            if user.sso_only {
                return Err(Error::SsoOnly);
            }
            ctx.store.clear_login_failures(&key).await?;
            let principal = Principal::user(user.id, user.email.clone());
            let (record, tokens) = self.new_session(user.id, SessionId::new(), now, None)?;
            *audit.event_mut() = AuditEvent::new(&principal, ResourceKind::User, ops::LOGIN).resource(user.id, Some(&user.email));
            ctx.store.create_session(&record, audit.in_transaction()).await?;
            Ok((user.id, tokens))
        })
        .await?;
        // After the success record: a failure here is not the login's.
        ctx.store.record_login(user, now).await?;
        Ok(tokens)
    }

    fn new_session(
        &self,
        user: UserId,
        id: SessionId,
        now: Timestamp,
        previous: Option<TokenHash>,
    ) -> Result<(SessionRecord, SessionTokens)> {
        let access = random_token(ACCESS_PREFIX)?;
        let refresh = random_token(REFRESH_PREFIX)?;
        let access_expires_at = clock::add(now, self.ctx.config.access_ttl);
        let refresh_expires_at = clock::add(now, self.ctx.config.refresh_ttl);
        let record = SessionRecord {
            id,
            user,
            access_hash: TokenHash::of(access.expose_secret()),
            access_expires_at,
            refresh_hash: TokenHash::of(refresh.expose_secret()),
            previous_refresh_hash: previous,
            refresh_expires_at,
            created_at: now,
            revoked_at: None,
        };
        let tokens =
            SessionTokens { session: id, user, access_token: access, access_expires_at, refresh_token: refresh, refresh_expires_at };
        Ok((record, tokens))
    }

    /// Exchanges a refresh token for a new access and refresh token pair. Each refresh token works
    /// once; presenting one that was already exchanged revokes the whole session.
    ///
    /// # Errors
    /// [`Error::InvalidToken`] (unknown, revoked, reused, or raced by a concurrent refresh),
    /// [`Error::TokenExpired`], [`Error::Disabled`], `Backend`.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<SessionTokens> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let token = refresh_token.expose_secret();
        if token.len() > MAX_TOKEN_LEN || !token.starts_with(REFRESH_PREFIX) {
            return Err(Error::InvalidToken);
        }
        let hash = TokenHash::of(token);
        let Some(session) = ctx.store.session_by_refresh(&hash).await? else { return Err(Error::InvalidToken) };
        if session.revoked_at.is_some() {
            return Err(Error::InvalidToken);
        }
        if session.refresh_hash != hash {
            // A rotated-away token came back: whoever holds it is not the session's owner, or the
            // owner's was stolen. End the session for both.
            let user = ctx.store.get_user(session.user).await?;
            let principal = Principal::user(user.id, user.email.clone());
            let event = AuditEvent::new(&principal, ResourceKind::User, ops::REFRESH_REUSE)
                .resource(user.id, Some(&user.email))
                .details(serde_json::json!({ "session": session.id }));
            ctx.store.revoke_session(session.id, now, &event).await?;
            return Err(Error::InvalidToken);
        }
        if session.refresh_expires_at <= now {
            return Err(Error::TokenExpired);
        }
        let user = ctx.store.get_user(session.user).await?;
        if !user.enabled {
            return Err(Error::Disabled);
        }
        let (next, tokens) = self.new_session(session.user, session.id, now, Some(hash))?;
        let next = SessionRecord { created_at: session.created_at, ..next };
        if !ctx.store.rotate_session(&next, &hash).await? {
            return Err(Error::InvalidToken);
        }
        Ok(tokens)
    }

    /// Ends the session of an access token.
    ///
    /// # Errors
    /// [`Error::InvalidToken`], `Backend`.
    pub async fn logout(&self, access_token: &SecretString) -> Result<()> {
        let (session, principal) = self.session_of(access_token, true).await?;
        let event = AuditEvent::new(&principal, ResourceKind::User, ops::LOGOUT).resource(session.user, Some(principal.name()));
        self.ctx.store.revoke_session(session.id, self.ctx.clock.now(), &event).await?;
        Ok(())
    }

    /// The principal of an access token.
    ///
    /// # Errors
    /// [`Error::InvalidToken`] (unknown or revoked), [`Error::TokenExpired`], [`Error::Disabled`],
    /// `Backend`.
    pub async fn authenticate(&self, access_token: &SecretString) -> Result<Principal> {
        self.session_of(access_token, false).await.map(|(_, p)| p)
    }

    async fn session_of(&self, access_token: &SecretString, allow_expired: bool) -> Result<(SessionRecord, Principal)> {
        let token = access_token.expose_secret();
        if token.len() > MAX_TOKEN_LEN || !token.starts_with(ACCESS_PREFIX) {
            return Err(Error::InvalidToken);
        }
        let Some(session) = self.ctx.store.session_by_access(&TokenHash::of(token)).await? else {
            return Err(Error::InvalidToken);
        };
        if session.revoked_at.is_some() {
            return Err(Error::InvalidToken);
        }
        if !allow_expired && session.access_expires_at <= self.ctx.clock.now() {
            return Err(Error::TokenExpired);
        }
        let user = self.ctx.store.get_user(session.user).await?;
        if !user.enabled {
            return Err(Error::Disabled);
        }
        Ok((session, Principal::user(user.id, user.email)))
    }

    /// The principal of an API key (`ecpk_<id>_<secret>`).
    ///
    /// # Errors
    /// [`Error::InvalidToken`] (malformed, unknown, wrong secret, revoked, or its creator disabled
    /// or deleted, or the key that minted it revoked), [`Error::TokenExpired`] (it or the key that
    /// minted it), `Backend`.
    pub async fn authenticate_api_key(&self, key: &SecretString) -> Result<Principal> {
        let raw = key.expose_secret();
        if raw.len() > MAX_TOKEN_LEN {
            return Err(Error::InvalidToken);
        }
        let mut parts = raw.splitn(3, '_');
        let (Some(API_KEY_PREFIX), Some(id), Some(_secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::InvalidToken);
        };
        let Ok(id) = id.parse::<ApiKeyId>() else { return Err(Error::InvalidToken) };
        let (api_key, stored) = match self.ctx.store.get_api_key(id).await {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Err(Error::InvalidToken),
            Err(e) => return Err(e.into()),
        };
        let presented = TokenHash::of(raw);
        if !bool::from(subtle_eq(&presented.0, &stored.0)) || api_key.revoked_at.is_some() {
            return Err(Error::InvalidToken);
        }
        let now = self.ctx.clock.now();
        if api_key.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::TokenExpired);
        }
        // It stands only while whoever made it does: a user disabled or deleted, or a minting key
        // revoked or expired, takes it down too.
        match crate::authorizer::api_key_standing(self.ctx.store.as_ref(), id).await? {
            Some(expires) if expires.is_none_or(|t| t > now) => {}
            Some(_) => return Err(Error::TokenExpired),
            None => return Err(Error::InvalidToken),
        }
        // Record use at most once a minute, so a busy key does not write on every request.
        if api_key.last_used_at.is_none_or(|t| clock::add(t, std::time::Duration::from_secs(60)) <= now) {
            self.ctx.store.touch_api_key(id, now).await?;
        }
        Ok(Principal::api_key(id, api_key.name))
    }
}

/// Constant-time equality of two hashes.
fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

/// The operations of this module, for tests.
pub fn operations() -> [Operation; 3] {
    [ops::LOGIN, ops::LOGOUT, ops::REFRESH_REUSE]
}
