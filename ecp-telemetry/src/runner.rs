//! [`CollectorRunner`]: runs many [`Collector`]s, each on its own interval and timeout in its own
//! Tokio task, and hands what they collect to one [`SampleSink`].
//!
//! A slow or dead source never delays the others: each collector has its own task, a collection
//! that outlives its timeout is dropped (and counts as a failure), and a tick missed while a
//! collection was running is skipped rather than made up in a burst. The first tick of each
//! collector is jittered over one interval, so thousands of collectors added at once do not all
//! fire together.
//!
//! Optionally each collector has an `up` series (as Prometheus's `up`): 1 after a successful
//! collection, 0 after a failed or timed-out one, written with the collection's samples.
//!
//! ```
//! # async fn demo(sink: std::sync::Arc<dyn ecp_telemetry::SampleSink>, collector: std::sync::Arc<dyn ecp_telemetry::Collector>) -> ecp_telemetry::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use ecp_core::SystemClock;
//! use ecp_telemetry::{CollectorOptions, CollectorRunner};
//!
//! let runner = CollectorRunner::new(sink, Arc::new(SystemClock));
//! runner.add(collector, CollectorOptions::builder().interval(Duration::from_secs(30)).build()?)?;
//! for status in runner.statuses() {
//!     println!("{}: {} collections, {} consecutive failures", status.name, status.collections, status.consecutive_failures);
//! }
//! runner.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ecp_core::{Clock, Timestamp};
use futures::FutureExt;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::collector::{Collection, Collector, SampleSink};
use crate::error::{Error, Result};
use crate::sample::{Sample, SeriesKey};

/// The longest interval accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The longest timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// At most this many bytes of an error are kept in a status.
const MAX_ERROR_LEN: usize = 1024;

/// How one collector is run. Build with [`CollectorOptions::builder`]; `build()` validates. The
/// default is what `CollectorOptions::builder().build()` gives: every 15 s, 15 s timeout, no `up`
/// series, jittered first tick.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CollectorOptions {
    interval: Duration,
    timeout: Duration,
    up: Option<SeriesKey>,
    jitter: bool,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        CollectorOptions { interval: Self::DEFAULT_INTERVAL, timeout: Self::DEFAULT_TIMEOUT, up: None, jitter: true }
    }
}

impl CollectorOptions {
    /// The default interval: 15 s, the product's collection interval.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
    /// The default timeout of one collection: 15 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

    /// A builder starting from the defaults: every 15 s, 15 s timeout, no `up` series, jittered
    /// first tick.
    pub fn builder() -> CollectorOptionsBuilder {
        CollectorOptionsBuilder(Self::default())
    }

    /// How often to collect.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long one collection may take before it is dropped and counted as failed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The series written 1 after each successful collection and 0 after each failed one.
    pub fn up(&self) -> Option<&SeriesKey> {
        self.up.as_ref()
    }

    /// Whether the first collection waits a random part of one interval.
    pub fn jitter(&self) -> bool {
        self.jitter
    }
}

/// Builds [`CollectorOptions`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct CollectorOptionsBuilder(CollectorOptions);

impl CollectorOptionsBuilder {
    /// How often to collect (default 15 s, [`CollectorOptions::DEFAULT_INTERVAL`]; 1 ms to 24 h).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.0.interval = interval;
        self
    }

    /// How long one collection may take before it is dropped and counted as failed (default 15 s,
    /// [`CollectorOptions::DEFAULT_TIMEOUT`]; 1 ms to 1 h).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    /// Writes `series` 1 after each successful collection and 0 after each failed one (default:
    /// no `up` series).
    pub fn up(mut self, series: SeriesKey) -> Self {
        self.0.up = Some(series);
        self
    }

    /// Whether the first collection waits a random part of one interval (default true).
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.0.jitter = jitter;
        self
    }

    /// The options.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) on `interval` outside 1 ms..=24 h or `timeout` outside
    /// 1 ms..=1 h.
    pub fn build(self) -> Result<CollectorOptions> {
        let o = self.0;
        if o.interval < Duration::from_millis(1) || o.interval > MAX_INTERVAL {
            return Err(Error::invalid("interval", "must be between 1 ms and 24 hours"));
        }
        if o.timeout < Duration::from_millis(1) || o.timeout > MAX_TIMEOUT {
            return Err(Error::invalid("timeout", "must be between 1 ms and 1 hour"));
        }
        Ok(o)
    }
}

