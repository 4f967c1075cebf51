//! Health and information: probes, information sync, project statistics. Probes and syncs read
//! the services and record what they found; they change nothing a user configured, so they need
//! only `view`, but they write to the store, so each call is audited (one record per call, with
//! counts for the project-wide ones), refusals and failures too.

use ecp_core::EdgeServiceId;
use ecp_core::access::{Permission, ResourceKind};
use ecp_core::edge::{EdgeSelector, EdgeService, EdgeStatus, ProbeOutcome};
use futures::StreamExt;

use super::{ProjectFleet, ProjectStatistics, ops};
use crate::driver::EdgeInfo;
use crate::error::{Error, Result};

impl ProjectFleet {
    async fn probe_one(&self, s: &EdgeService) -> Result<EdgeService> {
        let outcome = match self.fleet.inner.drivers.get(s.mode()) {
            Ok(d) => match d.probe(s).await {
                Ok(h) => ProbeOutcome { answered: true, version: h.version, at: self.now() },
                Err(e) => {
                    tracing::debug!(service = %s.id(), error = %e, "probe failed");
                    ProbeOutcome { answered: false, version: None, at: self.now() }
                }
            },
            Err(e) => return Err(e),
        };
        Ok(self.store().record_probe(s.id(), &outcome, self.fleet.inner.limits.offline_after_misses()).await?)
    }

    /// Probes one service now and records the result. Needs `view edge service`; audited.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Unsupported` for a mode without a driver, `Backend`.
    pub async fn probe(&self, id: EdgeServiceId) -> Result<EdgeService> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::PROBE).resource(id, None);
        self.scope
            .audited_event(Permission::view(ResourceKind::EdgeService), event, async |audit| {
                let s = self.own(id).await?;
                audit.event_mut().resource_name = Some(s.name().to_owned());
                let probed = self.probe_one(&s).await?;
                audit.details(serde_json::json!({ "status": probed.status() }));
                Ok(probed)
            })
            .await
    }

    /// Probes every service of the project (a bounded number at once; a slow or dead service never
    /// holds up the others beyond its driver's timeout) and records the results. Returns the
    /// services as updated. Needs `view edge service`; audited as one record with the counts.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn probe_all(&self) -> Result<Vec<EdgeService>> {
        self.scope
            .audited(Permission::view(ResourceKind::EdgeService), ResourceKind::EdgeService, ops::PROBE_ALL, async |audit| {
                let services = self.all(&EdgeSelector::all()).await?;
                let results: Vec<Result<EdgeService>> = futures::stream::iter(services.iter().map(|s| self.probe_one(s)))
                    .buffer_unordered(self.fleet.inner.probe_concurrency)
                    .collect()
                    .await;
                let probed: Vec<EdgeService> = results.into_iter().collect::<Result<_>>()?;
                let online = probed.iter().filter(|s| s.status() == EdgeStatus::Online).count();
                audit.details(serde_json::json!({ "probed": probed.len(), "online": online }));
                Ok(probed)
            })
            .await
    }

    /// Pulls one service's drivers, groups, tags, apps, streams and rules and stores them. Needs
    /// `view edge service`; audited.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, the driver's error, `Backend`.
    pub async fn sync_info(&self, id: EdgeServiceId) -> Result<EdgeInfo> {
        let event = self.scope.event(ResourceKind::EdgeService, ops::SYNC_INFO).resource(id, None);
        self.scope
            .audited_event(Permission::view(ResourceKind::EdgeService), event, async |audit| {
                let s = self.own(id).await?;
                audit.event_mut().resource_name = Some(s.name().to_owned());
                self.sync_one(&s).await
            })
            .await
    }

    async fn sync_one(&self, s: &EdgeService) -> Result<EdgeInfo> {
        let info = self.fleet.inner.drivers.get(s.mode())?.sync_info(s).await?;
        let value = serde_json::to_value(&info).map_err(|e| Error::Core(ecp_core::Error::backend("json", e)))?;
        self.store().save_edge_info(s.id(), &value, self.now()).await?;
        Ok(info)
    }

    /// Syncs every online service; returns how many synced and the failures by service. Needs
    /// `view edge service`; audited as one record with the counts.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn sync_all(&self) -> Result<(usize, Vec<(EdgeServiceId, String)>)> {
        self.scope
            .audited(Permission::view(ResourceKind::EdgeService), ResourceKind::EdgeService, ops::SYNC_ALL, async |audit| {
                let online = self.all(&EdgeSelector::all().statuses([EdgeStatus::Online])).await?;
                let results: Vec<(EdgeServiceId, Result<EdgeInfo>)> =
                    futures::stream::iter(online.iter().map(|s| async move { (s.id(), self.sync_one(s).await) }))
                        .buffer_unordered(self.fleet.inner.probe_concurrency)
                        .collect()
                        .await;
                let mut ok = 0;
                let mut failed = Vec::new();
                for (id, r) in results {
                    match r {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push((id, e.to_string())),
                    }
                }
                audit.details(serde_json::json!({ "synced": ok, "failed": failed.len() }));
                Ok((ok, failed))
            })
            .await
    }

    /// The project's statistics: services by state, from the store; drivers, rules and tag points,
    /// from the last information sync. Needs `view monitoring`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn statistics(&self) -> Result<ProjectStatistics> {
        self.authorize(Permission::view(ResourceKind::Monitoring))?;
        let mut st = ProjectStatistics::default();
        for (status, slot) in [(EdgeStatus::Online, 0), (EdgeStatus::Offline, 1), (EdgeStatus::Unknown, 2)] {
            let n = self.store().count_edge_services(self.project.id(), &EdgeSelector::all().statuses([status])).await?;
            match slot {
                0 => st.services_online = n,
                1 => st.services_offline = n,
                _ => st.services_unknown = n,
            }
        }
        for (_, _, info) in self.store().edge_infos(self.project.id()).await? {
            let Ok(info) = serde_json::from_value::<EdgeInfo>(info) else { continue };
            for d in &info.drivers {
                st.drivers_total += 1;
                if d.state.as_deref() == Some("running") && d.connected != Some(false) {
                    st.drivers_running += 1;
                } else {
                    st.drivers_error += 1;
                }
                st.tag_points += d.groups.iter().map(|g| g.tag_count).sum::<u64>();
            }
            for r in &info.rules {
                st.rules_total += 1;
                if r.status == "running" {
                    st.rules_running += 1;
                } else if r.status.starts_with("error") || r.status == "stopped by error" {
                    st.rules_error += 1;
                } else {
                    st.rules_stopped += 1;
                }
            }
        }
        Ok(st)
    }
}
