//! The `docker` backend: an EMQX cluster as containers on one Docker host, on a user-defined bridge
//! network of its own, discovering each other through static seeds.
//!
//! The engine is an [`ecp_hosting::docker::DockerAddress`], connected (and the Engine API version
//! negotiated) on first use; what it refuses or fails is [`Error::Hosting`].
//!
//! For a cluster whose [`ClusterRef::resource_name`] is `R`:
//!
//! | thing | name | what |
//! |---|---|---|
//! | network | `R` | a user-defined bridge; containers reach each other by name |
//! | core node `i` | `R-core-i` | `EMQX_NODE__NAME=emqx@R-core-i`, `EMQX_NODE__ROLE=core` |
//! | replicant node `i` | `R-replicant-i` | `EMQX_NODE__ROLE=replicant` |
//!
//! Every node gets `EMQX_CLUSTER__DISCOVERY_STRATEGY=static` with the core nodes as seeds, one
//! cookie per cluster, the listener and dashboard binds of the spec, CPU and memory limits, the
//! restart policy `unless-stopped`, and the labels `io.ecp.managed-by=ecp-rs`, `io.ecp.cluster`,
//! `io.ecp.project`, `io.ecp.role`, `io.ecp.index`. The spec's API key goes into
//! `/opt/emqx/etc/ecp_api_keys` (`api_key.bootstrap_file`), its extra HOCON into
//! `/opt/emqx/etc/base.hocon`, both copied into the container before it starts (never in its env).
//!
//! | operation | how |
//! |---|---|
//! | create | network, then every node; existing nodes are kept (a retried create converges) |
//! | scale | new nodes cloned from an existing one; extra nodes stopped and removed, highest index first |
//! | resize | `docker update` of every node (live) |
//! | set_network | `ClusterIP`: nothing published; `NodePort`: every listener and the dashboard published on an ephemeral host port of each node (rolling re-creation); `LoadBalancer`: `Unsupported` |
//! | set_image | rolling re-creation, replicants first; a node that does not run within the timeout is re-created from the old image and the change stops with an error |
//! | stop / start | every node, replicants first / cores first |
//! | delete | every node and the network; a cluster already gone is fine |
//!
//! State: no node → `NotFound`; every node running → `Running`; none running and all exited →
//! `Stopped`; some created or restarting → `Updating` (`Creating` if none ever ran); a node exited or
//! dead beside running ones → `Error` naming it.

use std::fmt;

use async_trait::async_trait;
use bollard::models::{ContainerSummaryStateEnum, ContainerUpdateBody};
use ecp_hosting::docker::{DockerClient, error as engine_error};

use crate::driver::{ClusterDriver, ClusterOperation, ClusterRef, unsupported};
use crate::error::{Error, Result};
use crate::model::{ClusterBackend, ClusterSpec, ClusterState, ClusterStatus, Listener, NetworkMode, NodeSummary, ReplicaCount, Resources};

/// The label every container and network of this backend carries.
pub const LABEL_MANAGED_BY: &str = "io.ecp.managed-by";
/// The label naming the cluster id.
pub const LABEL_CLUSTER: &str = "io.ecp.cluster";
/// The label naming the project id.
pub const LABEL_PROJECT: &str = "io.ecp.project";
/// The label naming a node's role (`core`, `replicant`).
pub const LABEL_ROLE: &str = "io.ecp.role";
/// The label naming a node's index within its role.
pub const LABEL_INDEX: &str = "io.ecp.index";

mod config;
mod engine;
mod plan;
#[cfg(test)]
mod tests;

pub use config::{DockerClusterConfig, DockerClusterConfigBuilder};
use plan::{Node, Role, Template, cookie, files_of, template_from, template_of};

pub(super) const MANAGED_BY: &str = "ecp-rs";
/// Where the bootstrap files go inside a node.
pub const FILES_DIR: &str = "/opt/emqx/etc";
pub(super) const API_KEYS_FILE: &str = "ecp_api_keys";
pub(super) const BASE_HOCON: &str = "base.hocon";

/// EMQX clusters as containers on a Docker host.
pub struct DockerClusterDriver {
    client: DockerClient,
    config: DockerClusterConfig,
}

impl fmt::Debug for DockerClusterDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerClusterDriver").field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait]
impl ClusterDriver for DockerClusterDriver {
    fn backend(&self) -> ClusterBackend {
        ClusterBackend::Docker
    }

    async fn state(&self, cluster: &ClusterRef) -> Result<ClusterState> {
        let nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        let running = |n: &&Node| n.state == ContainerSummaryStateEnum::RUNNING;
        let count = |role: Role| ReplicaCount {
            desired: u32::try_from(nodes.iter().filter(|n| n.role == role).count()).unwrap_or(u32::MAX),
            ready: u32::try_from(nodes.iter().filter(|n| n.role == role).filter(running).count()).unwrap_or(u32::MAX),
        };
        let broken: Vec<&str> = nodes
            .iter()
            .filter(|n| matches!(n.state, ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD))
            .map(|n| n.name.as_str())
            .collect();
        let pending = nodes.iter().any(|n| matches!(n.state, ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::RESTARTING));
        let up = nodes.iter().filter(running).count();
        let status = if up == nodes.len() {
            ClusterStatus::Running
        } else if up == 0 && broken.len() == nodes.len() {
            ClusterStatus::Stopped
        } else if nodes.iter().any(|n| n.state == ContainerSummaryStateEnum::STOPPING) {
            ClusterStatus::Stopping
        } else if !broken.is_empty() && up > 0 {
            ClusterStatus::Error(format!("nodes not running: {}", broken.join(", ")))
        } else if pending && up == 0 && broken.is_empty() {
            ClusterStatus::Creating
        } else {
            ClusterStatus::Updating
        };
        Ok(ClusterState {
            status,
            core: count(Role::Core),
            replicant: count(Role::Replicant),
            image: nodes.first().and_then(|n| n.image.clone()),
            nodes: nodes
                .iter()
                .map(|n| NodeSummary {
                    name: format!("emqx@{}", n.name),
                    role: n.role.as_str().into(),
                    running: n.state == ContainerSummaryStateEnum::RUNNING,
                    version: n.image.as_deref().and_then(crate::model::image_tag).map(str::to_owned),
                })
                .collect(),
        })
    }

