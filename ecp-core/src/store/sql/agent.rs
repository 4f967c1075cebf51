//! Edge agents and their desired configuration.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{Sql, SqlStore, col, col_bool, col_opt_parse, col_opt_ts, col_ts, col_u64, page_limit, ts};
use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::edge::{Agent, AgentFilter, AgentId, DesiredPut, DesiredRecord, ReportedItem};
use crate::error::{Error, Result};
use crate::id::ProjectId;
use crate::page::{Page, PageRequest};
use crate::store::AgentStore;

const COLUMNS: &str = "id, project_id, name, online, version, hello, secret_hash, last_seen, created_at, updated_at";
const DESIRED_COLUMNS: &str = "agent_id, item_key, version, target, change, applied_version, applied_ok, detail, updated_at";

fn integrity(reason: String) -> Error {
    Error::Integrity { what: "stored row", reason }
}

fn agent_from_row(row: &AnyRow) -> Result<Agent> {
    let id: String = col(row, "id")?;
    let hello: String = col(row, "hello")?;
    Ok(Agent {
        id: AgentId::new(id).map_err(|e| integrity(e.to_string()))?,
        project: col_opt_parse(row, "project_id")?,
        name: col(row, "name")?,
        online: col_bool(row, "online")?,
        version: col(row, "version")?,
        hello: serde_json::from_str(&hello).map_err(|e| integrity(format!("agent hello: {e}")))?,
        has_secret: col::<Option<String>>(row, "secret_hash")?.is_some(),
        last_seen: col_opt_ts(row, "last_seen")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn desired_from_row(row: &AnyRow) -> Result<DesiredRecord> {
    let agent: String = col(row, "agent_id")?;
    let change: String = col(row, "change")?;
    let applied_version: Option<i64> = col(row, "applied_version")?;
    let applied_ok: Option<i64> = col(row, "applied_ok")?;
    let detail: Option<String> = col(row, "detail")?;
    Ok(DesiredRecord {
        agent: AgentId::new(agent).map_err(|e| integrity(e.to_string()))?,
        key: col(row, "item_key")?,
        version: col_u64(row, "version")?,
        target: col(row, "target")?,
        change: serde_json::from_str(&change).map_err(|e| integrity(format!("desired change: {e}")))?,
        applied: applied_version.map(|v| (u64::try_from(v).unwrap_or_default(), applied_ok.unwrap_or(0) != 0)),
        detail: detail.map(|d| serde_json::from_str(&d)).transpose().map_err(|e| integrity(format!("desired detail: {e}")))?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqlStore {
    /// Fails with `Conflict` while a service is reached through the agent.
    async fn refuse_if_serving(&self, tx: &mut sqlx::Transaction<'static, sqlx::Any>, id: &AgentId, doing: &str) -> Result<()> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM edge_services WHERE agent_id = $1")
            .bind(id.as_str().to_owned())
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        let n = col_u64(&row, "n")?;
        if n > 0 {
            return Err(Error::conflict("agent", id, format!("cannot {doing} it while {n} edge services are managed through it")));
        }
        Ok(())
    }
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn agent_hello(&self, id: &AgentId, version: &str, hello: &serde_json::Value, at: Timestamp) -> Result<Agent> {
        let hello = hello.to_string();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (id, project_id, name, online, version, hello, secret_hash, desired_version, last_seen, created_at, updated_at) \
             VALUES ($1, NULL, NULL, 1, $2, $3, NULL, 0, $4, $4, $4) \
             ON CONFLICT (id) DO UPDATE SET online = 1, version = $2, hello = $3, last_seen = $4, updated_at = $4 \
             RETURNING {COLUMNS}"
        )))
        .bind(id.as_str().to_owned())
        .bind(version.to_owned())
        .bind(hello)
        .bind(ts(at))
        .fetch_one(&self.writes)
        .await
        .map_err(|e| self.err(e))?;
        agent_from_row(&row)
    }

    async fn set_agent_presence(&self, id: &AgentId, online: bool, at: Timestamp) -> Result<bool> {
        // Going offline keeps last_seen; anything heard from the agent moves it.
        let done = sqlx::query(
            "UPDATE agents SET online = $1, last_seen = CASE WHEN $1 = 1 THEN $2 ELSE last_seen END, \
             updated_at = CASE WHEN online <> $1 THEN $2 ELSE updated_at END WHERE id = $3",
        )
        .bind(i64::from(online))
        .bind(ts(at))
        .bind(id.as_str().to_owned())
        .execute(&self.writes)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM agents WHERE id = $1")))
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(agent_from_row).transpose()?.ok_or_else(|| Error::not_found("agent", id))
    }

    async fn list_agents(&self, filter: &AgentFilter, page: &PageRequest) -> Result<Page<Agent>> {
        page_limit(page)?;
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM agents WHERE 1 = 1"));
        if let Some(p) = filter.project {
            sql.push(" AND project_id = ").bind(p.to_string());
        }
        match filter.managed {
            Some(true) => {
                sql.push(" AND project_id IS NOT NULL");
            }
            Some(false) => {
                sql.push(" AND project_id IS NULL");
            }
            None => {}
        }
        if let Some(online) = filter.online {
            sql.push(" AND online = ").bind(i64::from(online));
        }
        self.fetch_page(sql, page, agent_from_row, |a: &Agent| a.id.to_string()).await
    }

    async fn manage_agent(&self, id: &AgentId, project: ProjectId, name: &str, audit: &AuditEvent) -> Result<Agent> {
        crate::tenancy::validate_resource_name(name)?;
        let mut tx = self.write().await?;
        let current = sqlx::query("SELECT project_id FROM agents WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::not_found("agent", id))?;
        let from: Option<String> = col(&current, "project_id")?;
        let exists = sqlx::query("SELECT id FROM projects WHERE id = $1")
            .bind(project.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            return Err(Error::not_found("project", project));
        }
        if from.as_deref().is_some_and(|f| f != project.to_string()) {
            self.refuse_if_serving(&mut tx, id, "transfer").await?;
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET project_id = $1, name = $2, updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
        )))
        .bind(project.to_string())
        .bind(name.to_owned())
        .bind(ts(self.now()))
        .bind(id.as_str().to_owned())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let agent = agent_from_row(&row)?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(agent)
    }

    async fn unmanage_agent(&self, id: &AgentId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        self.refuse_if_serving(&mut tx, id, "unmanage").await?;
        let done = sqlx::query("UPDATE agents SET project_id = NULL, name = NULL, updated_at = $1 WHERE id = $2")
            .bind(ts(self.now()))
            .bind(id.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("agent", id));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn delete_agent(&self, id: &AgentId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        self.refuse_if_serving(&mut tx, id, "delete").await?;
        sqlx::query("DELETE FROM agent_desired WHERE agent_id = $1")
            .bind(id.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let done = sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(id.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("agent", id));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn set_agent_secret(&self, id: &AgentId, hash: Option<&str>, at: Timestamp, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO agents (id, project_id, name, online, version, hello, secret_hash, desired_version, last_seen, created_at, updated_at) \
             VALUES ($1, NULL, NULL, 0, NULL, 'null', $2, 0, NULL, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET secret_hash = $2, updated_at = $3",
        )
        .bind(id.as_str().to_owned())
        .bind(hash.map(str::to_owned))
        .bind(ts(at))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn agent_secrets(&self) -> Result<Vec<(AgentId, String)>> {
        let rows = sqlx::query("SELECT id, secret_hash FROM agents WHERE secret_hash IS NOT NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| Ok((AgentId::new(col::<String>(r, "id")?).map_err(|e| integrity(e.to_string()))?, col(r, "secret_hash")?)))
            .collect()
    }

    async fn put_desired(&self, id: &AgentId, key: &str, target: &str, change: &serde_json::Value, at: Timestamp) -> Result<DesiredPut> {
        if key.is_empty() || key.len() > 200 {
            return Err(Error::invalid("desired key", "must be 1 to 200 bytes"));
        }
        // Two autocommit statements and a read, not a transaction of five (measured: this call was
        // a third of a fleet rollout's store statements). The agent's counter moves only when the
        // item changes: stored values are `Value::to_string()`, canonical (sorted keys), so equal
        // text is an equal change. A crash between the two writes leaves a gap in the agent's
        // versions, which are only ever compared.
        let change_text = change.to_string();
        let bumped = sqlx::query(
            "UPDATE agents SET desired_version = desired_version + 1 WHERE id = $1 AND NOT EXISTS \
             (SELECT 1 FROM agent_desired WHERE agent_id = $1 AND item_key = $2 AND target = $3 AND change = $4) \
             RETURNING desired_version",
        )
        .bind(id.as_str().to_owned())
        .bind(key.to_owned())
        .bind(target.to_owned())
        .bind(change_text.clone())
        .fetch_optional(&self.writes)
        .await
        .map_err(|e| self.err(e))?;
        if let Some(row) = &bumped {
            // A newer version of the key stored between the two statements (a concurrent put) wins.
            sqlx::query(
                "INSERT INTO agent_desired (agent_id, item_key, version, target, change, applied_version, applied_ok, detail, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL, NULL, NULL, $6) \
                 ON CONFLICT (agent_id, item_key) DO UPDATE SET version = $3, target = $4, change = $5, updated_at = $6 \
                 WHERE agent_desired.version < $3",
            )
            .bind(id.as_str().to_owned())
            .bind(key.to_owned())
            .bind(to_i64(col_u64(row, "desired_version")?))
            .bind(target.to_owned())
            .bind(change_text)
            .bind(ts(at))
            .execute(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        }
        let all = self.desired(id).await?;
        match all.iter().find(|r| r.key == key) {
            Some(item) => Ok(DesiredPut { item: item.clone(), all }),
            // No agent to bump, or it was deleted with its items meanwhile.
            None => Err(Error::not_found("agent", id)),
        }
    }

    async fn desired(&self, id: &AgentId) -> Result<Vec<DesiredRecord>> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DESIRED_COLUMNS} FROM agent_desired WHERE agent_id = $1 ORDER BY item_key")))
                .bind(id.as_str().to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        rows.iter().map(desired_from_row).collect()
    }

    async fn record_reports(&self, reports: &[ReportedItem], at: Timestamp) -> Result<u64> {
        // Of several reports of one key, the highest version (the last of equal ones): UPDATE ...
        // FROM takes an arbitrary one of several matching rows.
        let mut last: HashMap<(&str, &str), &ReportedItem> = HashMap::with_capacity(reports.len());
        for r in reports {
            let slot = last.entry((r.agent.as_str(), r.key.as_str())).or_insert(r);
            if r.version >= slot.version {
                *slot = r;
            }
        }
        if last.is_empty() {
            return Ok(0);
        }
        let rows: Vec<(&str, &str, i64, i64, String)> =
            last.values().map(|r| (r.agent.as_str(), r.key.as_str(), to_i64(r.version), i64::from(r.ok), r.detail.to_string())).collect();
        let json = serde_json::to_string(&rows).map_err(|e| Error::invalid("report", e.to_string()))?;
        let mut sql = Sql::new("UPDATE agent_desired SET applied_version = r.v, applied_ok = r.ok, detail = r.detail, updated_at = ");
        sql.bind(ts(at));
        sql.push(
            " FROM (SELECT value->>0 AS agent_id, value->>1 AS item_key, CAST(value->>2 AS BIGINT) AS v, \
             CAST(value->>3 AS BIGINT) AS ok, value->>4 AS detail FROM ",
        );
        self.push_json_rows(&mut sql, json);
        sql.push(
            ") AS r WHERE agent_desired.agent_id = r.agent_id AND agent_desired.item_key = r.item_key \
             AND agent_desired.version >= r.v AND (agent_desired.applied_version IS NULL OR agent_desired.applied_version <= r.v)",
        );
        let done = sql.query().execute(&self.writes).await.map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }
}
