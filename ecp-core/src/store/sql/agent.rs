//! Edge agents and their desired configuration.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{Dialect, Sql, SqlStore, col, col_bool, col_opt_parse, col_opt_ts, col_ts, col_u64, page_limit, ts};
use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::edge::{Agent, AgentFilter, AgentId, DesiredChange, DesiredPut, DesiredRecord, DesiredSet, ReportedItem};
use crate::error::{Error, Result};
use crate::id::ProjectId;
use crate::page::{Page, PageRequest};
use crate::store::AgentStore;

const COLUMNS: &str = "id, project_id, name, online, version, hello, secret_hash, claim_hash, last_seen, created_at, updated_at";
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
        claimable: col::<Option<String>>(row, "claim_hash")?.is_some(),
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
    async fn agent_hello(
        &self,
        id: &AgentId,
        version: &str,
        hello: &serde_json::Value,
        at: Timestamp,
        max_unmanaged: u64,
    ) -> Result<Option<Agent>> {
        let hello = hello.to_string();
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET online = 1, version = $1, hello = $2, last_seen = $3, updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
        )))
        .bind(version.to_owned())
        .bind(hello.clone())
        .bind(ts(at))
        .bind(id.as_str().to_owned())
        .fetch_optional(&self.writes)
        .await
        .map_err(|e| self.err(e))?;
        if let Some(row) = updated {
            return agent_from_row(&row).map(Some);
        }
        // A new agent, only under the cap; a concurrent first hello of the same agent updates.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (id, project_id, name, online, version, hello, secret_hash, desired_version, last_seen, created_at, updated_at) \
             SELECT $1, NULL, NULL, 1, $2, $3, NULL, 0, $4, $4, $4 \
             WHERE (SELECT COUNT(*) FROM agents WHERE project_id IS NULL) < $5 \
             ON CONFLICT (id) DO UPDATE SET online = 1, version = $2, hello = $3, last_seen = $4, updated_at = $4 \
             RETURNING {COLUMNS}"
        )))
        .bind(id.as_str().to_owned())
        .bind(version.to_owned())
        .bind(hello)
        .bind(ts(at))
        .bind(to_i64(max_unmanaged))
        .fetch_optional(&self.writes)
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref().map(agent_from_row).transpose()
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
            "UPDATE agents SET project_id = $1, name = $2, claim_hash = NULL, updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
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

    async fn set_agent_secret(
        &self,
        id: &AgentId,
        hash: Option<&str>,
        claim_digest: Option<&str>,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO agents (id, project_id, name, online, version, hello, secret_hash, claim_hash, desired_version, last_seen, created_at, updated_at) \
             VALUES ($1, NULL, NULL, 0, NULL, 'null', $2, $3, 0, NULL, $4, $4) \
             ON CONFLICT (id) DO UPDATE SET secret_hash = $2, \
             claim_hash = CASE WHEN agents.project_id IS NULL THEN $3 ELSE NULL END, updated_at = $4",
        )
        .bind(id.as_str().to_owned())
        .bind(hash.map(str::to_owned))
        .bind(claim_digest.map(str::to_owned))
        .bind(ts(at))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn claim_agent(&self, id: &AgentId, project: ProjectId, name: &str, claim_digest: &str, audit: &AuditEvent) -> Result<Agent> {
        crate::tenancy::validate_resource_name(name)?;
        let mut tx = self.write().await?;
        let exists = sqlx::query("SELECT id FROM projects WHERE id = $1")
            .bind(project.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            return Err(Error::not_found("project", project));
        }
        // The digest is of 128 random bits: comparing it in SQL tells a timing observer nothing
        // about the code.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET project_id = $1, name = $2, claim_hash = NULL, updated_at = $3 \
             WHERE id = $4 AND project_id IS NULL AND claim_hash = $5 RETURNING {COLUMNS}"
        )))
        .bind(project.to_string())
        .bind(name.to_owned())
        .bind(ts(self.now()))
        .bind(id.as_str().to_owned())
        .bind(claim_digest.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .ok_or_else(|| Error::not_found("agent", id))?;
        let agent = agent_from_row(&row)?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(agent)
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

    async fn put_desired_many(&self, changes: &[DesiredChange], at: Timestamp) -> Result<Vec<Result<DesiredPut>>> {
        // One statement per round, each agent at most once in a round (an agent's next version is
        // computed once per statement); then one read of every agent's desired set. Measured: a
        // transaction of five statements per item, and a second read for the retained message,
        // were most of a fleet rollout's store work, each statement a thread hand-off on SQLite.
        let mut results: Vec<Option<Result<DesiredPut>>> = (0..changes.len()).map(|_| None).collect();
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, c) in changes.iter().enumerate() {
            if c.key.is_empty() || c.key.len() > 200 {
                results[i] = Some(Err(Error::invalid("desired key", "must be 1 to 200 bytes")));
                continue;
            }
            let round = seen.entry(c.agent.as_str()).and_modify(|r| *r += 1).or_insert(0);
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(i);
        }
        for round in &rounds {
            let rows: Vec<(&str, &str, &str, String)> = round
                .iter()
                .map(|&i| (changes[i].agent.as_str(), changes[i].key.as_str(), changes[i].target.as_str(), changes[i].change.to_string()))
                .collect();
            let json = serde_json::to_string(&rows).map_err(|e| Error::invalid("desired change", e.to_string()))?;
            self.put_desired_round(json, at).await?;
        }
        let agents: Vec<&str> = seen.keys().copied().collect();
        let mut sets: HashMap<String, Vec<DesiredRecord>> = HashMap::with_capacity(agents.len());
        if !agents.is_empty() {
            let mut sql = Sql::new(&format!("SELECT {DESIRED_COLUMNS} FROM agent_desired WHERE agent_id IN "));
            self.push_json_list(&mut sql, &agents);
            sql.push(" ORDER BY agent_id, item_key");
            // On the connection that wrote: on SQLite a read there finds its pages cached, where any
            // other connection would re-read them (a commit invalidates other connections' caches).
            let rows = sql.query().fetch_all(&self.writes).await.map_err(|e| self.err(e))?;
            for row in &rows {
                let record = desired_from_row(row)?;
                sets.entry(record.agent.as_str().to_owned()).or_default().push(record);
            }
        }
        Ok(results
            .into_iter()
            .zip(changes)
            .map(|(done, c)| {
                done.unwrap_or_else(|| {
                    let all = sets.get(c.agent.as_str()).cloned().unwrap_or_default();
                    match all.iter().find(|r| r.key == c.key) {
                        Some(item) => Ok(DesiredPut { item: item.clone(), all }),
                        // No agent to bump, or it was deleted with its items meanwhile.
                        None => Err(Error::not_found("agent", &c.agent)),
                    }
                })
            })
            .collect())
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

    async fn desired_set(&self, id: &AgentId) -> Result<DesiredSet> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let set = self.desired_set_in(&mut tx, id).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(set)
    }

    async fn withdraw_desired(&self, id: &AgentId, keys: &[String], at: Timestamp) -> Result<DesiredSet> {
        let mut tx = self.write().await?;
        if !keys.is_empty() {
            // The set's version passes every item's (on SQLite puts number items past the agent's
            // counter without moving it), then the items go: the set after is newer than any before.
            let held = "(SELECT MAX(d.version) FROM agent_desired d WHERE d.agent_id = agents.id)";
            let mut sql = Sql::new(&format!(
                "UPDATE agents SET desired_version = CASE WHEN COALESCE({held}, 0) > desired_version \
                 THEN COALESCE({held}, 0) ELSE desired_version END + 1, updated_at = "
            ));
            sql.bind(ts(at)).push(" WHERE id = ").bind(id.as_str().to_owned());
            sql.push(" AND EXISTS (SELECT 1 FROM agent_desired d WHERE d.agent_id = agents.id AND d.item_key IN ");
            self.push_json_list(&mut sql, keys);
            sql.push(")");
            let bumped = sql.query().execute(&mut *tx).await.map_err(|e| self.err(e))?.rows_affected();
            if bumped > 0 {
                let mut del = Sql::new("DELETE FROM agent_desired WHERE agent_id = ");
                del.bind(id.as_str().to_owned()).push(" AND item_key IN ");
                self.push_json_list(&mut del, keys);
                del.query().execute(&mut *tx).await.map_err(|e| self.err(e))?;
            }
        }
        let set = self.desired_set_in(&mut tx, id).await?;
        self.commit(tx).await?;
        Ok(set)
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
        if done.rows_affected() > 0 {
            let mut agents: Vec<&str> = last.keys().map(|(a, _)| *a).collect();
            agents.sort_unstable();
            agents.dedup();
            // The reports are in: a lost signal only makes another replica's waiting delivery
            // wait for its retry.
            if let Err(e) = self.notify_reported(&agents).await {
                tracing::warn!(error = %e, "signalling recorded reports failed");
            }
        }
        Ok(done.rows_affected())
    }
}

