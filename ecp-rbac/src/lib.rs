//! # ecp-rbac
//!
//! Access control for ecp-rs: who may do what, where, and proving who someone is.
//!
//! - [`RbacAuthorizer`]: the [`Authorizer`](ecp_core::Authorizer) of the SDK. Built-in roles with
//!   exactly the product's permission matrix ([`roles`]), custom roles (a named set of
//!   (resource kind, action) permissions), and role bindings at system, organization or project
//!   scope, precomputed into an in-memory index: a check is a few hash lookups, never a store
//!   round trip.
//! - [`Users`]: accounts, invitations, password resets, memberships, grants, custom roles and API
//!   keys. Organization admins act only in their organizations, project admins only in their
//!   projects, and nobody grants more than it holds.
//! - [`Authenticator`]: argon2id passwords under a [`PasswordPolicy`], lockout after repeated
//!   failures (unknown emails behave exactly like known ones), access and refresh tokens stored
//!   as hashes (refresh rotates; reuse of a rotated token revokes the session), logout, API keys.
//! - [`AccessControl`]: all of the above and ecp-core's [`Tenancy`] and [`AuditTrail`] over one
//!   store, ready to use.
//!
//! Every operation takes the acting [`Principal`], authorizes, acts, and writes an audit record,
//! success or failure. Secrets (passwords, tokens, API keys) are [`secrecy::SecretString`]s and
//! never reach `Debug`, logs, errors or audit records.
//!
//! ## Quick start
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ecp_core::{SqlStore, Scope};
//! use ecp_core::identity::BuiltinRole;
//! use ecp_rbac::{AccessControl, AccessConfig, Grant, NewUser};
//! use secrecy::SecretString;
//!
//! let store = Arc::new(SqlStore::memory().await?);
//! let ac = AccessControl::new(store, AccessConfig::builder().build()?).await?;
//! let pw = SecretString::from("Adm1n-passw0rd!");
//! ac.users.bootstrap_admin("admin@example.com", "Admin", &pw).await?;
//! let admin = ac.auth.authenticate(&ac.auth.login("admin@example.com", &pw).await?.access_token).await?;
//!
//! let org = ac.tenancy.create_org(&admin, "Acme").await?;
//! let ann = NewUser::new("ann@example.com", "Ann").grant(Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org: org.id }));
//! let invitation = ac.users.invite_user(&admin, ann).await?;
//! // send invitation.token to ann; she calls ac.users.accept_invitation(...)
//! # Ok(()) }
//! ```
//!
//! [`Principal`]: ecp_core::Principal
//! [`Tenancy`]: ecp_core::Tenancy
//! [`AuditTrail`]: ecp_core::AuditTrail

pub mod auth;
pub mod authorizer;
mod config;
mod context;
pub mod error;
pub mod password;
pub mod roles;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use ecp_core::{AuditTrail, Store, Tenancy};

pub use auth::{Authenticator, SessionTokens};
pub use authorizer::RbacAuthorizer;
pub use config::{AccessConfig, AccessConfigBuilder};
pub use error::{Error, Result};
pub use password::{Argon2Params, PasswordPolicy, PasswordPolicyBuilder};
pub use throttle::{LoginLimits, LoginLimitsBuilder};
pub use users::{CreatedApiKey, Grant, NewApiKey, NewUser, OneTimeToken, UserChanges, Users};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Access control over one store: the authorizer, the services, and tenancy and audit wired to them.
#[derive(Debug, Clone)]
pub struct AccessControl {
    /// The authorizer (shared with every service built here).
    pub authorizer: Arc<RbacAuthorizer>,
    /// User management.
    pub users: Users,
    /// Authentication.
    pub auth: Authenticator,
    /// Organizations and projects.
    pub tenancy: Tenancy,
    /// The audit log, as principals may read it.
    pub audit: AuditTrail,
}

impl AccessControl {
    /// Loads the authorizer's index from `store`, starts keeping it in step with other replicas
    /// ([`RbacAuthorizer::spawn_follow`], every [`AccessConfigBuilder::sync_every`] and at once on
    /// a store that signals), and builds the services.
    ///
    /// # Errors
    /// `Backend` if the store fails.
    pub async fn new(store: Arc<dyn Store>, config: AccessConfig) -> Result<Self> {
        let clock = config.clock.clone();
        let authorizer = Arc::new(RbacAuthorizer::load(store.clone(), clock.clone()).await?);
        // Stops on its own when the authorizer is dropped.
        drop(authorizer.spawn_follow(config.sync_every));
        let hasher = password::Hasher::new(config.argon2, throttle::HashSlots::new(&config.login_limits, config.argon2)).await?;
        let throttle = throttle::Throttle::new(&config.login_limits, clock.clone());
        let tenancy = Tenancy::new(store.clone(), authorizer.clone(), clock.clone(), config.limits);
        let audit = AuditTrail::new(store.clone(), authorizer.clone());
        let ctx = Arc::new(context::Context { store, authz: authorizer.clone(), clock, config, hasher, throttle });
        Ok(Self { authorizer, users: Users::new(ctx.clone()), auth: Authenticator::new(ctx), tenancy, audit })
    }
}
