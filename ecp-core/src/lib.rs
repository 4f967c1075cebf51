//! # ecp-core
//!
//! The core of ecp-rs, an embeddable SDK for edge-to-cloud IoT control planes: multi-tenant
//! organizations and projects, EMQX clusters, and fleets of edge services.
//!
//! This crate owns what every other crate builds on:
//!
//! - [`id`]: typed UUIDv7 ids ([`OrgId`], [`ProjectId`], [`UserId`] ...).
//! - [`tenancy`]: organizations, projects, their limits, and the [`Tenancy`] service.
//! - [`store`]: the [`Store`] trait and [`SqlStore`], its SQLite (default) and PostgreSQL
//!   backends, with one conformance suite for both.
//! - [`audit`]: the hash-chained operation audit log and [`verify_audit`].
//! - [`access`]: principals, permissions, scopes and the [`Authorizer`] seam (the engine is
//!   `ecp-rbac`).
//! - [`identity`]: the stored form of users, roles, bindings, sessions and API keys.
//! - [`Error`], the error kinds shared by all crates, and [`Clock`].
//!
//! Batch tasks with rollout policies and the floating license join this crate with the issues that
//! need them.
//!
//! ## Quick start
//!
//! ```no_run
//! # async fn demo() -> ecp_core::Result<()> {
//! use ecp_core::{SqlStore, Store, verify_audit};
//!
//! let store = SqlStore::memory().await?;
//! assert_eq!(store.backend(), "sqlite");
//! // Services (ecp_core::Tenancy, ecp_rbac::Users ...) write to the audit log; check it any time:
//! let report = verify_audit(&store, None).await?;
//! println!("{} audit records, chain intact", report.records);
//! # Ok(()) }
//! ```

pub mod access;
pub mod audit;
pub mod clock;
pub mod cluster;
pub mod coalesce;
pub mod edge;
pub mod error;
pub mod id;
pub mod identity;
pub mod license;
pub mod page;
pub mod store;
pub mod task;
pub mod tenancy;

pub use access::{Action, Authorizer, Denial, Permission, PermissionSet, Principal, ResourceKind, Scope, Subject, Visibility};
pub use audit::{AuditEvent, AuditQuery, AuditRecord, AuditTrail, ChainHead, Operation, Outcome, VerifyReport};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{BoxError, Error, Result};
pub use id::{ApiKeyId, AuditId, BindingId, ClusterId, EdgeServiceId, OrgId, ProjectId, RoleId, SessionId, TaskId, UserId};
pub use license::{License, LicenseKind, LicenseSigner, LicenseVerifier};
pub use page::{Page, PageRequest};
pub use store::{AgentStore, AuditStore, ClusterStore, EdgeStore, IdentityStore, Store, TaskStore, TenancyStore, verify_audit};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use store::{SqlStore, SqlStoreConfig};
pub use tenancy::{Organization, Project, Tenancy, TenancyLimits};

/// The traits whose methods every user of the store calls: `use ecp_core::prelude::*;`.
pub mod prelude {
    pub use crate::access::Authorizer;
    pub use crate::clock::Clock;
    pub use crate::store::{AgentStore, AuditStore, ClusterStore, EdgeStore, IdentityStore, Store, TaskStore, TenancyStore};
}

#[doc(hidden)]
pub mod __private {
    pub use uuid::Uuid;
}
