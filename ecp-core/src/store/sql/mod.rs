//! [`SqlStore`]: the SQLite and PostgreSQL backends, one implementation over sqlx's `Any` driver.
//!
//! The schema and every statement are written once for both databases (TEXT ids, BIGINT
//! microsecond times, `$n` parameters); where they differ (how a write transaction starts, pragmas)
//! the [`Dialect`] decides.

mod agent;
mod audit;
mod cluster;
mod documents;
mod edge;
mod identity;
mod signals;
mod task;
mod tenancy;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{Any, AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Arguments, AssertSqlSafe, Executor, Row, SqlSafeStr, Transaction};

use crate::audit::{AuditEvent, AuditRecord};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::sealing::{KeyProvider, SEALED_PREFIX, Sealer, StaticKeys};
use crate::store::Store;

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// Where and how a [`SqlStore`] connects. Build one with [`SqlStoreConfig::builder`].
#[derive(Clone)]
#[non_exhaustive]
pub struct SqlStoreConfig {
    url: SecretString,
    dialect: Dialect,
    memory: bool,
    max_connections: u32,
    acquire_timeout: Duration,
    busy_timeout: Duration,
    clock: Arc<dyn Clock>,
    keys: Option<Arc<dyn KeyProvider>>,
}

impl fmt::Debug for SqlStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStoreConfig")
            .field("url", &"[REDACTED]")
            .field("dialect", &self.dialect)
            .field("memory", &self.memory)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .finish_non_exhaustive()
    }
}

impl SqlStoreConfig {
    /// A builder for a database URL: `sqlite::memory:`, `sqlite://path/to/ecp.db` (created if
    /// missing), or `postgres://user:password@host:port/db`. The URL may hold a password, so it is a
    /// secret.
    pub fn builder(url: SecretString) -> SqlStoreConfigBuilder {
        SqlStoreConfigBuilder {
            url,
            max_connections: None,
            acquire_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            keys: None,
        }
    }

    /// An in-memory SQLite database (gone when the store is dropped).
    pub fn sqlite_memory() -> SqlStoreConfigBuilder {
        Self::builder(SecretString::from("sqlite::memory:"))
    }

    /// A SQLite database in a file, created if missing.
    pub fn sqlite_file(path: impl AsRef<std::path::Path>) -> SqlStoreConfigBuilder {
        Self::builder(SecretString::from(format!("sqlite://{}?mode=rwc", path.as_ref().display())))
    }
}

/// Builds a [`SqlStoreConfig`]; [`build`](Self::build) validates.
#[derive(Debug)]
pub struct SqlStoreConfigBuilder {
    url: SecretString,
    max_connections: Option<u32>,
    acquire_timeout: Duration,
    busy_timeout: Duration,
    clock: Arc<dyn Clock>,
    keys: Option<Arc<dyn KeyProvider>>,
}

