//! A bounded in-memory log store.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::{Clock, Timestamp};
use parking_lot::RwLock;

use super::{Keyword, LogCursor, LogPage, LogQuery, LogRecord, LogSink};
use crate::error::{Error, Result};
use crate::sample::MetricScope;

/// The limits of a [`LogStore`]. Build with [`LogStoreConfig::builder`]; `build()` validates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStoreConfig {
    max_records: usize,
    max_records_per_project: usize,
    max_bytes: usize,
    max_age: Duration,
    max_future: Duration,
}

impl LogStoreConfig {
    /// A builder starting from the defaults: 100 000 records, 20 000 per project, 64 MiB, 7 days,
    /// 5 minutes into the future.
    pub fn builder() -> LogStoreConfigBuilder {
        LogStoreConfigBuilder {
            config: LogStoreConfig {
                max_records: 100_000,
                max_records_per_project: 20_000,
                max_bytes: 64 << 20,
                max_age: Duration::from_secs(7 * 24 * 3600),
                max_future: Duration::from_secs(300),
            },
        }
    }

    /// At most this many records in all.
    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// At most this many records of one project (or of the control plane).
    pub fn max_records_per_project(&self) -> usize {
        self.max_records_per_project
    }

    /// At most about this many bytes of records in all (see [`LogRecord::heap_size`]).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Records older than this are dropped, and refused when they arrive.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Records stamped further than this in the future are refused (they would stay on top of
    /// every newest-first query).
    pub fn max_future(&self) -> Duration {
        self.max_future
    }
}

/// Builds a [`LogStoreConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct LogStoreConfigBuilder {
    config: LogStoreConfig,
}

impl LogStoreConfigBuilder {
    /// At most this many records in all (default 100,000; at least 1).
    pub fn max_records(mut self, n: usize) -> Self {
        self.config.max_records = n;
        self
    }

    /// At most this many records of one project, or of the control plane (default 20,000; 1 to
    /// `max_records`).
    pub fn max_records_per_project(mut self, n: usize) -> Self {
        self.config.max_records_per_project = n;
        self
    }

    /// At most about this many bytes of records, see [`LogRecord::heap_size`] (default 64 MiB; at
    /// least 64 KiB).
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.config.max_bytes = n;
        self
    }

    /// How long records are kept; older ones are dropped, and refused when they arrive (default
    /// 7 days; positive).
    pub fn max_age(mut self, d: Duration) -> Self {
        self.config.max_age = d;
        self
    }

    /// How far ahead of the clock a record's time may be; records further ahead are refused
    /// (default 5 minutes; 0 refuses any ahead of the clock).
    pub fn max_future(mut self, d: Duration) -> Self {
        self.config.max_future = d;
        self
    }

    /// The config.
    ///
    /// # Errors
    /// `InvalidInput` if a limit is 0, the per-project limit exceeds the total, or `max_bytes`
    /// is below 64 KiB (less than a few records).
    pub fn build(self) -> Result<LogStoreConfig> {
        let c = self.config;
        if c.max_records == 0 || c.max_records_per_project == 0 {
            return Err(Error::invalid("max_records", "must be at least 1"));
        }
        if c.max_records_per_project > c.max_records {
            return Err(Error::invalid("max_records_per_project", "must not exceed max_records"));
        }
        if c.max_bytes < 64 << 10 {
            return Err(Error::invalid("max_bytes", "must be at least 64 KiB"));
        }
        if c.max_age.is_zero() {
            return Err(Error::invalid("max_age", "must be positive"));
        }
        Ok(c)
    }
}

/// What one write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Stored (possibly evicted again at once if older than everything in a full store).
    pub stored: usize,
    /// Refused by [`LogRecord::normalized`].
    pub refused_invalid: usize,
    /// Refused because older than `max_age` or further than `max_future` ahead.
    pub refused_out_of_range: usize,
}

