//! Edge services, tags, synced information and configuration templates.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Transaction;
use sqlx::any::{Any, AnyRow};

use super::{Dialect, OnViolation, Sql, SqlStore, col, col_opt_ts, col_parse, col_ts, col_u64, like_contains, opt_ts, page_limit, ts};
use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::edge::{
    AgentId, Credentials, EdgeKind, EdgeLimits, EdgeSelector, EdgeService, EdgeStatus, ManagementMode, ProbeOutcome, TagUsage,
    TemplateRecord,
};
use crate::error::{Error, Result};
use crate::id::{EdgeServiceId, ProjectId};
use crate::page::{Page, PageRequest};
use crate::store::EdgeStore;
use crate::tenancy::model::name_key;

const COLUMNS: &str = "id, project_id, name, kind, mode, endpoint, cred_kind, cred_user, cred_secret, agent_id, version, status, \
                       last_seen, missed_probes, created_at, updated_at";

fn integrity(reason: String) -> Error {
    Error::Integrity { what: "stored row", reason }
}

/// Where an edge service's secret is sealed: bound to its row.
fn secret_context(id: impl std::fmt::Display) -> String {
    format!("edge_services.cred_secret:{id}")
}

fn service_from_row(store: &SqlStore, row: &AnyRow) -> Result<EdgeService> {
    let id: EdgeServiceId = col_parse(row, "id")?;
    let kind: String = col(row, "kind")?;
    let mode: String = col(row, "mode")?;
    let status: String = col(row, "status")?;
    let cred_kind: String = col(row, "cred_kind")?;
    let user: Option<String> = col(row, "cred_user")?;
    let secret: Option<String> =
        col::<Option<String>>(row, "cred_secret")?.map(|s| store.open_secret(&s, &secret_context(id))).transpose()?;
    let credentials = match (cred_kind.as_str(), user, secret) {
        ("none", _, _) => Credentials::None,
        ("basic", Some(username), Some(password)) => Credentials::Basic { username, password: SecretString::from(password) },
        ("token", _, Some(token)) => Credentials::Token(SecretString::from(token)),
        (k, _, _) => return Err(integrity(format!("credentials of kind {k:?} are incomplete"))),
    };
    Ok(EdgeService {
        id,
        project: col_parse(row, "project_id")?,
        name: col(row, "name")?,
        kind: EdgeKind::parse(&kind).ok_or_else(|| integrity(format!("edge kind {kind:?}")))?,
        mode: ManagementMode::parse(&mode).ok_or_else(|| integrity(format!("management mode {mode:?}")))?,
        endpoint: col(row, "endpoint")?,
        credentials,
        agent: col::<Option<String>>(row, "agent_id")?.map(AgentId::new).transpose().map_err(|e| integrity(format!("agent id: {e}")))?,
        tags: Vec::new(),
        version: col(row, "version")?,
        status: EdgeStatus::parse(&status).ok_or_else(|| integrity(format!("edge status {status:?}")))?,
        last_seen: col_opt_ts(row, "last_seen")?,
        missed_probes: u32::try_from(col_u64(row, "missed_probes")?).unwrap_or(u32::MAX),
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

/// A service from a row that also has the `tags_json` column ([`SqlStore::tags_column`]).
fn service_with_tags(store: &SqlStore, row: &AnyRow) -> Result<EdgeService> {
    let mut s = service_from_row(store, row)?;
    let json: String = col(row, "tags_json")?;
    s.tags = serde_json::from_str(&json).map_err(|e| integrity(format!("tags of edge service {}: {e}", s.id)))?;
    s.tags.sort();
    Ok(s)
}

/// The stored columns of credentials; a kind this store does not know (a newer `ecp-edge-api`'s)
/// is refused rather than stored without its secret.
fn credential_columns(c: &Credentials) -> Result<(&'static str, Option<String>, Option<String>)> {
    Ok(match c {
        Credentials::None => ("none", None, None),
        Credentials::Basic { username, password } => ("basic", Some(username.clone()), Some(password.expose_secret().to_owned())),
        Credentials::Token(t) => ("token", None, Some(t.expose_secret().to_owned())),
        other => return Err(Error::unsupported("storing credentials", other.kind())),
    })
}

/// A glob (`*`, `?`) as a `LIKE ... ESCAPE '\'` pattern, lowercase.
fn glob_to_like(glob: &str) -> Result<String> {
    super::no_nul(glob)?;
    let mut out = String::with_capacity(glob.len());
    for c in glob.to_lowercase().chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl SqlStore {
    /// Loads the tags of `services` and sorts them in.
    async fn attach_tags(&self, services: &mut [EdgeService]) -> Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        let index: HashMap<String, usize> = services.iter().enumerate().map(|(i, s)| (s.id.to_string(), i)).collect();
        let ids: Vec<&String> = index.keys().collect();
        for chunk in ids.chunks(Self::JSON_ROWS_PER_STATEMENT) {
            let mut sql = Sql::new("SELECT service_id, tag FROM edge_service_tags WHERE service_id IN ");
            self.push_json_list(&mut sql, chunk);
            let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
            for row in &rows {
                let id: String = col(row, "service_id")?;
                if let Some(i) = index.get(&id) {
                    services[*i].tags.push(col(row, "tag")?);
                }
            }
        }
        for s in services.iter_mut() {
            s.tags.sort();
        }
        Ok(())
    }

    /// Makes sure `tags` exist in the project, creating missing ones within the limit; returns those
    /// that could not be created.
    async fn ensure_tags(
        &self,
        tx: &mut Transaction<'static, Any>,
        project: ProjectId,
        tags: &[String],
        limits: &EdgeLimits,
        now: Timestamp,
    ) -> Result<HashSet<String>> {
        let rows = sqlx::query("SELECT name FROM tags WHERE project_id = $1")
            .bind(project.to_string())
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut existing: HashSet<String> = rows.iter().map(|r| col::<String>(r, "name")).collect::<Result<_>>()?;
        let mut refused = HashSet::new();
        for tag in tags {
            if existing.contains(tag) || refused.contains(tag) {
                continue;
            }
            if existing.len() as u64 >= limits.max_tags_per_project {
                refused.insert(tag.clone());
                continue;
            }
            sqlx::query("INSERT INTO tags (project_id, name, created_at) VALUES ($1, $2, $3)")
                .bind(project.to_string())
                .bind(tag.clone())
                .bind(ts(now))
                .execute(&mut **tx)
                .await
                .map_err(|e| self.err(e))?;
            existing.insert(tag.clone());
        }
        Ok(refused)
    }

    /// Inserts services (rows of `resources`, `edge_services`, `edge_service_tags`), up to
    /// [`SqlStore::JSON_ROWS_PER_STATEMENT`] per statement, each batch as one JSON parameter. All
    /// services are of `project`.
    async fn insert_services(
        &self,
        tx: &mut Transaction<'static, Any>,
        project: ProjectId,
        services: &[&EdgeService],
    ) -> std::result::Result<(), sqlx::Error> {
        // One array per service, read by position below:
        // 0 id, 1 name, 2 name_key, 3 kind, 4 mode, 5 endpoint, 6 cred_kind, 7 cred_user, 8 cred_secret,
        // 9 agent_id, 10 version, 11 status, 12 last_seen, 13 missed_probes, 14 created_at, 15 updated_at.
        type Row<'a> = (
            String,
            &'a str,
            String,
            &'a str,
            &'a str,
            &'a str,
            &'static str,
            Option<String>,
            Option<String>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            Option<i64>,
            i64,
            i64,
            i64,
        );
        let project = project.to_string();
        for chunk in services.chunks(Self::JSON_ROWS_PER_STATEMENT) {
            let mut rows: Vec<Row<'_>> = Vec::with_capacity(chunk.len());
            let mut tags: Vec<(String, &str)> = Vec::new();
            for s in chunk {
                // Checked before (create_edge_services refuses unknown kinds of credentials).
                let (ck, cu, cs) = credential_columns(&s.credentials).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                let cs = cs
                    .map(|v| self.seal_secret(&v, &secret_context(s.id)))
                    .transpose()
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                let id = s.id.to_string();
                tags.extend(s.tags.iter().map(|t| (id.clone(), t.as_str())));
                rows.push((
                    id,
                    &s.name,
                    name_key(&s.name),
                    s.kind.as_str(),
                    s.mode.as_str(),
                    &s.endpoint,
                    ck,
                    cu,
                    cs,
                    s.agent.as_ref().map(AgentId::as_str),
                    s.version.as_deref(),
                    s.status.as_str(),
                    opt_ts(s.last_seen),
                    i64::from(s.missed_probes),
                    ts(s.created_at),
                    ts(s.updated_at),
                ));
            }
            // Strings and integers always serialize.
            let json = serde_json::to_string(&rows).unwrap_or_default();
            drop(rows);
            let mut res = Sql::new("INSERT INTO resources (id, project_id, kind, name, name_key, created_at) SELECT value->>0, ");
            res.bind(project.clone()).push(", 'edge_service', value->>1, value->>2, CAST(value->>14 AS BIGINT) FROM ");
            self.push_json_rows(&mut res, json.clone());
            res.query().execute(&mut **tx).await?;
            let mut svc = Sql::new(
                "INSERT INTO edge_services (id, project_id, name, name_key, kind, mode, endpoint, cred_kind, cred_user, cred_secret, \
                 agent_id, version, status, last_seen, missed_probes, created_at, updated_at) SELECT value->>0, ",
            );
            svc.bind(project.clone()).push(
                ", value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9, value->>10, \
                 value->>11, CAST(value->>12 AS BIGINT), CAST(value->>13 AS BIGINT), CAST(value->>14 AS BIGINT), \
                 CAST(value->>15 AS BIGINT) FROM ",
            );
            self.push_json_rows(&mut svc, json);
            svc.query().execute(&mut **tx).await?;
            if !tags.is_empty() {
                let json = serde_json::to_string(&tags).unwrap_or_default();
                let mut t = Sql::new("INSERT INTO edge_service_tags (service_id, project_id, tag) SELECT value->>0, ");
                t.bind(project.clone()).push(", value->>1 FROM ");
                self.push_json_rows(&mut t, json);
                t.query().execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// A column `tags_json` for a query over `edge_services e`: the service's tags as a JSON
    /// array, so a service comes with its tags in one statement.
    fn tags_column(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "(SELECT json_group_array(tag) FROM edge_service_tags t WHERE t.service_id = e.id) AS tags_json",
            Dialect::Postgres => {
                "(SELECT COALESCE(json_agg(tag), '[]')::text FROM edge_service_tags t WHERE t.service_id = e.id) AS tags_json"
            }
        }
    }

    async fn fetch_service(&self, id: EdgeServiceId) -> Result<EdgeService> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS}, {} FROM edge_services e WHERE id = $1", self.tags_column())))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(|r| service_with_tags(self, r)).transpose()?.ok_or_else(|| Error::not_found("edge service", id))
    }

    fn selector_sql(&self, select: &str, project: ProjectId, sel: &EdgeSelector) -> Result<Sql> {
        sel.validate()?;
        let mut sql = Sql::new(select);
        // With a tag filter, the services of the tags (edge_service_tags_tag) are the rows to start
        // from; SQLite has no statistics by default and would rather scan the whole project by its
        // index on project_id and probe the tags per row (measured: 100,000 services, one tag of 100:
        // 52 ms). A unary `+` keeps the condition but takes the index out of the planner's choice.
        let tagged = !sel.all_tags.is_empty() || !sel.any_tags.is_empty();
        let project_column = if tagged && self.dialect == Dialect::Sqlite { " WHERE +e.project_id = " } else { " WHERE e.project_id = " };
        sql.push(project_column).bind(project.to_string());
        let list = |sql: &mut Sql, column: &str, values: Vec<String>| {
            if !values.is_empty() {
                sql.push(" AND ").push(column).push(" IN ").bind_list(values);
            }
        };
        list(&mut sql, "e.kind", sel.kinds.iter().map(|k| k.as_str().to_owned()).collect());
        list(&mut sql, "e.mode", sel.modes.iter().map(|m| m.as_str().to_owned()).collect());
        list(&mut sql, "e.status", sel.statuses.iter().map(|s| s.as_str().to_owned()).collect());
        if let Some(ids) = &sel.ids {
            if ids.is_empty() {
                sql.push(" AND 1 = 0");
            } else {
                list(&mut sql, "e.id", ids.iter().map(ToString::to_string).collect());
            }
        }
        if !sel.versions.is_empty() {
            sql.push(" AND (");
            for (i, v) in sel.versions.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                match v.strip_suffix('*') {
                    Some(prefix) => {
                        let pattern = format!("{}%", glob_to_like(prefix)?);
                        sql.push("e.version LIKE ").bind(pattern).push(" ESCAPE '\\'")
                    }
                    None => {
                        super::no_nul(v)?;
                        sql.push("e.version = ").bind(v.clone())
                    }
                };
            }
            sql.push(")");
        }
        if let Some(glob) = &sel.name {
            sql.push(" AND e.name_key LIKE ").bind(glob_to_like(glob)?).push(" ESCAPE '\\'");
        }
        if let Some(part) = &sel.endpoint_contains {
            sql.push(" AND LOWER(e.endpoint) LIKE ").bind(like_contains(part)?).push(" ESCAPE '\\'");
        }
        let mut all: Vec<String> = sel.all_tags.clone();
        all.sort();
        all.dedup();
        // One indexed lookup per tag (edge_service_tags_tag: project, tag, service): the planner
        // starts from the rarest and probes the others, where GROUP BY ... HAVING COUNT(*) read and
        // grouped every row of every tag first.
        for tag in all {
            sql.push(" AND e.id IN (SELECT service_id FROM edge_service_tags WHERE project_id = ").bind(project.to_string());
            sql.push(" AND tag = ").bind(tag).push(")");
        }
        if !sel.any_tags.is_empty() {
            sql.push(" AND e.id IN (SELECT service_id FROM edge_service_tags WHERE project_id = ").bind(project.to_string());
            sql.push(" AND tag IN ").bind_list(sel.any_tags.clone()).push(")");
        }
        Ok(sql)
    }
}

#[async_trait]
impl EdgeStore for SqlStore {
    async fn create_edge_services(&self, services: &[EdgeService], limits: &EdgeLimits, audit: &AuditEvent) -> Result<Vec<Result<()>>> {
        let Some(first) = services.first() else { return Ok(Vec::new()) };
        let project = first.project;
        if services.iter().any(|s| s.project != project) {
            return Err(Error::invalid("services", "all must be of one project"));
        }
        let mut results: Vec<Result<()>> = Vec::with_capacity(services.len());
        for s in services {
            results.push(crate::tenancy::validate_resource_name(&s.name).and_then(|()| crate::edge::validate_endpoint(&s.endpoint)));
        }
        let mut tx = self.write().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM projects WHERE id = $1")
            .bind(project.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            return Err(Error::not_found("project", project));
        }
        // Names taken in the project, and twice in this call.
        let keys: Vec<String> = services.iter().map(|s| name_key(&s.name)).collect();
        let mut taken: HashSet<String> = HashSet::new();
        for chunk in keys.chunks(Self::JSON_ROWS_PER_STATEMENT) {
            let mut sql = Sql::new("SELECT name_key FROM edge_services WHERE project_id = ");
            sql.bind(project.to_string()).push(" AND name_key IN ");
            self.push_json_list(&mut sql, chunk);
            for row in sql.query().fetch_all(&mut *tx).await.map_err(|e| self.err(e))? {
                taken.insert(col(&row, "name_key")?);
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if results[i].is_err() {
                continue;
            }
            if taken.contains(key) {
                results[i] = Err(Error::conflict("edge service", &services[i].name, "the name is taken in this project"));
            } else if let Some(first) = seen.insert(key.as_str(), i) {
                seen.insert(key.as_str(), first);
                results[i] = Err(Error::conflict("edge service", &services[i].name, "the name appears twice"));
            }
        }
        // A license past its validity lets nothing new draw on it.
        if limits.check_license(self.now()).is_err() {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = limits.check_license(self.now());
            }
        }
        // The license's edge service count, over the whole installation.
        if limits.max_edge_services != u64::MAX {
            self.license_lock(&mut tx).await?;
            let row = sqlx::query("SELECT COUNT(*) AS n FROM edge_services").fetch_one(&mut *tx).await.map_err(|e| self.err(e))?;
            let mut left = limits.max_edge_services.saturating_sub(col_u64(&row, "n")?);
            for r in &mut results {
                if r.is_ok() {
                    if left == 0 {
                        *r = Err(Error::LimitExceeded { limit: "licensed edge services", max: limits.max_edge_services });
                    } else {
                        left -= 1;
                    }
                }
            }
        }
        // Credentials this store can keep.
        for (i, s) in services.iter().enumerate() {
            if results[i].is_ok()
                && let Err(e) = credential_columns(&s.credentials)
            {
                results[i] = Err(e);
            }
        }
        // Tags, within the project's limit.
        let mut wanted: Vec<String> = Vec::new();
        for (i, s) in services.iter().enumerate() {
            if results[i].is_ok() {
                wanted.extend(s.tags.iter().cloned());
            }
        }
        let refused = self.ensure_tags(&mut tx, project, &wanted, limits, first.created_at).await?;
        for (i, s) in services.iter().enumerate() {
            if results[i].is_ok() && s.tags.iter().any(|t| refused.contains(t)) {
                results[i] = Err(Error::LimitExceeded { limit: "tags per project", max: limits.max_tags_per_project });
            }
        }
        let good: Vec<&EdgeService> = services.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(s, _)| s).collect();
        sqlx::query("SAVEPOINT bulk").execute(&mut *tx).await.map_err(|e| self.err(e))?;
        if let Err(bulk) = self.insert_services(&mut tx, project, &good).await {
            // Someone raced us for a name: insert row by row, each in its own savepoint.
            tracing::debug!(error = %bulk, "bulk insert of edge services failed; inserting one by one");
            sqlx::query("ROLLBACK TO SAVEPOINT bulk").execute(&mut *tx).await.map_err(|e| self.err(e))?;
            for (i, s) in services.iter().enumerate() {
                if results[i].is_err() {
                    continue;
                }
                sqlx::query("SAVEPOINT one").execute(&mut *tx).await.map_err(|e| self.err(e))?;
                match self.insert_services(&mut tx, project, &[s]).await {
                    Ok(()) => {
                        sqlx::query("RELEASE SAVEPOINT one").execute(&mut *tx).await.map_err(|e| self.err(e))?;
                    }
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT one").execute(&mut *tx).await.map_err(|e| self.err(e))?;
                        results[i] = Err::<(), sqlx::Error>(e).on_violation(
                            || Error::conflict("edge service", &s.name, "the id or name is taken"),
                            || Error::not_found("project", project),
                        );
                    }
                }
            }
        }
        // The record says something was registered: a call that stored nothing writes none, and
        // its caller records the refusal.
        if results.iter().any(Result::is_ok) {
            self.append_in(&mut tx, audit).await?;
        }
        self.commit(tx).await?;
        Ok(results)
    }

    async fn get_edge_service(&self, id: EdgeServiceId) -> Result<EdgeService> {
        self.fetch_service(id).await
    }

    async fn select_edge_services(&self, project: ProjectId, selector: &EdgeSelector, page: &PageRequest) -> Result<Page<EdgeService>> {
        let limit = page_limit(page)?;
        // The page and its tags in one statement.
        let mut sql = self.selector_sql(&format!("SELECT {COLUMNS}, {} FROM edge_services e", self.tags_column()), project, selector)?;
        if let Some(cursor) = &page.cursor {
            sql.push(" AND e.id > ").bind(cursor.clone());
        }
        sql.push(" ORDER BY e.id LIMIT ").bind(limit);
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| service_with_tags(self, r)).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |s| s.id.to_string()))
    }

    async fn count_edge_services(&self, project: ProjectId, selector: &EdgeSelector) -> Result<u64> {
        let sql = self.selector_sql("SELECT COUNT(*) AS n FROM edge_services e", project, selector)?;
        let row = sql.query().fetch_one(&self.pool).await.map_err(|e| self.err(e))?;
        col_u64(&row, "n")
    }

    async fn update_edge_service(&self, s: &EdgeService, limits: &EdgeLimits, audit: &AuditEvent) -> Result<()> {
        crate::tenancy::validate_resource_name(&s.name)?;
        crate::edge::validate_endpoint(&s.endpoint)?;
        let tags = crate::edge::normalize_tags(s.tags.clone())?;
        let mut tx = self.write().await?;
        let (ck, cu, cs) = credential_columns(&s.credentials)?;
        let cs = cs.map(|v| self.seal_secret(&v, &secret_context(s.id))).transpose()?;
        let done = sqlx::query(
            "UPDATE edge_services SET name = $1, name_key = $2, endpoint = $3, cred_kind = $4, cred_user = $5, cred_secret = $6, \
             agent_id = $7, mode = $8, updated_at = $9 WHERE id = $10",
        )
        .bind(s.name.clone())
        .bind(name_key(&s.name))
        .bind(s.endpoint.clone())
        .bind(ck)
        .bind(cu)
        .bind(cs)
        .bind(s.agent.as_ref().map(|a| a.as_str().to_owned()))
        .bind(s.mode.as_str())
        .bind(ts(s.updated_at))
        .bind(s.id.to_string())
        .execute(&mut *tx)
        .await
        .on_violation(
            || Error::conflict("edge service", &s.name, "the name is taken in this project"),
            || Error::not_found("edge service", s.id),
        )?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("edge service", s.id));
        }
        sqlx::query("UPDATE resources SET name = $1, name_key = $2 WHERE id = $3")
            .bind(s.name.clone())
            .bind(name_key(&s.name))
            .bind(s.id.to_string())
            .execute(&mut *tx)
            .await
            .on_violation(
                || Error::conflict("edge service", &s.name, "the name is taken in this project"),
                || Error::not_found("edge service", s.id),
            )?;
        if !self.ensure_tags(&mut tx, s.project, &tags, limits, s.updated_at).await?.is_empty() {
            return Err(Error::LimitExceeded { limit: "tags per project", max: limits.max_tags_per_project });
        }
        sqlx::query("DELETE FROM edge_service_tags WHERE service_id = $1")
            .bind(s.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for t in &tags {
            sqlx::query("INSERT INTO edge_service_tags (service_id, project_id, tag) VALUES ($1, $2, $3)")
                .bind(s.id.to_string())
                .bind(s.project.to_string())
                .bind(t.clone())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn delete_edge_service(&self, id: EdgeServiceId, audit: &AuditEvent) -> Result<()> {
        let statement = sqlx::query("DELETE FROM resources WHERE id = $1 AND kind = 'edge_service'").bind(id.to_string());
        self.change_one(statement, || Error::not_found("edge service", id), audit).await
    }

    async fn record_probe(&self, id: EdgeServiceId, outcome: &ProbeOutcome, offline_after: u32) -> Result<EdgeService> {
        let answered = i64::from(outcome.answered);
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE edge_services SET \
               status = CASE WHEN $1 = 1 THEN 'online' WHEN missed_probes + 1 >= $2 THEN 'offline' ELSE status END, \
               missed_probes = CASE WHEN $1 = 1 THEN 0 ELSE missed_probes + 1 END, \
               last_seen = CASE WHEN $1 = 1 THEN $3 ELSE last_seen END, \
               version = CASE WHEN $1 = 1 THEN COALESCE($4, version) ELSE version END, \
               updated_at = $3 \
             WHERE id = $5 RETURNING {COLUMNS}"
        )))
        .bind(answered)
        .bind(i64::from(offline_after.max(1)))
        .bind(ts(outcome.at))
        .bind(outcome.version.clone())
        .bind(id.to_string())
        .fetch_optional(&self.writes)
        .await
        .map_err(|e| self.err(e))?;
        let mut s = vec![row.as_ref().map(|r| service_from_row(self, r)).transpose()?.ok_or_else(|| Error::not_found("edge service", id))?];
        self.attach_tags(&mut s).await?;
        Ok(s.remove(0))
    }

    async fn save_edge_info(&self, id: EdgeServiceId, info: &serde_json::Value, at: Timestamp) -> Result<()> {
        let done = sqlx::query("UPDATE edge_services SET info = $1, info_at = $2 WHERE id = $3")
            .bind(info.to_string())
            .bind(ts(at))
            .bind(id.to_string())
            .execute(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("edge service", id));
        }
        Ok(())
    }

    async fn edge_infos(&self, project: ProjectId) -> Result<Vec<(EdgeServiceId, String, serde_json::Value)>> {
        let rows = sqlx::query("SELECT id, name, info FROM edge_services WHERE project_id = $1 AND info IS NOT NULL ORDER BY id")
            .bind(project.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let info: String = col(r, "info")?;
                let info = serde_json::from_str(&info).map_err(|e| integrity(format!("edge info: {e}")))?;
                Ok((col_parse(r, "id")?, col(r, "name")?, info))
            })
            .collect()
    }

    async fn list_tags(&self, project: ProjectId) -> Result<Vec<TagUsage>> {
        let rows = sqlx::query(
            "SELECT t.name AS name, COUNT(s.service_id) AS n FROM tags t LEFT JOIN edge_service_tags s \
             ON s.project_id = t.project_id AND s.tag = t.name WHERE t.project_id = $1 GROUP BY t.name ORDER BY t.name",
        )
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(|r| Ok(TagUsage { name: col(r, "name")?, services: col_u64(r, "n")? })).collect()
    }

    async fn create_tag(&self, project: ProjectId, name: &str, limits: &EdgeLimits, now: Timestamp, audit: &AuditEvent) -> Result<()> {
        crate::edge::validate_tag(name)?;
        let mut tx = self.write().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tags WHERE project_id = $1")
            .bind(project.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if col_u64(&row, "n")? >= limits.max_tags_per_project {
            return Err(Error::LimitExceeded { limit: "tags per project", max: limits.max_tags_per_project });
        }
        sqlx::query("INSERT INTO tags (project_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(project.to_string())
            .bind(name.to_owned())
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .on_violation(|| Error::conflict("tag", name, "it exists"), || Error::not_found("project", project))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn delete_tag(&self, project: ProjectId, name: &str, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let used = sqlx::query("SELECT COUNT(*) AS n FROM edge_service_tags WHERE project_id = $1 AND tag = $2")
            .bind(project.to_string())
            .bind(name.to_owned())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let n = col_u64(&used, "n")?;
        if n > 0 {
            return Err(Error::conflict("tag", name, format!("{n} edge services carry it")));
        }
        let done = sqlx::query("DELETE FROM tags WHERE project_id = $1 AND name = $2")
            .bind(project.to_string())
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await
            .on_violation(|| Error::conflict("tag", name, "still in use"), || Error::conflict("tag", name, "edge services carry it"))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("tag", name));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn save_template(&self, t: &TemplateRecord, audit: &AuditEvent) -> Result<()> {
        crate::tenancy::validate_resource_name(&t.name)?;
        let mut tx = self.write().await?;
        let clash = sqlx::query("SELECT 1 AS one FROM config_templates WHERE project_id = $1 AND name_key = $2 AND id <> $3")
            .bind(t.project.to_string())
            .bind(name_key(&t.name))
            .bind(t.id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if clash.is_some() {
            return Err(Error::conflict("template", &t.name, "the name is taken in this project"));
        }
        let latest = sqlx::query("SELECT MAX(version) AS v, MIN(project_id) AS p FROM config_templates WHERE id = $1")
            .bind(t.id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let latest: Option<i64> = col(&latest, "v")?;
        let expected = latest.map_or(1, |v| v + 1);
        if i64::from(t.version) != expected {
            return Err(Error::conflict(
                "template",
                &t.name,
                format!("version {} does not follow the latest ({})", t.version, expected - 1),
            ));
        }
        sqlx::query(
            "INSERT INTO config_templates (id, version, project_id, name, name_key, kind, body, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(t.id.to_string())
        .bind(i64::from(t.version))
        .bind(t.project.to_string())
        .bind(t.name.clone())
        .bind(name_key(&t.name))
        .bind(t.kind.clone())
        .bind(t.body.to_string())
        .bind(t.created_by.clone())
        .bind(ts(t.created_at))
        .execute(&mut *tx)
        .await
        .on_violation(|| Error::conflict("template", &t.name, "this version exists"), || Error::not_found("project", t.project))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_template(&self, id: crate::id::TemplateId, version: Option<u32>) -> Result<TemplateRecord> {
        let mut sql =
            Sql::new("SELECT id, version, project_id, name, kind, body, created_by, created_at FROM config_templates WHERE id = ");
        sql.bind(id.to_string());
        if let Some(v) = version {
            sql.push(" AND version = ").bind(i64::from(v));
        }
        sql.push(" ORDER BY version DESC LIMIT 1");
        let row = sql.query().fetch_optional(&self.pool).await.map_err(|e| self.err(e))?;
        row.as_ref().map(template_from_row).transpose()?.ok_or_else(|| Error::not_found("template", id))
    }

    async fn list_templates(&self, project: ProjectId) -> Result<Vec<TemplateRecord>> {
        let rows = sqlx::query(
            "SELECT c.id, c.version, c.project_id, c.name, c.kind, c.body, c.created_by, c.created_at FROM config_templates c \
             WHERE c.project_id = $1 AND c.version = (SELECT MAX(d.version) FROM config_templates d WHERE d.id = c.id) ORDER BY c.name_key",
        )
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(template_from_row).collect()
    }
}

fn template_from_row(row: &AnyRow) -> Result<TemplateRecord> {
    let body: String = col(row, "body")?;
    Ok(TemplateRecord {
        id: col_parse(row, "id")?,
        version: u32::try_from(col_u64(row, "version")?).unwrap_or(u32::MAX),
        project: col_parse(row, "project_id")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        body: serde_json::from_str(&body).map_err(|e| integrity(format!("template body: {e}")))?,
        created_by: col(row, "created_by")?,
        created_at: col_ts(row, "created_at")?,
    })
}
