//! Log records of the products a control plane runs (EMQX, NeuronEX, Neuron, eKuiper, NanoMQ, edge
//! agents) and of the control plane itself, their queries, and where they go.
//!
//! - [`LogRecord`]: one line of a log, with its RFC 5424 [`Level`], the [`Product`] and service it
//!   came from, and the project it belongs to (none for the control plane's own records);
//! - [`LogQuery`]: the product's filters (keyword, product, service, level, date range), always
//!   inside one project ([`LogScope`]), newest first, 100 records unless asked otherwise;
//! - [`LogSink`]: where records are written; [`LogStore`] is a bounded in-memory store that also
//!   answers queries, [`SyslogSink`] pushes RFC 5424 syslog over UDP or TCP. A host forwards to
//!   Elasticsearch or elsewhere by implementing [`LogSink`].
//!
//! Records from outside (an edge agent, a log shipper) go through [`LogRecord::normalized`] before
//! they are stored or forwarded: free text that is too long is truncated with a marker, control
//! characters are replaced, and structural problems (a bad field name, too many fields) refuse the
//! record with a typed error.
//!
//! ```
//! use ecp_telemetry::logs::{Level, LogQuery, LogRecord, LogScope, LogSink, LogStore, LogStoreConfig, Product};
//! use ecp_telemetry::MetricScope;
//! use ecp_core::{ManualClock, OrgId, ProjectId, Clock};
//! use std::sync::Arc;
//!
//! # async fn run() -> ecp_telemetry::Result<()> {
//! let clock = Arc::new(ManualClock::starting_now());
//! let store = LogStore::new(LogStoreConfig::builder().build()?, clock.clone());
//! let scope = MetricScope::new(OrgId::new(), ProjectId::new());
//! let record = LogRecord::new(clock.now(), Level::Error, Product::Emqx, "prod-1", "listener tcp:default failed")
//!     .with_scope(scope);
//! store.write(&[record]).await?;
//! let found = store.query(&LogQuery::new(LogScope::Project(scope)).min_level(Level::Warning))?;
//! assert_eq!(found.len(), 1);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sample::MetricScope;

mod store;
mod syslog;

pub use store::{Ingested, LogStore, LogStoreConfig, LogStoreConfigBuilder, LogStoreStats};
pub use syslog::{
    Facility, MAX_TAG_LEN, MAX_TCP_MESSAGE_LEN, MAX_UDP_MESSAGE_LEN, MIN_MESSAGE_LEN, SD_ID, SD_ID_FIELDS, SyslogConfig,
    SyslogConfigBuilder, SyslogNetwork, SyslogSink, SyslogStats,
};

/// At most this many bytes of a message are kept; a longer one is cut (at a character boundary)
/// and ends with [`TRUNCATED_MARKER`], the whole staying within this limit.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// What ends a message or field value that was cut.
pub const TRUNCATED_MARKER: &str = "…[truncated]";
/// At most this many fields on one record; more refuse the record.
pub const MAX_FIELDS: usize = 32;
/// At most this many bytes in a field name (`[A-Za-z0-9_.-]`, so it is also a syslog SD-NAME).
pub const MAX_FIELD_NAME_LEN: usize = 32;
/// At most this many bytes of a field value are kept; a longer one is cut like a message.
pub const MAX_FIELD_VALUE_LEN: usize = 1024;
/// At most this many bytes in a service name or id.
pub const MAX_SERVICE_LEN: usize = 256;
/// At most this many bytes in the name of an [`Product::Other`] product.
pub const MAX_PRODUCT_LEN: usize = 32;
/// How many records a query returns unless it says otherwise (the product's "newest 100").
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// The most records one query may ask for.
pub const MAX_QUERY_LIMIT: usize = 1000;
/// At most this many bytes in a query's keyword.
pub const MAX_KEYWORD_LEN: usize = 256;

/// How serious a log record is: the eight severities of RFC 5424, with their numeric codes.
///
/// The order is that of the codes, as in the `log` and `tracing` crates: more severe compares
/// *less* (`Level::Emergency < Level::Debug`). Use [`Level::is_at_least`] to compare by severity.
/// ECP's own records use neither `Notice` nor `Critical`, but records of other products do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
#[repr(u8)]
pub enum Level {
    /// 0: the system is unusable.
    Emergency = 0,
    /// 1: action must be taken immediately.
    Alert = 1,
    /// 2: critical conditions.
    Critical = 2,
    /// 3: error conditions.
    Error = 3,
    /// 4: warning conditions.
    Warning = 4,
    /// 5: normal but significant conditions.
    Notice = 5,
    /// 6: informational messages.
    Informational = 6,
    /// 7: debug-level messages.
    Debug = 7,
}

