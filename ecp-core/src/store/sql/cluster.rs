//! EMQX clusters and the license's cluster count and connection pool.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Transaction;
use sqlx::any::{Any, AnyRow};

use super::{Dialect, OnViolation, Sql, SqlStore, col, col_bool, col_parse, col_ts, col_u64, ts};
use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::cluster::{ClusterQuota, ClusterRecord, LicenseUsage};
use crate::error::{Error, Result};
use crate::id::{ClusterId, ProjectId};
use crate::page::{Page, PageRequest};
use crate::store::ClusterStore;
use crate::tenancy::model::name_key;

/// Clusters with their project and name from the registry, as one relation.
const SELECT: &str = "SELECT * FROM (SELECT c.id AS id, r.project_id AS project_id, r.name AS name, c.backend AS backend, \
                      c.spec AS spec, c.api_url AS api_url, c.api_key AS api_key, c.api_secret AS api_secret, \
                      c.connection_limit AS connection_limit, c.enabled AS enabled, c.status AS status, \
                      c.status_cause AS status_cause, c.created_at AS created_at, c.updated_at AS updated_at \
                      FROM clusters c JOIN resources r ON r.id = c.id) x WHERE 1 = 1";

/// The advisory lock that serializes license checks on PostgreSQL (SQLite has one writer anyway).
const LICENSE_LOCK: i64 = 0x0065_6370_5f6c_6963; // "ecp_lic"

fn integrity(reason: String) -> Error {
    Error::Integrity { what: "stored cluster", reason }
}

/// Where a cluster's API secret is sealed: bound to its row.
fn secret_context(id: impl std::fmt::Display) -> String {
    format!("clusters.api_secret:{id}")
}

fn cluster_from_row(store: &SqlStore, row: &AnyRow) -> Result<ClusterRecord> {
    let spec: String = col(row, "spec")?;
    let id: crate::id::ClusterId = col_parse(row, "id")?;
    Ok(ClusterRecord {
        id,
        project: col_parse(row, "project_id")?,
        name: col(row, "name")?,
        backend: col(row, "backend")?,
        spec: serde_json::from_str(&spec).map_err(|e| integrity(format!("spec: {e}")))?,
        api_url: col(row, "api_url")?,
        api_key: col(row, "api_key")?,
        api_secret: col::<Option<String>>(row, "api_secret")?
            .map(|s| store.open_secret(&s, &secret_context(id)))
            .transpose()?
            .map(SecretString::from),
        connection_limit: col_u64(row, "connection_limit")?,
        enabled: col_bool(row, "enabled")?,
        status: col(row, "status")?,
        status_cause: col(row, "status_cause")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn to_i64(field: &'static str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(field, "too large"))
}

impl SqlStore {
    /// Takes the license lock of the transaction (PostgreSQL), so concurrent replicas check the
    /// license one after the other.
    pub(super) async fn license_lock(&self, tx: &mut Transaction<'static, Any>) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LICENSE_LOCK).execute(&mut **tx).await.map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Clusters registered, and connections allocated to enabled clusters other than `except`.
    async fn cluster_totals(&self, tx: &mut Transaction<'static, Any>, except: Option<ClusterId>) -> Result<(u64, u64)> {
        let except = except.map(|c| c.to_string()).unwrap_or_default();
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(CASE WHEN enabled <> 0 AND id <> $1 THEN connection_limit ELSE 0 END), 0) AS BIGINT) AS conns \
             FROM clusters",
        )
        .bind(except)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| self.err(e))?;
        Ok((col_u64(&row, "n")?, col_u64(&row, "conns")?))
    }

    async fn fetch_cluster_in(&self, tx: &mut Transaction<'static, Any>, id: ClusterId) -> Result<ClusterRecord> {
        let mut sql = Sql::new(SELECT);
        sql.push(" AND id = ").bind(id.to_string());
        let row = sql.query().fetch_optional(&mut **tx).await.map_err(|e| self.err(e))?;
        row.as_ref().map(|r| cluster_from_row(self, r)).transpose()?.ok_or_else(|| Error::not_found("cluster", id))
    }

    /// Checks that `limit` more connections fit beside the other enabled clusters.
    async fn check_pool(&self, tx: &mut Transaction<'static, Any>, id: ClusterId, limit: u64, quota: &ClusterQuota) -> Result<()> {
        let (_, others) = self.cluster_totals(tx, Some(id)).await?;
        if others.saturating_add(limit) > quota.max_connections {
            return Err(Error::LimitExceeded { limit: "licensed connections", max: quota.max_connections });
        }
        Ok(())
    }
}

