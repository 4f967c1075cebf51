//! Configuration of authentication and access control.

use std::sync::Arc;
use std::time::Duration;

use ecp_core::identity::LockoutRule;
use ecp_core::{Clock, SystemClock, TenancyLimits};

use crate::password::{Argon2Params, PasswordPolicy};
use crate::throttle::LoginLimits;

/// How authentication behaves. Build with [`AccessConfig::builder`]; `build()` validates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AccessConfig {
    pub(crate) argon2: Argon2Params,
    pub(crate) policy: PasswordPolicy,
    pub(crate) lockout: LockoutRule,
    pub(crate) access_ttl: Duration,
    pub(crate) refresh_ttl: Duration,
    pub(crate) invitation_ttl: Duration,
    pub(crate) reset_ttl: Duration,
    pub(crate) limits: TenancyLimits,
    pub(crate) login_limits: LoginLimits,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sync_every: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            argon2: Argon2Params::OWASP,
            policy: PasswordPolicy::default(),
            lockout: LockoutRule { max_failures: 5, window: Duration::from_secs(15 * 60), lock_for: Duration::from_secs(15 * 60) },
            access_ttl: Duration::from_secs(30 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            invitation_ttl: Duration::from_secs(72 * 3600),
            reset_ttl: Duration::from_secs(3600),
            limits: TenancyLimits::default(),
            login_limits: LoginLimits::default(),
            clock: Arc::new(SystemClock),
            sync_every: Duration::from_secs(1),
        }
    }
}

impl AccessConfig {
    /// A builder starting from the defaults: OWASP argon2id, the default [`PasswordPolicy`], a lock
    /// of 15 minutes after 5 failed logins within 15 minutes, access tokens for 30 minutes, refresh
    /// tokens for 7 days, invitations for 72 hours, password resets for 1 hour, the product's
    /// tenancy limits, the system clock.
    pub fn builder() -> AccessConfigBuilder {
        AccessConfigBuilder(Self::default())
    }

    /// The password policy.
    pub fn password_policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// The lockout rule.
    pub fn lockout(&self) -> LockoutRule {
        self.lockout
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The tenancy limits.
    pub fn limits(&self) -> &TenancyLimits {
        &self.limits
    }

    /// The login rate limits and hash bounds.
    pub fn login_limits(&self) -> &LoginLimits {
        &self.login_limits
    }
}

/// Builds an [`AccessConfig`].
#[derive(Debug, Clone)]
pub struct AccessConfigBuilder(AccessConfig);

impl AccessConfigBuilder {
    /// How often the authorizer reads changes of access other replicas made (default 1 s; 10 ms
    /// to 1 hour). On a store that signals (PostgreSQL) changes arrive at once, and this is the
    /// safety net; on SQLite it is how a second process sharing the file finds out.
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.0.sync_every = every;
        self
    }

    /// The argon2id cost.
    pub fn argon2(mut self, params: Argon2Params) -> Self {
        self.0.argon2 = params;
        self
    }

    /// The password policy.
    pub fn password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.0.policy = policy;
        self
    }

    /// Lock a login name for `lock_for` after `max_failures` failures within `window`.
    pub fn lockout(mut self, max_failures: u32, window: Duration, lock_for: Duration) -> Self {
        self.0.lockout = LockoutRule { max_failures, window, lock_for };
        self
    }

    /// How long access tokens live.
    pub fn access_token_ttl(mut self, d: Duration) -> Self {
        self.0.access_ttl = d;
        self
    }

    /// How long refresh tokens live.
    pub fn refresh_token_ttl(mut self, d: Duration) -> Self {
        self.0.refresh_ttl = d;
        self
    }

    /// How long invitations live.
    pub fn invitation_ttl(mut self, d: Duration) -> Self {
        self.0.invitation_ttl = d;
        self
    }

    /// How long password reset tokens live.
    pub fn password_reset_ttl(mut self, d: Duration) -> Self {
        self.0.reset_ttl = d;
        self
    }

    /// The tenancy limits.
    pub fn limits(mut self, limits: TenancyLimits) -> Self {
        self.0.limits = limits;
        self
    }

    /// The login rate limits and password hash bounds (default [`LoginLimits::default`]).
    pub fn login_limits(mut self, limits: LoginLimits) -> Self {
        self.0.login_limits = limits;
        self
    }

    /// The clock (a [`ecp_core::ManualClock`] in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.0.clock = clock;
        self
    }

    /// The config.
    ///
    /// # Errors
    /// `InvalidInput` for zero lockout failures or window, or token lifetimes of zero or an access
    /// token outliving its refresh token.
    pub fn build(self) -> ecp_core::Result<AccessConfig> {
        let c = self.0;
        if c.lockout.max_failures == 0 || c.lockout.window.is_zero() || c.lockout.lock_for.is_zero() {
            return Err(ecp_core::Error::invalid("lockout", "failures, window and lock time must be positive"));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&c.sync_every) {
            return Err(ecp_core::Error::invalid("sync_every", "must be 10 ms to 1 hour"));
        }
        for (field, d) in [
            ("access_token_ttl", c.access_ttl),
            ("refresh_token_ttl", c.refresh_ttl),
            ("invitation_ttl", c.invitation_ttl),
            ("password_reset_ttl", c.reset_ttl),
        ] {
            if d.is_zero() {
                return Err(ecp_core::Error::invalid(field, "must be positive"));
            }
        }
        if c.access_ttl > c.refresh_ttl {
            return Err(ecp_core::Error::invalid("access_token_ttl", "must not be longer than the refresh token's"));
        }
        Ok(c)
    }
}