impl Level {
    /// All levels, most severe first.
    pub const ALL: [Level; 8] =
        [Level::Emergency, Level::Alert, Level::Critical, Level::Error, Level::Warning, Level::Notice, Level::Informational, Level::Debug];

    /// The RFC 5424 severity code, 0 (emergency) to 7 (debug).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The level of an RFC 5424 severity code.
    pub const fn from_code(code: u8) -> Option<Level> {
        match code {
            0 => Some(Level::Emergency),
            1 => Some(Level::Alert),
            2 => Some(Level::Critical),
            3 => Some(Level::Error),
            4 => Some(Level::Warning),
            5 => Some(Level::Notice),
            6 => Some(Level::Informational),
            7 => Some(Level::Debug),
            _ => None,
        }
    }

    /// The canonical lowercase name (`"emergency"`, `"alert"`, `"critical"`, `"error"`, `"warning"`,
    /// `"notice"`, `"info"`, `"debug"`), as EMQX writes them.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Emergency => "emergency",
            Level::Alert => "alert",
            Level::Critical => "critical",
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Informational => "info",
            Level::Debug => "debug",
        }
    }

    /// Whether this level is `min` or more severe (`Error.is_at_least(Warning)` is true).
    pub const fn is_at_least(self, min: Level) -> bool {
        self.code() <= min.code()
    }

    /// A level from the spellings the products use, case-insensitively and ignoring surrounding
    /// blanks: the RFC 5424 and syslog names and abbreviations (`emerg`, `panic`, `crit`, `err`,
    /// `warn`, `info`, `informational` ...), logrus' and zlog's (`fatal` → critical, `trace` →
    /// debug), and the numeric codes `0`–`7`.
    ///
    /// # Errors
    /// `InvalidInput` for anything else (see [`Level::parse_lossy`] to map it to `Error` instead).
    pub fn parse(s: &str) -> Result<Level> {
        let t = s.trim();
        if t.len() > 16 {
            return Err(Error::invalid("level", "not a log level"));
        }
        let level = match t.to_ascii_lowercase().as_str() {
            "0" | "emerg" | "emergency" | "panic" => Level::Emergency,
            "1" | "alert" => Level::Alert,
            "2" | "crit" | "critical" | "fatal" => Level::Critical,
            "3" | "err" | "error" => Level::Error,
            "4" | "warn" | "warning" => Level::Warning,
            "5" | "notice" => Level::Notice,
            "6" | "info" | "informational" => Level::Informational,
            "7" | "debug" | "trace" => Level::Debug,
            _ => return Err(Error::invalid("level", format!("{:?} is not a log level", truncate_str(t, 16)))),
        };
        Ok(level)
    }

    /// As [`Level::parse`], but an unknown spelling is taken as [`Level::Error`]: a record whose
    /// level a source garbled is shown rather than filtered away as noise.
    pub fn parse_lossy(s: &str) -> Level {
        Level::parse(s).unwrap_or(Level::Error)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;
    fn from_str(s: &str) -> Result<Level> {
        Level::parse(s)
    }
}

impl TryFrom<String> for Level {
    type Error = Error;
    fn try_from(s: String) -> Result<Level> {
        Level::parse(&s)
    }
}

impl From<Level> for &'static str {
    fn from(l: Level) -> &'static str {
        l.as_str()
    }
}

/// Which product a record came from.
///
/// Serialized as its lowercase name. [`Product::Other`] holds a name of 1 to [`MAX_PRODUCT_LEN`]
/// bytes of `[A-Za-z0-9_.-]`: build it with [`Product::parse`] or [`Product::other`];
/// [`LogRecord::normalized`] refuses a record whose `Other` name is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum Product {
    /// An EMQX broker cluster.
    Emqx,
    /// NeuronEX (Neuron and eKuiper in one service).
    NeuronEx,
    /// Standalone Neuron.
    Neuron,
    /// Standalone eKuiper.
    Ekuiper,
    /// NanoMQ.
    NanoMq,
    /// The control plane itself.
    Ecp,
    /// An edge agent.
    Agent,
    /// Another product (a custom edge service).
    Other(String),
}