/// How one collector has fared.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CollectorStatus {
    /// The collector's name.
    pub name: String,
    /// When the last successful collection started.
    pub last_success: Option<Timestamp>,
    /// When the last collection, successful or not, started.
    pub last_attempt: Option<Timestamp>,
    /// The last failure (its message and causes, which carry no secrets), cleared by a success.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// Successful collections.
    pub collections: u64,
    /// Failed or timed-out collections.
    pub failures: u64,
    /// Samples collected (not counting the `up` series).
    pub samples: u64,
    /// Items the collector skipped, and reported.
    pub skipped: u64,
    /// Samples the sink refused (over its cardinality limit, or invalid).
    pub refused: u64,
}

impl CollectorStatus {
    fn new(name: &str) -> Self {
        CollectorStatus {
            name: name.to_owned(),
            last_success: None,
            last_attempt: None,
            last_error: None,
            consecutive_failures: 0,
            collections: 0,
            failures: 0,
            samples: 0,
            skipped: 0,
            refused: 0,
        }
    }
}

struct Entry {
    status: Arc<Mutex<CollectorStatus>>,
    handle: JoinHandle<()>,
}

struct Inner {
    sink: Arc<dyn SampleSink>,
    clock: Arc<dyn Clock>,
    max_collectors: AtomicUsize,
    closed: AtomicBool,
    entries: Mutex<BTreeMap<String, Entry>>,
    metrics: std::sync::OnceLock<crate::own::ControlPlaneMetrics>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for entry in self.entries.get_mut().values() {
            entry.handle.abort();
        }
    }
}

/// Runs collectors, each in its own task, into one sink. Cheap to clone (clones share the
/// collectors); when the last clone is dropped every collector stops.
#[derive(Clone)]
pub struct CollectorRunner {
    inner: Arc<Inner>,
}

