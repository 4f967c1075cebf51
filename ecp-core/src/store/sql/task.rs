//! Tasks and their targets.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{OnViolation, Sql, SqlStore, col, col_opt_ts, col_parse, col_ts, col_u64, opt_ts, page_limit, ts};
use crate::audit::{Actor, AuditEvent};
use crate::clock::{self, Timestamp};
use crate::error::{Error, Result};
use crate::id::{ProjectId, TaskId};
use crate::page::{Page, PageRequest};
use crate::store::TaskStore;
use crate::task::{
    LeaseRenewal, RolloutPolicy, TargetState, TargetUpdate, Task, TaskControl, TaskSecrets, TaskState, TaskTarget, TaskTotals,
};

const TASK_COLUMNS: &str =
    "id, org_id, project_id, kind, state, spec, policy, actor, reason, created_at, updated_at, started_at, finished_at";
const TARGET_COLUMNS: &str =
    "task_id, target_id, seq, name, params, state, attempt, reason, result, started_at, finished_at, next_attempt_at";
/// Parameters per target of the multi-row update.
const UPDATE_PARAMS: usize = 9;

fn integrity(reason: String) -> Error {
    Error::Integrity { what: "stored row", reason }
}

fn json_col<T: serde::de::DeserializeOwned>(row: &AnyRow, name: &str) -> Result<T> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text).map_err(|e| integrity(format!("column {name}: {e}")))
}

fn task_from_row(row: &AnyRow) -> Result<Task> {
    let state: String = col(row, "state")?;
    Ok(Task {
        id: col_parse(row, "id")?,
        org: col_parse(row, "org_id")?,
        project: col_parse(row, "project_id")?,
        kind: col(row, "kind")?,
        state: TaskState::parse(&state).ok_or_else(|| integrity(format!("task state {state:?}")))?,
        spec: json_col(row, "spec")?,
        policy: json_col::<RolloutPolicy>(row, "policy")?,
        created_by: json_col::<Actor>(row, "actor")?,
        reason: col(row, "reason")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
        started_at: col_opt_ts(row, "started_at")?,
        finished_at: col_opt_ts(row, "finished_at")?,
        // Never loaded with the task: `task_secrets` reads them for the engine alone.
        secrets: None,
    })
}

/// Where a task's secrets are sealed: bound to its row.
fn secrets_context(id: impl std::fmt::Display) -> String {
    format!("tasks.secrets:{id}")
}

fn target_from_row(row: &AnyRow) -> Result<TaskTarget> {
    let state: String = col(row, "state")?;
    let result: Option<String> = col(row, "result")?;
    Ok(TaskTarget {
        task: col_parse(row, "task_id")?,
        target: col(row, "target_id")?,
        seq: col_u64(row, "seq")?,
        name: col(row, "name")?,
        params: json_col(row, "params")?,
        state: TargetState::parse(&state).ok_or_else(|| integrity(format!("target state {state:?}")))?,
        attempt: u32::try_from(col_u64(row, "attempt")?).unwrap_or(u32::MAX),
        reason: col(row, "reason")?,
        result: result.map(|r| serde_json::from_str(&r).map_err(|e| integrity(format!("target result: {e}")))).transpose()?,
        started_at: col_opt_ts(row, "started_at")?,
        finished_at: col_opt_ts(row, "finished_at")?,
        next_attempt_at: col_opt_ts(row, "next_attempt_at")?,
    })
}

fn control_col(row: &AnyRow) -> Result<Option<TaskControl>> {
    let control: Option<String> = col(row, "control")?;
    control.map(|c| TaskControl::parse(&c).ok_or_else(|| integrity(format!("task control {c:?}")))).transpose()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::invalid("task", e.to_string()))
}

