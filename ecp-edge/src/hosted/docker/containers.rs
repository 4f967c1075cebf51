//! The driver's container operations: finding, inspecting, creating, starting, stopping and
//! removing a service's containers on its node, their logs and status.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use ecp_core::EdgeServiceId;
use ecp_core::edge::EdgeService;
use ecp_hosting::docker::DockerClient;
use futures::StreamExt;

use super::spec::status_of;
use super::{DockerDriver, DockerDriverConfig, Found, LABEL_NODE, Node, docker_error, engine_status};
use crate::direct::DirectDriver;
use crate::error::{Error, Result};
use crate::hosted::{HostedInstance, HostedSpec, HostedStatus, LABEL_MANAGED_BY, LABEL_NAME, LABEL_SERVICE, MANAGED_BY, RunState};

#[cfg(doc)]
use crate::driver::EdgeDriver;

impl DockerDriver {
    /// A driver over `config`'s nodes (connected on first use).
    ///
    /// # Errors
    /// `InvalidInput` from the direct driver's settings.
    pub fn new(config: DockerDriverConfig) -> Result<Self> {
        let direct = DirectDriver::new(config.direct.clone())?;
        let default_node = config.nodes.first().map(|n| n.name.clone()).unwrap_or_default();
        let nodes = config
            .nodes
            .iter()
            .map(|n| (n.name.clone(), Node { name: n.name.clone(), client: DockerClient::new(n.address.clone(), n.timeout) }))
            .collect();
        Ok(DockerDriver { nodes, default_node, config, direct, specs: std::sync::Mutex::new(HashMap::new()) })
    }

