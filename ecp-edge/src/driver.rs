//! The [`EdgeDriver`] trait: what the platform can do to an edge service, per management mode.
//!
//! | function | hosted (docker, kubernetes) | managed (direct, agent) |
//! |---|---|---|
//! | probe, info sync, configuration delivery, API calls | yes | yes |
//! | install, upgrade, start, stop, restart, uninstall | yes | `Unsupported` |
//!
//! A driver says up front what it supports ([`EdgeDriver::capabilities`]) and answers anything else
//! with `Unsupported { operation, backend }`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::edge::{EdgeService, ManagementMode};
use ecp_core::task::IdempotencyKey;
use serde::{Deserialize, Serialize};

pub use ecp_edge_api::{EdgeInfo, GroupInfo, Health, NodeInfo, RuleInfo};

use crate::error::{Error, Result};
use crate::template::ConfigChange;

/// What can be done to an edge service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EdgeOperation {
    /// Check that it answers, and its version.
    Probe,
    /// Pull its drivers, groups, tags, apps, streams and rules.
    SyncInfo,
    /// Apply a configuration change.
    ApplyConfig,
    /// Install it.
    Install,
    /// Upgrade it to another image.
    Upgrade,
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Restart it.
    Restart,
    /// Remove it.
    Uninstall,
}

impl EdgeOperation {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EdgeOperation::Probe => "probe",
            EdgeOperation::SyncInfo => "sync_info",
            EdgeOperation::ApplyConfig => "apply_config",
            EdgeOperation::Install => "install",
            EdgeOperation::Upgrade => "upgrade",
            EdgeOperation::Start => "start",
            EdgeOperation::Stop => "stop",
            EdgeOperation::Restart => "restart",
            EdgeOperation::Uninstall => "uninstall",
        }
    }
}

/// The operations a driver supports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities(BTreeSet<EdgeOperation>);

impl Capabilities {
    /// What managed services support: probe, info sync, configuration delivery.
    pub fn managed() -> Self {
        Self([EdgeOperation::Probe, EdgeOperation::SyncInfo, EdgeOperation::ApplyConfig].into_iter().collect())
    }

    /// What hosted services support: everything.
    pub fn hosted() -> Self {
        Self(
            [
                EdgeOperation::Probe,
                EdgeOperation::SyncInfo,
                EdgeOperation::ApplyConfig,
                EdgeOperation::Install,
                EdgeOperation::Upgrade,
                EdgeOperation::Start,
                EdgeOperation::Stop,
                EdgeOperation::Restart,
                EdgeOperation::Uninstall,
            ]
            .into_iter()
            .collect(),
        )
    }

    /// Adds `op`.
    pub fn insert(&mut self, op: EdgeOperation) {
        self.0.insert(op);
    }

    /// Whether `op` is supported.
    pub fn supports(&self, op: EdgeOperation) -> bool {
        self.0.contains(&op)
    }

    /// The supported operations.
    pub fn iter(&self) -> impl Iterator<Item = EdgeOperation> + '_ {
        self.0.iter().copied()
    }
}

/// What the platform does to edge services of one management mode.
#[async_trait]
pub trait EdgeDriver: Send + Sync + fmt::Debug + 'static {
    /// The backend's name (`"direct"`, `"agent"`, `"docker"`, `"kubernetes"`).
    fn backend(&self) -> &'static str;

    /// What it supports.
    fn capabilities(&self) -> Capabilities;

    /// Checks that the service answers.
    ///
    /// # Errors
    /// The transport's or the API's error.
    async fn probe(&self, service: &EdgeService) -> Result<Health>;

    /// Pulls the service's drivers, groups, tags, apps, streams and rules.
    ///
    /// # Errors
    /// The transport's or the API's error.
    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo>;

    /// Applies a configuration change, converging: applying the same change twice leaves the
    /// service as applying it once. `key` names the attempt; pass it on where the service or agent
    /// can deduplicate.
    ///
    /// # Errors
    /// The transport's or the API's error; `Unsupported` for a change this kind of service cannot
    /// take.
    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<serde_json::Value>;

    /// Takes back a change an attempt left waiting (an agent's desired item not yet applied),
    /// after its task was canceled. The default keeps nothing waiting, so has nothing to take back.
    ///
    /// # Errors
    /// The transport's or the store's error.
    async fn withdraw(&self, service: &EdgeService, change: &ConfigChange) -> Result<()> {
        let _ = (service, change);
        Ok(())
    }

    /// Drops whatever the driver keeps for a service (cached clients, login tokens) once it is
    /// deregistered. The default keeps nothing.
    fn forget(&self, service: &EdgeService) {
        let _ = service;
    }

    /// Installs the service (hosted only).
    ///
    /// # Errors
    /// `Unsupported` unless hosted.
    async fn install(&self, service: &EdgeService, image: &str) -> Result<()> {
        let _ = (service, image);
        Err(unsupported(EdgeOperation::Install, self.backend()))
    }

    /// Upgrades the service to another image (hosted only).
    ///
    /// # Errors
    /// `Unsupported` unless hosted.
    async fn upgrade(&self, service: &EdgeService, image: &str) -> Result<()> {
        let _ = (service, image);
        Err(unsupported(EdgeOperation::Upgrade, self.backend()))
    }

    /// Starts the service (hosted only).
    ///
    /// # Errors
    /// `Unsupported` unless hosted.
    async fn start(&self, service: &EdgeService) -> Result<()> {
        let _ = service;
        Err(unsupported(EdgeOperation::Start, self.backend()))
    }

    /// Stops the service (hosted only).
    ///
    /// # Errors
    /// `Unsupported` unless hosted.
    async fn stop(&self, service: &EdgeService) -> Result<()> {
        let _ = service;
        Err(unsupported(EdgeOperation::Stop, self.backend()))
    }

    /// Restarts the service (hosted only).
    ///
    /// # Errors
    /// `Unsupported` unless hosted.
    async fn restart(&self, service: &EdgeService) -> Result<()> {
        let _ = service;
        Err(unsupported(EdgeOperation::Restart, self.backend()))
    }

    /// Removes the service (hosted only).
    ///
    /// # Errors
    /// `Unsupported` unless hosted.
    async fn uninstall(&self, service: &EdgeService) -> Result<()> {
        let _ = service;
        Err(unsupported(EdgeOperation::Uninstall, self.backend()))
    }
}

/// The `Unsupported` error of `op` on `backend`.
pub fn unsupported(op: EdgeOperation, backend: &'static str) -> Error {
    Error::Core(ecp_core::Error::unsupported(op.as_str(), backend))
}

/// The drivers of a fleet, one per management mode.
#[derive(Debug, Clone, Default)]
pub struct Drivers(BTreeMap<ManagementMode, Arc<dyn EdgeDriver>>);

impl Drivers {
    /// No driver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `driver` for services managed in `mode`.
    #[must_use]
    pub fn with(mut self, mode: ManagementMode, driver: Arc<dyn EdgeDriver>) -> Self {
        self.0.insert(mode, driver);
        self
    }

    /// The driver of a mode.
    ///
    /// # Errors
    /// `Unsupported` when no driver is configured for it.
    pub fn get(&self, mode: ManagementMode) -> Result<&Arc<dyn EdgeDriver>> {
        self.0.get(&mode).ok_or_else(|| Error::Core(ecp_core::Error::unsupported("manage", mode.as_str())))
    }
}