impl SqlStoreConfigBuilder {
    /// Connections in the pool (default: 8 for PostgreSQL and a SQLite file, 1 for SQLite in memory,
    /// which cannot be shared). A SQLite file has one more, for writes only: SQLite takes one
    /// writer at a time, so writes queue for that connection while reads use the pool.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// How long a request waits for a free connection (default 30 s).
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// How long SQLite waits for a lock held by another connection (default 10 s).
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }

    /// The clock that times audit records (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The keys that seal the secrets the store keeps (edge services' passwords and tokens,
    /// clusters' API secrets) with AES-256-GCM; see [`crate::sealing`]. Without keys a store in
    /// memory seals under a random key of its own, and a store in a file or on PostgreSQL keeps
    /// secrets in plain text (and says so in a warning when it connects).
    pub fn keys(mut self, keys: Arc<dyn KeyProvider>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The config.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown URL scheme or a zero pool size;
    /// [`Error::Unsupported`] for a backend this build leaves out (cargo features `sqlite`,
    /// `postgres`).
    pub fn build(self) -> Result<SqlStoreConfig> {
        let url = self.url.expose_secret();
        let (dialect, memory) = if url.starts_with("sqlite:") {
            (Dialect::Sqlite, url.contains(":memory:") || url.contains("mode=memory"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, false)
        } else {
            return Err(Error::invalid("url", "must start with sqlite: or postgres://"));
        };
        if dialect == Dialect::Sqlite && !cfg!(feature = "sqlite") {
            return Err(Error::unsupported("connect", "sqlite (build with the `sqlite` feature)"));
        }
        if dialect == Dialect::Postgres && !cfg!(feature = "postgres") {
            return Err(Error::unsupported("connect", "postgres (build with the `postgres` feature)"));
        }
        let max_connections = match (self.max_connections, memory) {
            (_, true) => 1,
            (Some(0), _) => return Err(Error::invalid("max_connections", "must be at least 1")),
            (Some(n), _) => n,
            (None, _) => 8,
        };
        Ok(SqlStoreConfig {
            url: self.url,
            dialect,
            memory,
            max_connections,
            acquire_timeout: self.acquire_timeout,
            busy_timeout: self.busy_timeout,
            clock: self.clock,
            keys: self.keys,
        })
    }
}

/// The SQL store: SQLite or PostgreSQL. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct SqlStore {
    /// Reads (and, except on a SQLite file, writes).
    pool: AnyPool,
    /// Write transactions and single-statement writes: one connection on a SQLite file, else the
    /// same pool.
    writes: AnyPool,
    dialect: Dialect,
    clock: Arc<dyn Clock>,
    /// Seals the secrets the store keeps; `None` only on a store given no keys (plain text).
    sealer: Option<Sealer>,
    /// What other replicas signal (PostgreSQL only).
    listener: Option<Arc<signals::Listener>>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore").field("backend", &self.dialect.name()).finish_non_exhaustive()
    }
}

fn migrator() -> Migrator {
    let m = |version, name: &'static str, sql: &'static str| {
        Migration::new(version, name.into(), MigrationType::Simple, sql.into_sql_str(), false)
    };
    Migrator::with_migrations(vec![
        m(1, "foundation", include_str!("../../../migrations/0001_foundation.sql")),
        m(2, "tasks", include_str!("../../../migrations/0002_tasks.sql")),
        m(3, "edge", include_str!("../../../migrations/0003_edge.sql")),
        m(4, "agents", include_str!("../../../migrations/0004_agents.sql")),
        m(5, "clusters", include_str!("../../../migrations/0005_clusters.sql")),
        m(6, "task_secrets", include_str!("../../../migrations/0006_task_secrets.sql")),
        m(7, "refresh_history", include_str!("../../../migrations/0007_refresh_history.sql")),
        m(8, "agent_claims", include_str!("../../../migrations/0008_agent_claims.sql")),
        m(9, "search_keys", include_str!("../../../migrations/0009_search_keys.sql")),
        m(10, "task_control", include_str!("../../../migrations/0010_task_control.sql")),
        m(11, "documents", include_str!("../../../migrations/0011_documents.sql")),
    ])
}

