//! The bounded in-memory metric store: recent raw points, downsampled history, and a cardinality limit.
//!
//! A [`MetricStore`] keeps three tiers per series, each sample in exactly one of them:
//!
//! - **raw points** for [`MetricStoreConfig::raw_retention`] (default 2 hours), at most
//!   [`MetricStoreConfig::max_raw_points_per_series`] per series;
//! - **1-minute buckets** (min, max, sum, count, last) for [`MetricStoreConfig::minute_retention`]
//!   (default 2 days): raw points older than the raw retention, or beyond the per-series bound, fold
//!   into the bucket of their minute;
//! - **1-hour buckets** for [`MetricStoreConfig::hour_retention`] (default 30 days): minute buckets
//!   older than their retention fold into the bucket of their hour; hour buckets older than theirs
//!   expire, and a series with no data left is dropped, freeing its slot.
//!
//! Folding happens in time order, so every raw point is newer than every minute bucket, and every
//! minute bucket newer than every hour bucket: a range query reads each part of its window at the
//! finest resolution still held. Folding runs on every insert (for the series written to) and in
//! [`MetricStore::maintain`] (for all series), which a host calls on an interval or leaves to
//! [`MetricStore::spawn_maintenance`]. Each step does work bounded by the configured limits.
//!
//! **Ordering.** A sample older than the newest point of its series is inserted in time order; a
//! sample with the time of an existing raw point replaces its value (last write wins). A sample at or
//! before the newest point already folded into a minute bucket is refused as invalid (its minute has
//! been summarized). Times are kept to the microsecond.
//!
//! **Cardinality.** A sample that would create a series beyond [`MetricStoreConfig::max_series`] (or
//! the per-project limit) is refused and counted; existing series are never evicted to make room.
//!
//! **Queries** are always inside one project: a [`SeriesSelector`] in project A never sees a series
//! of project B, whatever its name and labels.

mod aggregate;
mod config;
mod series;
mod sink;
mod types;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ecp_core::{ProjectId, Timestamp};
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::sample::{Labels, MetricName, MetricScope, Point, Sample, SeriesKey, SeriesSelector};

use aggregate::{Acc, add_to_steps};
pub use config::{MetricStoreConfig, MetricStoreConfigBuilder};
use series::{Cutoffs, Footprint, Series, key_bytes};
pub use types::{Aggregation, RangeQuery, SeriesRange, StoreStats};

/// At most this many points per series in one range query (`(end - start) / step + 1`).
pub const MAX_RANGE_STEPS: usize = 11_000;
/// The longest retention or future allowance a config accepts.
pub const MAX_RETENTION: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// The longest step a range query accepts.
pub const MAX_STEP: Duration = MAX_RETENTION;
/// The most raw points per series a config accepts.
pub const MAX_RAW_POINTS_LIMIT: usize = 1_000_000;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 3_600_000_000;
const SHARDS: usize = 16;
/// The shortest interval of [`MetricStore::spawn_maintenance`].
const MIN_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(10);

type LabelMap = HashMap<Labels, Series>;
type NameMap = HashMap<MetricName, LabelMap>;

#[derive(Debug, Default)]
struct Shard {
    projects: HashMap<MetricScope, NameMap>,
}

#[derive(Debug, Default)]
struct Cardinality {
    total: usize,
    per_project: HashMap<MetricScope, usize>,
}

#[derive(Debug, Default)]
struct Counters {
    raw: AtomicUsize,
    minutes: AtomicUsize,
    hours: AtomicUsize,
    bytes: AtomicUsize,
    rejected_cardinality: AtomicU64,
    rejected_invalid: AtomicU64,
}

fn apply_delta(c: &AtomicUsize, before: usize, after: usize) {
    if after > before {
        c.fetch_add(after - before, Ordering::Relaxed);
    } else if before > after {
        c.fetch_sub(before - after, Ordering::Relaxed);
    }
}

impl Counters {
    fn apply(&self, before: Footprint, after: Footprint) {
        apply_delta(&self.raw, before.raw, after.raw);
        apply_delta(&self.minutes, before.minutes, after.minutes);
        apply_delta(&self.hours, before.hours, after.hours);
        apply_delta(&self.bytes, before.bytes, after.bytes);
    }
}

/// The bounded in-memory metric store. Share it as `Arc<MetricStore>`; every method takes `&self`
/// and may be called from many tasks at once (series are spread over lock shards by hash).
pub struct MetricStore {
    config: MetricStoreConfig,
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    cardinality: Mutex<Cardinality>,
    counters: Counters,
}

impl fmt::Debug for MetricStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricStore").field("config", &self.config).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Default for MetricStore {
    fn default() -> Self {
        MetricStore::new(MetricStoreConfig::default())
    }
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// A duration in microseconds; configs and queries bound durations well below `i64::MAX` µs.
fn dur_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

