//! Agents' broker credentials and the broker's access control.

use ecp_core::edge::{Agent, AgentFilter, AgentId, ClaimCode};
use ecp_core::scoped::audited;
use ecp_core::{Page, PageRequest, Scope};

use super::AgentHub;
use crate::error::Result;

impl AgentHub {
    /// Issues new broker credentials to `agent` (creating it, unmanaged, when it was never seen):
    /// its broker secret and, while it is unmanaged, a claim code that manages it into a project
    /// once ([`ProjectFleet::claim_agent`](crate::fleet::ProjectFleet::claim_agent)). Both are shown this
    /// once: only the secret's mosquitto hash and the code's digest are stored. Any previous
    /// secret stops working once the broker's files are regenerated
    /// ([`broker_acl`](Self::broker_acl)) and reloaded; any previous claim code stops at once.
    /// Needs `edit system settings` at system scope; audited.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn issue_credentials(
        &self,
        authz: &dyn ecp_core::Authorizer,
        principal: &ecp_core::Principal,
        agent: &AgentId,
    ) -> Result<AgentCredentials> {
        let event = credentials_event(principal, agent, "agent.credentials.issue");
        let store = self.inner.store.as_ref();
        audited(store, authz, principal, &Scope::System, system_settings(), event, async |audit| {
            let secret = ecp_agent_proto::acl::AgentSecret::generate()?;
            let hash = ecp_agent_proto::acl::mosquitto_hash(secret.as_secret())?;
            let claim = ClaimCode::generate()?;
            let now = self.inner.clock.now();
            store.set_agent_secret(agent, Some(&hash), Some(&claim.digest()), now, audit.in_transaction()).await?;
            let claim_code = store.get_agent(agent).await?.claimable.then_some(claim);
            Ok(AgentCredentials { secret, claim_code })
        })
        .await
    }

    /// The agents no project manages, for whoever hands them out. Needs `view system settings`
    /// at system scope: an agent's id and hello say where it runs, and which agents exist is no
    /// tenant's business.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput` for a bad page, `Backend`.
    pub async fn unmanaged_agents(
        &self,
        authz: &dyn ecp_core::Authorizer,
        principal: &ecp_core::Principal,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let perm = ecp_core::Permission::view(ecp_core::ResourceKind::SystemSettings);
        authz.check(principal, perm, &Scope::System).map_err(|d| d.into_error(principal, perm, &Scope::System))?;
        let filter = AgentFilter { managed: Some(false), ..AgentFilter::default() };
        Ok(self.inner.store.list_agents(&filter, page).await?)
    }

    /// Revokes `agent`'s broker credentials (effective once the broker's files are regenerated
    /// and reloaded) and its unused claim code (at once). Needs `edit system settings` at system scope; audited.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn revoke_credentials(
        &self,
        authz: &dyn ecp_core::Authorizer,
        principal: &ecp_core::Principal,
        agent: &AgentId,
    ) -> Result<()> {
        let event = credentials_event(principal, agent, "agent.credentials.revoke");
        let store = self.inner.store.as_ref();
        audited(store, authz, principal, &Scope::System, system_settings(), event, async |audit| {
            Ok(store.set_agent_secret(agent, None, None, self.inner.clock.now(), audit.in_transaction()).await?)
        })
        .await
    }

    /// The broker's access control for every agent with credentials, plus the hub's own user
    /// (`hub_user` with its mosquitto hash): write it with [`BrokerAcl::write_files`] and reload
    /// the broker.
    ///
    /// [`BrokerAcl::write_files`]: ecp_agent_proto::acl::BrokerAcl::write_files
    ///
    /// # Errors
    /// `InvalidInput` for a bad hub user, `Backend`.
    pub async fn broker_acl(&self, hub_user: &str, hub_hash: &str) -> Result<ecp_agent_proto::acl::BrokerAcl> {
        let agents = self.inner.store.agent_secrets().await?;
        Ok(ecp_agent_proto::acl::BrokerAcl::new(self.inner.config.topics.clone(), hub_user, hub_hash, agents)?)
    }
}

fn credentials_event(principal: &ecp_core::Principal, agent: &AgentId, op: &'static str) -> ecp_core::AuditEvent {
    ecp_core::AuditEvent::new(principal, ecp_core::ResourceKind::SystemSettings, ecp_core::Operation::from_static(op)).resource(agent, None)
}

/// What issuing and revoking agent credentials needs: `edit system settings`, at system scope.
fn system_settings() -> ecp_core::Permission {
    ecp_core::Permission::edit(ecp_core::ResourceKind::SystemSettings)
}

/// What [`AgentHub::issue_credentials`] gives, once: hand both to whoever installs the agent.
#[derive(Debug)]
#[non_exhaustive]
pub struct AgentCredentials {
    /// The agent's broker password (its MQTT user name is its id).
    pub secret: ecp_agent_proto::acl::AgentSecret,
    /// The code that manages the agent into a project, once; `None` when the agent is managed
    /// already.
    pub claim_code: Option<ClaimCode>,
}
