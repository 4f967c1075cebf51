//! One series: its raw points and its 1-minute and 1-hour buckets, and what it costs.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::sample::{Labels, MetricName};

use super::{HOUR, MINUTE};

/// One downsampled bucket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    pub(super) start: i64,
    pub(super) last_time: i64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) sum: f64,
    pub(super) last: f64,
    pub(super) count: u64,
}

impl Bucket {
    fn single(start: i64, t: i64, v: f64) -> Self {
        Bucket { start, last_time: t, min: v, max: v, sum: v, last: v, count: 1 }
    }

    /// Merges a bucket holding newer samples.
    fn merge_newer(&mut self, o: &Bucket) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.count = self.count.saturating_add(o.count);
        self.last = o.last;
        self.last_time = o.last_time;
    }
}

/// Pushes `b` (newer than everything in `tier`) into the bucket of width `width` it belongs to.
fn fold_into(tier: &mut VecDeque<Bucket>, width: i64, b: Bucket) {
    let start = b.start.div_euclid(width) * width;
    match tier.back_mut() {
        Some(back) if back.start == start => back.merge_newer(&b),
        _ => tier.push_back(Bucket { start, ..b }),
    }
}

/// What a series holds, for the store's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Footprint {
    pub(super) raw: usize,
    pub(super) minutes: usize,
    pub(super) hours: usize,
    pub(super) bytes: usize,
}

/// Retention boundaries at one instant, in microseconds since the epoch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cutoffs {
    /// Raw points before this fold into minutes.
    pub(super) raw: i64,
    /// Minute buckets ending at or before this fold into hours.
    pub(super) minute: i64,
    /// Hour buckets ending at or before this expire.
    pub(super) hour: i64,
}

#[derive(Debug)]
pub(super) struct Series {
    pub(super) raw: VecDeque<(i64, f64)>,
    pub(super) minutes: VecDeque<Bucket>,
    pub(super) hours: VecDeque<Bucket>,
    /// The time of the newest sample folded out of the raw tier.
    folded_until: i64,
}

impl Series {
    pub(super) fn new() -> Self {
        Series { raw: VecDeque::new(), minutes: VecDeque::new(), hours: VecDeque::new(), folded_until: i64::MIN }
    }

    pub(super) fn footprint(&self) -> Footprint {
        Footprint {
            raw: self.raw.len(),
            minutes: self.minutes.len(),
            hours: self.hours.len(),
            bytes: self.raw.capacity() * size_of::<(i64, f64)>() + (self.minutes.capacity() + self.hours.capacity()) * size_of::<Bucket>(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.raw.is_empty() && self.minutes.is_empty() && self.hours.is_empty()
    }

    /// Inserts a point in time order; false if it is behind the downsampled part.
    pub(super) fn insert(&mut self, t: i64, v: f64, max_raw: usize, cut: Cutoffs) -> bool {
        if t <= self.folded_until {
            return false;
        }
        match self.raw.back() {
            Some(&(last, _)) if t <= last => {
                let i = self.raw.partition_point(|p| p.0 < t);
                match self.raw.get_mut(i) {
                    Some(p) if p.0 == t => p.1 = v,
                    _ => self.raw.insert(i, (t, v)),
                }
            }
            _ => self.raw.push_back((t, v)),
        }
        while self.raw.len() > max_raw {
            self.fold_oldest_raw();
        }
        self.compact(cut);
        true
    }

    fn fold_oldest_raw(&mut self) {
        if let Some((t, v)) = self.raw.pop_front() {
            self.folded_until = t;
            fold_into(&mut self.minutes, MINUTE, Bucket::single(t, t, v));
        }
    }

    /// Folds and expires by the cutoffs; work is bounded by what the series holds.
    pub(super) fn compact(&mut self, cut: Cutoffs) {
        while self.raw.front().is_some_and(|p| p.0 < cut.raw) {
            self.fold_oldest_raw();
        }
        while self.minutes.front().is_some_and(|b| b.start.saturating_add(MINUTE) <= cut.minute) {
            if let Some(b) = self.minutes.pop_front() {
                fold_into(&mut self.hours, HOUR, b);
            }
        }
        while self.hours.front().is_some_and(|b| b.start.saturating_add(HOUR) <= cut.hour) {
            self.hours.pop_front();
        }
    }

    /// Gives back buffer space well beyond what is used.
    pub(super) fn shrink(&mut self) {
        fn shrink<T>(d: &mut VecDeque<T>) {
            if d.capacity() > 8 && d.capacity() > d.len() * 2 {
                d.shrink_to(d.len() * 5 / 4);
            }
        }
        shrink(&mut self.raw);
        shrink(&mut self.minutes);
        shrink(&mut self.hours);
    }

    pub(super) fn latest(&self) -> Option<(i64, f64)> {
        self.raw.back().copied().or_else(|| self.minutes.back().or(self.hours.back()).map(|b| (b.last_time, b.last)))
    }
}

/// The bytes a series costs besides its point buffers: its key and its map entry.
///
/// `Labels::heap_size` counts the label strings and their `Arc` headers and the slice's header; the
/// slice's own `(Arc<str>, Arc<str>)` elements (32 bytes a label) are added here. A map entry is
/// counted twice its size for the hash table's load factor and growth slack. The metric name is
/// counted per series although series of one name share its map entry (an over-estimate).
pub(super) fn key_bytes(name: &MetricName, labels: &Labels) -> usize {
    const ENTRY: usize = size_of::<Labels>() + size_of::<Series>() + 1;
    labels.heap_size() + labels.len() * size_of::<(Arc<str>, Arc<str>)>() + name.as_str().len() + 16 + 2 * ENTRY
}
