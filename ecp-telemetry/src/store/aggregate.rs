//! The running aggregates of a range query's steps.

use super::Aggregation;
use super::series::Bucket;

/// The running aggregate of one step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Acc {
    pub(super) step: i64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) sum: f64,
    pub(super) last: f64,
    pub(super) count: u64,
}

impl Acc {
    pub(super) fn from_bucket(step: i64, b: &Bucket) -> Self {
        Acc { step, min: b.min, max: b.max, sum: b.sum, last: b.last, count: b.count }
    }

    fn merge(&mut self, o: &Acc) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.count = self.count.saturating_add(o.count);
        self.last = o.last;
    }

    pub(super) fn value(&self, agg: Aggregation) -> f64 {
        match agg {
            Aggregation::Avg => self.sum / self.count as f64,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
            Aggregation::Sum => self.sum,
            Aggregation::Last => self.last,
            Aggregation::Count => self.count as f64,
        }
    }
}

/// Adds a contribution to the step list, kept sorted by step (contributions come in time order, so
/// this is almost always a merge into, or a push after, the last step).
pub(super) fn add_to_steps(steps: &mut Vec<Acc>, a: Acc) {
    match steps.last_mut() {
        Some(last) if last.step == a.step => last.merge(&a),
        Some(last) if last.step > a.step => match steps.binary_search_by_key(&a.step, |s| s.step) {
            Ok(i) => steps[i].merge(&a),
            Err(i) => steps.insert(i, a),
        },
        _ => steps.push(a),
    }
}