impl fmt::Debug for CollectorRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectorRunner")
            .field("sink", &self.inner.sink)
            .field("collectors", &self.inner.entries.lock().keys().collect::<Vec<_>>())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CollectorRunner {
    /// The default limit on collectors: 100 000.
    pub const DEFAULT_MAX_COLLECTORS: usize = 100_000;

    /// A runner writing into `sink`, timing samples with `clock`.
    pub fn new(sink: Arc<dyn SampleSink>, clock: Arc<dyn Clock>) -> Self {
        CollectorRunner {
            inner: Arc::new(Inner {
                sink,
                clock,
                max_collectors: AtomicUsize::new(Self::DEFAULT_MAX_COLLECTORS),
                closed: AtomicBool::new(false),
                entries: Mutex::new(BTreeMap::new()),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// At most `max` collectors at once (default [`Self::DEFAULT_MAX_COLLECTORS`]); more are
    /// refused by [`add`](Self::add).
    pub fn with_max_collectors(self, max: usize) -> Self {
        self.inner.max_collectors.store(max, Ordering::Relaxed);
        self
    }

    /// Counts samples and failures of every collector into `metrics`
    /// (`ecp_collector_samples_total`, `ecp_collector_errors_total`). Set once, before adding
    /// collectors; later calls are ignored.
    pub fn with_metrics(self, metrics: crate::own::ControlPlaneMetrics) -> Self {
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// Starts running `collector`, keyed by its [`name`](Collector::name).
    ///
    /// Must be called within a Tokio runtime (the collector's task is spawned on it).
    ///
    /// # Errors
    /// [`Error::Core`]: invalid input for an empty name or no Tokio runtime;
    /// a conflict if a collector of that name is running or after [`shutdown`](Self::shutdown);
    /// limit exceeded past the collector limit.
    pub fn add(&self, collector: Arc<dyn Collector>, options: CollectorOptions) -> Result<()> {
        let name = collector.name().to_owned();
        if name.is_empty() {
            return Err(Error::invalid("collector name", "must not be empty"));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::invalid("runtime", "CollectorRunner::add must be called within a tokio runtime"))?;
        let mut entries = self.inner.entries.lock();
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Core(ecp_core::Error::conflict("collector", &name, "the runner is shut down")));
        }
        if entries.contains_key(&name) {
            return Err(Error::Core(ecp_core::Error::conflict("collector", &name, "already running")));
        }
        let max = self.inner.max_collectors.load(Ordering::Relaxed);
        if entries.len() >= max {
            return Err(Error::Core(ecp_core::Error::LimitExceeded { limit: "collectors", max: max as u64 }));
        }
        let status = Arc::new(Mutex::new(CollectorStatus::new(&name)));
        let task = Task {
            collector,
            options,
            sink: self.inner.sink.clone(),
            clock: self.inner.clock.clone(),
            status: status.clone(),
            metrics: self.inner.metrics.get().cloned(),
        };
        let handle = runtime.spawn(task.run());
        entries.insert(name, Entry { status, handle });
        Ok(())
    }

    /// Stops the collector named `name` and returns its last status; `None` if there is none.
    /// Once this returns, that collector writes no more samples.
    pub async fn remove(&self, name: &str) -> Option<CollectorStatus> {
        let entry = self.inner.entries.lock().remove(name)?;
        entry.handle.abort();
        let _ = entry.handle.await;
        let status = entry.status.lock().clone();
        Some(status)
    }

    /// The status of the collector named `name`.
    pub fn status(&self, name: &str) -> Option<CollectorStatus> {
        self.inner.entries.lock().get(name).map(|e| e.status.lock().clone())
    }

    /// The status of every collector, by name.
    pub fn statuses(&self) -> Vec<CollectorStatus> {
        self.inner.entries.lock().values().map(|e| e.status.lock().clone()).collect()
    }

    /// How many collectors are running.
    pub fn len(&self) -> usize {
        self.inner.entries.lock().len()
    }

    /// Whether no collector is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every collector and refuses new ones. Once this returns, no collector writes samples.
    pub async fn shutdown(&self) {
        let entries = {
            let mut guard = self.inner.entries.lock();
            self.inner.closed.store(true, Ordering::Release);
            std::mem::take(&mut *guard)
        };
        for entry in entries.values() {
            entry.handle.abort();
        }
        for (_, entry) in entries {
            let _ = entry.handle.await;
        }
    }
}

/// One collector's loop.
struct Task {
    collector: Arc<dyn Collector>,
    options: CollectorOptions,
    sink: Arc<dyn SampleSink>,
    clock: Arc<dyn Clock>,
    status: Arc<Mutex<CollectorStatus>>,
    metrics: Option<crate::own::ControlPlaneMetrics>,
}

impl Task {
    async fn run(self) {
        if self.options.jitter {
            tokio::time::sleep(jitter(self.options.interval)).await;
        }
        let mut ticker = tokio::time::interval(self.options.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            self.once().await;
        }
    }

    async fn once(&self) {
        let now = self.clock.now();
        let timeout = self.options.timeout;
        let outcome = tokio::time::timeout(timeout, AssertUnwindSafe(self.collector.collect(now)).catch_unwind()).await;
        let result: std::result::Result<Collection, String> = match outcome {
            Ok(Ok(Ok(collection))) => Ok(collection),
            Ok(Ok(Err(e))) => {
                if let Some(m) = &self.metrics {
                    m.collector_failed(self.collector.name(), e.label());
                }
                Err(describe(&e))
            }
            Ok(Err(_)) => {
                if let Some(m) = &self.metrics {
                    m.collector_failed(self.collector.name(), "panic");
                }
                Err("the collector panicked".to_owned())
            }
            Err(_) => {
                if let Some(m) = &self.metrics {
                    m.collector_failed(self.collector.name(), "timeout");
                }
                Err(format!("timed out after {timeout:?}"))
            }
        };
        let (mut samples, skipped, error) = match result {
            Ok(c) => (c.samples, c.skipped.len(), None),
            Err(e) => (Vec::new(), 0, Some(e)),
        };
        let collected = samples.len();
        if let Some(m) = &self.metrics
            && collected > 0
        {
            m.collector_samples(self.collector.name(), collected as u64);
        }
        if let Some(up) = &self.options.up {
            samples.push(Sample { series: up.clone(), time: now, value: if error.is_none() { 1.0 } else { 0.0 } });
        }
        let accepted = if samples.is_empty() { Default::default() } else { self.sink.accept(&samples) };

        let name = self.collector.name();
        let mut status = self.status.lock();
        status.last_attempt = Some(now);
        status.refused += (accepted.over_cardinality + accepted.invalid) as u64;
        match error {
            None => {
                if status.consecutive_failures > 0 {
                    tracing::info!(collector = name, after = status.consecutive_failures, "collector recovered");
                }
                status.last_success = Some(now);
                status.last_error = None;
                status.consecutive_failures = 0;
                status.collections += 1;
                status.samples += collected as u64;
                status.skipped += skipped as u64;
            }
            Some(e) => {
                if status.consecutive_failures == 0 {
                    tracing::warn!(collector = name, error = %e, "collection failed");
                } else {
                    tracing::debug!(collector = name, error = %e, failures = status.consecutive_failures + 1, "collection failed again");
                }
                status.last_error = Some(e);
                status.consecutive_failures += 1;
                status.failures += 1;
            }
        }
    }
}

/// An error with its causes (`a: b: c`), bounded.
fn describe(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A random part of `interval`.
fn jitter(interval: Duration) -> Duration {
    // RandomState's keys are random per process and change with every call.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let b = CollectorOptions::builder;
        assert!(b().build().is_ok());
        assert!(b().interval(Duration::ZERO).build().is_err());
        assert!(b().interval(Duration::from_secs(90_000)).build().is_err());
        assert!(b().timeout(Duration::ZERO).build().is_err());
        assert!(b().timeout(Duration::from_secs(7200)).build().is_err());
        let o = b().build().unwrap();
        assert_eq!((o.interval(), o.timeout(), o.jitter(), o.up()), (Duration::from_secs(15), Duration::from_secs(15), true, None));
        let o = b().interval(Duration::from_millis(5)).timeout(Duration::from_millis(3)).jitter(false).build().unwrap();
        assert_eq!((o.interval(), o.timeout(), o.jitter()), (Duration::from_millis(5), Duration::from_millis(3), false));
    }

    #[test]
    fn jitter_stays_within_the_interval() {
        let i = Duration::from_millis(100);
        let all: Vec<_> = (0..100).map(|_| jitter(i)).collect();
        assert!(all.iter().all(|j| *j < i));
        assert!(all.iter().any(|j| *j != all[0]), "jitter is not random");
    }

    #[test]
    fn errors_are_described_with_causes_and_bounded() {
        #[derive(Debug, thiserror::Error)]
        #[error("connection refused")]
        struct Refused;
        let e = Error::Transport { source_name: "s".into(), endpoint: "GET /x".into(), retryable: true, source: Box::new(Refused) };
        assert_eq!(describe(&e), "s: GET /x: transport failed (retryable): connection refused");
        let long = Error::Decode { source_name: "s".into(), reason: "é".repeat(2000) };
        assert!(describe(&long).len() <= MAX_ERROR_LEN + '…'.len_utf8());
    }
}
