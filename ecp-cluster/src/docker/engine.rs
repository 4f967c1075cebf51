//! The driver's calls to the engine: nodes and the network, created, inspected, changed, removed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, InspectContainerOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, StartContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use ecp_hosting::Backend;
use ecp_hosting::docker::{DockerClient, error as engine_error};
use futures::StreamExt;

use crate::driver::ClusterRef;
use crate::error::{Error, Result};

use super::plan::{Node, Role, Template, node_body, node_name, reroot, tar_of, template_from, untar};
use super::{
    API_KEYS_FILE, BASE_HOCON, DockerClusterConfig, DockerClusterDriver, FILES_DIR, LABEL_CLUSTER, LABEL_INDEX, LABEL_MANAGED_BY,
    LABEL_PROJECT, LABEL_ROLE, MANAGED_BY,
};

impl DockerClusterDriver {
    /// A driver for the engine of `config`, connected (and the Engine API version negotiated) on
    /// first use.
    ///
    /// # Errors
    /// `InvalidInput` for an empty address or file path.
    pub fn new(config: DockerClusterConfig) -> Result<Self> {
        config.address.validate()?;
        let client = DockerClient::new(config.address.clone(), config.request_timeout);
        Ok(Self { client, config })
    }

    /// The engine's client.
    pub(super) async fn docker(&self) -> Result<&Docker> {
        Ok(self.client.get().await?)
    }