    async fn create(&self, cluster: &ClusterRef, spec: &ClusterSpec) -> Result<()> {
        // A retried create keeps the cookie of the nodes already there.
        let existing = self.nodes(cluster).await?;
        let cookie = match existing.first() {
            Some(n) => template_from(&self.inspect(&n.name).await?, spec.core_replicas)?.cookie,
            None => cookie()?,
        };
        let template = template_of(spec, cookie)?;
        let files = files_of(spec)?;
        self.ensure_network(cluster).await?;
        for i in 0..spec.core_replicas {
            self.create_node(cluster, &template, Role::Core, i, files.as_ref()).await?;
        }
        for i in 0..spec.replicant_replicas {
            self.create_node(cluster, &template, Role::Replicant, i, files.as_ref()).await?;
        }
        Ok(())
    }

    async fn scale(&self, cluster: &ClusterRef, core: u32, replicant: u32) -> Result<()> {
        if core == 0 {
            return Err(Error::invalid("core_replicas", "a cluster needs at least one core node"));
        }
        let (nodes, mut template, files) = self.current(cluster).await?;
        template.core_count_for_seeds = core;
        for (role, want) in [(Role::Core, core), (Role::Replicant, replicant)] {
            for i in 0..want {
                if !nodes.iter().any(|n| n.role == role && n.index == i) {
                    self.create_node(cluster, &template, role, i, files.as_ref()).await?;
                }
            }
        }
        let mut extra: Vec<&Node> = nodes.iter().filter(|n| n.index >= if n.role == Role::Core { core } else { replicant }).collect();
        extra.sort_by_key(|n| (std::cmp::Reverse(n.role), std::cmp::Reverse(n.index)));
        for n in extra {
            self.stop_node(&n.name).await?;
            self.remove(&n.name).await?;
        }
        Ok(())
    }

    async fn resize(&self, cluster: &ClusterRef, resources: Resources) -> Result<()> {
        let nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        let memory = resources.memory_mib.map(|m| i64::from(m) * 1024 * 1024);
        let update = ContainerUpdateBody {
            nano_cpus: Some(resources.cpu_millis.map_or(0, |m| i64::from(m) * 1_000_000)),
            memory: Some(memory.unwrap_or(0)),
            // Swap as large as the memory (no swap beyond it); -1 (unlimited) when memory is.
            memory_swap: Some(memory.unwrap_or(-1)),
            ..Default::default()
        };
        for n in &nodes {
            self.docker().await?.update_container(&n.name, update.clone()).await.map_err(|e| engine_error("update container", e))?;
        }
        Ok(())
    }

    async fn set_network(&self, cluster: &ClusterRef, mode: NetworkMode, listeners: &[Listener]) -> Result<()> {
        if mode == NetworkMode::LoadBalancer {
            return Err(unsupported(ClusterOperation::SetNetwork, ClusterBackend::Docker));
        }
        let (nodes, old, files) = self.current(cluster).await?;
        let new = Template { publish: mode == NetworkMode::NodePort, listeners: listeners.to_vec(), ..old.clone() };
        if new == old {
            return Ok(());
        }
        self.roll(cluster, &nodes, &old, &new, files.as_ref()).await
    }

    async fn set_image(&self, cluster: &ClusterRef, image: &str) -> Result<()> {
        crate::model::validate_image(image)?;
        let (nodes, old, files) = self.current(cluster).await?;
        if old.image == image && nodes.iter().all(|n| n.state == ContainerSummaryStateEnum::RUNNING) {
            return Ok(());
        }
        let new = Template { image: image.to_owned(), ..old.clone() };
        self.roll(cluster, &nodes, &old, &new, files.as_ref()).await
    }

    async fn stop(&self, cluster: &ClusterRef) -> Result<()> {
        let mut nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        nodes.sort_by_key(|n| (std::cmp::Reverse(n.role), std::cmp::Reverse(n.index)));
        for n in &nodes {
            self.stop_node(&n.name).await?;
        }
        Ok(())
    }

    async fn start(&self, cluster: &ClusterRef) -> Result<()> {
        let nodes = self.nodes(cluster).await?;
        if nodes.is_empty() {
            return Err(Error::Core(ecp_core::Error::not_found("cluster", cluster.id)));
        }
        for n in &nodes {
            self.start_node(&n.name).await?;
        }
        Ok(())
    }

    async fn delete(&self, cluster: &ClusterRef) -> Result<()> {
        for n in self.nodes(cluster).await? {
            self.remove(&n.name).await?;
        }
        for id in self.networks(cluster).await? {
            match self.docker().await?.remove_network(&id).await.map_err(|e| engine_error("remove network", e)) {
                Err(e) if e.status() == Some(404) => {}
                other => other?,
            }
        }
        Ok(())
    }
}
