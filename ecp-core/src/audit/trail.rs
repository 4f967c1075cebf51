//! [`AuditTrail`]: reading and verifying the audit log as a principal.

use std::sync::Arc;

use crate::access::{Authorizer, Permission, Principal, ResourceKind, Scope};
use crate::audit::{AuditQuery, AuditRecord, AuditScope, ChainHead, VerifyReport};
use crate::error::{Error, Result};
use crate::page::{Page, PageRequest};
use crate::store::Store;

/// The audit log as principals see it: administrators read the records of where they administer
/// (a system admin everything, an organization admin its organization, a project admin its
/// projects), and nobody changes them.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
}

impl AuditTrail {
    /// The audit trail of `store`.
    pub fn new(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>) -> Self {
        Self { store, authz }
    }

    /// Records matching `query` within what the principal may see, newest first.
    ///
    /// # Errors
    /// `PermissionDenied` for a principal that may view the audit log nowhere, `InvalidInput` for
    /// bad filters or page, `Backend`.
    pub async fn query(&self, principal: &Principal, query: &AuditQuery, page: &PageRequest) -> Result<Page<AuditRecord>> {
        let perm = Permission::view(ResourceKind::Audit);
        let vis = self.authz.visibility(principal, perm);
        if vis.is_empty() {
            return Err(Error::PermissionDenied {
                principal: principal.to_string(),
                permission: perm.to_string(),
                scope: "any scope".into(),
                reason: "no role grants it anywhere".into(),
            });
        }
        let scope = AuditScope { all: vis.all, orgs: vis.orgs, projects: vis.projects };
        self.store.query_audit(query, &scope, page).await
    }

    /// Verifies the whole chain (see [`crate::audit::verify_chain`]). Needs `view audit` at system
    /// scope.
    ///
    /// # Errors
    /// `PermissionDenied`, `Integrity` naming the first bad record, `Backend`.
    pub async fn verify(&self, principal: &Principal, anchor: Option<&ChainHead>) -> Result<VerifyReport> {
        let perm = Permission::view(ResourceKind::Audit);
        self.authz.check(principal, perm, &Scope::System).map_err(|d| d.into_error(principal, perm, &Scope::System))?;
        crate::store::verify_audit(self.store.as_ref(), anchor).await
    }
}