#[async_trait]
impl ClusterStore for SqlStore {
    async fn create_cluster(&self, cluster: &ClusterRecord, quota: &ClusterQuota, audit: &AuditEvent) -> Result<()> {
        cluster.validate()?;
        let limit = to_i64("connection_limit", cluster.connection_limit)?;
        let mut tx = self.write().await?;
        self.license_lock(&mut tx).await?;
        let (count, _) = self.cluster_totals(&mut tx, None).await?;
        if count >= quota.max_clusters {
            return Err(Error::LimitExceeded { limit: "licensed clusters", max: quota.max_clusters });
        }
        if cluster.enabled {
            self.check_pool(&mut tx, cluster.id, cluster.connection_limit, quota).await?;
        }
        sqlx::query("INSERT INTO resources (id, project_id, kind, name, name_key, created_at) VALUES ($1, $2, 'cluster', $3, $4, $5)")
            .bind(cluster.id.to_string())
            .bind(cluster.project.to_string())
            .bind(cluster.name.clone())
            .bind(name_key(&cluster.name))
            .bind(ts(cluster.created_at))
            .execute(&mut *tx)
            .await
            .on_violation(
                || Error::conflict("cluster", &cluster.name, "the id or name is taken in this project"),
                || Error::not_found("project", cluster.project),
            )?;
        sqlx::query(
            "INSERT INTO clusters (id, backend, spec, api_url, api_key, api_secret, connection_limit, enabled, status, status_cause, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(cluster.id.to_string())
        .bind(cluster.backend.clone())
        .bind(cluster.spec.to_string())
        .bind(cluster.api_url.clone())
        .bind(cluster.api_key.clone())
        .bind(cluster.api_secret.as_ref().map(|s| self.seal_secret(s.expose_secret(), &secret_context(cluster.id))).transpose()?)
        .bind(limit)
        .bind(i64::from(cluster.enabled))
        .bind(cluster.status.clone())
        .bind(cluster.status_cause.clone())
        .bind(ts(cluster.created_at))
        .bind(ts(cluster.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_cluster(&self, id: ClusterId) -> Result<ClusterRecord> {
        let mut sql = Sql::new(SELECT);
        sql.push(" AND id = ").bind(id.to_string());
        let row = sql.query().fetch_optional(&self.pool).await.map_err(|e| self.err(e))?;
        row.as_ref().map(|r| cluster_from_row(self, r)).transpose()?.ok_or_else(|| Error::not_found("cluster", id))
    }

    async fn list_clusters(&self, project: ProjectId, page: &PageRequest) -> Result<Page<ClusterRecord>> {
        let mut sql = Sql::new(SELECT);
        sql.push(" AND project_id = ").bind(project.to_string());
        self.fetch_page(sql, page, |r| cluster_from_row(self, r), |c| c.id.to_string()).await
    }

    async fn update_cluster_spec(
        &self,
        id: ClusterId,
        spec: &serde_json::Value,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<ClusterRecord> {
        let text = spec.to_string();
        if text.len() > crate::cluster::MAX_SPEC_BYTES {
            return Err(Error::invalid("spec", "longer than 512 KiB"));
        }
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE clusters SET spec = $1, updated_at = $2 WHERE id = $3")
            .bind(text)
            .bind(ts(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("cluster", id));
        }
        let record = self.fetch_cluster_in(&mut tx, id).await?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(record)
    }

    async fn record_cluster_status(&self, id: ClusterId, status: &str, cause: Option<&str>, now: Timestamp) -> Result<()> {
        if status.is_empty() || status.len() > 32 || cause.is_some_and(|c| c.len() > 4096) {
            return Err(Error::invalid("status", "status must be 1..=32 bytes and its cause at most 4 KiB"));
        }
        let done = sqlx::query("UPDATE clusters SET status = $1, status_cause = $2, updated_at = $3 WHERE id = $4")
            .bind(status.to_owned())
            .bind(cause.map(str::to_owned))
            .bind(ts(now))
            .bind(id.to_string())
            .execute(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("cluster", id));
        }
        Ok(())
    }

    async fn set_connection_limit(
        &self,
        id: ClusterId,
        limit: u64,
        quota: &ClusterQuota,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<ClusterRecord> {
        let n = to_i64("connection_limit", limit)?;
        let mut tx = self.write().await?;
        self.license_lock(&mut tx).await?;
        let current = self.fetch_cluster_in(&mut tx, id).await?;
        if current.enabled {
            self.check_pool(&mut tx, id, limit, quota).await?;
        }
        sqlx::query("UPDATE clusters SET connection_limit = $1, updated_at = $2 WHERE id = $3")
            .bind(n)
            .bind(ts(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let record = self.fetch_cluster_in(&mut tx, id).await?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(record)
    }

    async fn set_cluster_enabled(
        &self,
        id: ClusterId,
        enabled: bool,
        quota: &ClusterQuota,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<ClusterRecord> {
        let mut tx = self.write().await?;
        self.license_lock(&mut tx).await?;
        let current = self.fetch_cluster_in(&mut tx, id).await?;
        if enabled && !current.enabled {
            self.check_pool(&mut tx, id, current.connection_limit, quota).await?;
        }
        sqlx::query("UPDATE clusters SET enabled = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(enabled))
            .bind(ts(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let record = self.fetch_cluster_in(&mut tx, id).await?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(record)
    }

    async fn delete_cluster(&self, id: ClusterId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        // The registry row cascades to the cluster row; check the kind so no other resource goes.
        let done = sqlx::query("DELETE FROM resources WHERE id = $1 AND kind = 'cluster'")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("cluster", id));
        }
        sqlx::query("DELETE FROM clusters WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn license_usage(&self) -> Result<LicenseUsage> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM clusters) AS clusters, \
             (SELECT CAST(COALESCE(SUM(connection_limit), 0) AS BIGINT) FROM clusters WHERE enabled <> 0) AS conns, \
             (SELECT COUNT(*) FROM edge_services) AS services",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(LicenseUsage {
            clusters: col_u64(&row, "clusters")?,
            connections: col_u64(&row, "conns")?,
            edge_services: col_u64(&row, "services")?,
        })
    }
}