    pub(super) async fn nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_CLUSTER}={}", cluster.id), format!("{LABEL_MANAGED_BY}={MANAGED_BY}")],
        )]);
        let list = self
            .docker()
            .await?
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(|e| engine_error("list containers", e))?;
        let mut nodes: Vec<Node> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let role = match labels.get(LABEL_ROLE).map(String::as_str) {
                    Some("core") => Role::Core,
                    Some("replicant") => Role::Replicant,
                    _ => return None,
                };
                let index = labels.get(LABEL_INDEX)?.parse().ok()?;
                let name = c.names?.into_iter().next()?.trim_start_matches('/').to_owned();
                Some(Node { name, role, index, state: c.state.unwrap_or(ContainerSummaryStateEnum::EMPTY), image: c.image })
            })
            .collect();
        nodes.sort_by_key(|n| (n.role, n.index));
        Ok(nodes)
    }

    pub(super) async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse> {
        Ok(self
            .docker()
            .await?
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| engine_error("inspect container", e))?)
    }

    /// The ids of the cluster's networks (the engine allows several with one name; there should
    /// be one).
    pub(super) async fn networks(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_CLUSTER}={}", cluster.id)])]);
        let list = self
            .docker()
            .await?
            .list_networks(Some(ListNetworksOptions { filters: Some(filters) }))
            .await
            .map_err(|e| engine_error("list networks", e))?;
        Ok(list.into_iter().filter_map(|n| n.id).collect())
    }

    pub(super) async fn ensure_network(&self, cluster: &ClusterRef) -> Result<()> {
        if !self.networks(cluster).await?.is_empty() {
            return Ok(());
        }
        let labels = HashMap::from([
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (LABEL_CLUSTER.to_owned(), cluster.id.to_string()),
            (LABEL_PROJECT.to_owned(), cluster.project.to_string()),
        ]);
        let req = NetworkCreateRequest {
            name: cluster.resource_name(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker().await?.create_network(req).await.map_err(|e| engine_error("create network", e)) {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates (if missing), fills and starts one node.
    pub(super) async fn create_node(
        &self,
        cluster: &ClusterRef,
        t: &Template,
        role: Role,
        index: u32,
        files: Option<&Bytes>,
    ) -> Result<()> {
        let name = node_name(cluster, role, index);
        let body = node_body(cluster, t, role, index);
        let created = self
            .docker()
            .await?
            .create_container(Some(CreateContainerOptions { name: Some(name.clone()), ..Default::default() }), body)
            .await
            .map_err(|e| engine_error("create container", e));
        match created {
            Ok(_) => {
                if let Some(files) = files {
                    let opts = UploadToContainerOptions { path: FILES_DIR.into(), ..Default::default() };
                    if let Err(e) = self.upload(&name, files.clone(), opts).await {
                        let _ = self.remove(&name).await;
                        return Err(e);
                    }
                }
            }
            Err(e) if e.status() == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
        self.start_node(&name).await
    }

    pub(super) async fn upload(&self, name: &str, files: Bytes, opts: UploadToContainerOptions) -> Result<()> {
        // The destination directory may not exist in the image: upload at `/` with full paths.
        let rooted = reroot(&files, FILES_DIR)?;
        let opts = UploadToContainerOptions { path: "/".into(), ..opts };
        let docker = self.docker().await?;
        Ok(docker.upload_to_container(name, Some(opts), bollard::body_full(rooted)).await.map_err(|e| engine_error("copy files", e))?)
    }

    /// The bootstrap files of a node, as a tar archive relative to [`FILES_DIR`] (`None` if it has none).
    pub(super) async fn download(&self, name: &str) -> Result<Option<Bytes>> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for file in [API_KEYS_FILE, BASE_HOCON] {
            let path = format!("{FILES_DIR}/{file}");
            let mut stream = self.docker().await?.download_from_container(name, Some(DownloadFromContainerOptions { path }));
            let mut archive = Vec::new();
            let mut missing = false;
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(|e| engine_error("copy files", e)) {
                    Ok(b) => archive.extend_from_slice(&b),
                    Err(e) if e.status() == Some(404) => {
                        missing = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if missing {
                continue;
            }
            let entries = untar(&archive).map_err(|e| Error::Decode { endpoint: "docker: copy files".into(), reason: e.to_string() })?;
            out.extend(entries.into_iter().map(|(_, body)| (file.to_owned(), body)));
        }
        tar_of(out)
    }

    pub(super) async fn start_node(&self, name: &str) -> Result<()> {
        match self
            .docker()
            .await?
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| engine_error("start container", e))
        {
            Err(e) if e.status() == Some(304) => Ok(()),
            other => Ok(other?),
        }
    }

    pub(super) async fn stop_node(&self, name: &str) -> Result<()> {
        let t = i32::try_from(self.config.stop_timeout.as_secs()).unwrap_or(600);
        match self
            .docker()
            .await?
            .stop_container(name, Some(StopContainerOptions { t: Some(t), signal: None }))
            .await
            .map_err(|e| engine_error("stop container", e))
        {
            Err(e) if e.status() == Some(304) || e.status() == Some(404) => Ok(()),
            other => Ok(other?),
        }
    }

    pub(super) async fn remove(&self, name: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker().await?.remove_container(name, Some(opts)).await.map_err(|e| engine_error("remove container", e)) {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => Ok(other?),
        }
    }

    /// Waits until a node has run for the settle time (`true`), or fails: exits, dies, is restarted
    /// by its policy, or the ready timeout passes (`false`).
    pub(super) async fn wait_running(&self, name: &str) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + self.config.ready_timeout;
        let mut since: Option<tokio::time::Instant> = None;
        while tokio::time::Instant::now() < deadline {
            let inspect = self.inspect(name).await?;
            // A node that exited, died or was restarted by its policy has failed: no need to wait.
            if inspect.restart_count.unwrap_or(0) > 0 {
                return Ok(false);
            }
            let state = inspect.state.and_then(|s| s.status);
            if matches!(state, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)) {
                return Ok(false);
            }
            if state == Some(ContainerStateStatusEnum::RUNNING) {
                let start = *since.get_or_insert_with(tokio::time::Instant::now);
                if start.elapsed() >= self.config.settle {
                    return Ok(true);
                }
            } else {
                since = None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(false)
    }

    /// The template and files of a running cluster, read from its first node.
    pub(super) async fn current(&self, cluster: &ClusterRef) -> Result<(Vec<Node>, Template, Option<Bytes>)> {
        let nodes = self.nodes(cluster).await?;
        let first = nodes.first().ok_or_else(|| Error::Core(ecp_core::Error::not_found("cluster", cluster.id)))?;
        let cores = u32::try_from(nodes.iter().filter(|n| n.role == Role::Core).count()).unwrap_or(u32::MAX);
        let template = template_from(&self.inspect(&first.name).await?, cores)?;
        let files = self.download(&first.name).await?;
        Ok((nodes, template, files))
    }

    /// Re-creates every node from `new`, replicants first, highest index first; a node that does
    /// not run is re-created from `old` and the change stops.
    pub(super) async fn roll(
        &self,
        cluster: &ClusterRef,
        nodes: &[Node],
        old: &Template,
        new: &Template,
        files: Option<&Bytes>,
    ) -> Result<()> {
        let mut order: Vec<&Node> = nodes.iter().collect();
        order.sort_by_key(|n| (std::cmp::Reverse(n.role), std::cmp::Reverse(n.index)));
        for node in order {
            self.remove(&node.name).await?;
            self.create_node(cluster, new, node.role, node.index, files).await?;
            if !self.wait_running(&node.name).await? {
                self.remove(&node.name).await?;
                self.create_node(cluster, old, node.role, node.index, files).await?;
                let why = format!("node {} did not stay running with image {}; it was re-created as before", node.name, new.image);
                return Err(ecp_hosting::Error::new(Backend::Docker, "rolling update", why).into());
            }
        }
        Ok(())
    }
}
