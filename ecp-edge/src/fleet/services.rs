//! The edge services of a project: register, import from CSV, read and select, change, delete, and
//! (hosted services) start, stop, restart and upgrade.

use ecp_core::access::{Permission, ResourceKind};
use ecp_core::audit::Operation;
use ecp_core::edge::{Credentials, EdgeSelector, EdgeService, ManagementMode};
use ecp_core::{EdgeServiceId, Page, PageRequest};

use super::{EdgeServiceChanges, ImportReport, NewEdgeService, ProjectFleet, ops};
use crate::error::{Error, Result};

impl ProjectFleet {
    /// Registers an edge service. Needs `edit edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Conflict` for a taken name, `LimitExceeded` for tags,
    /// `Backend`.
    pub async fn register(&self, new: NewEdgeService) -> Result<EdgeService> {
        let mut event = self.scope.event(ResourceKind::EdgeService, ops::REGISTER);
        event.resource_name = Some(new.name.chars().take(200).collect());
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                let agent = match (new.mode, new.agent) {
                    (ManagementMode::Agent, Some(agent)) => Some(agent),
                    (ManagementMode::Agent, None) | (_, Some(_)) => {
                        return Err(ecp_core::Error::invalid(
                            "agent",
                            "a service is reached through an agent exactly when its mode is agent",
                        )
                        .into());
                    }
                    _ => None,
                };
                let mut service = EdgeService::builder(self.project.id(), new.name, new.kind, new.endpoint)
                    .mode(new.mode)
                    .credentials(new.credentials)
                    .tags(new.tags);
                if let Some(agent) = &agent {
                    service = service.through_agent(agent.clone());
                }
                let service = service.build(self.now())?;
                if let Some(agent) = &agent {
                    self.own_agent(agent).await?;
                }
                audit.resource(service.id(), Some(service.name())).details(serde_json::json!({
                    "kind": service.kind(), "mode": service.mode(), "endpoint": service.endpoint(), "tags": service.tags(),
                    "credentials": service.credentials().kind(), "agent": service.agent(),
                }));
                let mut results = self
                    .store()
                    .create_edge_services(std::slice::from_ref(&service), &self.fleet.inner.limits, audit.in_transaction())
                    .await?;
                match results.pop() {
                    Some(Err(e)) => Err(e.into()),
                    Some(Ok(())) | None => Ok(service),
                }
            })
            .await
    }

    /// Imports directly managed services from a CSV file (see [`crate::import`]): every valid line
    /// is registered, every bad line reported with its number and reason, no line half-imported.
    /// Needs `edit edge service`. One audit record covers the import, with the per-line results.
    ///
    /// # Errors
    /// `PermissionDenied`; the file as a whole unreadable (no header, over the size limit) as
    /// `InvalidInput`; `Backend`.
    pub async fn import_csv(
        &self,
        reader: impl std::io::Read + Send + 'static,
        limits: crate::import::ImportLimits,
    ) -> Result<ImportReport> {
        self.scope
            .audited(Permission::edit(ResourceKind::EdgeService), ResourceKind::EdgeService, ops::IMPORT, async |audit| {
                let parsed = tokio::task::spawn_blocking(move || crate::import::parse_csv(reader, &limits))
                    .await
                    .map_err(|e| Error::Core(ecp_core::Error::backend("csv", e.to_string())))?
                    .map_err(|e| ecp_core::Error::invalid("csv", e.to_string()))?;
                let now = self.now();
                let mut failures = parsed.failures;
                let mut services = Vec::with_capacity(parsed.rows.len());
                let mut lines = Vec::with_capacity(parsed.rows.len());
                for row in parsed.rows {
                    let service = EdgeService::builder(self.project.id(), row.name, row.kind, row.endpoint)
                        .credentials(row.credentials)
                        .tags(row.tags)
                        .build(now);
                    match service {
                        Ok(s) => {
                            services.push(s);
                            lines.push(row.line);
                        }
                        Err(e) => failures.push(crate::import::ImportFailure { line: row.line, reason: e.to_string() }),
                    }
                }
                audit.details(serde_json::json!({ "lines": services.len() + failures.len() }));
                let event = audit.event().clone();
                let results = self.store().create_edge_services(&services, &self.fleet.inner.limits, &event).await?;
                // The store records an import that registered something; one that registered
                // nothing is recorded here, as the import it still was.
                audit.written_in_transaction(results.iter().any(Result::is_ok));
                let mut report = ImportReport::default();
                for ((service, line), result) in services.iter().zip(lines).zip(results) {
                    match result {
                        Ok(()) => report.imported.push(service.id()),
                        Err(e) => failures.push(crate::import::ImportFailure { line, reason: e.to_string() }),
                    }
                }
                failures.sort_by_key(|f| f.line);
                report.failures = failures;
                Ok(report)
            })
            .await
    }

    /// One service. Needs `view edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn get(&self, id: EdgeServiceId) -> Result<EdgeService> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        self.own(id).await
    }

    /// The services matching a selector, in registration order. Needs `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn select(&self, selector: &EdgeSelector, page: &PageRequest) -> Result<Page<EdgeService>> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        Ok(self.store().select_edge_services(self.project.id(), selector, page).await?)
    }

    /// How many services match a selector. Needs `view edge service`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn count(&self, selector: &EdgeSelector) -> Result<u64> {
        self.authorize(Permission::view(ResourceKind::EdgeService))?;
        Ok(self.store().count_edge_services(self.project.id(), selector).await?)
    }

    /// Changes a service. Needs `edit edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` (an endpoint or credentials of a hosted
    /// service), `Conflict`, `LimitExceeded`, `Backend`.
    pub async fn update(&self, id: EdgeServiceId, changes: EdgeServiceChanges) -> Result<EdgeService> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::UPDATE).resource(id, None);
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                let mut s = self.own(id).await?;
                audit.resource(id, Some(s.name())).details(serde_json::json!({
                    "name": changes.name, "endpoint": changes.endpoint, "credentials": changes.credentials.as_ref().map(Credentials::kind),
                    "tags": changes.tags,
                }));
                if s.mode().is_hosted() && (changes.endpoint.is_some() || changes.credentials.is_some()) {
                    return Err(
                        ecp_core::Error::invalid("endpoint", "a hosted service's endpoint and credentials belong to the platform").into()
                    );
                }
                if let Some(n) = changes.name {
                    s.set_name(n)?;
                }
                match (changes.endpoint, changes.credentials) {
                    // Another origin drops the stored credentials unless new ones come along.
                    (Some(e), credentials) => {
                        s.set_endpoint(e, credentials)?;
                    }
                    (None, Some(c)) => s.set_credentials(c),
                    (None, None) => {}
                }
                if let Some(t) = changes.tags {
                    s.set_tags(t)?;
                }
                s.touch(self.now());
                self.store().update_edge_service(&s, &self.fleet.inner.limits, audit.in_transaction()).await?;
                Ok(s)
            })
            .await
    }

    /// Deletes a service: removes a hosted one's instance first (through its driver), deregisters a
    /// managed one. Needs `edit edge service`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, the driver's error for a hosted service, `Backend`.
    pub async fn delete(&self, id: EdgeServiceId) -> Result<()> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::DELETE).resource(id, None);
        self.scope
            .audited_event(Permission::edit(ResourceKind::EdgeService), event, async |audit| {
                let s = self.own(id).await?;
                audit.resource(id, Some(s.name())).details(serde_json::json!({ "mode": s.mode() }));
                if s.mode().is_hosted() {
                    self.fleet.inner.drivers.get(s.mode())?.uninstall(&s).await?;
                }
                self.store().delete_edge_service(id, audit.in_transaction()).await?;
                if let Ok(d) = self.fleet.inner.drivers.get(s.mode()) {
                    d.forget(&s);
                }
                Ok(())
            })
            .await
    }

    async fn lifecycle(&self, id: EdgeServiceId, op: Operation, image: Option<&str>) -> Result<()> {
        let event = self.scope.event(ResourceKind::EdgeService, op.clone()).resource(id, None);
        // `operate` starts and stops what is defined; a new image changes the definition.
        let needs =
            if image.is_some() { Permission::edit(ResourceKind::EdgeService) } else { Permission::operate(ResourceKind::EdgeService) };
        self.scope
            .audited_event(needs, event, async |audit| {
                let s = self.own(id).await?;
                audit.resource(id, Some(s.name())).details(serde_json::json!({ "image": image }));
                let driver = self.fleet.inner.drivers.get(s.mode())?.clone();
                // A driver call changes nothing in the store: the wrapper records the success.
                match op.as_str() {
                    "edge_service.start" => driver.start(&s).await,
                    "edge_service.stop" => driver.stop(&s).await,
                    "edge_service.restart" => driver.restart(&s).await,
                    _ => driver.upgrade(&s, image.unwrap_or_default()).await,
                }
            })
            .await
    }

    /// Starts a hosted service. Needs `operate edge service`.
    ///
    /// # Errors
    /// `Unsupported` for managed services (direct, agent), `NotFound`, `PermissionDenied`, the
    /// driver's error.
    pub async fn start(&self, id: EdgeServiceId) -> Result<()> {
        self.lifecycle(id, ops::START, None).await
    }

    /// Stops a hosted service. Needs `operate edge service`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn stop(&self, id: EdgeServiceId) -> Result<()> {
        self.lifecycle(id, ops::STOP, None).await
    }

    /// Restarts a hosted service. Needs `operate edge service`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn restart(&self, id: EdgeServiceId) -> Result<()> {
        self.lifecycle(id, ops::RESTART, None).await
    }

    /// Upgrades a hosted service to `image`. Needs `edit edge service` (a new image changes the
    /// service's definition; `operate` only starts and stops it).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn upgrade(&self, id: EdgeServiceId, image: &str) -> Result<()> {
        self.lifecycle(id, ops::UPGRADE, Some(image)).await
    }
}