impl SqlStore {
    /// Connects and brings the schema up to date (migrations are embedded; on PostgreSQL several
    /// replicas starting at once take turns through an advisory lock).
    ///
    /// # Errors
    /// [`Error::Backend`] if the database cannot be reached or migrated.
    pub async fn connect(config: SqlStoreConfig) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = config.dialect;
        let busy_ms = config.busy_timeout.as_millis().min(i32::MAX as u128);
        let options = |max: u32| {
            let mut opts = AnyPoolOptions::new().max_connections(max).acquire_timeout(config.acquire_timeout);
            if dialect == Dialect::Sqlite {
                // A local file: nothing to lose a connection to, so no ping before each use (measured:
                // 7% of a fleet rollout's control-plane CPU).
                opts = opts.test_before_acquire(false);
            }
            if config.memory {
                // An in-memory SQLite database lives as long as its one connection.
                opts = opts.min_connections(1).idle_timeout(None).max_lifetime(None);
            }
            opts.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute(AssertSqlSafe(format!("PRAGMA busy_timeout = {busy_ms}"))).await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
        };
        let unreachable = |e: sqlx::Error| Error::Backend { backend: dialect.name(), retryable: true, source: redact(e) };
        let pool = options(config.max_connections).connect(config.url.expose_secret()).await.map_err(unreachable)?;
        migrator().run(&pool).await.map_err(|e| Error::backend(dialect.name(), e))?;
        backfill_search_keys(&pool).await?;
        // SQLite takes one writer at a time. Pooled connections that all try would wait for its lock
        // in its busy handler (sleeps and retries, measured at half the CPU of a fleet rollout); with
        // one connection for writes they queue here instead, in order, while reads go on in
        // parallel on the others (WAL).
        let writes = if dialect == Dialect::Sqlite && !config.memory {
            options(1).connect(config.url.expose_secret()).await.map_err(unreachable)?
        } else {
            pool.clone()
        };
        let sealer = match config.keys {
            Some(keys) => Some(Sealer::new(keys)),
            // An in-memory store lives as long as the process: a key of its own seals its secrets.
            None if config.memory => Some(Sealer::new(Arc::new(StaticKeys::random("memory")?))),
            None => {
                tracing::warn!("the store has no KeyProvider: secrets are stored in plain text (SqlStoreConfigBuilder::keys)");
                None
            }
        };
        let listener = match dialect {
            #[cfg(feature = "postgres")]
            Dialect::Postgres => Some(Arc::new(signals::Listener::start(&config.url).await?)),
            _ => None,
        };
        Ok(SqlStore { pool, writes, dialect, clock: config.clock, sealer, listener })
    }

    /// An in-memory SQLite store with default settings.
    ///
    /// # Errors
    /// [`Error::Backend`] if SQLite fails to start.
    pub async fn memory() -> Result<Self> {
        Self::connect(SqlStoreConfig::sqlite_memory().build()?).await
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Some(l) = &self.listener {
            l.stop();
        }
        self.writes.close().await;
        self.pool.close().await;
    }

    fn err(&self, e: sqlx::Error) -> Error {
        map_sqlx(self.dialect.name(), e)
    }

    /// `plain` as stored: sealed under the current key for `context` (table, column and row),
    /// or as is when the store has no keys.
    pub(crate) fn seal_secret(&self, plain: &str, context: &str) -> Result<String> {
        match &self.sealer {
            Some(s) => s.seal(plain, context),
            None => Ok(plain.to_owned()),
        }
    }

    /// A stored secret opened (a value stored before keys were set is read as is).
    pub(crate) fn open_secret(&self, stored: &str, context: &str) -> Result<String> {
        match &self.sealer {
            Some(s) => s.open(stored, context),
            None if stored.starts_with(SEALED_PREFIX) => {
                Err(Error::backend("sealing", "a sealed secret is stored and the store has no keys (SqlStoreConfigBuilder::keys)"))
            }
            None => Ok(stored.to_owned()),
        }
    }

    /// Whether the store seals the secrets it keeps (it was given keys, or lives in memory).
    pub fn seals_secrets(&self) -> bool {
        self.sealer.is_some()
    }

    /// Re-seals up to `batch` stored secrets that are not sealed under the current key (older
    /// keys, or plain text from before keys were set) and returns how many it re-sealed: call it
    /// until it answers 0. Each call is a transaction of its own, so a rotation interrupted
    /// half-way resumes where it stopped.
    ///
    /// # Errors
    /// `Unsupported` on a store without keys, `Backend` (an integrity failure for a value no key
    /// opens).
    pub async fn rotate_secrets(&self, batch: u32) -> Result<u64> {
        let Some(sealer) = &self.sealer else { return Err(Error::unsupported("rotating secrets", "a store without keys")) };
        let current = format!("{SEALED_PREFIX}{}:%", sealer.current());
        let mut done = 0u64;
        for (table, column, context) in [
            ("edge_services", "cred_secret", "edge_services.cred_secret"),
            ("clusters", "api_secret", "clusters.api_secret"),
            ("tasks", "secrets", "tasks.secrets"),
        ] {
            let left = u64::from(batch).saturating_sub(done);
            if left == 0 {
                break;
            }
            let mut tx = self.write().await?;
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT id, {column} AS secret FROM {table} WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 ORDER BY id LIMIT {left}"
            )))
            .bind(current.clone())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            for row in &rows {
                let id: String = col(row, "id")?;
                let stored: String = col(row, "secret")?;
                let ctx = format!("{context}:{id}");
                let resealed = sealer.seal(&sealer.open(&stored, &ctx)?, &ctx)?;
                sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET {column} = $1 WHERE id = $2")))
                    .bind(resealed)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            self.commit(tx).await?;
            done += rows.len() as u64;
        }
        Ok(done)
    }

    /// Starts a write transaction. SQLite takes its write lock at once (`BEGIN IMMEDIATE`), so a
    /// transaction never fails half-way to upgrade a read lock.
    async fn write(&self) -> Result<Transaction<'static, Any>> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.writes.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        };
        tx.map_err(|e| self.err(e))
    }

    async fn commit(&self, tx: Transaction<'static, Any>) -> Result<()> {
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Appends an audit record inside `tx`: the head row is locked first, so appends are serialized
    /// across connections and replicas and the chain never forks.
    async fn append_in(&self, tx: &mut Transaction<'static, Any>, event: &AuditEvent) -> Result<AuditRecord> {
        audit::append(self, tx, event).await
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Finishes a keyset-paged listing: appends the cursor condition and the order, fetches one row
    /// more than the page holds (to know whether another page follows), and maps the rows.
    /// How many rows of `params_per_row` parameters go into one statement, and how many values
    /// into one `IN (...)` list. SQLite looks a numbered parameter's name up by a linear scan of
    /// the statement's parameter list (`sqlite3_bind_parameter_name`), so binding a statement of
    /// `p` parameters costs O(p²): measured at half the time of a 100,000-row import with 3,400
    /// parameters per statement. Small statements there; large ones on PostgreSQL, where each
    /// statement is a round trip.
    pub(super) fn rows_per_statement(&self, params_per_row: usize) -> usize {
        let budget = match self.dialect {
            Dialect::Sqlite => 96,
            Dialect::Postgres => 4_000,
        };
        (budget / params_per_row.max(1)).max(1)
    }

    /// Rows per statement when the rows travel as one JSON parameter ([`SqlStore::push_json_rows`]).
    pub(super) const JSON_ROWS_PER_STATEMENT: usize = 2_000;

    /// Appends a `FROM` item yielding one row per element of the JSON array `rows` (arrays of
    /// scalars), bound as ONE parameter: columns are read as `value->>0`, `value->>1` ... (text;
    /// `CAST(value->>n AS BIGINT)` for integers, JSON null is SQL NULL on both databases). Many rows
    /// in one statement without binding many parameters: SQLite binds a statement of `p` parameters
    /// in O(p²) (see [`SqlStore::rows_per_statement`]), PostgreSQL pays a round trip per statement.
    pub(super) fn push_json_rows<'s>(&self, sql: &'s mut Sql, rows: String) -> &'s mut Sql {
        match self.dialect {
            Dialect::Sqlite => sql.push("json_each(").bind(rows).push(")"),
            Dialect::Postgres => sql.push("json_array_elements(").bind(rows).push("::json) AS j(value)"),
        }
    }

    /// Appends `(SELECT value->>0 FROM <json rows>)`: a list of strings bound as one parameter, for
    /// `IN`.
    pub(super) fn push_json_list<'s, S: AsRef<str>>(&self, sql: &'s mut Sql, values: &[S]) -> &'s mut Sql {
        let rows: Vec<[&str; 1]> = values.iter().map(|v| [v.as_ref()]).collect();
        // Serializing strings cannot fail.
        let json = serde_json::to_string(&rows).unwrap_or_default();
        sql.push("(SELECT value->>0 FROM ");
        self.push_json_rows(sql, json).push(")")
    }

    async fn fetch_page<T>(
        &self,
        mut sql: Sql,
        page: &crate::page::PageRequest,
        from_row: impl Fn(&AnyRow) -> Result<T>,
        cursor_of: impl Fn(&T) -> String,
    ) -> Result<crate::page::Page<T>> {
        let limit = page_limit(page)?;
        if let Some(cursor) = &page.cursor {
            sql.push(" AND id > ").bind(cursor.clone());
        }
        sql.push(" ORDER BY id LIMIT ").bind(limit);
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(crate::page::Page::from_overfetch(items, page.limit, cursor_of))
    }

    /// Runs a statement that must change exactly one row, and its audit record, in one transaction.
    async fn change_one(
        &self,
        statement: sqlx::query::Query<'static, Any, AnyArguments>,
        missing: impl FnOnce() -> Error,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let done = statement.execute(&mut *tx).await.map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(missing());
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.dialect.name()
    }

    fn signals(&self) -> Option<tokio::sync::broadcast::Receiver<crate::store::StoreSignal>> {
        self.listener.as_ref().map(|l| l.tx.subscribe())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// A connection error may echo the URL; keep only its kind.
fn redact(e: sqlx::Error) -> crate::error::BoxError {
    match e {
        sqlx::Error::Configuration(_) => "invalid database configuration (details withheld: the url may hold a password)".into(),
        other => Box::new(other),
    }
}

/// Maps a sqlx error to ours: lost connections, busy databases, serialization failures and
/// deadlocks are retryable; constraint violations are conflicts.
pub(super) fn map_sqlx(backend: &'static str, e: sqlx::Error) -> Error {
    let retryable = match &e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return Error::conflict("record", db.constraint().unwrap_or("unique"), "already exists");
            }
            if db.is_foreign_key_violation() {
                return Error::conflict("record", db.constraint().unwrap_or("reference"), "is referenced or references a missing record");
            }
            // PostgreSQL: serialization_failure, deadlock_detected, lock_not_available. SQLite: BUSY,
            // LOCKED and their extended codes.
            matches!(db.code().as_deref(), Some("40001" | "40P01" | "55P03" | "5" | "6" | "261" | "517" | "262"))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        _ => false,
    };
    Error::Backend { backend, retryable, source: Box::new(e) }
}

