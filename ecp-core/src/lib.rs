//! # ecp-core
//!
//! The core of ecp-rs, an embeddable SDK for edge-to-cloud IoT control planes: what every other
//! crate builds on.
//!
//! - [`id`]: typed UUIDv7 ids ([`OrgId`], [`ProjectId`], [`EdgeServiceId`], [`TaskId`] ...).
//! - [`tenancy`]: organizations, projects, their limits, and the [`Tenancy`] service.
//! - [`access`]: principals, permissions, scopes and the [`Authorizer`] seam (the engine is
//!   `ecp-rbac`); [`identity`]: the stored form of users, roles, bindings, sessions and API keys.
//! - [`scoped`]: [`Scoped`](scoped::Scoped), a principal at a scope resolved from the store, and
//!   the one wrapper through which every service's scoped handle changes anything: authorize, run,
//!   audit the success or the failure.
//! - [`store`]: the [`Store`] trait and [`SqlStore`], its SQLite (default) and PostgreSQL backends,
//!   one implementation and one conformance suite for both.
//! - [`audit`]: the hash-chained operation audit log and [`verify_audit`].
//! - [`task`]: the task engine: batch work on many targets under a rollout policy (window, start
//!   rate, timeouts, retries with jitter, abort ratio, rollback), persisted so that a restarted
//!   process resumes without applying a target twice, with leases across replicas.
//! - [`edge`], [`cluster`]: the stored form of edge services, agents and clusters (the drivers are
//!   `ecp-edge`'s and `ecp-cluster`'s); [`license`]: Ed25519-signed licenses and the floating pool.
//! - [`Error`], the error kinds shared by all crates, [`Clock`], [`page`] and [`coalesce`].
//!
//! ## Quick start
//!
//! ```no_run
//! # async fn demo() -> ecp_core::Result<()> {
//! use std::sync::Arc;
//!
//! use ecp_core::{SqlStore, Store, verify_audit};
//!
//! let store = Arc::new(SqlStore::memory().await?);
//! assert_eq!(store.backend(), "sqlite");
//! // Services (ecp_core::Tenancy, ecp_rbac::Users, ecp_edge's fleets ...) write to the audit log
//! // through `Scoped`; check the chain any time:
//! let report = verify_audit(store.as_ref(), None).await?;
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
pub mod scoped;
pub mod sealing;
pub mod store;
pub mod task;
pub mod tenancy;

pub use access::{Action, Authorizer, Denial, Permission, PermissionSet, Principal, ResourceKind, Scope, Subject, Visibility};
pub use audit::{AuditEvent, AuditQuery, AuditRecord, AuditTrail, ChainHead, Operation, Outcome, VerifyReport};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{BoxError, Error, Result};
pub use id::{ApiKeyId, AuditId, BindingId, ClusterId, EdgeServiceId, OrgId, ProjectId, RoleId, SessionId, TaskId, TemplateId, UserId};
pub use license::{License, LicenseKind, LicenseSigner, LicenseVerifier};
pub use page::{Page, PageRequest};
pub use store::{
    AgentStore, AuditStore, ClusterStore, DocumentStore, EdgeStore, IdentityStore, Store, StoreSignal, TaskStore, TenancyStore,
    verify_audit,
};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use store::{SqlStore, SqlStoreConfig};
pub use tenancy::{Organization, Project, Tenancy, TenancyLimits};

/// The traits whose methods every user of the store calls: `use ecp_core::prelude::*;`.
pub mod prelude {
    pub use crate::access::Authorizer;
    pub use crate::clock::Clock;
    pub use crate::store::{AgentStore, AuditStore, ClusterStore, DocumentStore, EdgeStore, IdentityStore, Store, TaskStore, TenancyStore};
}

#[doc(hidden)]
pub mod __private {
    pub use uuid::Uuid;
}