impl Product {
    /// The lowercase name (`"emqx"`, `"neuronex"`, `"neuron"`, `"ekuiper"`, `"nanomq"`, `"ecp"`,
    /// `"agent"`, or the other product's name).
    pub fn as_str(&self) -> &str {
        match self {
            Product::Emqx => "emqx",
            Product::NeuronEx => "neuronex",
            Product::Neuron => "neuron",
            Product::Ekuiper => "ekuiper",
            Product::NanoMq => "nanomq",
            Product::Ecp => "ecp",
            Product::Agent => "agent",
            Product::Other(name) => name,
        }
    }

    /// A product from its name, case-insensitively for the known ones; any other valid name is
    /// [`Product::Other`].
    ///
    /// # Errors
    /// `InvalidInput` if the name is empty, longer than [`MAX_PRODUCT_LEN`] or not `[A-Za-z0-9_.-]`.
    pub fn parse(name: &str) -> Result<Product> {
        let known = match name.to_ascii_lowercase().as_str() {
            "emqx" => Product::Emqx,
            "neuronex" => Product::NeuronEx,
            "neuron" => Product::Neuron,
            "ekuiper" | "kuiper" => Product::Ekuiper,
            "nanomq" => Product::NanoMq,
            "ecp" => Product::Ecp,
            "agent" => Product::Agent,
            _ => return Product::other(name),
        };
        Ok(known)
    }

    /// An [`Product::Other`] product.
    ///
    /// # Errors
    /// As [`Product::parse`].
    pub fn other(name: &str) -> Result<Product> {
        check_product_name(name)?;
        Ok(Product::Other(name.to_owned()))
    }

    fn validate(&self) -> Result<()> {
        match self {
            Product::Other(name) => check_product_name(name),
            _ => Ok(()),
        }
    }
}