/// What a constraint violation means at a call site.
pub(super) trait OnViolation<T> {
    /// Replaces a unique violation with `conflict()`, and a foreign-key violation with `missing()`.
    fn on_violation(self, conflict: impl FnOnce() -> Error, missing: impl FnOnce() -> Error) -> Result<T>;
}

impl<T> OnViolation<T> for std::result::Result<T, sqlx::Error> {
    fn on_violation(self, conflict: impl FnOnce() -> Error, missing: impl FnOnce() -> Error) -> Result<T> {
        match self {
            Ok(v) => Ok(v),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(conflict()),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => Err(missing()),
            Err(e) => Err(map_sqlx("sql", e)),
        }
    }
}

/// A statement with `$n` parameters built at run time (both databases understand `$n`).
pub(super) struct Sql {
    text: String,
    args: AnyArguments,
    n: usize,
}

impl Sql {
    pub(super) fn new(text: &str) -> Self {
        Sql { text: text.to_owned(), args: AnyArguments::default(), n: 0 }
    }

    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends `$n` and binds `value` to it.
    pub(super) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send,
    {
        self.n += 1;
        self.text.push('$');
        self.text.push_str(&self.n.to_string());
        // Encoding strings and integers into the Any buffer cannot fail.
        let _ = self.args.add(value);
        self
    }

