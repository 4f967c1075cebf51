//! [`DockerDriver`]: hosted edge services as containers on Docker hosts (feature `docker`).
//!
//! Each node ([`DockerNode`]) is a Docker Engine at a [`DockerAddress`] of ecp-hosting: its local
//! socket, plain TCP, or TCP with TLS (client certificate; rustls with aws-lc-rs). It is connected
//! and the API version negotiated with each engine on first use, so engines from API 1.41 (Docker
//! 20.10) on work. What an engine refuses or fails is [`Error::Hosting`], its operation naming the
//! node (`node edge-1: create container`).
//!
//! | operation | what happens |
//! |---|---|
//! | install | create a container from the [`HostedSpec`] (env, args, port, restart policy, network, labels `io.ecp.project`, `io.ecp.service`, `io.ecp.managed-by=ecp-rs`), start it, wait until it answers its probe; a container that fails is removed |
//! | start, stop, restart | the container's |
//! | upgrade | create the new container under `<name>-next` with the same spec and the new image, start it, check it (it keeps running and answers its probe within the health timeout), then stop and remove the old one and rename the new one; a new container that fails a check is removed and the old one left (or put back) in service: [`Error::HostedCheckFailed`] names the check |
//! | uninstall | remove the container (and any leftover `-next`); idempotent |
//! | probe, info sync, configuration | the [`DirectDriver`]'s, against `http://<container ip>:<port>` on the spec's network |
//!
//! The driver keeps no state that matters: the spec lives in the container's labels and config,
//! and containers are found by their labels (also `io.ecp.node`, so that several nodes may share
//! an engine), so a new process manages what an old one installed.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use ecp_core::EdgeServiceId;
use ecp_hosting::docker::DockerClient;

use super::HostedSpec;
use crate::direct::DirectDriver;
use crate::error::{Error, Result};

#[cfg(doc)]
use ecp_hosting::docker::DockerAddress;

mod config;
mod containers;
mod edge_driver;
mod install;
mod spec;
#[cfg(test)]
mod tests;

pub use config::{DockerDriverConfig, DockerDriverConfigBuilder, DockerNode, DockerNodeBuilder};

/// The label naming the node an instance was installed on (nodes may share an engine).
pub const LABEL_NODE: &str = "io.ecp.node";

/// A node and its engine's client, connected (and the API version negotiated) on first use.
struct Node {
    name: String,
    client: DockerClient,
}

impl Node {
    async fn docker(&self) -> Result<&Docker> {
        Ok(self.client.get().await.map_err(|e| e.context(format_args!("node {}", self.name)))?)
    }
}

/// An Engine API error of `node` as [`Error::Hosting`], its operation naming the node.
fn docker_error(node: &str, op: &'static str, e: bollard::errors::Error) -> Error {
    Error::Hosting(ecp_hosting::docker::error(op, e).context(format_args!("node {node}")))
}

/// The HTTP status of an engine's answer, if `e` is one.
fn engine_status(e: &Error) -> Option<u16> {
    match e {
        Error::Hosting(h) => h.status(),
        _ => None,
    }
}

/// A container of a service found on a node.
#[derive(Debug, Clone)]
struct Found {
    node: String,
    id: String,
    /// Its current name.
    name: String,
    /// The name it has once in service (`io.ecp.name`).
    final_name: String,
}

impl Found {
    fn is_current(&self) -> bool {
        self.name == self.final_name
    }
}

/// The driver of hosted services on Docker hosts; see the [module docs](self).
pub struct DockerDriver {
    nodes: BTreeMap<String, Node>,
    /// The first node, for specs that name none.
    default_node: String,
    config: DockerDriverConfig,
    direct: DirectDriver,
    specs: std::sync::Mutex<HashMap<EdgeServiceId, HostedSpec>>,
}

impl std::fmt::Debug for DockerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerDriver")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("health_timeout", &self.config.health_timeout)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}
