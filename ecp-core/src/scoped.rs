//! [`Scoped`]: one principal acting at one scope (a project, an organization, or the system), with
//! the scope resolved from the store, and [`Scoped::audited`], the one way every service's scoped
//! handle changes anything.
//!
//! "Authorize, act, audit success or failure" is written once, here:
//!
//! 1. [`Scoped::project`] and [`Scoped::org`] read the project or organization from the store (never
//!    from a caller-built struct) and answer `NotFound` to a principal that holds nothing there, so
//!    another tenant's ids leak nothing.
//! 2. [`Scoped::audited`] checks the operation's permission at that scope. A denial is written to
//!    the audit log as a failure and returned; the operation does not run.
//! 3. The operation runs with an [`Audit`] to describe what it touches (resource, details). A store
//!    call that changes something passes [`Audit::in_transaction`] on, so the success record is
//!    written in the change's own transaction; otherwise (a call to an edge service, an
//!    orchestrator) the wrapper appends the success record after the operation returns.
//! 4. An operation that fails, whatever the reason (not found, invalid input, conflict, a backend
//!    error), has its failure record written with the reason.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn ecp_core::Store>, authz: std::sync::Arc<dyn ecp_core::Authorizer>,
//! #     principal: ecp_core::Principal, project: ecp_core::ProjectId) -> ecp_core::Result<()> {
//! use ecp_core::audit::Operation;
//! use ecp_core::scoped::Scoped;
//! use ecp_core::{Permission, ResourceKind};
//!
//! let scope = Scoped::project(store.clone(), authz, &principal, project).await?;
//! let op = Operation::from_static("tag.create");
//! scope
//!     .audited(Permission::edit(ResourceKind::Tag), ResourceKind::Tag, op, async |audit| {
//!         audit.resource("line1", Some("line1"));
//!         // A store call that records the success in its own transaction:
//!         // store.create_tag(project, "line1", &limits, now, audit.in_transaction()).await
//!         Ok::<_, ecp_core::Error>(())
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::access::{Authorizer, Permission, Principal, ResourceKind, Scope};
use crate::audit::{AuditEvent, Operation, record_failure};
use crate::error::{Error, Result};
use crate::id::{OrgId, ProjectId};
use crate::store::{AuditStore, Store};
use crate::tenancy::{Organization, Project};

/// One principal acting at one scope, resolved from the store; see the [module docs](self).
/// Cheap to clone.
#[derive(Clone)]
pub struct Scoped {
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
    principal: Principal,
    scope: Scope,
    org: Option<(OrgId, String)>,
    project: Option<Project>,
}

impl fmt::Debug for Scoped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").field("principal", &self.principal).field("scope", &self.scope).finish_non_exhaustive()
    }
}

