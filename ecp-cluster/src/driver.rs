//! The [`ClusterDriver`] trait: what the platform can do to an EMQX cluster, per backend.
//!
//! | operation | kubernetes | docker | existing |
//! |---|---|---|---|
//! | create, delete | the `EMQX` custom resource | containers on a user network | `Unsupported` (register / deregister instead) |
//! | state | the resource's conditions | the containers | `/status` and `/api/v5/nodes` |
//! | scale, resize, network, image, stop, start | patches of the resource | new containers | `Unsupported` |
//!
//! A backend answers what it cannot do with `Unsupported { operation, backend }`; the defaults of
//! this trait do exactly that.

use std::fmt;

use async_trait::async_trait;
use ecp_core::{ClusterId, ProjectId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{ApiKey, ClusterBackend, ClusterSpec, ClusterState, Listener, NetworkMode, Resources};

/// What can be done to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterOperation {
    /// Create it.
    Create,
    /// Read its state.
    State,
    /// Change its core and replicant node counts.
    Scale,
    /// Change each node's CPU and memory.
    Resize,
    /// Change how its listeners and dashboard are exposed.
    SetNetwork,
    /// Upgrade or downgrade it to another image.
    SetImage,
    /// Stop it.
    Stop,
    /// Start it again.
    Start,
    /// Delete it.
    Delete,
    /// Push its connection limit to the cluster.
    SetConnectionLimit,
}

impl ClusterOperation {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClusterOperation::Create => "create",
            ClusterOperation::State => "state",
            ClusterOperation::Scale => "scale",
            ClusterOperation::Resize => "resize",
            ClusterOperation::SetNetwork => "set_network",
            ClusterOperation::SetImage => "set_image",
            ClusterOperation::Stop => "stop",
            ClusterOperation::Start => "start",
            ClusterOperation::Delete => "delete",
            ClusterOperation::SetConnectionLimit => "set_connection_limit",
        }
    }
}

/// How the platform reaches a cluster's REST API (port 18083, `/api/v5`) with an API key.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterApi {
    /// The base URL (`http://10.0.0.1:18083`), without `/api/v5`.
    pub base_url: String,
    /// The API key (HTTP Basic: user = key, password = secret).
    pub key: ApiKey,
}

/// The cluster a driver acts on: its id, project and name, and its REST API where known.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRef {
    /// Its id.
    pub id: ClusterId,
    /// The project holding it.
    pub project: ProjectId,
    /// Its display name.
    pub name: String,
    /// Its REST API, if the platform can reach it.
    pub api: Option<ClusterApi>,
}

impl ClusterRef {
    /// A cluster without a known REST API.
    pub fn new(id: ClusterId, project: ProjectId, name: impl Into<String>) -> Self {
        Self { id, project, name: name.into(), api: None }
    }

    /// With its REST API.
    #[must_use]
    pub fn with_api(mut self, api: ClusterApi) -> Self {
        self.api = Some(api);
        self
    }

    /// The name of what a backend creates for it: `ecp-` and the id's 32 hex digits (a valid
    /// Kubernetes object name and Docker container name prefix, unique, stable across renames).
    pub fn resource_name(&self) -> String {
        format!("ecp-{}", self.id.as_uuid().simple())
    }
}

/// What the platform does to EMQX clusters of one backend.
#[async_trait]
pub trait ClusterDriver: Send + Sync + fmt::Debug + 'static {
    /// The backend.
    fn backend(&self) -> ClusterBackend;

    /// Reads the cluster's state.
    ///
    /// # Errors
    /// `NotFound` when the backend has no such cluster; the backend's errors.
    async fn state(&self, cluster: &ClusterRef) -> Result<ClusterState>;

    /// Creates the cluster. Creating one that exists with the same spec succeeds (so a retried task
    /// converges).
    ///
    /// # Errors
    /// `Unsupported` unless hosted; the backend's errors.
    async fn create(&self, cluster: &ClusterRef, spec: &ClusterSpec) -> Result<()> {
        let _ = (cluster, spec);
        Err(unsupported(ClusterOperation::Create, self.backend()))
    }

    /// Sets the core and replicant node counts (horizontal scaling).
    ///
    /// # Errors
    /// `Unsupported` unless hosted; the backend's errors.
    async fn scale(&self, cluster: &ClusterRef, core: u32, replicant: u32) -> Result<()> {
        let _ = (cluster, core, replicant);
        Err(unsupported(ClusterOperation::Scale, self.backend()))
    }

    /// Sets each node's CPU and memory (vertical scaling).
    ///
    /// # Errors
    /// `Unsupported` unless hosted; the backend's errors.
    async fn resize(&self, cluster: &ClusterRef, resources: Resources) -> Result<()> {
        let _ = (cluster, resources);
        Err(unsupported(ClusterOperation::Resize, self.backend()))
    }

    /// Sets how the listeners and the dashboard are exposed.
    ///
    /// # Errors
    /// `Unsupported` unless hosted (or for a mode the backend has not); the backend's errors.
    async fn set_network(&self, cluster: &ClusterRef, mode: NetworkMode, listeners: &[Listener]) -> Result<()> {
        let _ = (cluster, mode, listeners);
        Err(unsupported(ClusterOperation::SetNetwork, self.backend()))
    }

    /// Upgrades or downgrades the cluster to `image`.
    ///
    /// # Errors
    /// `Unsupported` unless hosted; the backend's errors.
    async fn set_image(&self, cluster: &ClusterRef, image: &str) -> Result<()> {
        let _ = (cluster, image);
        Err(unsupported(ClusterOperation::SetImage, self.backend()))
    }

    /// Stops every node, keeping what is needed to start again.
    ///
    /// # Errors
    /// `Unsupported` unless hosted; the backend's errors.
    async fn stop(&self, cluster: &ClusterRef) -> Result<()> {
        let _ = cluster;
        Err(unsupported(ClusterOperation::Stop, self.backend()))
    }

    /// Starts a stopped cluster as it was.
    ///
    /// # Errors
    /// `Unsupported` unless hosted; the backend's errors.
    async fn start(&self, cluster: &ClusterRef) -> Result<()> {
        let _ = cluster;
        Err(unsupported(ClusterOperation::Start, self.backend()))
    }

    /// Pushes the cluster's connection limit (its share of the license's pool) to the cluster
    /// itself: EMQX's dynamic license setting on onboarded clusters. Backends that cannot answer
    /// `Unsupported`, and the limit is then the platform's accounting only.
    ///
    /// # Errors
    /// `Unsupported`; the backend's errors (an EMQX that refuses the setting: `Incompatible`).
    async fn set_connection_limit(&self, cluster: &ClusterRef, limit: u64) -> Result<()> {
        let _ = (cluster, limit);
        Err(unsupported(ClusterOperation::SetConnectionLimit, self.backend()))
    }

    /// Deletes the cluster and everything the backend created for it. Deleting one that is gone
    /// succeeds.
    ///
    /// # Errors
    /// `Unsupported` unless hosted; the backend's errors.
    async fn delete(&self, cluster: &ClusterRef) -> Result<()> {
        let _ = cluster;
        Err(unsupported(ClusterOperation::Delete, self.backend()))
    }
}

/// The `Unsupported` error of `op` on `backend`.
pub fn unsupported(op: ClusterOperation, backend: ClusterBackend) -> Error {
    Error::unsupported(op.as_str(), backend.as_str())
}