#[async_trait]
impl TaskStore for SqlStore {
    async fn create_task(&self, task: &Task, targets: &[TaskTarget], lease: Option<(&str, Timestamp)>, audit: &AuditEvent) -> Result<()> {
        let exclusive = task.policy.exclusive.then(|| format!("{}:{}", task.project, task.kind));
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO tasks (id, org_id, project_id, kind, state, spec, policy, actor, exclusive_key, lease_owner, lease_until, reason, \
             created_at, updated_at, started_at, finished_at, secrets) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(task.id.to_string())
        .bind(task.org.to_string())
        .bind(task.project.to_string())
        .bind(task.kind.clone())
        .bind(task.state.as_str())
        .bind(to_json(&task.spec)?)
        .bind(to_json(&task.policy)?)
        .bind(to_json(&task.created_by)?)
        .bind(exclusive)
        .bind(lease.map(|(owner, _)| owner.to_owned()))
        .bind(lease.map(|(_, until)| ts(until)))
        .bind(task.reason.clone())
        .bind(ts(task.created_at))
        .bind(ts(task.updated_at))
        .bind(opt_ts(task.started_at))
        .bind(opt_ts(task.finished_at))
        .bind(task.secrets.as_ref().map(|s| self.seal_secret(&s.expose().to_string(), &secrets_context(task.id))).transpose()?)
        .execute(&mut *tx)
        .await
        .on_violation(
            || Error::conflict("task", &task.kind, "another task of this kind is active in the project"),
            || Error::not_found("project", task.project),
        )?;
        // Each chunk of targets as one JSON parameter (measured: a 10,000-target task took 0.4 s
        // to submit in ~100 statements of 96 rows' parameters each, which SQLite binds in O(p²)).
        type Row<'a> =
            (&'a str, i64, &'a str, String, &'a str, i64, Option<&'a str>, Option<String>, Option<i64>, Option<i64>, Option<i64>);
        let task_id = task.id.to_string();
        for chunk in targets.chunks(Self::JSON_ROWS_PER_STATEMENT) {
            let mut rows: Vec<Row<'_>> = Vec::with_capacity(chunk.len());
            for t in chunk {
                if t.task != task.id {
                    return Err(Error::invalid("targets", "a target of another task"));
                }
                rows.push((
                    &t.target,
                    i64::try_from(t.seq).unwrap_or(i64::MAX),
                    &t.name,
                    to_json(&t.params)?,
                    t.state.as_str(),
                    i64::from(t.attempt),
                    t.reason.as_deref(),
                    t.result.as_ref().map(to_json).transpose()?,
                    opt_ts(t.started_at),
                    opt_ts(t.finished_at),
                    opt_ts(t.next_attempt_at),
                ));
            }
            let json = serde_json::to_string(&rows).map_err(|e| Error::invalid("targets", e.to_string()))?;
            let mut sql = Sql::new(&format!("INSERT INTO task_targets ({TARGET_COLUMNS}) SELECT "));
            sql.bind(task_id.clone()).push(
                ", value->>0, CAST(value->>1 AS BIGINT), value->>2, value->>3, value->>4, CAST(value->>5 AS BIGINT), value->>6, \
                 value->>7, CAST(value->>8 AS BIGINT), CAST(value->>9 AS BIGINT), CAST(value->>10 AS BIGINT) FROM ",
            );
            self.push_json_rows(&mut sql, json);
            sql.query()
                .execute(&mut *tx)
                .await
                .on_violation(|| Error::invalid("targets", "a target is listed twice"), || Error::not_found("task", task.id))?;
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(task_from_row).transpose()?.ok_or_else(|| Error::not_found("task", id))
    }

    async fn task_secrets(&self, id: TaskId) -> Result<Option<TaskSecrets>> {
        let row = sqlx::query("SELECT secrets FROM tasks WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::not_found("task", id))?;
        let Some(stored) = col::<Option<String>>(&row, "secrets")? else { return Ok(None) };
        let text = self.open_secret(&stored, &secrets_context(id))?;
        let value = serde_json::from_str(&text).map_err(|e| integrity(format!("secrets of task {id}: {e}")))?;
        Ok(Some(TaskSecrets::new(value)))
    }

    async fn list_tasks(&self, project: ProjectId, page: &PageRequest) -> Result<Page<Task>> {
        let limit = page_limit(page)?;
        let mut sql = Sql::new(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE project_id = "));
        sql.bind(project.to_string());
        if let Some(cursor) = &page.cursor {
            sql.push(" AND id < ").bind(cursor.clone());
        }
        sql.push(" ORDER BY id DESC LIMIT ").bind(limit);
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |t| t.id.to_string()))
    }

    async fn task_targets(&self, id: TaskId, after_seq: Option<u64>, limit: u32) -> Result<Vec<TaskTarget>> {
        let after = after_seq.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLUMNS} FROM task_targets WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        )))
        .bind(id.to_string())
        .bind(after)
        .bind(i64::from(limit.clamp(1, 100_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(target_from_row).collect()
    }

    async fn task_totals(&self, id: TaskId) -> Result<TaskTotals> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM task_targets WHERE task_id = $1 GROUP BY state")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut totals = TaskTotals::default();
        for row in &rows {
            let state: String = col(row, "state")?;
            let state = TargetState::parse(&state).ok_or_else(|| integrity(format!("target state {state:?}")))?;
            totals.add(state, col_u64(row, "n")?);
        }
        Ok(totals)
    }

    async fn update_targets(&self, updates: &[TargetUpdate], owner: Option<&str>) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        // Only the last change of each target matters: a target that started and finished within
        // one batch is written once.
        let mut last: std::collections::HashMap<(TaskId, &str), usize> = std::collections::HashMap::with_capacity(updates.len());
        for (i, u) in updates.iter().enumerate() {
            last.insert((u.task, u.target.as_str()), i);
        }
        let mut keep: Vec<&TargetUpdate> = last.into_values().map(|i| &updates[i]).collect();
        keep.sort_by(|a, b| (a.task, &a.target).cmp(&(b.task, &b.target)));
        let mut tx = self.write().await?;
        // One statement per chunk: UPDATE ... FROM (VALUES ...), understood by both databases
        // (VALUES columns are named column1, column2 ... in each).
        for chunk in keep.chunks(self.rows_per_statement(UPDATE_PARAMS)) {
            let mut sql = Sql::new(
                "UPDATE task_targets SET state = v.column3, attempt = v.column4, reason = v.column5, result = v.column6, \
                 started_at = v.column7, finished_at = v.column8, next_attempt_at = v.column9 FROM (VALUES ",
            );
            for (i, u) in chunk.iter().enumerate() {
                sql.push(if i > 0 { ", (" } else { "(" });
                sql.bind(u.task.to_string()).push(", ").bind(u.target.clone()).push(", ").bind(u.state.as_str().to_owned());
                sql.push(", ").bind(i64::from(u.attempt)).push(", ").bind(u.reason.clone()).push(", ");
                sql.bind(u.result.as_ref().map(to_json).transpose()?).push(", ").bind(opt_ts(u.started_at)).push(", ");
                sql.bind(opt_ts(u.finished_at)).push(", ").bind(opt_ts(u.next_attempt_at)).push(")");
            }
            sql.push(") AS v WHERE task_targets.task_id = v.column1 AND task_targets.target_id = v.column2");
            if let Some(owner) = owner {
                sql.push(" AND EXISTS (SELECT 1 FROM tasks WHERE tasks.id = v.column1 AND tasks.lease_owner = ");
                sql.bind(owner.to_owned()).push(")");
            }
            sql.query().execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        self.commit(tx).await
    }

    async fn set_task_state(
        &self,
        id: TaskId,
        state: TaskState,
        reason: Option<&str>,
        now: Timestamp,
        owner: Option<&str>,
        audit: Option<&AuditEvent>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let terminal = state.is_terminal();
        let fence = if owner.is_some() { " AND lease_owner = $7" } else { "" };
        let sql = format!(
            "UPDATE tasks SET state = $1, reason = COALESCE($2, reason), updated_at = $3, \
             started_at = CASE WHEN $4 = 1 THEN COALESCE(started_at, $3) ELSE started_at END, \
             finished_at = CASE WHEN $5 = 1 THEN $3 ELSE finished_at END, \
             exclusive_key = CASE WHEN $5 = 1 THEN NULL ELSE exclusive_key END, \
             lease_owner = CASE WHEN $5 = 1 THEN NULL ELSE lease_owner END \
             WHERE id = $6{fence}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(reason.map(str::to_owned))
            .bind(ts(now))
            .bind(i64::from(state == TaskState::Running))
            .bind(i64::from(terminal))
            .bind(id.to_string());
        if let Some(owner) = owner {
            query = query.bind(owner.to_owned());
        }
        let done = query.execute(&mut *tx).await.map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            drop(tx);
            self.get_task(id).await?;
            return Err(Error::conflict("task", id, "its lease is held by another replica"));
        }
        if let Some(event) = audit {
            self.append_in(&mut tx, event).await?;
        }
        self.commit(tx).await
    }

    async fn claim_tasks(&self, owner: &str, now: Timestamp, lease: Duration, kinds: &[&str]) -> Result<Vec<TaskId>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let mut sql = Sql::new("UPDATE tasks SET lease_owner = ");
        sql.bind(owner.to_owned()).push(", lease_until = ").bind(ts(clock::add(now, lease)));
        sql.push(" WHERE state IN ('pending', 'running', 'paused') AND (lease_owner IS NULL OR lease_owner = ");
        sql.bind(owner.to_owned()).push(" OR lease_until < ").bind(ts(now)).push(") AND kind IN ");
        self.push_json_list(&mut sql, kinds);
        sql.push(" RETURNING id");
        let rows = sql.query().fetch_all(&mut *tx).await.map_err(|e| self.err(e))?;
        self.commit(tx).await?;
        let mut ids = rows.iter().map(|r| col_parse::<TaskId>(r, "id")).collect::<Result<Vec<_>>>()?;
        ids.sort();
        Ok(ids)
    }

    async fn renew_lease(&self, id: TaskId, owner: &str, until: Timestamp) -> Result<LeaseRenewal> {
        let row = sqlx::query("UPDATE tasks SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 RETURNING control")
            .bind(ts(until))
            .bind(id.to_string())
            .bind(owner.to_owned())
            .fetch_optional(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        Ok(match row {
            Some(row) => LeaseRenewal::Held { control: control_col(&row)? },
            None => LeaseRenewal::Lost,
        })
    }

    async fn request_task_control(&self, id: TaskId, control: TaskControl, now: Timestamp) -> Result<Option<TaskControl>> {
        let wanted = match control {
            TaskControl::Resume => None,
            other => Some(other.as_str().to_owned()),
        };
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE tasks SET control = CASE WHEN control = 'cancel' THEN control ELSE $1 END, updated_at = $2 \
             WHERE id = $3 AND state IN ('pending', 'running', 'paused') RETURNING control",
        )
        .bind(wanted)
        .bind(ts(now))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            drop(tx);
            self.get_task(id).await?;
            return Err(Error::conflict("task", id, "it has ended"));
        };
        let in_force = control_col(&row)?;
        self.notify_in(&mut tx, &crate::store::StoreSignal::TaskControl(id)).await?;
        self.commit(tx).await?;
        Ok(in_force)
    }

    async fn task_control(&self, id: TaskId) -> Result<Option<TaskControl>> {
        let row = sqlx::query("SELECT control FROM tasks WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::not_found("task", id))?;
        control_col(&row)
    }
}