    /// Appends `($a, $b, ...)`.
    pub(super) fn bind_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        T: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send,
    {
        self.text.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    /// Restricts to rows of some organizations or some projects: appends
    /// ` AND (<org_expr> (ids) OR <project_expr> (ids))`, leaving out an empty side, where each
    /// expression ends just before its list (`"org_id IN "`, or a subquery's `"... IN "` closed by
    /// `close`). Returns `false` when both lists are empty: then nothing can match.
    pub(super) fn within(
        &mut self,
        orgs: &[crate::id::OrgId],
        org_expr: &str,
        projects: &[crate::id::ProjectId],
        project_expr: &str,
        close: &str,
    ) -> bool {
        if orgs.is_empty() && projects.is_empty() {
            return false;
        }
        self.push(" AND (");
        if !orgs.is_empty() {
            self.push(org_expr).bind_list(orgs.iter().map(ToString::to_string)).push(close);
        }
        if !projects.is_empty() {
            if !orgs.is_empty() {
                self.push(" OR ");
            }
            self.push(project_expr).bind_list(projects.iter().map(ToString::to_string)).push(close);
        }
        self.push(")");
        true
    }

    pub(super) fn query(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query_with(AssertSqlSafe(self.text), self.args)
    }
}

/// Microseconds since the epoch, as stored.
pub(super) fn ts(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(super) fn opt_ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(ts)
}

/// Reads a column, turning a decoding failure into an integrity error.
pub(super) fn col<T>(row: &AnyRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get::<T, _>(name).map_err(|e| Error::Integrity { what: "stored row", reason: format!("column {name}: {e}") })
}

pub(super) fn col_ts(row: &AnyRow, name: &str) -> Result<Timestamp> {
    let v: i64 = col(row, name)?;
    Timestamp::from_microsecond(v).map_err(|e| Error::Integrity { what: "stored row", reason: format!("column {name}: {e}") })
}

pub(super) fn col_opt_ts(row: &AnyRow, name: &str) -> Result<Option<Timestamp>> {
    let v: Option<i64> = col(row, name)?;
    v.map(|v| Timestamp::from_microsecond(v).map_err(|e| Error::Integrity { what: "stored row", reason: format!("column {name}: {e}") }))
        .transpose()
}

/// Parses a stored value, which must be written exactly as the store writes it: an id re-encoded
/// by hand (upper case, braces, no hyphens) parses to the same value but no longer matches an
/// equality filter, so it is refused as an integrity error rather than read as if untouched.
pub(super) fn canonical<T: FromStr + fmt::Display>(name: &str, s: &str) -> Result<T>
where
    T::Err: fmt::Display,
{
    let v: T = s.parse().map_err(|e: T::Err| Error::Integrity { what: "stored row", reason: format!("column {name}: {e}") })?;
    if v.to_string() != s {
        return Err(Error::Integrity { what: "stored row", reason: format!("column {name}: not written as the store writes it") });
    }
    Ok(v)
}

pub(super) fn col_parse<T: FromStr + fmt::Display>(row: &AnyRow, name: &str) -> Result<T>
where
    T::Err: fmt::Display,
{
    canonical(name, &col::<String>(row, name)?)
}

pub(super) fn col_opt_parse<T: FromStr + fmt::Display>(row: &AnyRow, name: &str) -> Result<Option<T>>
where
    T::Err: fmt::Display,
{
    col::<Option<String>>(row, name)?.map(|s| canonical(name, &s)).transpose()
}

/// A stored flag: 0 or 1, nothing else (a 2 would read as true yet miss `= 1` filters).
pub(super) fn col_bool(row: &AnyRow, name: &str) -> Result<bool> {
    match col::<i64>(row, name)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(Error::Integrity { what: "stored row", reason: format!("column {name}: {v} is not a flag") }),
    }
}

