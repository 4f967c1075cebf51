//! The errors of ecp-rbac.

use std::borrow::Cow;

use ecp_core::Timestamp;

/// What went wrong in authentication or user management.
///
/// Authentication failures say as little as they can: an unknown email and a wrong password are
/// the same [`Error::InvalidCredentials`]; that an account is disabled or SSO-only is said only
/// after the right password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Wrong email or password.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed logins for this email: refused until `until`.
    #[error("too many failed logins: locked until {until}")]
    Locked {
        /// When logins are accepted again.
        until: Timestamp,
    },
    /// The account is disabled.
    #[error("the account is disabled")]
    Disabled,
    /// The account signs in through SSO only.
    #[error("the account signs in through sso only")]
    SsoOnly,
    /// The token is unknown, revoked, or was already used.
    #[error("the token is invalid or revoked")]
    InvalidToken,
    /// The token has expired.
    #[error("the token has expired")]
    TokenExpired,
    /// Too many logins (for this identity or from this source), or no password hash could start
    /// in time: try again after `retry_after`.
    #[error("too many requests: retry after {retry_after:?}")]
    RateLimited {
        /// How long to wait before the next attempt can pass.
        retry_after: std::time::Duration,
    },
    /// The new password does not meet the password policy.
    #[error("the password does not meet the policy: {reason}")]
    WeakPassword {
        /// Which rule it breaks.
        reason: Cow<'static, str>,
    },
    /// An error of the store, the tenancy model or authorization.
    #[error(transparent)]
    Core(#[from] ecp_core::Error),
}

impl Error {
    /// Whether this is a `NotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_not_found())
    }

    /// Whether this is a `PermissionDenied`.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_permission_denied())
    }

    /// Whether this is a `Conflict`.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_conflict())
    }

    /// Whether trying again may succeed (after the wait a [`Error::RateLimited`] names).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::RateLimited { .. }) || matches!(self, Error::Core(e) if e.is_retryable())
    }

    /// Whether this is a [`Error::RateLimited`].
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Error::RateLimited { .. })
    }

    /// Whether this is an authentication failure (credentials, lock, token, disabled account).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Error::InvalidCredentials | Error::Locked { .. } | Error::Disabled | Error::SsoOnly | Error::InvalidToken | Error::TokenExpired
        )
    }
}

/// The result type of ecp-rbac.
pub type Result<T, E = Error> = std::result::Result<T, E>;
