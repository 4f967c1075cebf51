//! Organizations, projects and the project resource registry.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{OnViolation, Sql, SqlStore, col, col_parse, col_ts, col_u64, like_contains, page_limit, ts};
use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{OrgId, ProjectId};
use crate::page::{Page, PageRequest};
use crate::store::{ProjectFilter, TenancyStore};
use crate::tenancy::model::name_key;
use crate::tenancy::{Organization, Project, ProjectResource, ProjectResourceKind, ProjectUsage, TenancyLimits};

const ORG_COLUMNS: &str = "id, name, project_count, created_at, updated_at";
const PROJECT_COLUMNS: &str = "id, org_id, name, created_at, updated_at";
const RESOURCE_COLUMNS: &str = "id, project_id, kind, name, created_at";

fn org_from_row(row: &AnyRow) -> Result<Organization> {
    Ok(Organization {
        id: col_parse(row, "id")?,
        name: col(row, "name")?,
        project_count: col_u64(row, "project_count")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn project_from_row(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: col_parse(row, "id")?,
        org: col_parse(row, "org_id")?,
        name: col(row, "name")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn resource_from_row(row: &AnyRow) -> Result<ProjectResource> {
    let kind: String = col(row, "kind")?;
    Ok(ProjectResource {
        id: col_parse(row, "id")?,
        kind: ProjectResourceKind::parse(&kind)
            .ok_or_else(|| Error::Integrity { what: "stored row", reason: format!("unknown resource kind {kind:?}") })?,
        project: col_parse(row, "project_id")?,
        name: col(row, "name")?,
        created_at: col_ts(row, "created_at")?,
    })
}

/// The most a limit can be as a bind value (limits are validated to 2^53).
fn limit_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqlStore {
    async fn fetch_org(&self, id: OrgId) -> Result<Option<Organization>> {
        let row = sqlx::query("SELECT id, name, project_count, created_at, updated_at FROM organizations WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn fetch_project(&self, id: ProjectId) -> Result<Option<Project>> {
        let row = sqlx::query("SELECT id, org_id, name, created_at, updated_at FROM projects WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(project_from_row).transpose()
    }
}

#[async_trait]
impl TenancyStore for SqlStore {
    async fn create_org(&self, org: &Organization, limits: &TenancyLimits, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let counted = sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'organizations' AND value < $1")
            .bind(limit_i64(limits.max_organizations))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if counted.rows_affected() == 0 {
            return Err(Error::LimitExceeded { limit: "organizations", max: limits.max_organizations });
        }
        sqlx::query("INSERT INTO organizations (id, name, name_key, project_count, created_at, updated_at) VALUES ($1, $2, $3, 0, $4, $5)")
            .bind(org.id.to_string())
            .bind(org.name.clone())
            .bind(name_key(&org.name))
            .bind(ts(org.created_at))
            .bind(ts(org.updated_at))
            .execute(&mut *tx)
            .await
            .on_violation(|| Error::conflict("organization", &org.name, "the name is taken"), || self.err(sqlx::Error::RowNotFound))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_org(&self, id: OrgId) -> Result<Organization> {
        self.fetch_org(id).await?.ok_or_else(|| Error::not_found("organization", id))
    }

    async fn list_orgs(&self, within: Option<&[OrgId]>, page: &PageRequest) -> Result<Page<Organization>> {
        page_limit(page)?;
        if within.is_some_and(<[OrgId]>::is_empty) {
            return Ok(Page { items: Vec::new(), next: None });
        }
        let mut sql = Sql::new(&format!("SELECT {ORG_COLUMNS} FROM organizations WHERE 1 = 1"));
        if let Some(ids) = within {
            sql.push(" AND id IN ").bind_list(ids.iter().map(ToString::to_string));
        }
        self.fetch_page(sql, page, org_from_row, |o| o.id.to_string()).await
    }

    async fn rename_org(&self, id: OrgId, name: &str, now: Timestamp, audit: &AuditEvent) -> Result<Organization> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE organizations SET name = $1, name_key = $2, updated_at = $3 WHERE id = $4 \
             RETURNING id, name, project_count, created_at, updated_at",
        )
        .bind(name.to_owned())
        .bind(name_key(name))
        .bind(ts(now))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .on_violation(|| Error::conflict("organization", name, "the name is taken"), || self.err(sqlx::Error::RowNotFound))?;
        let org = row.as_ref().map(org_from_row).transpose()?.ok_or_else(|| Error::not_found("organization", id))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(org)
    }

    async fn delete_org(&self, id: OrgId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let deleted = sqlx::query("DELETE FROM organizations WHERE id = $1 AND project_count = 0")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .on_violation(
                || Error::conflict("organization", id, "still referenced"),
                || Error::conflict("organization", id, "it still has projects"),
            )?;
        if deleted.rows_affected() == 0 {
            let exists = sqlx::query("SELECT project_count FROM organizations WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            return Err(match exists {
                Some(row) => Error::conflict("organization", id, format!("it still has {} projects", col_u64(&row, "project_count")?)),
                None => Error::not_found("organization", id),
            });
        }
        sqlx::query("UPDATE counters SET value = value - 1 WHERE name = 'organizations'")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn create_project(&self, project: &Project, limits: &TenancyLimits, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        // Lock order everywhere: organization row, then counters, then the audit head.
        let in_org = sqlx::query("UPDATE organizations SET project_count = project_count + 1 WHERE id = $1 AND project_count < $2")
            .bind(project.org.to_string())
            .bind(limit_i64(limits.max_projects_per_org))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if in_org.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 AS one FROM organizations WHERE id = $1")
                .bind(project.org.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            return Err(match exists {
                Some(_) => Error::LimitExceeded { limit: "projects per organization", max: limits.max_projects_per_org },
                None => Error::not_found("organization", project.org),
            });
        }
        let counted = sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'projects' AND value < $1")
            .bind(limit_i64(limits.max_projects))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if counted.rows_affected() == 0 {
            return Err(Error::LimitExceeded { limit: "projects", max: limits.max_projects });
        }
        sqlx::query("INSERT INTO projects (id, org_id, name, name_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(project.id.to_string())
            .bind(project.org.to_string())
            .bind(project.name.clone())
            .bind(name_key(&project.name))
            .bind(ts(project.created_at))
            .bind(ts(project.updated_at))
            .execute(&mut *tx)
            .await
            .on_violation(
                || Error::conflict("project", &project.name, "the name is taken in this organization"),
                || Error::not_found("organization", project.org),
            )?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_project(&self, id: ProjectId) -> Result<Project> {
        self.fetch_project(id).await?.ok_or_else(|| Error::not_found("project", id))
    }

    async fn list_projects(&self, filter: &ProjectFilter, page: &PageRequest) -> Result<Page<Project>> {
        page_limit(page)?;
        if filter.name_contains.as_ref().is_some_and(|s| s.len() > 200) {
            return Err(Error::invalid("name_contains", "longer than 200 bytes"));
        }
        let mut sql = Sql::new(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE 1 = 1"));
        if let Some(org) = filter.org {
            sql.push(" AND org_id = ").bind(org.to_string());
        }
        if let Some(orgs) = &filter.within_orgs
            && !sql.within(orgs, "org_id IN ", &filter.within_projects, "id IN ", "")
        {
            return Ok(Page { items: Vec::new(), next: None });
        }
        if let Some(s) = &filter.name_contains {
            sql.push(" AND name_key LIKE ").bind(like_contains(s)?).push(" ESCAPE '\\'");
        }
        self.fetch_page(sql, page, project_from_row, |p| p.id.to_string()).await
    }

    async fn rename_project(&self, id: ProjectId, name: &str, now: Timestamp, audit: &AuditEvent) -> Result<Project> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE projects SET name = $1, name_key = $2, updated_at = $3 WHERE id = $4 \
             RETURNING id, org_id, name, created_at, updated_at",
        )
        .bind(name.to_owned())
        .bind(name_key(name))
        .bind(ts(now))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .on_violation(
            || Error::conflict("project", name, "the name is taken in this organization"),
            || self.err(sqlx::Error::RowNotFound),
        )?;
        let project = row.as_ref().map(project_from_row).transpose()?.ok_or_else(|| Error::not_found("project", id))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(project)
    }

    async fn delete_project(&self, id: ProjectId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let id_s = id.to_string();
        // Lock the organization row first (the same order as create_project), then delete.
        let org: Option<String> = sqlx::query("SELECT org_id FROM projects WHERE id = $1")
            .bind(id_s.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .map(|row| col(&row, "org_id"))
            .transpose()?;
        let Some(org) = org else { return Err(Error::not_found("project", id)) };
        sqlx::query("UPDATE organizations SET project_count = project_count - 1 WHERE id = $1")
            .bind(org.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let held = sqlx::query("SELECT kind, COUNT(*) AS n FROM resources WHERE project_id = $1 GROUP BY kind")
            .bind(id_s.clone())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if !held.is_empty() {
            let usage = usage_from_rows(&held)?;
            return Err(Error::conflict(
                "project",
                id,
                format!(
                    "it still holds {} clusters, {} edge services and {} other resources",
                    usage.clusters, usage.edge_services, usage.other
                ),
            ));
        }
        let agents = sqlx::query("SELECT COUNT(*) AS n FROM agents WHERE project_id = $1")
            .bind(id_s.clone())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let agents = super::col_u64(&agents, "n")?;
        if agents > 0 {
            return Err(Error::conflict("project", id, format!("it still holds {agents} managed edge agents")));
        }
        let deleted =
            sqlx::query("DELETE FROM projects WHERE id = $1 AND org_id = $2").bind(id_s).bind(org).execute(&mut *tx).await.on_violation(
                || Error::conflict("project", id, "still referenced"),
                || Error::conflict("project", id, "it still holds resources"),
            )?;
        if deleted.rows_affected() == 0 {
            return Err(Error::not_found("project", id));
        }
        sqlx::query("UPDATE counters SET value = value - 1 WHERE name = 'projects'").execute(&mut *tx).await.map_err(|e| self.err(e))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn register_resource(&self, resource: &ProjectResource, audit: &AuditEvent) -> Result<()> {
        crate::tenancy::model::validate_resource_name(&resource.name)?;
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO resources (id, project_id, kind, name, name_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(resource.id.to_string())
            .bind(resource.project.to_string())
            .bind(resource.kind.as_str())
            .bind(resource.name.clone())
            .bind(name_key(&resource.name))
            .bind(ts(resource.created_at))
            .execute(&mut *tx)
            .await
            .on_violation(
                || Error::conflict(resource.kind.as_str(), &resource.name, "the id or name is taken in this project"),
                || Error::not_found("project", resource.project),
            )?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_resource(&self, id: uuid::Uuid) -> Result<ProjectResource> {
        let row = sqlx::query("SELECT id, project_id, kind, name, created_at FROM resources WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(resource_from_row).transpose()?.ok_or_else(|| Error::not_found("resource", id))
    }

    async fn list_resources(
        &self,
        project: ProjectId,
        kind: Option<ProjectResourceKind>,
        page: &PageRequest,
    ) -> Result<Page<ProjectResource>> {
        let mut sql = Sql::new(&format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE project_id = "));
        sql.bind(project.to_string());
        if let Some(kind) = kind {
            sql.push(" AND kind = ").bind(kind.as_str().to_owned());
        }
        self.fetch_page(sql, page, resource_from_row, |r| r.id.to_string()).await
    }

    async fn move_resource(&self, id: uuid::Uuid, to: ProjectId, audit: &AuditEvent) -> Result<ProjectResource> {
        let mut tx = self.write().await?;
        let row = sqlx::query("UPDATE resources SET project_id = $1 WHERE id = $2 RETURNING id, project_id, kind, name, created_at")
            .bind(to.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .on_violation(
                || Error::conflict("resource", id, "its name is taken in the target project"),
                || Error::not_found("project", to),
            )?;
        let moved = row.as_ref().map(resource_from_row).transpose()?.ok_or_else(|| Error::not_found("resource", id))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(moved)
    }

    async fn deregister_resource(&self, id: uuid::Uuid, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let deleted =
            sqlx::query("DELETE FROM resources WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        if deleted.rows_affected() == 0 {
            return Err(Error::not_found("resource", id));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn project_usage(&self, project: ProjectId) -> Result<ProjectUsage> {
        if self.fetch_project(project).await?.is_none() {
            return Err(Error::not_found("project", project));
        }
        let rows = sqlx::query("SELECT kind, COUNT(*) AS n FROM resources WHERE project_id = $1 GROUP BY kind")
            .bind(project.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        usage_from_rows(&rows)
    }
}

fn usage_from_rows(rows: &[AnyRow]) -> Result<ProjectUsage> {
    let mut usage = ProjectUsage::default();
    for row in rows {
        let kind: String = col(row, "kind")?;
        let n = col_u64(row, "n")?;
        match ProjectResourceKind::parse(&kind) {
            Some(ProjectResourceKind::Cluster) => usage.clusters += n,
            Some(ProjectResourceKind::EdgeService) => usage.edge_services += n,
            _ => usage.other += n,
        }
    }
    Ok(usage)
}