pub(super) fn col_u64(row: &AnyRow, name: &str) -> Result<u64> {
    let v: i64 = col(row, name)?;
    u64::try_from(v).map_err(|_| Error::Integrity { what: "stored row", reason: format!("column {name}: negative {v}") })
}

/// What a case-insensitive search compares: the text lowercased by Rust's Unicode rules, the
/// same on every backend (SQLite's `LOWER` and `LIKE` fold ASCII only).
pub(super) fn search_key(s: &str) -> String {
    s.to_lowercase()
}

/// Fills the search keys of rows written before they existed (migration 9), a batch at a time;
/// cheap once none is left.
async fn backfill_search_keys(pool: &AnyPool) -> Result<()> {
    for (table, id, text, key) in
        [("users", "id", "display_name", "display_name_key"), ("audit_log", "seq", "actor_name", "actor_name_key")]
    {
        loop {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT CAST({id} AS TEXT) AS k, {text} AS t FROM {table} WHERE {key} IS NULL LIMIT 1000"
            )))
            .fetch_all(pool)
            .await
            .map_err(|e| map_sqlx("backfill", e))?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let (k, t): (String, String) = (col(r, "k")?, col(r, "t")?);
                let cast = if id == "seq" { "CAST($2 AS BIGINT)" } else { "$2" };
                sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET {key} = $1 WHERE {id} = {cast}")))
                    .bind(search_key(&t))
                    .bind(k)
                    .execute(pool)
                    .await
                    .map_err(|e| map_sqlx("backfill", e))?;
            }
        }
    }
    Ok(())
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(super) fn like_contains(s: &str) -> Result<String> {
    no_nul(s)?;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    Ok(out)
}

/// Refuses a NUL in a search pattern: SQLite's LIKE stops at it (so `"\0x"` would match every
/// row), PostgreSQL refuses it; either way it is no text anyone stores.
pub(super) fn no_nul(pattern: &str) -> Result<()> {
    if pattern.contains('\0') {
        return Err(Error::invalid("search", "must not contain a NUL character"));
    }
    Ok(())
}

/// The overfetch limit of a validated page as a bind value.
pub(super) fn page_limit(page: &crate::page::PageRequest) -> Result<i64> {
    page.validate()?;
    Ok(i64::from(page.limit) + 1)
}
