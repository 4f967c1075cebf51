//! Installing and upgrading a service's container, with the checks a new container must pass
//! and the rollback when it fails one.

use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::RenameContainerOptions;
use ecp_core::edge::EdgeService;

use super::spec::{create_body, endpoint_of, spec_of};
use super::{DockerDriver, docker_error, engine_status};
use crate::driver::EdgeDriver;
use crate::error::{Error, Result, UpgradeCheck};
use crate::hosted::{HostedInstance, HostedSpec, container_name_for, valid_image};

/// The suffix of a new instance's name while it is checked during an upgrade.
const CANDIDATE_SUFFIX: &str = "-next";

impl DockerDriver {
    /// Installs `service` as a container from `spec` and waits until it answers its probe.
    /// Installing again what is installed with the same image is a no-op (it is started if it was
    /// stopped), so retried install tasks converge.
    ///
    /// # Errors
    /// `InvalidInput` for a bad spec, `NotFound` for an unknown node, `Conflict` when the service
    /// is installed with another image, [`Error::HostedCheckFailed`] when the container does not
    /// start, exits, or does not answer in time (it is removed), the engine's error.
    pub async fn install_with(&self, service: &EdgeService, spec: &HostedSpec) -> Result<HostedInstance> {
        let mut spec = spec.clone();
        if spec.network.is_none() {
            spec.network.clone_from(&self.config.default_network);
        }
        spec.validate()?;
        let (node, _) = self.node(spec.node.as_deref())?;
        let node = node.to_owned();
        let name = spec.container_name.clone().unwrap_or_else(|| container_name_for(service.name(), &service.id().to_string()));
        for found in self.find_all(service).await? {
            if !found.is_current() {
                self.remove(&found.node, &found.id).await?;
                continue;
            }
            let inspect = self.inspect(&found.node, &found.id).await?;
            let image = inspect.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_default();
            if image != spec.image || found.node != node {
                return Err(ecp_core::Error::conflict(
                    "edge service",
                    service.id(),
                    format!("it is installed on node {} with image {image}: upgrade or uninstall it", found.node),
                )
                .into());
            }
            self.start_container(&found.node, &found.id).await?;
            return Ok(self.status(service).await?.instance);
        }
        let body = create_body(service, &spec, &node, &name);
        let fail = |check: UpgradeCheck, reason: String| Error::HostedCheckFailed {
            operation: "install",
            service: service.name().to_owned(),
            image: spec.image.clone(),
            check,
            reason,
            rolled_back: true,
        };
        let id = match self.create(&node, &name, body).await {
            Ok(id) => id,
            Err(e) if engine_status(&e) == Some(404) || engine_status(&e) == Some(409) => {
                return Err(fail(UpgradeCheck::Create, e.to_string()));
            }
            Err(e) => return Err(e),
        };
        if let Err((check, reason)) = self.bring_up(&node, &id, service, &spec).await {
            self.remove(&node, &id).await?;
            return Err(fail(check, reason));
        }
        self.status(service).await.map(|s| s.instance)
    }

    /// Starts a created container and waits until it answers its probe; on failure, which check
    /// failed and what it saw.
    async fn bring_up(&self, node: &str, id: &str, service: &EdgeService, spec: &HostedSpec) -> Result<String, (UpgradeCheck, String)> {
        if let Err(e) = self.start_container(node, id).await {
            return Err((UpgradeCheck::Start, e.to_string()));
        }
        self.wait_healthy(node, id, service, spec).await
    }

    /// Polls the container until it answers its probe, it stops running, or the health timeout.
    async fn wait_healthy(&self, node: &str, id: &str, service: &EdgeService, spec: &HostedSpec) -> Result<String, (UpgradeCheck, String)> {
        let deadline = tokio::time::Instant::now() + self.config.health_timeout;
        let mut last = String::from("no probe answered yet");
        loop {
            let inspect = self.inspect(node, id).await.map_err(|e| (UpgradeCheck::Running, e.to_string()))?;
            let state = inspect.state.clone().unwrap_or_default();
            let restarts = inspect.restart_count.unwrap_or(0);
            let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
            if matches!(status, ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
                || status == ContainerStateStatusEnum::RESTARTING
                || restarts > 0
            {
                let logs = self.logs_of(node, id, 5).await.unwrap_or_default().join(" | ");
                let code = state.exit_code.unwrap_or(-1);
                let what = match status {
                    ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD => format!("the container exited with status {code}"),
                    ContainerStateStatusEnum::RESTARTING => format!("the container is being restarted (last exit status {code})"),
                    // Running again: the exit status of the run that ended is gone.
                    _ => format!("the container exited and was restarted {restarts} times by its restart policy"),
                };
                return Err((UpgradeCheck::Running, format!("{what}; last log lines: {logs}")));
            }
            if let Some(endpoint) = endpoint_of(&inspect, spec.network.as_deref(), &spec.scheme, spec.port) {
                let probed = service.reached_at(endpoint.clone());
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, self.direct.probe(&probed)).await {
                    Ok(Ok(_)) => return Ok(endpoint),
                    Ok(Err(e)) => last = crate::fleet::with_causes(&e),
                    Err(_) => last = "the probe did not answer in time".into(),
                }
            }
            if tokio::time::Instant::now() + self.config.health_interval >= deadline {
                return Err((UpgradeCheck::Probe, format!("no answer within {:?}: {last}", self.config.health_timeout)));
            }
            tokio::time::sleep(self.config.health_interval).await;
        }
    }

