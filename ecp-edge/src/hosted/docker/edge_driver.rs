//! The [`EdgeDriver`] implementation of [`DockerDriver`].

use async_trait::async_trait;
use bollard::query_parameters::RestartContainerOptions;
use ecp_core::edge::EdgeService;
use ecp_core::task::IdempotencyKey;
use serde_json::Value;

use super::{DockerDriver, docker_error};
use crate::driver::{Capabilities, EdgeDriver, EdgeInfo, Health};
use crate::error::Result;
use crate::template::ConfigChange;

#[async_trait]
impl EdgeDriver for DockerDriver {
    fn backend(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted()
    }

    fn forget(&self, service: &EdgeService) {
        self.specs_lock().remove(&service.id());
        self.direct.forget(service);
    }

    async fn probe(&self, service: &EdgeService) -> Result<Health> {
        self.direct.probe(&self.reachable(service).await?).await
    }

    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo> {
        self.direct.sync_info(&self.reachable(service).await?).await
    }

    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
        self.direct.apply(&self.reachable(service).await?, change, key).await
    }

    async fn install(&self, service: &EdgeService, image: &str) -> Result<()> {
        let spec = self.spec_for(service, image)?;
        self.install_with(service, &spec).await.map(|_| ())
    }

    async fn upgrade(&self, service: &EdgeService, image: &str) -> Result<()> {
        self.upgrade_to(service, image).await.map(|_| ())
    }

    async fn start(&self, service: &EdgeService) -> Result<()> {
        let found = self.current(service).await?;
        self.start_container(&found.node, &found.id).await
    }

    async fn stop(&self, service: &EdgeService) -> Result<()> {
        let found = self.current(service).await?;
        self.stop_container(&found.node, &found.id).await
    }

    async fn restart(&self, service: &EdgeService) -> Result<()> {
        let found = self.current(service).await?;
        let t = i32::try_from(self.config.stop_timeout.as_secs()).unwrap_or(600);
        self.docker(&found.node)
            .await?
            .restart_container(&found.id, Some(RestartContainerOptions { t: Some(t), signal: None }))
            .await
            .map_err(|e| docker_error(&found.node, "restart container", e))
    }

    async fn uninstall(&self, service: &EdgeService) -> Result<()> {
        self.remove_all(service).await?;
        self.direct.forget(service);
        Ok(())
    }
}
