//! The edge agents of a project: list, claim or manage into the project, transfer, unmanage,
//! delete.

use ecp_core::access::{Permission, ResourceKind};
use ecp_core::edge::{Agent, AgentFilter, AgentId, ClaimCode};
use ecp_core::{Page, PageRequest};

use super::{ProjectFleet, ops};
use crate::error::Result;

impl ProjectFleet {
    /// The agents managed in this project. Needs `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn agents(&self, page: &PageRequest) -> Result<Page<Agent>> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        let filter = AgentFilter { project: Some(self.project.id()), ..AgentFilter::default() };
        Ok(self.store().list_agents(&filter, page).await?)
    }

    /// Renames an agent of this project; or, for a principal that may `edit system settings`
    /// (who hands agents out), manages an unmanaged agent into this project without its claim
    /// code. Anyone else proves they own an unmanaged agent with
    /// [`claim_agent`](Self::claim_agent). Needs `edit edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound` for an unknown agent, one managed in another project
    /// (transfer it from there), or an unmanaged one for a principal that may not hand agents
    /// out, alike; `InvalidInput` for a bad name, `Backend`.
    pub async fn manage_agent(&self, id: &AgentId, name: &str) -> Result<Agent> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::AGENT_MANAGE).resource(id, Some(name));
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                let agent = self.store().get_agent(id).await?;
                let hands_out = || {
                    let perm = Permission::edit(ResourceKind::SystemSettings);
                    self.scope.authorizer().check(self.principal(), perm, &ecp_core::Scope::System).is_ok()
                };
                let allowed = match agent.project {
                    Some(p) => p == self.project.id(),
                    None => hands_out(),
                };
                if !allowed {
                    return Err(ecp_core::Error::not_found("agent", id).into());
                }
                Ok(self.store().manage_agent(id, self.project.id(), name, audit.in_transaction()).await?)
            })
            .await
    }

    /// Manages an unmanaged agent into this project under `name`, proving ownership with the
    /// claim code issued with its credentials
    /// ([`AgentHub::issue_credentials`](crate::agent::AgentHub::issue_credentials)); the code is
    /// used up. Needs `edit edge service`; audited, refusals too.
    ///
    /// # Errors
    /// `PermissionDenied`; `NotFound` alike for an unknown agent, a managed one, and a wrong or
    /// used code; `InvalidInput` for a bad name, `Backend`.
    pub async fn claim_agent(&self, id: &AgentId, name: &str, code: &ClaimCode) -> Result<Agent> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::AGENT_CLAIM).resource(id, Some(name));
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                Ok(self.store().claim_agent(id, self.project.id(), name, &code.digest(), audit.in_transaction()).await?)
            })
            .await
    }

    /// Transfers an agent of this project to the project of `to`. Needs `edit edge service` in
    /// both, for *this* handle's principal (whoever `to` was made for); refused while services of
    /// this project are reached through the agent. A destination this principal cannot see at
    /// all is not found, and its names stay out of the audit record.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict`, `Backend`.
    pub async fn transfer_agent(&self, id: &AgentId, to: &ProjectFleet) -> Result<Agent> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::AGENT_TRANSFER).resource(id, None);
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                let (principal, perm, dest) = (self.principal(), Permission::edit(ResourceKind::EdgeService), to.project.scope());
                let authz = self.scope.authorizer();
                if !authz.has_access(principal, &dest) {
                    return Err(ecp_core::Error::not_found("project", to.project.id()).into());
                }
                authz.check(principal, perm, &dest).map_err(|d| d.into_error(principal, perm, &dest))?;
                audit.details(serde_json::json!({
                    "to_org": to.project.org(), "to_project": to.project.id(), "to_project_name": to.project.name(),
                }));
                let agent = self.own_agent(id).await?;
                let name = agent.name.unwrap_or_else(|| id.to_string());
                Ok(self.store().manage_agent(id, to.project.id(), &name, audit.in_transaction()).await?)
            })
            .await
    }

    /// Makes an agent of this project unmanaged. Needs `edit edge service`; refused while
    /// services are reached through it.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict`, `Backend`.
    pub async fn unmanage_agent(&self, id: &AgentId) -> Result<()> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::AGENT_UNMANAGE).resource(id, None);
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                self.own_agent(id).await?;
                Ok(self.store().unmanage_agent(id, audit.in_transaction()).await?)
            })
            .await
    }

    /// Deletes an agent of this project. Needs `edit edge service`; refused while services are
    /// reached through it.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict`, `Backend`.
    pub async fn delete_agent(&self, id: &AgentId) -> Result<()> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::AGENT_DELETE).resource(id, None);
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                self.own_agent(id).await?;
                Ok(self.store().delete_agent(id, audit.in_transaction()).await?)
            })
            .await
    }
}