fn check_product_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_PRODUCT_LEN || !name.bytes().all(is_name_byte) {
        return Err(Error::invalid(
            "product",
            format!("{:?} is not [A-Za-z0-9_.-] of 1 to {MAX_PRODUCT_LEN} bytes", truncate_str(name, 64)),
        ));
    }
    Ok(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Product {
    type Err = Error;
    fn from_str(s: &str) -> Result<Product> {
        Product::parse(s)
    }
}

impl TryFrom<String> for Product {
    type Error = Error;
    fn try_from(s: String) -> Result<Product> {
        Product::parse(&s)
    }
}

impl From<Product> for String {
    fn from(p: Product) -> String {
        p.as_str().to_owned()
    }
}

/// One log record.
///
/// Build one with [`LogRecord::new`] and the `with_*` methods; records from outside are checked
/// and cleaned by [`LogRecord::normalized`] (sinks of this crate do it on every write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogRecord {
    /// When it was logged.
    pub time: Timestamp,
    /// How serious it is.
    pub level: Level,
    /// The project it belongs to; `None` for the control plane's own records.
    pub scope: Option<MetricScope>,
    /// The product that logged it.
    pub product: Product,
    /// The service or cluster that logged it (its name or id; for the control plane, a component).
    pub service: String,
    /// The message.
    pub message: String,
    /// Extra structured fields (`node`, `module`, `clientid` ...).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl LogRecord {
    /// A record without a project (the control plane's own) and without fields.
    pub fn new(time: Timestamp, level: Level, product: Product, service: impl Into<String>, message: impl Into<String>) -> Self {
        LogRecord { time, level, scope: None, product, service: service.into(), message: message.into(), fields: BTreeMap::new() }
    }

    /// This record in a project.
    pub fn with_scope(mut self, scope: MetricScope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// This record with one more field (or one replaced).
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// This record, checked and cleaned for storing or forwarding:
    ///
    /// - a message longer than [`MAX_MESSAGE_LEN`] bytes, or a field value longer than
    ///   [`MAX_FIELD_VALUE_LEN`], is cut and ends with [`TRUNCATED_MARKER`];
    /// - control characters other than newline and tab in the message, and all control
    ///   characters in field values, become U+FFFD (no terminal escapes, no forged lines);
    /// - the service must be 1 to [`MAX_SERVICE_LEN`] bytes without control characters, an
    ///   [`Product::Other`] name must be valid, there are at most [`MAX_FIELDS`] fields, and each
    ///   field name is 1 to [`MAX_FIELD_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`.
    ///
    /// # Errors
    /// `InvalidInput` naming the first structural problem found (the record is refused).
    pub fn normalized(mut self) -> Result<Self> {
        self.product.validate()?;
        if self.service.is_empty() || self.service.len() > MAX_SERVICE_LEN || self.service.chars().any(char::is_control) {
            return Err(Error::invalid("service", format!("must be 1 to {MAX_SERVICE_LEN} bytes without control characters")));
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(Error::invalid("fields", format!("{} fields, at most {MAX_FIELDS} allowed", self.fields.len())));
        }
        if let Some(bad) = self.fields.keys().find(|k| k.is_empty() || k.len() > MAX_FIELD_NAME_LEN || !k.bytes().all(is_name_byte)) {
            return Err(Error::invalid(
                "field name",
                format!("{:?} is not [A-Za-z0-9_.-] of 1 to {MAX_FIELD_NAME_LEN} bytes", truncate_str(bad, 64)),
            ));
        }
        clean_text(&mut self.message, MAX_MESSAGE_LEN, true);
        for v in self.fields.values_mut() {
            clean_text(v, MAX_FIELD_VALUE_LEN, false);
        }
        Ok(self)
    }

    /// The log record of an audit record, for pushing audit with logs (the product's syslog push
    /// carries both): product [`Product::Ecp`], service `"audit"`, level `notice` for a success and
    /// `warning` for a failure, in the record's project if it names an org and a project (else
    /// the control plane's). The message reads `<actor> <operation> <kind> <name>: <outcome>`;
    /// the fields carry `audit_id`, `seq`, `hash`, `actor`, `subject`, `operation`,
    /// `resource_kind` and `resource_id`. The details are left out (they may be large and nested).
    pub fn from_audit(a: &ecp_core::AuditRecord) -> Self {
        let e = &a.event;
        let scope = match (&e.org, &e.project) {
            (Some(o), Some(p)) => Some(MetricScope::new(o.id, p.id)),
            _ => None,
        };
        let target = e.resource_name.as_deref().or(e.resource_id.as_deref()).map(|t| format!(" {t}")).unwrap_or_default();
        let (level, outcome) = match &e.outcome {
            ecp_core::Outcome::Success => (Level::Notice, "success".to_owned()),
            ecp_core::Outcome::Failure { reason } => (Level::Warning, format!("failed: {reason}")),
        };
        let message = format!("{} {} {}{target}: {outcome}", e.actor.name, e.operation, e.resource_kind);
        let mut r = LogRecord::new(a.at, level, Product::Ecp, "audit", message)
            .with_field("audit_id", a.id.to_string())
            .with_field("seq", a.seq.to_string())
            .with_field("hash", a.hash.clone())
            .with_field("actor", e.actor.name.clone())
            .with_field("subject", e.actor.subject.to_string())
            .with_field("operation", e.operation.to_string())
            .with_field("resource_kind", e.resource_kind.to_string());
        if let Some(id) = &e.resource_id {
            r = r.with_field("resource_id", id.clone());
        }
        r.scope = scope;
        r
    }

    /// An estimate of the bytes this record holds (for memory accounting).
    pub fn heap_size(&self) -> usize {
        let fields: usize = self.fields.iter().map(|(k, v)| k.len() + v.len() + 64).sum();
        std::mem::size_of::<Self>() + self.service.len() + self.message.len() + self.product.as_str().len() + fields
    }
}

/// Replaces control characters and cuts `s` to at most `max` bytes with the marker.
fn clean_text(s: &mut String, max: usize, keep_newlines: bool) {
    let bad = |c: char| c.is_control() && !(keep_newlines && (c == '\n' || c == '\t'));
    if s.chars().any(bad) {
        *s = s.chars().map(|c| if bad(c) { '\u{FFFD}' } else { c }).collect();
    }
    if s.len() > max {
        let keep = truncate_str(s, max.saturating_sub(TRUNCATED_MARKER.len())).len();
        s.truncate(keep);
        s.push_str(TRUNCATED_MARKER);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where log records are written: the [`LogStore`], a [`SyslogSink`], or a host's own forwarder
/// (Elasticsearch, a file).
#[async_trait]
pub trait LogSink: Send + Sync + fmt::Debug + 'static {
    /// Writes these records.
    ///
    /// A sink refuses records it cannot take (invalid, too old) one by one and counts them, rather
    /// than failing the whole batch.
    ///
    /// # Errors
    /// The destination could not be reached or refused the batch; what was written before the
    /// failure stays written.
    async fn write(&self, records: &[LogRecord]) -> Result<()>;
}

#[async_trait]
impl<S: LogSink + ?Sized> LogSink for Arc<S> {
    async fn write(&self, records: &[LogRecord]) -> Result<()> {
        (**self).write(records).await
    }
}

/// Whose records a query reads: one project's, or the control plane's own. There is no "all
/// projects": a tenant query never sees another project's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogScope {
    /// The records of one project (both its org and project must match).
    Project(MetricScope),
    /// The control plane's own records (those without a project).
    ControlPlane,
}

impl LogScope {
    /// The scope a record of this project (or of the control plane, for `None`) is in.
    pub fn of(scope: Option<MetricScope>) -> Self {
        scope.map_or(LogScope::ControlPlane, LogScope::Project)
    }

    pub(crate) fn key(self) -> Option<MetricScope> {
        match self {
            LogScope::Project(s) => Some(s),
            LogScope::ControlPlane => None,
        }
    }
}

/// Where a page of results stopped: the next page holds the records strictly older than it.
///
/// Opaque; its text form (`Display`/`FromStr`) can travel through an HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogCursor {
    pub(crate) nanos: i128,
    pub(crate) seq: u64,
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.nanos, self.seq)
    }
}

