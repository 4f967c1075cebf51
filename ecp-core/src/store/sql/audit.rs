//! The audit log: appending under the head lock, queries, and reading the chain back.

use async_trait::async_trait;
use sqlx::Transaction;
use sqlx::any::{Any, AnyRow};

use super::{Sql, SqlStore, col, col_bool, col_opt_parse, col_parse, col_ts, col_u64, like_contains, page_limit, search_key, ts};
use crate::access::{ResourceKind, Subject};
use crate::audit::{Actor, AuditEvent, AuditQuery, AuditRecord, AuditScope, ChainHead, Named, Operation, Outcome, StoredRecord};
use crate::error::{Error, Result};
use crate::id::AuditId;
use crate::page::{Page, PageRequest};
use crate::store::AuditStore;

const COLUMNS: &str = "seq, id, at, actor_kind, actor_id, actor_name, org_id, org_name, project_id, project_name, \
                       resource_kind, resource_id, resource_name, operation, success, reason, details, prev_hash, hash";

pub(super) async fn append(store: &SqlStore, tx: &mut Transaction<'static, Any>, event: &AuditEvent) -> Result<AuditRecord> {
    // Taking the head row's lock first serializes appends: the chain never forks.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| store.err(e))?;
    let seq = col_u64(&head, "seq")?;
    let prev: String = col(&head, "hash")?;
    let record = AuditRecord::seal(event.clone(), AuditId::new(), seq, store.now(), prev);
    let e = &record.event;
    let (success, reason) = match &e.outcome {
        Outcome::Success => (1i64, None),
        Outcome::Failure { reason } => (0i64, Some(reason.clone())),
    };
    sqlx::query(
        "INSERT INTO audit_log (seq, id, at, actor_kind, actor_id, actor_name, org_id, org_name, project_id, project_name, \
         resource_kind, resource_id, resource_name, operation, success, reason, details, prev_hash, hash, actor_name_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(seq as i64)
    .bind(record.id.to_string())
    .bind(ts(record.at))
    .bind(e.actor.subject.kind())
    .bind(e.actor.subject.id_string())
    .bind(e.actor.name.clone())
    .bind(e.org.as_ref().map(|o| o.id.to_string()))
    .bind(e.org.as_ref().map(|o| o.name.clone()))
    .bind(e.project.as_ref().map(|p| p.id.to_string()))
    .bind(e.project.as_ref().map(|p| p.name.clone()))
    .bind(e.resource_kind.as_str())
    .bind(e.resource_id.clone())
    .bind(e.resource_name.clone())
    .bind(e.operation.as_str().to_owned())
    .bind(success)
    .bind(reason)
    .bind(e.details_json())
    .bind(record.prev_hash.clone())
    .bind(record.hash.clone())
    .bind(search_key(&e.actor.name))
    .execute(&mut **tx)
    .await
    .map_err(|e| store.err(e))?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(record.hash.clone())
        .execute(&mut **tx)
        .await
        .map_err(|e| store.err(e))?;
    // Every change of access is audited: replicas that hear of it sync their authorizers.
    store.notify_in(tx, &crate::store::StoreSignal::Audit).await?;
    Ok(record)
}

fn bad(seq: i64, what: impl std::fmt::Display) -> Error {
    Error::Integrity { what: "audit chain", reason: format!("record {seq} cannot be decoded ({what}): it was changed") }
}

fn stored_from_row(row: &AnyRow) -> Result<StoredRecord> {
    let seq: i64 = col(row, "seq")?;
    let decode = || -> Result<StoredRecord> {
        let actor_kind: String = col(row, "actor_kind")?;
        let actor_id: Option<String> = col(row, "actor_id")?;
        let subject = match (actor_kind.as_str(), actor_id) {
            ("user", Some(id)) => Subject::User(super::canonical("actor_id", &id)?),
            ("api_key", Some(id)) => Subject::ApiKey(super::canonical("actor_id", &id)?),
            ("system", None) => Subject::System,
            ("anonymous", None) => Subject::Anonymous,
            (k, _) => return Err(bad(seq, format!("actor kind {k:?}"))),
        };
        let org = match (col_opt_parse(row, "org_id")?, col::<Option<String>>(row, "org_name")?) {
            (Some(id), Some(name)) => Some(Named::new(id, name)),
            (None, None) => None,
            _ => return Err(bad(seq, "organization")),
        };
        let project = match (col_opt_parse(row, "project_id")?, col::<Option<String>>(row, "project_name")?) {
            (Some(id), Some(name)) => Some(Named::new(id, name)),
            (None, None) => None,
            _ => return Err(bad(seq, "project")),
        };
        let kind: String = col(row, "resource_kind")?;
        let resource_kind = ResourceKind::parse(&kind).ok_or_else(|| bad(seq, format!("resource kind {kind:?}")))?;
        let operation = Operation::new(col::<String>(row, "operation")?).map_err(|e| bad(seq, e))?;
        let outcome = if col_bool(row, "success")? {
            Outcome::Success
        } else {
            Outcome::Failure { reason: col::<Option<String>>(row, "reason")?.unwrap_or_default() }
        };
        let stored_details: String = col(row, "details")?;
        let details = if stored_details.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&stored_details).map_err(|e| bad(seq, e))?
        };
        let record = AuditRecord {
            id: col_parse(row, "id")?,
            seq: u64::try_from(seq).map_err(|e| bad(seq, e))?,
            at: col_ts(row, "at")?,
            event: AuditEvent {
                actor: Actor { subject, name: col(row, "actor_name")? },
                org,
                project,
                resource_kind,
                resource_id: col(row, "resource_id")?,
                resource_name: col(row, "resource_name")?,
                operation,
                outcome,
                details,
            },
            prev_hash: col(row, "prev_hash")?,
            hash: col(row, "hash")?,
        };
        Ok(StoredRecord { record, stored_details })
    };
    decode().map_err(|e| match e {
        Error::Integrity { what: "stored row", reason } => bad(seq, reason),
        other => other,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        let mut tx = self.write().await?;
        let record = append(self, &mut tx, event).await?;
        self.commit(tx).await?;
        Ok(record)
    }

    async fn query_audit(&self, query: &AuditQuery, scope: &AuditScope, page: &PageRequest) -> Result<Page<AuditRecord>> {
        let limit = page_limit(page)?;
        query.validate()?;
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1"));
        if !scope.all && !sql.within(&scope.orgs, "org_id IN ", &scope.projects, "project_id IN ", "") {
            return Ok(Page { items: Vec::new(), next: None });
        }
        if let Some(since) = query.since {
            sql.push(" AND at >= ").bind(ts(since));
        }
        if let Some(until) = query.until {
            sql.push(" AND at < ").bind(ts(until));
        }
        if let Some(actor) = &query.actor {
            sql.push(" AND actor_kind = ").bind(actor.kind().to_owned());
            match actor.id_string() {
                Some(id) => sql.push(" AND actor_id = ").bind(id),
                None => sql.push(" AND actor_id IS NULL"),
            };
        }
        if let Some(name) = &query.actor_name_contains {
            sql.push(" AND actor_name_key LIKE ").bind(like_contains(name)?).push(" ESCAPE '\\'");
        }
        if let Some(org) = query.org {
            sql.push(" AND org_id = ").bind(org.to_string());
        }
        if let Some(project) = query.project {
            sql.push(" AND project_id = ").bind(project.to_string());
        }
        if let Some(kind) = query.resource_kind {
            sql.push(" AND resource_kind = ").bind(kind.as_str().to_owned());
        }
        if let Some(id) = &query.resource_id {
            sql.push(" AND resource_id = ").bind(id.clone());
        }
        if let Some(op) = &query.operation {
            if let Some(prefix) = op.strip_suffix('.') {
                Operation::new(prefix)?;
                sql.push(" AND operation LIKE ").bind(format!("{}.%", prefix.replace('_', "\\_"))).push(" ESCAPE '\\'");
            } else {
                Operation::new(op.clone())?;
                sql.push(" AND operation = ").bind(op.clone());
            }
        }
        if let Some(success) = query.success {
            sql.push(" AND success = ").bind(i64::from(success));
        }
        if let Some(cursor) = &page.cursor {
            let before: i64 = cursor.parse().map_err(|_| Error::invalid("page.cursor", "not an audit cursor"))?;
            sql.push(" AND seq < ").bind(before);
        }
        sql.push(" ORDER BY seq DESC LIMIT ").bind(limit);
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| stored_from_row(r).map(|s| s.record)).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |r| r.seq.to_string()))
    }

    async fn audit_records_after(&self, seq: u64, limit: u32) -> Result<Vec<StoredRecord>> {
        let after = i64::try_from(seq).map_err(|_| Error::invalid("seq", "too large"))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")))
            .bind(after)
            .bind(i64::from(limit.clamp(1, 10_000)))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(stored_from_row).collect()
    }

    async fn audit_head(&self) -> Result<ChainHead> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::Integrity { what: "audit chain", reason: "the head row is missing".into() })?;
        Ok(ChainHead { seq: col_u64(&row, "seq")?, hash: col(&row, "hash")? })
    }
}
