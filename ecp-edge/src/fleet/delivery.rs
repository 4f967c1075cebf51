//! The configuration delivery task kind: renders the template for each target and applies it
//! through the target's driver.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::access::ResourceKind;
use ecp_core::edge::{EdgeSelector, EdgeService};
use ecp_core::task::{IdempotencyKey, TargetError, TargetExecutor, Task, TaskKind, TaskTarget};
use ecp_core::{EdgeServiceId, PageRequest, ProjectId, Store};
use serde_json::Value;

use super::DELIVERY_KIND;
use crate::driver::Drivers;
use crate::error::Error;
use crate::template::ConfigTemplate;

pub(super) fn render_for(
    template: &ConfigTemplate,
    s: &EdgeService,
    values: &BTreeMap<String, Value>,
) -> std::result::Result<crate::template::ConfigChange, String> {
    let change = template.render(values).map_err(|e| e.to_string())?;
    if !change.fits(s.kind()) {
        return Err(format!("a {} change does not fit a {} service", template.kind.as_str(), s.kind()));
    }
    Ok(change)
}

/// The configuration delivery task kind: renders the template for each target and applies it
/// through the target's driver.
#[derive(Debug)]
pub(super) struct DeliveryKind {
    pub(super) store: Arc<dyn Store>,
    pub(super) drivers: Drivers,
}

impl TaskKind for DeliveryKind {
    fn name(&self) -> &str {
        DELIVERY_KIND
    }

    fn resource_kind(&self) -> ResourceKind {
        ResourceKind::ConfigDelivery
    }

    fn executor(&self, task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        let template: ConfigTemplate = serde_json::from_value(task.spec()["body"].clone())
            .map_err(|e| ecp_core::Error::invalid("task spec", format!("not a configuration delivery: {e}")))?;
        let services = ServiceLoader::new(self.store.clone(), task.project());
        Ok(Arc::new(DeliveryExecutor { template, services, drivers: self.drivers.clone() }))
    }
}

#[derive(Debug)]
struct DeliveryExecutor {
    template: ConfigTemplate,
    services: ServiceLoader,
    drivers: Drivers,
}

/// Reads the services of concurrent applies together, a page of the task's project by id per
/// batch ([`Coalescer`](ecp_core::coalesce::Coalescer)). A service not in that page (it moved to
/// another project since, or the batch read failed) is read alone, as before.
#[derive(Debug)]
struct ServiceLoader {
    store: Arc<dyn Store>,
    project: ProjectId,
    batches: ecp_core::coalesce::Coalescer<EdgeServiceId, Option<EdgeService>>,
}

impl ServiceLoader {
    /// The most services read in one statement.
    const BATCH: usize = 500;

    fn new(store: Arc<dyn Store>, project: ProjectId) -> Self {
        ServiceLoader { store, project, batches: ecp_core::coalesce::Coalescer::new(Self::BATCH) }
    }

    async fn get(&self, id: EdgeServiceId) -> ecp_core::Result<EdgeService> {
        let found = self
            .batches
            .call(id, |ids| async move {
                let limit = u32::try_from(ids.len()).ok()?;
                let selector = EdgeSelector::all().ids(ids.iter().copied());
                let page = self.store.select_edge_services(self.project, &selector, &PageRequest::first(limit)).await.ok()?;
                let mut found: std::collections::HashMap<EdgeServiceId, EdgeService> =
                    page.items.into_iter().map(|s| (s.id(), s)).collect();
                Some(ids.iter().map(|id| found.remove(id)).collect())
            })
            .await;
        match found.flatten() {
            Some(service) => Ok(service),
            None => self.store.get_edge_service(id).await,
        }
    }
}

#[async_trait]
impl TargetExecutor for DeliveryExecutor {
    async fn apply(&self, target: &TaskTarget, key: &IdempotencyKey) -> std::result::Result<Value, TargetError> {
        let id: EdgeServiceId = target.target.parse().map_err(TargetError::fatal)?;
        let service = match self.services.get(id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Err(TargetError::fatal("the edge service was deregistered")),
            Err(e) => return Err(TargetError { reason: e.to_string(), retryable: e.is_retryable() }),
        };
        let values: BTreeMap<String, Value> = serde_json::from_value(target.params.clone()).unwrap_or_default();
        let change = render_for(&self.template, &service, &values).map_err(TargetError::fatal)?;
        let driver = self.drivers.get(service.mode()).map_err(TargetError::fatal)?;
        driver.apply(&service, &change, key).await.map_err(|e| TargetError { reason: with_causes(&e), retryable: e.is_retryable() })
    }

    async fn withdraw(&self, target: &TaskTarget, _key: &IdempotencyKey) -> std::result::Result<(), TargetError> {
        let id: EdgeServiceId = target.target.parse().map_err(TargetError::fatal)?;
        let service = self.services.get(id).await.map_err(|e| TargetError { reason: e.to_string(), retryable: e.is_retryable() })?;
        let values: BTreeMap<String, Value> = serde_json::from_value(target.params.clone()).unwrap_or_default();
        let change = render_for(&self.template, &service, &values).map_err(TargetError::fatal)?;
        let driver = self.drivers.get(service.mode()).map_err(TargetError::fatal)?;
        driver.withdraw(&service, &change).await.map_err(|e| TargetError { reason: with_causes(&e), retryable: e.is_retryable() })
    }
}

/// An error with its causes (`agent edge-7: transport failed (retryable): the agent is offline`),
/// for task target reasons; causes never carry credentials (transports strip them).
pub(crate) fn with_causes(e: &Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.ends_with(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}
