//! The conformance tests, written once against `dyn Store`.

pub(crate) mod agents;
pub(crate) mod audit;
pub(crate) mod clusters;
pub(crate) mod documents;
pub(crate) mod edge;
pub(crate) mod identity;
pub(crate) mod tasks;
pub(crate) mod tenancy;

use ecp_core::access::{Principal, ResourceKind};
use ecp_core::audit::{AuditEvent, Operation};

/// The actor of store-level events.
pub(crate) fn admin() -> Principal {
    Principal::system("conformance")
}

/// An audit event for an operation of the suite.
pub(crate) fn ev(op: &str) -> AuditEvent {
    AuditEvent::new(&admin(), ResourceKind::Organization, Operation::new(op).unwrap())
}