    /// Upgrades `service` to `image` (see the [module docs](super)); returns the new instance.
    ///
    /// # Errors
    /// `NotFound` when it is not installed, `InvalidInput` for a bad image,
    /// [`Error::HostedCheckFailed`] when the new instance fails a check (it is removed; the old
    /// one keeps serving when `rolled_back`), the engine's error.
    pub async fn upgrade_to(&self, service: &EdgeService, image: &str) -> Result<HostedInstance> {
        if !valid_image(image) {
            return Err(ecp_core::Error::invalid("image", "not an image reference").into());
        }
        let mut old = None;
        for found in self.find_all(service).await? {
            if found.is_current() {
                old = Some(found);
            } else {
                self.remove(&found.node, &found.id).await?;
            }
        }
        let old = old.ok_or_else(|| Error::from(ecp_core::Error::not_found("hosted instance of edge service", service.id())))?;
        let old_inspect = self.inspect(&old.node, &old.id).await?;
        let mut spec = spec_of(&old, &old_inspect);
        spec.image = image.to_owned();
        let was_running = old_inspect.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let node = old.node.clone();
        let candidate = format!("{}{CANDIDATE_SUFFIX}", old.final_name);
        // A published host port cannot be bound twice: the old instance stops first.
        let stop_first = spec.publish.is_some();

        let outcome: Result<String, (UpgradeCheck, String)> = async {
            if stop_first {
                self.stop_container(&node, &old.id).await.map_err(|e| (UpgradeCheck::Switch, e.to_string()))?;
            }
            let body = create_body(service, &spec, &node, &old.final_name);
            let id = self.create(&node, &candidate, body).await.map_err(|e| (UpgradeCheck::Create, e.to_string()))?;
            if let Err(failed) = self.bring_up(&node, &id, service, &spec).await {
                let _ = self.remove(&node, &id).await;
                return Err(failed);
            }
            Ok(id)
        }
        .await;
        let new_id = match outcome {
            Ok(id) => id,
            Err((check, reason)) => {
                let _ = self.remove(&node, &candidate).await;
                let mut rolled_back = true;
                if was_running {
                    rolled_back = self.start_container(&node, &old.id).await.is_ok();
                }
                return Err(Error::HostedCheckFailed {
                    operation: "upgrade",
                    service: service.name().to_owned(),
                    image: image.to_owned(),
                    check,
                    reason,
                    rolled_back,
                });
            }
        };
        // Switch over: the old instance goes, the new one takes its name.
        let switched: Result<()> = async {
            self.stop_container(&node, &old.id).await?;
            self.remove(&node, &old.id).await?;
            let docker = self.docker(&node).await?;
            docker
                .rename_container(&new_id, RenameContainerOptions { name: old.final_name.clone() })
                .await
                .map_err(|e| docker_error(&node, "rename container", e))
        }
        .await;
        if let Err(e) = switched {
            // Still there: the old one serves again and the new one goes.
            let old_left = self.inspect(&node, &old.id).await.is_ok();
            let mut rolled_back = false;
            if old_left {
                let _ = self.remove(&node, &new_id).await;
                rolled_back = !was_running || self.start_container(&node, &old.id).await.is_ok();
            }
            return Err(Error::HostedCheckFailed {
                operation: "upgrade",
                service: service.name().to_owned(),
                image: image.to_owned(),
                check: UpgradeCheck::Switch,
                reason: e.to_string(),
                rolled_back,
            });
        }
        self.instance(service).await
    }
}
