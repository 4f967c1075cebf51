//! Shared set-up of the ecp-rbac tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use ecp_core::access::{Principal, Scope};
use ecp_core::identity::BuiltinRole;
use ecp_core::{ManualClock, Organization, Project, SqlStore};
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params, Grant, NewUser};
use secrecy::SecretString;

pub const ADMIN_PASSWORD: &str = "Adm1n-passw0rd!";

pub struct World {
    pub store: Arc<SqlStore>,
    pub clock: ManualClock,
    pub ac: AccessControl,
    pub admin: Principal,
}

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// An in-memory world with a bootstrapped system admin. `fast` uses cheap argon2 parameters for
/// tests that hash many passwords; the others use the OWASP default.
pub async fn world(fast: bool) -> World {
    world_with(fast, |b| b).await
}

pub async fn world_with(fast: bool, tweak: impl FnOnce(ecp_rbac::AccessConfigBuilder) -> ecp_rbac::AccessConfigBuilder) -> World {
    let clock = ManualClock::starting_now();
    let store = Arc::new(
        SqlStore::connect(ecp_core::SqlStoreConfig::sqlite_memory().clock(Arc::new(clock.clone())).build().unwrap()).await.unwrap(),
    );
    let mut builder = AccessConfig::builder().clock(Arc::new(clock.clone()));
    if fast {
        builder = builder.argon2(Argon2Params::new(1024, 1, 1).unwrap());
    }
    let config = tweak(builder).build().unwrap();
    let ac = AccessControl::new(store.clone(), config).await.unwrap();
    let admin_user = ac.users.bootstrap_admin("admin@example.com", "Admin", &secret(ADMIN_PASSWORD)).await.unwrap();
    let admin = Principal::user(admin_user.id, admin_user.email);
    World { store, clock, ac, admin }
}

impl World {
    pub async fn org(&self, name: &str) -> Organization {
        self.ac.tenancy.create_org(&self.admin, name).await.unwrap()
    }

    pub async fn project(&self, org: &Organization, name: &str) -> Project {
        self.ac.tenancy.create_project(&self.admin, org.id, name).await.unwrap()
    }

    /// A user created by the system admin with one built-in role; returns its principal.
    pub async fn user_with(&self, email: &str, role: BuiltinRole, scope: Scope) -> Principal {
        let u = self.ac.users.create_user(&self.admin, NewUser::new(email, email).grant(Grant::builtin(role, scope))).await.unwrap();
        Principal::user(u.id, u.email)
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}
