#![cfg_attr(not(any(feature = "direct", feature = "mqtt")), allow(dead_code))]
//! What the managed drivers share: one [`ServiceClient`] per service over any
//! [`EdgeTransport`], rebuilt when the service changes. The direct driver gives the clients HTTP
//! transports; the agent driver gives them tunnels through an edge agent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ecp_core::EdgeServiceId;
use ecp_core::edge::{AgentId, Credentials, EdgeKind, EdgeService};
use ecp_edge_api::{EdgeTransport, ServiceClient};

use crate::error::Result;

struct Cached {
    endpoint: String,
    kind: EdgeKind,
    credentials: Credentials,
    agent: Option<AgentId>,
    client: ServiceClient,
}

/// One client per service, rebuilt when its endpoint, kind, credentials or agent change.
#[derive(Default)]
pub(crate) struct Clients {
    map: Mutex<HashMap<EdgeServiceId, Cached>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("cached", &self.len()).finish()
    }
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EdgeServiceId, Cached>> {
        // A panic while holding the map cannot leave it inconsistent (each operation is one
        // insert or remove), so a poisoned lock is used as is.
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many services have a client.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Drops a service's client.
    pub(crate) fn forget(&self, id: EdgeServiceId) {
        self.lock().remove(&id);
    }

    /// The service's client, made over `transport()` when missing or stale.
    pub(crate) fn get(&self, service: &EdgeService, transport: impl FnOnce() -> Result<Arc<dyn EdgeTransport>>) -> Result<ServiceClient> {
        let mut clients = self.lock();
        if let Some(c) = clients.get(&service.id())
            && c.endpoint == service.endpoint()
            && c.kind == service.kind()
            && &c.credentials == service.credentials()
            && c.agent.as_ref() == service.agent()
        {
            return Ok(c.client.clone());
        }
        let client = ServiceClient::new(service.kind(), transport()?, service.credentials().clone())?;
        clients.insert(
            service.id(),
            Cached {
                endpoint: service.endpoint().to_owned(),
                kind: service.kind(),
                credentials: service.credentials().clone(),
                agent: service.agent().cloned(),
                client: client.clone(),
            },
        );
        Ok(client)
    }
}