/// Counters and sizes of a [`LogStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStoreStats {
    /// Records held.
    pub records: usize,
    /// Their estimated bytes.
    pub bytes: usize,
    /// Projects (and the control plane) with records.
    pub scopes: usize,
    /// Records dropped to stay within a count or byte limit, oldest first.
    pub evicted: u64,
    /// Records dropped for age.
    pub expired: u64,
    /// Records refused as invalid.
    pub refused_invalid: u64,
    /// Records refused as too old or too far in the future.
    pub refused_out_of_range: u64,
}

type Key = Option<MetricScope>;

#[derive(Debug)]
struct Entry {
    time: Timestamp,
    seq: u64,
    size: usize,
    record: LogRecord,
}

impl Entry {
    fn pos(&self) -> (Timestamp, u64) {
        (self.time, self.seq)
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Per project (`None`: the control plane), ordered by (time, arrival).
    buckets: HashMap<Key, VecDeque<Entry>>,
    /// The oldest entry of each bucket, to evict the globally oldest quickly.
    fronts: BTreeSet<(Timestamp, u64, Key)>,
    records: usize,
    bytes: usize,
    seq: u64,
    stats: LogStoreStats,
}

impl Inner {
    fn insert(&mut self, record: LogRecord, per_project: usize) {
        self.seq += 1;
        let key = record.scope;
        let entry = Entry { time: record.time, seq: self.seq, size: record.heap_size(), record };
        let (pos, size) = (entry.pos(), entry.size);
        let bucket = self.buckets.entry(key).or_default();
        let old_front = bucket.front().map(Entry::pos);
        if bucket.back().is_none_or(|b| b.pos() <= pos) {
            bucket.push_back(entry);
        } else {
            let at = bucket.partition_point(|e| e.pos() <= pos);
            bucket.insert(at, entry);
        }
        let new_front = bucket.front().map(Entry::pos);
        let over = bucket.len() > per_project;
        if old_front != new_front {
            if let Some((t, s)) = old_front {
                self.fronts.remove(&(t, s, key));
            }
            if let Some((t, s)) = new_front {
                self.fronts.insert((t, s, key));
            }
        }
        self.records += 1;
        self.bytes += size;
        if over {
            self.pop_front(key);
            self.stats.evicted += 1;
        }
    }

    /// Drops the oldest entry of a bucket.
    fn pop_front(&mut self, key: Key) {
        let Some(bucket) = self.buckets.get_mut(&key) else { return };
        let Some(e) = bucket.pop_front() else { return };
        self.fronts.remove(&(e.time, e.seq, key));
        match bucket.front() {
            Some(f) => {
                self.fronts.insert((f.time, f.seq, key));
            }
            None => {
                self.buckets.remove(&key);
            }
        }
        self.records -= 1;
        self.bytes -= e.size;
    }

    fn enforce_totals(&mut self, max_records: usize, max_bytes: usize) {
        while self.records > max_records || self.bytes > max_bytes {
            let Some(&(_, _, key)) = self.fronts.first() else { break };
            self.pop_front(key);
            self.stats.evicted += 1;
        }
    }

    fn expire(&mut self, cutoff: Timestamp) {
        while let Some(&(t, _, key)) = self.fronts.first() {
            if t >= cutoff {
                break;
            }
            self.pop_front(key);
            self.stats.expired += 1;
        }
    }
}

/// A bounded in-memory store of log records that answers [`LogQuery`]s.
///
/// Records are kept per project, ordered by time (a record that arrives late is inserted in its
/// place). The store holds at most `max_records` records, `max_records_per_project` of one
/// project and about `max_bytes` bytes, dropping the oldest first, and drops records older than
/// `max_age` by its [`Clock`]. Every record is [normalized](LogRecord::normalized) on the way in;
/// what is refused or dropped is counted in [`LogStore::stats`].
pub struct LogStore {
    config: LogStoreConfig,
    clock: Arc<dyn Clock>,
    inner: RwLock<Inner>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore").field("config", &self.config).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl LogStore {
    /// An empty store.
    pub fn new(config: LogStoreConfig, clock: Arc<dyn Clock>) -> Self {
        LogStore { config, clock, inner: RwLock::new(Inner::default()) }
    }