impl FromStr for LogCursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<LogCursor> {
        let bad = || Error::invalid("cursor", "not a cursor returned by a log query");
        let (m, q) = s.split_once('.').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.len() <= 40 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(m.strip_prefix('-').unwrap_or(m)) || !digits(q) {
            return Err(bad());
        }
        let nanos = m.parse::<i128>().map_err(|_| bad())?;
        let seq = q.parse::<u64>().map_err(|_| bad())?;
        Ok(LogCursor { nanos, seq })
    }
}

impl Serialize for LogCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A query of log records: the product's filters, inside one [`LogScope`], newest first.
///
/// All given filters must hold. Build with [`LogQuery::new`] and the setters; the store checks the
/// limit and keyword when it runs the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogQuery {
    /// Whose records.
    pub scope: LogScope,
    /// A case-insensitive substring of the message.
    pub keyword: Option<String>,
    /// Only this product's records.
    pub product: Option<Product>,
    /// Only this service's records (exact name or id).
    pub service: Option<String>,
    /// Only records at this level or more severe.
    pub min_level: Option<Level>,
    /// Only records at or after this time.
    pub from: Option<Timestamp>,
    /// Only records before this time.
    pub to: Option<Timestamp>,
    /// At most this many records (default [`DEFAULT_QUERY_LIMIT`], at most [`MAX_QUERY_LIMIT`]).
    pub limit: usize,
    /// Only records older than where the previous page stopped.
    pub before: Option<LogCursor>,
}

impl LogQuery {
    /// The newest [`DEFAULT_QUERY_LIMIT`] records of a scope, of every product.
    pub fn new(scope: LogScope) -> Self {
        LogQuery {
            scope,
            keyword: None,
            product: None,
            service: None,
            min_level: None,
            from: None,
            to: None,
            limit: DEFAULT_QUERY_LIMIT,
            before: None,
        }
    }

    /// Only records whose message contains `keyword`, ignoring case.
    pub fn keyword(mut self, keyword: impl Into<String>) -> Self {
        self.keyword = Some(keyword.into());
        self
    }

    /// Only this product's records.
    pub fn product(mut self, product: Product) -> Self {
        self.product = Some(product);
        self
    }

    /// Only this service's records.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Only records at `level` or more severe.
    pub fn min_level(mut self, level: Level) -> Self {
        self.min_level = Some(level);
        self
    }

    /// Only records with `from <= time < to` (either bound may be left open with the fields).
    pub fn between(mut self, from: Timestamp, to: Timestamp) -> Self {
        self.from = Some(from);
        self.to = Some(to);
        self
    }

    /// At most `limit` records.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page after the one that returned `cursor`.
    pub fn before(mut self, cursor: LogCursor) -> Self {
        self.before = Some(cursor);
        self
    }

