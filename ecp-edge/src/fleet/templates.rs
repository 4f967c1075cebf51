//! Configuration templates and their delivery: save, read, preview, deliver as a task.

use std::collections::BTreeMap;

use ecp_core::access::{Permission, ResourceKind};
use ecp_core::edge::{EdgeSelector, EdgeService, TemplateRecord};
use ecp_core::task::{NewTarget, NewTask, RolloutPolicy, TaskHandle};
use ecp_core::{EdgeServiceId, PageRequest, TemplateId};
use serde_json::Value;

use super::delivery::render_for;
use super::{DELIVERY_KIND, PreviewRow, ProjectFleet, ops};
use crate::driver::EdgeInfo;
use crate::error::{Error, Result};
use crate::template::{ConfigTemplate, ParamGrid};

impl ProjectFleet {
    /// Saves a template: a new one (`id` `None`) as version 1, or the next version of an existing
    /// one. Needs `edit config delivery`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput` for a bad template, `Conflict` for a taken name or a
    /// concurrent save, `NotFound`, `Backend`.
    pub async fn save_template(&self, id: Option<TemplateId>, name: &str, template: &ConfigTemplate) -> Result<TemplateRecord> {
        let mut event = self.scope.event(ResourceKind::ConfigDelivery, ops::TEMPLATE_SAVE);
        event.resource_name = Some(name.chars().take(200).collect());
        self.scope
            .audited_event(Permission::edit(ResourceKind::ConfigDelivery), event, async |audit| {
                template.validate()?;
                let (id, version) = match id {
                    None => (TemplateId::new(), 1),
                    Some(id) => match self.store().get_template(id, None).await? {
                        t if t.project == self.project.id() => (id, t.version + 1),
                        _ => return Err(ecp_core::Error::not_found("template", id).into()),
                    },
                };
                let body = serde_json::to_value(template).map_err(|e| Error::Core(ecp_core::Error::backend("json", e)))?;
                let record = TemplateRecord {
                    id,
                    version,
                    project: self.project.id(),
                    name: name.to_owned(),
                    kind: template.kind.as_str().to_owned(),
                    body,
                    created_by: self.principal().name().to_owned(),
                    created_at: self.now(),
                };
                audit.resource(id, Some(name)).details(serde_json::json!({ "version": version, "kind": record.kind }));
                self.store().save_template(&record, audit.in_transaction()).await?;
                Ok(record)
            })
            .await
    }

