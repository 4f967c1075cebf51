//! The [`Tenancy`] service: organizations and projects, authorized and audited.

use std::sync::Arc;

use crate::access::{Authorizer, Permission, Principal, ResourceKind, Scope, authorize};
use crate::audit::AuditEvent;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::id::{OrgId, ProjectId};
use crate::page::{Page, PageRequest};
use crate::scoped::{Audit, audit_outcome, audited};
use crate::store::{ProjectFilter, Store};
use crate::tenancy::{Organization, Project, ProjectUsage, TenancyLimits};

/// The audit operations of the tenancy service.
pub mod ops {
    use crate::audit::Operation;

    /// An organization was created.
    pub const ORG_CREATE: Operation = Operation::from_static("organization.create");
    /// An organization was renamed.
    pub const ORG_RENAME: Operation = Operation::from_static("organization.rename");
    /// An organization was deleted.
    pub const ORG_DELETE: Operation = Operation::from_static("organization.delete");
    /// A project was created.
    pub const PROJECT_CREATE: Operation = Operation::from_static("project.create");
    /// A project was renamed.
    pub const PROJECT_RENAME: Operation = Operation::from_static("project.rename");
    /// A project was deleted.
    pub const PROJECT_DELETE: Operation = Operation::from_static("project.delete");
}

/// Organizations and projects. Every method takes the acting principal, authorizes it against the
/// product's permission matrix, acts, and writes an audit record whether it succeeds or fails.
///
/// A principal that cannot see an organization or project gets `NotFound` for it, whatever id it
/// passes, so other tenants' ids leak nothing.
#[derive(Debug, Clone)]
pub struct Tenancy {
    store: Arc<dyn Store>,
    authz: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    limits: TenancyLimits,
}