    /// Checks the limit and keyword.
    ///
    /// # Errors
    /// `InvalidInput` for a limit of 0 or above [`MAX_QUERY_LIMIT`], or a keyword longer than
    /// [`MAX_KEYWORD_LEN`] bytes.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_QUERY_LIMIT {
            return Err(Error::invalid("limit", format!("must be 1 to {MAX_QUERY_LIMIT}")));
        }
        if self.keyword.as_ref().is_some_and(|k| k.len() > MAX_KEYWORD_LEN) {
            return Err(Error::invalid("keyword", format!("longer than {MAX_KEYWORD_LEN} bytes")));
        }
        Ok(())
    }

    /// Whether a record passes the filters other than scope, time range and cursor.
    /// `keyword` is the query's keyword, prepared once by [`Keyword::new`].
    pub(crate) fn matches(&self, r: &LogRecord, keyword: Option<&Keyword>) -> bool {
        self.min_level.is_none_or(|m| r.level.is_at_least(m))
            && self.product.as_ref().is_none_or(|p| *p == r.product)
            && self.service.as_ref().is_none_or(|s| *s == r.service)
            && keyword.is_none_or(|k| k.is_in(&r.message))
    }
}

/// A keyword prepared for case-insensitive search.
#[derive(Debug)]
pub(crate) struct Keyword {
    lower: String,
    ascii: bool,
}

impl Keyword {
    pub(crate) fn new(k: &str) -> Self {
        Keyword { lower: k.to_lowercase(), ascii: k.is_ascii() }
    }

    pub(crate) fn is_in(&self, hay: &str) -> bool {
        if self.lower.is_empty() {
            return true;
        }
        if self.ascii {
            // An ASCII needle can only match ASCII bytes, so a byte-wise comparison is exact.
            let n = self.lower.as_bytes();
            hay.as_bytes().windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
        } else {
            hay.to_lowercase().contains(&self.lower)
        }
    }
}

/// One page of a query's results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// The records, newest first.
    pub records: Vec<LogRecord>,
    /// Where to continue ([`LogQuery::before`]), if there may be more.
    pub next: Option<LogCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_common_spellings() {
        for (s, l) in [
            ("err", Level::Error),
            ("ERROR", Level::Error),
            (" warn ", Level::Warning),
            ("warning", Level::Warning),
            ("info", Level::Informational),
            ("notice", Level::Notice),
            ("crit", Level::Critical),
            ("fatal", Level::Critical),
            ("emerg", Level::Emergency),
            ("trace", Level::Debug),
            ("7", Level::Debug),
        ] {
            assert_eq!(Level::parse(s).unwrap(), l, "{s}");
        }
        assert!(Level::parse("loud").is_err());
        assert_eq!(Level::parse_lossy("loud"), Level::Error);
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()).unwrap(), l);
            assert_eq!(Level::from_code(l.code()), Some(l));
        }
        assert!(Level::Error.is_at_least(Level::Warning));
        assert!(!Level::Notice.is_at_least(Level::Warning));
        assert_eq!(serde_json::to_string(&Level::Informational).unwrap(), "\"info\"");
        assert_eq!(serde_json::from_str::<Level>("\"warn\"").unwrap(), Level::Warning);
    }

    #[test]
    fn products() {
        assert_eq!(Product::parse("NeuronEX").unwrap(), Product::NeuronEx);
        assert_eq!(Product::parse("my-gw").unwrap(), Product::Other("my-gw".into()));
        assert!(Product::parse("").is_err());
        assert!(Product::parse("a b").is_err());
        assert!(Product::parse(&"x".repeat(MAX_PRODUCT_LEN + 1)).is_err());
        assert!(serde_json::from_str::<Product>("\"a]b\"").is_err());
    }

    #[test]
    fn cursor_text_round_trips() {
        let c = LogCursor { nanos: -5, seq: 9 };
        assert_eq!(c.to_string().parse::<LogCursor>().unwrap(), c);
        for bad in ["", "1", "1.", ".1", "1.+2", "+1.2", "x.1", "1.2.3", "-.1"] {
            assert!(bad.parse::<LogCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn keyword_is_case_insensitive() {
        assert!(Keyword::new("FAIL").is_in("connection failed"));
        assert!(Keyword::new("é").is_in("CAFÉ"));
        assert!(!Keyword::new("x").is_in("abc"));
        assert!(Keyword::new("").is_in(""));
    }
}