impl SqlStore {
    /// An agent's set and its version: the agent's counter or its newest item, whichever is higher.
    async fn desired_set_in(&self, tx: &mut sqlx::Transaction<'static, sqlx::Any>, id: &AgentId) -> Result<DesiredSet> {
        let agent = sqlx::query("SELECT desired_version FROM agents WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::not_found("agent", id))?;
        let counter = col_u64(&agent, "desired_version")?;
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DESIRED_COLUMNS} FROM agent_desired WHERE agent_id = $1 ORDER BY item_key")))
                .bind(id.as_str().to_owned())
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| self.err(e))?;
        let items = rows.iter().map(desired_from_row).collect::<Result<Vec<_>>>()?;
        let version = items.iter().map(|i| i.version).max().unwrap_or(0).max(counter);
        Ok(DesiredSet { version, items })
    }

    /// Sets the desired items of `rows` (a JSON array of `[agent, key, target, change text]`, each
    /// agent at most once) in one autocommit statement. The item takes the agent's next version
    /// only when it changes: stored values are `Value::to_string()`, canonical (sorted keys), so
    /// equal text is an equal change. A newer version of the key stored meanwhile (a concurrent
    /// put) stays.
    ///
    /// PostgreSQL bumps the agents' counters in the same statement (their row locks order
    /// concurrent puts). SQLite has no data-modifying CTE, but runs one writer at a time, so one
    /// more than the highest version the agent has (or its counter, from older versions of this
    /// store) is unique there; its counter is then only that floor.
    async fn put_desired_round(&self, rows: String, at: Timestamp) -> Result<()> {
        let unchanged = "NOT EXISTS (SELECT 1 FROM agent_desired d WHERE d.agent_id = r.agent_id AND d.item_key = r.item_key \
                         AND d.target = r.target AND d.change = r.change)";
        let rows_sql = "SELECT value->>0 AS agent_id, value->>1 AS item_key, value->>2 AS target, value->>3 AS change FROM ";
        let mut sql = Sql::new("");
        match self.dialect {
            Dialect::Postgres => {
                sql.push("WITH r AS (").push(rows_sql);
                self.push_json_rows(&mut sql, rows);
                sql.push(&format!(
                    "), v AS (UPDATE agents a SET desired_version = a.desired_version + 1 FROM r WHERE a.id = r.agent_id AND {unchanged} \
                     RETURNING a.id, a.desired_version, r.item_key, r.target, r.change) \
                     INSERT INTO agent_desired (agent_id, item_key, version, target, change, updated_at) \
                     SELECT v.id, v.item_key, v.desired_version, v.target, v.change, "
                ));
                sql.bind(ts(at)).push(" FROM v");
            }
            Dialect::Sqlite => {
                sql.push(
                    "INSERT INTO agent_desired (agent_id, item_key, version, target, change, updated_at) \
                     SELECT r.agent_id, r.item_key, \
                     MAX(a.desired_version, COALESCE((SELECT MAX(d.version) FROM agent_desired d WHERE d.agent_id = r.agent_id), 0)) + 1, \
                     r.target, r.change, ",
                );
                sql.bind(ts(at)).push(" FROM (").push(rows_sql);
                self.push_json_rows(&mut sql, rows);
                sql.push(&format!(") AS r JOIN agents a ON a.id = r.agent_id WHERE {unchanged}"));
            }
        }
        sql.push(
            " ON CONFLICT (agent_id, item_key) DO UPDATE SET version = excluded.version, target = excluded.target, \
             change = excluded.change, updated_at = excluded.updated_at WHERE agent_desired.version < excluded.version",
        );
        sql.query().execute(&self.writes).await.map_err(|e| self.err(e))?;
        Ok(())
    }
}