    /// A template version (the latest for `None`) and its parsed form. Needs `view config
    /// delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn template(&self, id: TemplateId, version: Option<u32>) -> Result<(TemplateRecord, ConfigTemplate)> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        let record = self.store().get_template(id, version).await?;
        if record.project != self.project.id() {
            return Err(ecp_core::Error::not_found("template", id).into());
        }
        let parsed: ConfigTemplate = serde_json::from_value(record.body.clone())
            .map_err(|e| Error::Core(ecp_core::Error::Integrity { what: "template", reason: e.to_string() }))?;
        Ok((record, parsed))
    }

    /// The latest version of every template. Needs `view config delivery`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn templates(&self) -> Result<Vec<TemplateRecord>> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        Ok(self.store().list_templates(self.project.id()).await?)
    }

    /// Renders a template for every selected service without applying it; each row holds the change
    /// or why there is none (a missing or mistyped parameter, a service of another kind). Needs
    /// `view config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn preview(
        &self,
        id: TemplateId,
        version: Option<u32>,
        selector: &EdgeSelector,
        grid: &ParamGrid,
    ) -> Result<Vec<PreviewRow>> {
        let (_, template) = self.template(id, version).await?;
        grid.validate()?;
        let services = self.all(selector).await?;
        Ok(services
            .into_iter()
            .map(|s| {
                let values = grid.values_for(&s.id().to_string(), s.name());
                let result = render_for(&template, &s, &values);
                PreviewRow { service: s.id(), name: s.name().to_owned(), result }
            })
            .collect())
    }

    /// Delivers a template to every selected service as a task under `policy`; per-target results
    /// go to the task and to its audit records. There is no limit on the number of targets. Needs
    /// `edit config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `InvalidInput` (no target), `Conflict` while another
    /// exclusive delivery runs in the project, `Unsupported` for `rollback_on_abort` (a delivered
    /// configuration is not undone), `Backend`.
    pub async fn deliver(
        &self,
        id: TemplateId,
        version: Option<u32>,
        selector: &EdgeSelector,
        grid: &ParamGrid,
        policy: RolloutPolicy,
    ) -> Result<TaskHandle> {
        let event = self.scope.event(ResourceKind::ConfigDelivery, ops::DELIVER).resource(id, None);
        self.scope
            .audited_event(Permission::edit(ResourceKind::ConfigDelivery), event, async |audit| {
                let (record, template) = self.template(id, version).await?;
                audit.resource(record.id, Some(&record.name));
                grid.validate()?;
                let services = self.all(selector).await?;
                if self.fleet.inner.limits.max_tag_points() != u64::MAX {
                    self.fleet.inner.limits.check_license(self.now())?;
                    self.check_tag_points(&template, &services, grid).await?;
                }
                let targets: Vec<NewTarget> = services
                    .iter()
                    .map(|s| {
                        let params = serde_json::to_value(grid.values_for(&s.id().to_string(), s.name())).unwrap_or(Value::Null);
                        NewTarget::new(s.id().to_string(), s.name().to_owned()).params(params)
                    })
                    .collect();
                let spec = serde_json::json!({ "template": record.id, "version": record.version, "name": record.name, "body": template });
                let task = NewTask::new(self.project.id(), DELIVERY_KIND, targets).spec(spec).policy(policy);
                // The engine writes the task's creation record (`config_delivery.create`) in the
                // transaction that stores it: that is this operation's success record.
                audit.in_transaction();
                Ok(self.fleet.inner.engine.submit(self.principal(), task).await?)
            })
            .await
    }

    /// Checks that delivering `template` to `services` keeps the installation within the license's
    /// tag points: the tags of every project's last information sync, minus those of the south
    /// devices this delivery replaces, plus the ones it adds.
    async fn check_tag_points(&self, template: &ConfigTemplate, services: &[EdgeService], grid: &ParamGrid) -> Result<()> {
        let max = self.fleet.inner.limits.max_tag_points();
        let mut installed: u64 = 0;
        let mut here: BTreeMap<(EdgeServiceId, String), u64> = BTreeMap::new();
        let mut page = PageRequest::first(500);
        loop {
            let projects = self.store().list_projects(&Default::default(), &page).await?;
            for p in &projects.items {
                for (service, _, info) in self.store().edge_infos(p.id()).await? {
                    let Ok(info) = serde_json::from_value::<EdgeInfo>(info) else { continue };
                    for d in &info.drivers {
                        let n: u64 = d.groups.iter().map(|g| g.tag_count).sum();
                        installed = installed.saturating_add(n);
                        if p.id() == self.project.id() {
                            here.insert((service, d.name.clone()), n);
                        }
                    }
                }
            }
            match projects.next {
                Some(cursor) => page = PageRequest::after(500, cursor),
                None => break,
            }
        }
        let mut total = installed;
        for s in services {
            let values = grid.values_for(&s.id().to_string(), s.name());
            if let Ok(crate::template::ConfigChange::NeuronSouthDevice { node, groups, .. }) = render_for(template, s, &values) {
                let adds: u64 = groups.iter().map(|g| g.tags.len() as u64).sum();
                let replaces = here.get(&(s.id(), node)).copied().unwrap_or(0);
                total = total.saturating_sub(replaces).saturating_add(adds);
            }
        }
        if total > max {
            return Err(ecp_core::Error::LimitExceeded { limit: "licensed tag points", max }.into());
        }
        Ok(())
    }
}