    pub(super) fn specs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<EdgeServiceId, HostedSpec>> {
        // One insert or remove at a time: a poisoned map is still consistent.
        self.specs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The node names.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Registers the spec [`EdgeDriver::install`] uses for `service` (its image is replaced by
    /// the one given to `install`).
    pub fn set_spec(&self, service: EdgeServiceId, spec: HostedSpec) {
        self.specs_lock().insert(service, spec);
    }

    pub(super) fn node(&self, name: Option<&str>) -> Result<(&str, &Node)> {
        let name = name.unwrap_or(&self.default_node);
        self.nodes.get_key_value(name).map(|(k, v)| (k.as_str(), v)).ok_or_else(|| ecp_core::Error::not_found("docker node", name).into())
    }

    pub(super) async fn docker(&self, node: &str) -> Result<&Docker> {
        self.node(Some(node))?.1.docker().await
    }

    /// The containers of `service` on `node` (current and leftover candidates).
    async fn list_on(&self, node: &str, service: &EdgeService) -> Result<Vec<Found>> {
        let docker = self.docker(node).await?;
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_SERVICE}={}", service.id()), format!("{LABEL_MANAGED_BY}={MANAGED_BY}"), format!("{LABEL_NODE}={node}")],
        )]);
        let list = docker
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(|e| docker_error(node, "list containers", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c.names.unwrap_or_default().into_iter().next()?.trim_start_matches('/').to_owned();
                let final_name = c.labels.unwrap_or_default().remove(LABEL_NAME).unwrap_or_else(|| name.clone());
                Some(Found { node: node.to_owned(), id, name, final_name })
            })
            .collect())
    }

    /// Every container of `service` on every node.
    pub(super) async fn find_all(&self, service: &EdgeService) -> Result<Vec<Found>> {
        let mut all = Vec::new();
        for node in self.nodes.keys() {
            all.extend(self.list_on(node, service).await?);
        }
        Ok(all)
    }

    /// The container in service, or `NotFound`.
    pub(super) async fn current(&self, service: &EdgeService) -> Result<Found> {
        self.find_all(service)
            .await?
            .into_iter()
            .find(Found::is_current)
            .ok_or_else(|| ecp_core::Error::not_found("hosted instance of edge service", service.id()).into())
    }

    pub(super) async fn inspect(&self, node: &str, container: &str) -> Result<ContainerInspectResponse> {
        self.docker(node)
            .await?
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| docker_error(node, "inspect container", e))
    }

    pub(super) async fn remove(&self, node: &str, container: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker(node).await?.remove_container(container, Some(opts)).await.map_err(|e| docker_error(node, "remove container", e))
        {
            Err(e) if engine_status(&e) == Some(404) => Ok(()),
            other => other,
        }
    }

    pub(super) async fn start_container(&self, node: &str, container: &str) -> Result<()> {
        match self
            .docker(node)
            .await?
            .start_container(container, None::<StartContainerOptions>)
            .await
            .map_err(|e| docker_error(node, "start container", e))
        {
            Err(e) if engine_status(&e) == Some(304) => Ok(()),
            other => other,
        }
    }

    pub(super) async fn stop_container(&self, node: &str, container: &str) -> Result<()> {
        let t = i32::try_from(self.config.stop_timeout.as_secs()).unwrap_or(600);
        match self
            .docker(node)
            .await?
            .stop_container(container, Some(StopContainerOptions { t: Some(t), signal: None }))
            .await
            .map_err(|e| docker_error(node, "stop container", e))
        {
            Err(e) if engine_status(&e) == Some(304) => Ok(()),
            other => other,
        }
    }

    /// Creates a container, pulling its image when the engine does not have it.
    pub(super) async fn create(&self, node: &str, name: &str, body: ContainerCreateBody) -> Result<String> {
        let docker = self.docker(node).await?;
        let opts = || CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
        match docker.create_container(Some(opts()), body.clone()).await {
            Ok(r) => Ok(r.id),
            Err(e) => {
                let e = docker_error(node, "create container", e);
                if engine_status(&e) != Some(404) || !self.config.pull_missing {
                    return Err(e);
                }
                let image = body.image.clone().unwrap_or_default();
                self.pull(node, &image).await?;
                docker.create_container(Some(opts()), body).await.map(|r| r.id).map_err(|e| docker_error(node, "create container", e))
            }
        }
    }

    async fn pull(&self, node: &str, image: &str) -> Result<()> {
        let docker = self.docker(node).await?;
        let (from_image, tag) = split_image(image);
        let opts = CreateImageOptions { from_image: Some(from_image), tag, ..Default::default() };
        let mut stream = docker.create_image(Some(opts), None, None);
        while let Some(step) = stream.next().await {
            step.map_err(|e| docker_error(node, "pull image", e))?;
        }
        Ok(())
    }

    /// The last `tail` lines the service's instance printed (stdout and stderr, in order).
    ///
    /// # Errors
    /// `NotFound` when it is not installed; the engine's error.
    pub async fn logs(&self, service: &EdgeService, tail: usize) -> Result<Vec<String>> {
        let found = self.current(service).await?;
        self.logs_of(&found.node, &found.id, tail).await
    }

    pub(super) async fn logs_of(&self, node: &str, container: &str, tail: usize) -> Result<Vec<String>> {
        let docker = self.docker(node).await?;
        let opts = LogsOptions { stdout: true, stderr: true, tail: tail.to_string(), ..Default::default() };
        let mut stream = docker.logs(container, Some(opts));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| docker_error(node, "read logs", e))?;
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        Ok(lines[lines.len().saturating_sub(tail)..].to_vec())
    }

    /// The service's instance and its run state.
    ///
    /// # Errors
    /// `NotFound` when it is not installed; the engine's error.
    pub async fn status(&self, service: &EdgeService) -> Result<HostedStatus> {
        let found = self.current(service).await?;
        let inspect = self.inspect(&found.node, &found.id).await?;
        Ok(status_of(&found, &inspect))
    }

    /// The service's instance (where it is, its endpoint while it runs).
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub async fn instance(&self, service: &EdgeService) -> Result<HostedInstance> {
        Ok(self.status(service).await?.instance)
    }

    /// `service` as the direct driver must see it: at its instance's endpoint.
    pub(super) async fn reachable(&self, service: &EdgeService) -> Result<EdgeService> {
        let status = self.status(service).await?;
        match status.instance.endpoint {
            Some(endpoint) if status.state == RunState::Running => Ok(service.reached_at(endpoint)),
            _ => Err(Error::Service(ecp_edge_api::Error::Transport {
                endpoint: format!("hosted instance {}", status.instance.name),
                retryable: true,
                source: format!("the container is not running ({:?}, exit code {:?})", status.state, status.exit_code).into(),
            })),
        }
    }

    /// The spec `install` uses: the registered one, else the service endpoint's port (or the
    /// product's) on the default network; with `image`.
    pub(super) fn spec_for(&self, service: &EdgeService, image: &str) -> Result<HostedSpec> {
        let mut spec = match self.specs_lock().get(&service.id()) {
            Some(s) => s.clone(),
            None => {
                let port = url::Url::parse(service.endpoint()).ok().and_then(|u| u.port_or_known_default()).unwrap_or(80);
                let mut b = HostedSpec::builder(image, port);
                if let Some(n) = &self.config.default_network {
                    b = b.network(n.clone());
                }
                b.build()?
            }
        };
        spec.image = image.to_owned();
        spec.validate()?;
        Ok(spec)
    }

    /// Removes every container of `service` on every node; nothing to remove is fine.
    ///
    /// # Errors
    /// The engine's error.
    pub async fn remove_all(&self, service: &EdgeService) -> Result<usize> {
        let found = self.find_all(service).await?;
        for f in &found {
            self.remove(&f.node, &f.id).await?;
        }
        Ok(found.len())
    }
}

/// `repo[:tag]` split for a pull (a digest reference is pulled whole).
pub(super) fn split_image(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), Some(tag.to_owned())),
        _ => (image.to_owned(), Some("latest".to_owned())),
    }
}