    /// The limits.
    pub fn config(&self) -> &LogStoreConfig {
        &self.config
    }

    fn cutoff(&self, now: Timestamp) -> Timestamp {
        ecp_core::clock::sub(now, self.config.max_age)
    }

    /// Stores records, refusing (and counting) the invalid and out-of-range ones.
    pub fn ingest(&self, records: &[LogRecord]) -> Ingested {
        let now = self.clock.now();
        let cutoff = self.cutoff(now);
        let horizon = ecp_core::clock::add(now, self.config.max_future);
        let mut out = Ingested::default();
        // Normalize outside the lock: it may copy up to a few KiB per record.
        let cleaned: Vec<_> = records
            .iter()
            .filter_map(|r| match r.clone().normalized() {
                Ok(r) if r.time < cutoff || r.time > horizon => {
                    out.refused_out_of_range += 1;
                    None
                }
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!(error = %e, "log record refused");
                    out.refused_invalid += 1;
                    None
                }
            })
            .collect();
        out.stored = cleaned.len();
        let mut inner = self.inner.write();
        inner.expire(cutoff);
        for r in cleaned {
            inner.insert(r, self.config.max_records_per_project);
        }
        inner.enforce_totals(self.config.max_records, self.config.max_bytes);
        inner.stats.refused_invalid += out.refused_invalid as u64;
        inner.stats.refused_out_of_range += out.refused_out_of_range as u64;
        out
    }

    /// Drops the records older than `max_age` now (writes do it too).
    pub fn expire(&self) {
        let cutoff = self.cutoff(self.clock.now());
        self.inner.write().expire(cutoff);
    }

    /// The newest records matching the query.
    ///
    /// # Errors
    /// `InvalidInput` if the query's limit or keyword is out of range ([`LogQuery::validate`]).
    pub fn query(&self, query: &LogQuery) -> Result<Vec<LogRecord>> {
        Ok(self.page(query)?.records)
    }

    /// The newest records matching the query, and where the next page starts.
    ///
    /// # Errors
    /// As [`LogStore::query`].
    pub fn page(&self, query: &LogQuery) -> Result<LogPage> {
        query.validate()?;
        let keyword = query.keyword.as_deref().map(Keyword::new);
        let cutoff = self.cutoff(self.clock.now());
        let from = query.from.map_or(cutoff, |f| f.max(cutoff));
        let inner = self.inner.read();
        let Some(bucket) = inner.buckets.get(&query.scope.key()) else {
            return Ok(LogPage { records: Vec::new(), next: None });
        };
        // Entries before `end` are before `to` and the cursor; both bounds are monotone in order.
        let end = bucket.partition_point(|e| {
            query.to.is_none_or(|to| e.time < to) && query.before.is_none_or(|c| (e.time.as_nanosecond(), e.seq) < (c.nanos, c.seq))
        });
        let mut records = Vec::new();
        for e in bucket.range(..end).rev() {
            if e.time < from {
                break;
            }
            if query.matches(&e.record, keyword.as_ref()) {
                records.push(e.record.clone());
                if records.len() == query.limit {
                    let next = Some(LogCursor { nanos: e.time.as_nanosecond(), seq: e.seq });
                    return Ok(LogPage { records, next });
                }
            }
        }
        Ok(LogPage { records, next: None })
    }

    /// Counters and sizes.
    pub fn stats(&self) -> LogStoreStats {
        let inner = self.inner.read();
        LogStoreStats { records: inner.records, bytes: inner.bytes, scopes: inner.buckets.len(), ..inner.stats }
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.inner.read().records
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl LogSink for LogStore {
    /// Stores the records ([`LogStore::ingest`]); never fails, refusals are counted.
    async fn write(&self, records: &[LogRecord]) -> Result<()> {
        self.ingest(records);
        Ok(())
    }
}
