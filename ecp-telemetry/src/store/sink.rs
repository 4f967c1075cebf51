//! The store as a [`SampleSink`]: validates and stores collected samples.

use std::sync::atomic::Ordering;

use crate::collector::{Accepted, SampleSink};
use crate::sample::Sample;

use super::{MetricStore, Outcome, dur_micros, micros};

impl SampleSink for MetricStore {
    /// Stores the samples. Refused as invalid: NaN or infinite values, times before
    /// `now - raw_retention` or after `now + max_future`, and times at or before the downsampled part
    /// of their series. Refused as over cardinality: samples of a new series beyond a limit.
    fn accept(&self, samples: &[Sample]) -> Accepted {
        let now = micros(self.config.clock.now());
        let cut = self.cutoffs(now);
        let newest = now.saturating_add(dur_micros(self.config.max_future));
        let mut accepted = Accepted::default();
        let mut order: Vec<(usize, usize, i64)> = Vec::with_capacity(samples.len());
        for (i, s) in samples.iter().enumerate() {
            let t = micros(s.time);
            if !s.value.is_finite() || t < cut.raw || t > newest {
                accepted.invalid += 1;
                continue;
            }
            order.push((self.shard_of(&s.series), i, t));
        }
        // Stable: samples of one series keep their order.
        order.sort_by_key(|o| o.0);
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let mut shard = self.shards[group[0].0].write();
            for &(_, i, t) in group {
                match self.insert(&mut shard, &samples[i], t, cut) {
                    Outcome::Stored => accepted.stored += 1,
                    Outcome::Invalid => accepted.invalid += 1,
                    Outcome::OverCardinality => accepted.over_cardinality += 1,
                }
            }
        }
        if accepted.invalid > 0 {
            self.counters.rejected_invalid.fetch_add(accepted.invalid as u64, Ordering::Relaxed);
        }
        if accepted.over_cardinality > 0 {
            self.counters.rejected_cardinality.fetch_add(accepted.over_cardinality as u64, Ordering::Relaxed);
        }
        accepted
    }
}