impl Tenancy {
    /// A tenancy service over `store`, deciding with `authz`.
    pub fn new(store: Arc<dyn Store>, authz: Arc<dyn Authorizer>, clock: Arc<dyn Clock>, limits: TenancyLimits) -> Self {
        Self { store, authz, clock, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &TenancyLimits {
        &self.limits
    }

    /// Creates an organization. Needs `edit organization` at system scope.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput` for a bad name, `LimitExceeded`, `Conflict` for a taken
    /// name, `Backend`.
    pub async fn create_org(&self, principal: &Principal, name: &str) -> Result<Organization> {
        let mut event = AuditEvent::new(principal, ResourceKind::Organization, ops::ORG_CREATE);
        event.resource_name = Some(truncated(name));
        let perm = Permission::edit(ResourceKind::Organization);
        audited(self.store.as_ref(), self.authz.as_ref(), principal, &Scope::System, perm, event, async |audit| {
            let org = Organization::new(name, self.clock.now())?;
            audit.org(org.id, &org.name).resource(org.id, Some(&org.name));
            self.store.create_org(&org, &self.limits, audit.in_transaction()).await?;
            Ok(org)
        })
        .await
    }

    /// One organization. Needs `view organization` in it (project admins have it for their
    /// project's organization).
    ///
    /// # Errors
    /// `NotFound` (also when the principal may not see it), `Backend`.
    pub async fn get_org(&self, principal: &Principal, id: OrgId) -> Result<Organization> {
        authorize(
            self.authz.as_ref(),
            principal,
            Permission::view(ResourceKind::Organization),
            &Scope::Org { org: id },
            "organization",
            &id,
        )?;
        self.store.get_org(id).await
    }

    /// The organizations the principal may see, in creation order.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page, `Backend`.
    pub async fn list_orgs(&self, principal: &Principal, page: &PageRequest) -> Result<Page<Organization>> {
        let vis = self.authz.visibility(principal, Permission::view(ResourceKind::Organization));
        let within = (!vis.all).then_some(vis.orgs);
        self.store.list_orgs(within.as_deref(), page).await
    }

    /// Renames an organization. Needs `edit organization` in it.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `Conflict`, `Backend`.
    pub async fn rename_org(&self, principal: &Principal, id: OrgId, name: &str) -> Result<Organization> {
        let event = AuditEvent::new(principal, ResourceKind::Organization, ops::ORG_RENAME).resource(id, None);
        audit_outcome(self.store.as_ref(), event, async |audit| {
            let perm = Permission::edit(ResourceKind::Organization);
            authorize(self.authz.as_ref(), principal, perm, &Scope::Org { org: id }, "organization", &id)?;
            let org = self.store.get_org(id).await?;
            audit
                .org(org.id, &org.name)
                .resource(org.id, Some(&org.name))
                .details(serde_json::json!({ "from": org.name, "to": truncated(name) }));
            crate::tenancy::validate_name("organization name", name, crate::tenancy::MAX_TENANT_NAME_CHARS)?;
            self.store.rename_org(id, name, self.clock.now(), audit.in_transaction()).await
        })
        .await
    }

    /// Deletes an organization without projects. Needs `edit organization` at system scope.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Conflict` while it has projects, `Backend`.
    pub async fn delete_org(&self, principal: &Principal, id: OrgId) -> Result<()> {
        let event = AuditEvent::new(principal, ResourceKind::Organization, ops::ORG_DELETE).resource(id, None);
        audit_outcome(self.store.as_ref(), event, async |audit| {
            let perm = Permission::edit(ResourceKind::Organization);
            if let Err(e) = self.authz.check(principal, perm, &Scope::System) {
                return Err(if self.authz.has_access(principal, &Scope::Org { org: id }) {
                    e.into_error(principal, perm, &Scope::System)
                } else {
                    Error::not_found("organization", id)
                });
            }
            let org = self.store.get_org(id).await?;
            audit.org(org.id, &org.name).resource(org.id, Some(&org.name));
            self.store.delete_org(id, audit.in_transaction()).await?;
            self.authz.scope_removed(&Scope::Org { org: id });
            Ok(())
        })
        .await
    }

    /// Creates a project in an organization. Needs `edit project` in the organization.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `LimitExceeded`, `Conflict`, `Backend`.
    pub async fn create_project(&self, principal: &Principal, org: OrgId, name: &str) -> Result<Project> {
        let mut event = AuditEvent::new(principal, ResourceKind::Project, ops::PROJECT_CREATE);
        event.resource_name = Some(truncated(name));
        audit_outcome(self.store.as_ref(), event, async |audit| {
            let perm = Permission::edit(ResourceKind::Project);
            authorize(self.authz.as_ref(), principal, perm, &Scope::Org { org }, "organization", &org)?;
            let organization = self.store.get_org(org).await?;
            audit.org(org, &organization.name);
            let project = Project::new(org, name, self.clock.now())?;
            audit.project(project.id, &project.name).resource(project.id, Some(&project.name));
            self.store.create_project(&project, &self.limits, audit.in_transaction()).await?;
            Ok(project)
        })
        .await
    }

    /// Loads a project and authorizes `perm` at its scope, or at its organization's scope when
    /// `at_org` is set.
    async fn authorized_project(&self, principal: &Principal, id: ProjectId, perm: Permission, at_org: bool) -> Result<Project> {
        let project = match self.store.get_project(id).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Err(Error::not_found("project", id)),
            Err(e) => return Err(e),
        };
        let scope = if at_org { Scope::Org { org: project.org } } else { project.scope() };
        match self.authz.check(principal, perm, &scope) {
            Ok(()) => Ok(project),
            Err(denial) if self.authz.has_access(principal, &project.scope()) => Err(denial.into_error(principal, perm, &scope)),
            Err(_) => Err(Error::not_found("project", id)),
        }
    }

    /// One project. Needs `view project` in it.
    ///
    /// # Errors
    /// `NotFound` (also when the principal may not see it), `PermissionDenied`, `Backend`.
    pub async fn get_project(&self, principal: &Principal, id: ProjectId) -> Result<Project> {
        self.authorized_project(principal, id, Permission::view(ResourceKind::Project), false).await
    }

    /// The projects the principal may see, optionally of one organization, in creation order.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page, `Backend`.
    pub async fn list_projects(&self, principal: &Principal, org: Option<OrgId>, page: &PageRequest) -> Result<Page<Project>> {
        let vis = self.authz.visibility(principal, Permission::view(ResourceKind::Project));
        let mut filter = ProjectFilter { org, ..ProjectFilter::default() };
        if !vis.all {
            filter.within_orgs = Some(vis.orgs);
            filter.within_projects = vis.projects;
        }
        self.store.list_projects(&filter, page).await
    }

    /// Renames a project. Needs `edit project` in it.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `Conflict`, `Backend`.
    pub async fn rename_project(&self, principal: &Principal, id: ProjectId, name: &str) -> Result<Project> {
        let event = AuditEvent::new(principal, ResourceKind::Project, ops::PROJECT_RENAME).resource(id, None);
        audit_outcome(self.store.as_ref(), event, async |audit| {
            let project = self.authorized_project(principal, id, Permission::edit(ResourceKind::Project), false).await?;
            self.name_project(audit, &project).await;
            audit.details(serde_json::json!({ "from": project.name, "to": truncated(name) }));
            crate::tenancy::validate_name("project name", name, crate::tenancy::MAX_TENANT_NAME_CHARS)?;
            self.store.rename_project(id, name, self.clock.now(), audit.in_transaction()).await
        })
        .await
    }

    /// Deletes a project that holds no cluster, edge service or other resource. Needs `edit project`
    /// in its organization.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Conflict` while it holds resources, `Backend`.
    pub async fn delete_project(&self, principal: &Principal, id: ProjectId) -> Result<()> {
        let event = AuditEvent::new(principal, ResourceKind::Project, ops::PROJECT_DELETE).resource(id, None);
        audit_outcome(self.store.as_ref(), event, async |audit| {
            let project = self.authorized_project(principal, id, Permission::edit(ResourceKind::Project), true).await?;
            self.name_project(audit, &project).await;
            self.store.delete_project(id, audit.in_transaction()).await?;
            self.authz.scope_removed(&project.scope());
            Ok(())
        })
        .await
    }

    /// What a project holds. Needs `view project` in it.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn project_usage(&self, principal: &Principal, id: ProjectId) -> Result<ProjectUsage> {
        self.authorized_project(principal, id, Permission::view(ResourceKind::Project), false).await?;
        self.store.project_usage(id).await
    }

    /// Fills in the organization and project of the audit record of an operation on `project`.
    async fn name_project(&self, audit: &mut Audit, project: &Project) {
        let org_name = self.store.get_org(project.org).await.map(|o| o.name).unwrap_or_default();
        audit.org(project.org, &org_name).project(project.id, &project.name).resource(project.id, Some(&project.name));
    }
}

/// Caller-supplied text kept in audit records is cut to 200 characters.
fn truncated(s: &str) -> String {
    s.chars().take(200).collect()
}