impl Scoped {
    /// `principal` in the project `project`, as the store has it.
    ///
    /// # Errors
    /// `NotFound` for a project that does not exist or where the principal holds nothing (the same
    /// answer for both), `Backend`.
    pub async fn project(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>, principal: &Principal, project: ProjectId) -> Result<Self> {
        let p = match store.get_project(project).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Err(Error::not_found("project", project)),
            Err(e) => return Err(e),
        };
        let scope = p.scope();
        if !authz.has_access(principal, &scope) {
            return Err(Error::not_found("project", project));
        }
        let org_name = match store.get_org(p.org).await {
            Ok(o) => o.name,
            Err(e) if e.is_not_found() => String::new(),
            Err(e) => return Err(e),
        };
        Ok(Scoped { store, authz, principal: principal.clone(), scope, org: Some((p.org, org_name)), project: Some(p) })
    }

    /// `principal` in the organization `org`, as the store has it.
    ///
    /// # Errors
    /// `NotFound` for an organization that does not exist or where the principal holds nothing
    /// (in it or in any of its projects), `Backend`.
    pub async fn org(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>, principal: &Principal, org: OrgId) -> Result<Self> {
        let o: Organization = match store.get_org(org).await {
            Ok(o) => o,
            Err(e) if e.is_not_found() => return Err(Error::not_found("organization", org)),
            Err(e) => return Err(e),
        };
        let scope = Scope::Org { org };
        if !authz.has_access(principal, &scope) {
            return Err(Error::not_found("organization", org));
        }
        Ok(Scoped { store, authz, principal: principal.clone(), scope, org: Some((o.id, o.name)), project: None })
    }

    /// `principal` at the system scope (users, roles, platform settings). Permissions there are
    /// checked like anywhere else; nothing needs resolving.
    pub fn system(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>, principal: &Principal) -> Self {
        Scoped { store, authz, principal: principal.clone(), scope: Scope::System, org: None, project: None }
    }

    /// `principal` at `scope`: [`project`](Self::project), [`org`](Self::org) or
    /// [`system`](Self::system).
    ///
    /// # Errors
    /// As those.
    pub async fn at(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>, principal: &Principal, scope: &Scope) -> Result<Self> {
        match *scope {
            Scope::System => Ok(Self::system(store, authz, principal)),
            Scope::Org { org } => Self::org(store, authz, principal, org).await,
            Scope::Project { project, .. } => Self::project(store, authz, principal, project).await,
        }
    }

    /// Who acts.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Where.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The project, when the scope is one.
    pub fn project_record(&self) -> Option<&Project> {
        self.project.as_ref()
    }

    /// The project's id, when the scope is one.
    pub fn project_id(&self) -> Option<ProjectId> {
        self.project.as_ref().map(|p| p.id)
    }

    /// The organization's id, when the scope is one or a project of one.
    pub fn org_id(&self) -> Option<OrgId> {
        self.org.as_ref().map(|(id, _)| *id)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The authorizer.
    pub fn authorizer(&self) -> &Arc<dyn Authorizer> {
        &self.authz
    }

    /// Checks `permission` at this scope (for reads, which are not audited).
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn authorize(&self, permission: Permission) -> Result<()> {
        self.authz.check(&self.principal, permission, &self.scope).map_err(|d| d.into_error(&self.principal, permission, &self.scope))
    }

    /// An audit event of this principal at this scope (organization and project named).
    pub fn event(&self, kind: ResourceKind, operation: Operation) -> AuditEvent {
        let mut event = AuditEvent::new(&self.principal, kind, operation);
        if let Some((id, name)) = &self.org {
            event = event.org(*id, name.as_str());
        }
        if let Some(p) = &self.project {
            event = event.project(p.id, p.name.as_str());
        }
        event
    }

    /// Runs a change: checks `permission` here, runs `operation` with the [`Audit`] of
    /// `kind`/`op`, and writes the audit record of the outcome, success or failure (see the
    /// [module docs](self)).
    ///
    /// # Errors
    /// `PermissionDenied` (the operation does not run), or the operation's own error; both are
    /// recorded.
    pub async fn audited<T, E>(
        &self,
        permission: Permission,
        kind: ResourceKind,
        op: Operation,
        operation: impl AsyncFnOnce(&mut Audit) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error> + fmt::Display,
    {
        self.audited_event(permission, self.event(kind, op), operation).await
    }

    /// [`audited`](Self::audited) with an event built by the caller (one that already names its
    /// resource, or of another scope's names).
    ///
    /// # Errors
    /// As [`audited`](Self::audited).
    pub async fn audited_event<T, E>(
        &self,
        permission: Permission,
        event: AuditEvent,
        operation: impl AsyncFnOnce(&mut Audit) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error> + fmt::Display,
    {
        audited(self.store.as_ref(), self.authz.as_ref(), &self.principal, &self.scope, permission, event, operation).await
    }
}

/// What [`Scoped::audited_event`] does, for code that holds the store and the authorizer by
/// reference: checks `permission` for `principal` at `scope`, runs `operation`, and writes the
/// audit record of the outcome (see the [module docs](self)). Prefer a [`Scoped`] handle, whose
/// scope is resolved from the store.
///
/// # Errors
/// `PermissionDenied` (the operation does not run), or the operation's own error; both are
/// recorded.
pub async fn audited<T, E>(
    store: &dyn AuditStore,
    authz: &dyn Authorizer,
    principal: &Principal,
    scope: &Scope,
    permission: Permission,
    event: AuditEvent,
    operation: impl AsyncFnOnce(&mut Audit) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: From<Error> + fmt::Display,
{
    if let Err(d) = authz.check(principal, permission, scope) {
        let e = d.into_error(principal, permission, scope);
        record_failure(store, event, &e.to_string()).await;
        return Err(e.into());
    }
    audit_outcome(store, event, operation).await
}

/// Runs `operation` and writes the audit record of its outcome: the failure with its reason, or
/// the success (unless the operation's store call wrote it in its own transaction, see
/// [`Audit::in_transaction`]). For services whose authorization is not one permission at one
/// scope (visibility checked at one scope, the permission at another): they authorize inside
/// `operation`, so that a refusal is recorded like any other failure.
///
/// # Errors
/// The operation's error, recorded.
pub async fn audit_outcome<T, E>(
    store: &dyn AuditStore,
    event: AuditEvent,
    operation: impl AsyncFnOnce(&mut Audit) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: From<Error> + fmt::Display,
{
    let mut audit = Audit { event, in_transaction: false };
    match operation(&mut audit).await {
        Ok(value) => {
            if !audit.in_transaction {
                store.append_audit(&audit.event).await?;
            }
            Ok(value)
        }
        Err(e) => {
            record_failure(store, audit.event, &e.to_string()).await;
            Err(e)
        }
    }
}

/// The audit record of one operation run by [`Scoped::audited`]: what it touched, and whether the
/// store writes its success in the change's own transaction.
#[derive(Debug)]
pub struct Audit {
    event: AuditEvent,
    in_transaction: bool,
}

impl Audit {
    /// Names the organization it happened in.
    pub fn org(&mut self, id: OrgId, name: &str) -> &mut Self {
        self.event.org = Some(crate::audit::Named::new(id, name));
        self
    }

    /// Names the project it happened in.
    pub fn project(&mut self, id: ProjectId, name: &str) -> &mut Self {
        self.event.project = Some(crate::audit::Named::new(id, name));
        self
    }

    /// Names the resource acted on.
    pub fn resource(&mut self, id: impl fmt::Display, name: Option<&str>) -> &mut Self {
        self.event.resource_id = Some(id.to_string());
        self.event.resource_name = name.map(str::to_owned);
        self
    }

    /// Names the resource acted on before its id is known (a resource being created).
    pub fn resource_name(&mut self, name: &str) -> &mut Self {
        self.event.resource_name = Some(name.chars().take(200).collect());
        self
    }

    /// Sets the details (never a secret).
    pub fn details(&mut self, details: serde_json::Value) -> &mut Self {
        self.event.details = details;
        self
    }

    /// The event as it stands.
    pub fn event(&self) -> &AuditEvent {
        &self.event
    }

    /// The event, to change more of it than the setters do (it stays this operation's record).
    pub fn event_mut(&mut self) -> &mut AuditEvent {
        &mut self.event
    }

    /// The event, for a store call that writes the success record in the same transaction as the
    /// change it makes: the wrapper then writes no success record of its own. (A failed call rolls
    /// its transaction back, and the wrapper writes the failure record.)
    pub fn in_transaction(&mut self) -> &AuditEvent {
        self.in_transaction = true;
        &self.event
    }

    /// Tells the wrapper whether a store call given [`event`](Self::event) wrote the success
    /// record in its transaction, for a store call that writes it only when it changes something
    /// (see `EdgeStore::create_edge_services`): when it did not, the wrapper writes it.
    pub fn written_in_transaction(&mut self, written: bool) -> &mut Self {
        self.in_transaction = written;
        self
    }
}
