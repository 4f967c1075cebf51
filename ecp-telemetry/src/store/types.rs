//! Range queries and their answers, and the store's stats.

use std::time::Duration;

use ecp_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::sample::{Point, SeriesKey};

/// How a range query combines the values inside one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// The mean (sum / count).
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The sum of the values.
    Sum,
    /// The newest value.
    Last,
    /// How many samples.
    Count,
}

/// A range query: the window `[start, end]` cut into steps of `step` aligned to multiples of `step`
/// since the Unix epoch; each returned point is at the start of its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeQuery {
    /// The window's start (inclusive).
    pub start: Timestamp,
    /// The window's end (inclusive).
    pub end: Timestamp,
    /// The step.
    pub step: Duration,
    /// How values inside a step are combined.
    pub aggregation: Aggregation,
}

impl RangeQuery {
    /// A range query.
    pub fn new(start: Timestamp, end: Timestamp, step: Duration, aggregation: Aggregation) -> Self {
        RangeQuery { start, end, step, aggregation }
    }
}

/// The points of one series in a range query, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRange {
    /// The series.
    pub series: SeriesKey,
    /// One point per step that has data, at the step's start.
    pub points: Vec<Point>,
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Series.
    pub series: usize,
    /// Raw points.
    pub raw_points: usize,
    /// 1-minute buckets.
    pub minute_buckets: usize,
    /// 1-hour buckets.
    pub hour_buckets: usize,
    /// An estimate of the heap bytes held: series keys (labels, names), map entries with their
    /// load-factor slack, and the allocated capacity of every point and bucket buffer.
    pub approx_bytes: usize,
    /// Samples refused since start because they would have created a series beyond a limit.
    pub rejected_cardinality: u64,
    /// Samples refused since start as invalid (NaN, infinite, too old, too far ahead, or behind
    /// their series' downsampled part).
    pub rejected_invalid: u64,
}