enum Outcome {
    Stored,
    Invalid,
    OverCardinality,
}

impl MetricStore {
    /// An empty store.
    pub fn new(config: MetricStoreConfig) -> Self {
        MetricStore {
            config,
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            cardinality: Mutex::new(Cardinality::default()),
            counters: Counters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MetricStoreConfig {
        &self.config
    }

    fn shard_of(&self, key: &SeriesKey) -> usize {
        // The modulo keeps the index below SHARDS, so the cast cannot truncate meaningfully.
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn cutoffs(&self, now: i64) -> Cutoffs {
        Cutoffs {
            raw: now.saturating_sub(dur_micros(self.config.raw_retention)),
            minute: now.saturating_sub(dur_micros(self.config.minute_retention)),
            hour: now.saturating_sub(dur_micros(self.config.hour_retention)),
        }
    }

    /// Takes a slot for a new series of `scope`, if the limits allow.
    fn reserve(&self, scope: &MetricScope) -> bool {
        let mut c = self.cardinality.lock();
        if c.total >= self.config.max_series {
            return false;
        }
        let in_project = c.per_project.get(scope).copied().unwrap_or(0);
        if self.config.max_series_per_project.is_some_and(|max| in_project >= max) {
            return false;
        }
        c.total += 1;
        *c.per_project.entry(*scope).or_insert(0) += 1;
        true
    }

    /// Gives back `n` slots of `scope`.
    fn release(&self, scope: &MetricScope, n: usize) {
        if n == 0 {
            return;
        }
        let mut c = self.cardinality.lock();
        c.total = c.total.saturating_sub(n);
        if let Some(k) = c.per_project.get_mut(scope) {
            *k = k.saturating_sub(n);
            if *k == 0 {
                c.per_project.remove(scope);
            }
        }
    }

    fn insert(&self, shard: &mut Shard, s: &Sample, t: i64, cut: Cutoffs) -> Outcome {
        let key = &s.series;
        let exists = shard.projects.get(&key.scope).and_then(|n| n.get(&key.name)).is_some_and(|l| l.contains_key(&key.labels));
        if !exists {
            if !self.reserve(&key.scope) {
                return Outcome::OverCardinality;
            }
            self.counters.bytes.fetch_add(key_bytes(&key.name, &key.labels), Ordering::Relaxed);
            shard.projects.entry(key.scope).or_default().entry(key.name.clone()).or_default().insert(key.labels.clone(), Series::new());
        }
        let Some(series) = shard.projects.get_mut(&key.scope).and_then(|n| n.get_mut(&key.name)).and_then(|l| l.get_mut(&key.labels))
        else {
            // Inserted just above under the same lock.
            return Outcome::Invalid;
        };
        let before = series.footprint();
        let stored = series.insert(t, s.value, self.config.max_raw_points_per_series, cut);
        self.counters.apply(before, series.footprint());
        if stored { Outcome::Stored } else { Outcome::Invalid }
    }

    /// Folds and expires data in every series by the current time, drops series left without data
    /// (freeing their slots), and gives back unused buffer space. Returns how many series were dropped.
    ///
    /// Work is bounded by what the store holds; shards are locked one at a time.
    pub fn maintain(&self) -> usize {
        let cut = self.cutoffs(micros(self.config.clock.now()));
        (0..SHARDS).map(|i| self.maintain_shard(i, cut)).sum()
    }

    fn maintain_shard(&self, i: usize, cut: Cutoffs) -> usize {
        let mut dropped_total = 0;
        let mut released: Vec<(MetricScope, usize)> = Vec::new();
        {
            let mut shard = self.shards[i].write();
            shard.projects.retain(|scope, names| {
                let mut dropped = 0;
                names.retain(|name, series| {
                    series.retain(|labels, s| {
                        let before = s.footprint();
                        s.compact(cut);
                        s.shrink();
                        let after = s.footprint();
                        if s.is_empty() {
                            self.counters.apply(before, Footprint::default());
                            self.counters.bytes.fetch_sub(key_bytes(name, labels), Ordering::Relaxed);
                            dropped += 1;
                            false
                        } else {
                            self.counters.apply(before, after);
                            true
                        }
                    });
                    if series.capacity() > 16 && series.capacity() > series.len() * 4 {
                        series.shrink_to_fit();
                    }
                    !series.is_empty()
                });
                if dropped > 0 {
                    released.push((*scope, dropped));
                    dropped_total += dropped;
                }
                !names.is_empty()
            });
            if shard.projects.capacity() > 16 && shard.projects.capacity() > shard.projects.len() * 4 {
                shard.projects.shrink_to_fit();
            }
        }
        for (scope, n) in released {
            self.release(&scope, n);
        }
        dropped_total
    }

    /// Runs [`maintain`](Self::maintain) every `interval` (at least 10 ms) on the current tokio
    /// runtime, yielding between shards, until the store is dropped or the task aborted.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn_maintenance(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let store: Weak<MetricStore> = Arc::downgrade(self);
        let interval = interval.max(MIN_MAINTENANCE_INTERVAL);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut dropped = 0;
                for i in 0..SHARDS {
                    let Some(store) = store.upgrade() else { return };
                    let cut = store.cutoffs(micros(store.config.clock.now()));
                    dropped += store.maintain_shard(i, cut);
                    drop(store);
                    tokio::task::yield_now().await;
                }
                if dropped > 0 {
                    tracing::debug!(dropped, "metric store: series without data dropped");
                }
            }
        })
    }

    /// Drops every series of a project (of whichever organization), freeing their slots. Returns how
    /// many series were dropped.
    pub fn remove_project(&self, project: ProjectId) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut released: Vec<(MetricScope, usize)> = Vec::new();
            {
                let mut shard = shard.write();
                let scopes: Vec<MetricScope> = shard.projects.keys().filter(|s| s.project == project).copied().collect();
                for scope in scopes {
                    let Some(names) = shard.projects.remove(&scope) else { continue };
                    let mut n = 0;
                    for (name, series) in &names {
                        for (labels, s) in series {
                            self.counters.apply(s.footprint(), Footprint::default());
                            self.counters.bytes.fetch_sub(key_bytes(name, labels), Ordering::Relaxed);
                            n += 1;
                        }
                    }
                    released.push((scope, n));
                    removed += n;
                }
            }
            for (scope, n) in released {
                self.release(&scope, n);
            }
        }
        removed
    }

    /// Calls `f` on every series of `scope` matching `selector`, shard by shard under read locks.
    fn for_each_match(
        &self,
        scope: &MetricScope,
        selector: &SeriesSelector,
        mut f: impl FnMut(&Labels, &Series) -> Result<()>,
    ) -> Result<()> {
        for shard in self.shards.iter() {
            let shard = shard.read();
            let Some(series) = shard.projects.get(scope).and_then(|n| n.get(&selector.name)) else { continue };
            for (labels, s) in series {
                if selector.matchers.iter().all(|m| m.matches(labels)) {
                    f(labels, s)?;
                }
            }
        }
        Ok(())
    }

    /// The series of `scope` that `selector` matches, sorted.
    pub fn series(&self, scope: &MetricScope, selector: &SeriesSelector) -> Vec<SeriesKey> {
        let mut out = Vec::new();
        let _ = self.for_each_match(scope, selector, |labels, _| {
            out.push(SeriesKey::new(*scope, selector.name.clone(), labels.clone()));
            Ok(())
        });
        out.sort();
        out
    }

    /// The newest point of each matching series of `scope` (from a downsampled bucket, its last
    /// sample, where no raw point is left), sorted by series.
    pub fn latest(&self, scope: &MetricScope, selector: &SeriesSelector) -> Vec<(SeriesKey, Point)> {
        let mut out = Vec::new();
        let _ = self.for_each_match(scope, selector, |labels, s| {
            if let Some((t, value)) = s.latest()
                && let Ok(time) = Timestamp::from_microsecond(t)
            {
                out.push((SeriesKey::new(*scope, selector.name.clone(), labels.clone()), Point { time, value }));
            }
            Ok(())
        });
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The points of each matching series of `scope` in the query's window, one per step with data,
    /// at the step's start, sorted by series; series without data in the window are left out.
    ///
    /// Each step combines the samples of the step at the finest resolution held: raw points where
    /// they remain, then 1-minute and 1-hour buckets (a bucket counts in the step holding its start,
    /// or the window's start if it began earlier). With a step finer than a bucket, the bucket's
    /// aggregate appears once, at its step.
    ///
    /// # Errors
    /// `InvalidInput` if `end` is before `start`, `step` is zero or longer than [`MAX_STEP`], the
    /// window holds more than [`MAX_RANGE_STEPS`] steps, or the answer would exceed
    /// [`MetricStoreConfig::max_range_points`] points.
    pub fn range(&self, scope: &MetricScope, selector: &SeriesSelector, query: RangeQuery) -> Result<Vec<SeriesRange>> {
        if query.end < query.start {
            return Err(Error::invalid("range", "end is before start"));
        }
        if query.step.is_zero() || query.step > MAX_STEP {
            return Err(Error::invalid("step", format!("must be more than zero and at most {} days", MAX_STEP.as_secs() / 86_400)));
        }
        let step = dur_micros(query.step).max(1);
        let (start, end) = (micros(query.start), micros(query.end));
        let (first, last) = (start.div_euclid(step) * step, end.div_euclid(step) * step);
        let steps = (last - first) / step + 1;
        if steps > MAX_RANGE_STEPS as i64 {
            return Err(Error::invalid(
                "range",
                format!("{steps} steps in the window, at most {MAX_RANGE_STEPS}: widen the step or narrow the window"),
            ));
        }
        let step_of = |t: i64| t.max(start).div_euclid(step) * step;
        let max_points = self.config.max_range_points;
        let mut total = 0usize;
        let mut out = Vec::new();
        self.for_each_match(scope, selector, |labels, s| {
            let mut acc: Vec<Acc> = Vec::new();
            for (tier, width) in [(&s.hours, HOUR), (&s.minutes, MINUTE)] {
                // Buckets overlapping [start, end]: start <= end and start + width > window start.
                let from = tier.partition_point(|b| b.start.saturating_add(width) <= start);
                for b in tier.range(from..).take_while(|b| b.start <= end) {
                    add_to_steps(&mut acc, Acc::from_bucket(step_of(b.start), b));
                }
            }
            let from = s.raw.partition_point(|p| p.0 < start);
            for &(t, v) in s.raw.range(from..).take_while(|p| p.0 <= end) {
                add_to_steps(&mut acc, Acc { step: step_of(t), min: v, max: v, sum: v, last: v, count: 1 });
            }
            if acc.is_empty() {
                return Ok(());
            }
            total = total.saturating_add(acc.len());
            if total > max_points {
                return Err(Error::invalid(
                    "range",
                    format!("the answer would hold more than {max_points} points: narrow the selector or widen the step"),
                ));
            }
            let points = acc
                .iter()
                .filter_map(|a| Timestamp::from_microsecond(a.step).ok().map(|time| Point { time, value: a.value(query.aggregation) }))
                .collect();
            out.push(SeriesRange { series: SeriesKey::new(*scope, selector.name.clone(), labels.clone()), points });
            Ok(())
        })?;
        out.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(out)
    }

    /// What the store holds, and what it refused.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        let series = self.cardinality.lock().total;
        StoreStats {
            series,
            raw_points: c.raw.load(Ordering::Relaxed),
            minute_buckets: c.minutes.load(Ordering::Relaxed),
            hour_buckets: c.hours.load(Ordering::Relaxed),
            approx_bytes: c.bytes.load(Ordering::Relaxed) + size_of::<MetricStore>() + SHARDS * size_of::<RwLock<Shard>>(),
            rejected_cardinality: c.rejected_cardinality.load(Ordering::Relaxed),
            rejected_invalid: c.rejected_invalid.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(now: i64) -> Cutoffs {
        Cutoffs { raw: now - 2 * HOUR, minute: now - 48 * HOUR, hour: now - 30 * 24 * HOUR }
    }

    #[test]
    fn insert_keeps_order_and_replaces_duplicates() {
        let mut s = Series::new();
        let c = cut(10 * MINUTE);
        assert!(s.insert(3, 3.0, 10, c));
        assert!(s.insert(1, 1.0, 10, c));
        assert!(s.insert(2, 2.0, 10, c));
        assert!(s.insert(2, 20.0, 10, c));
        assert_eq!(s.raw.iter().copied().collect::<Vec<_>>(), vec![(1, 1.0), (2, 20.0), (3, 3.0)]);
    }

    #[test]
    fn overflowing_raw_points_fold_and_refuse_older_samples() {
        let mut s = Series::new();
        let c = cut(10 * MINUTE);
        for i in 0..5 {
            assert!(s.insert(i * 1_000_000, i as f64, 3, c));
        }
        assert_eq!(s.raw.len(), 3);
        assert_eq!(s.minutes.len(), 1);
        let b = s.minutes[0];
        assert_eq!((b.start, b.count, b.min, b.max, b.sum, b.last, b.last_time), (0, 2, 0.0, 1.0, 1.0, 1.0, 1_000_000));
        assert!(!s.insert(1_000_000, 9.0, 3, c), "behind the folded part");
        assert!(s.insert(1_500_000, 9.0, 3, c), "between folded part and raw");
    }

    #[test]
    fn step_list_merges_out_of_order_contributions() {
        let mut steps = Vec::new();
        let a = |step, v: f64| Acc { step, min: v, max: v, sum: v, last: v, count: 1 };
        add_to_steps(&mut steps, a(10, 1.0));
        add_to_steps(&mut steps, a(30, 3.0));
        add_to_steps(&mut steps, a(20, 2.0));
        add_to_steps(&mut steps, a(10, 5.0));
        assert_eq!(steps.iter().map(|s| (s.step, s.sum)).collect::<Vec<_>>(), vec![(10, 6.0), (20, 2.0), (30, 3.0)]);
    }
}
