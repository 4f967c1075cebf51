//! The `Collector` seam: anything that produces samples when asked (a Prometheus scrape, an EMQX
//! REST poll), and the `SampleSink` seam that takes them (the metric store, a test's vector).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::Timestamp;

use crate::error::Result;
use crate::sample::Sample;

/// Something the source sent that could not be turned into a sample: reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where (a 1-based line number of a text body, or a field path of a JSON body).
    pub location: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What one collection produced.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    /// The samples.
    pub samples: Vec<Sample>,
    /// What was skipped, and why.
    pub skipped: Vec<Skipped>,
}

/// A source of samples, asked on an interval by a runner.
///
/// Implementations attach the scope (project) and a `source` label to every sample they produce.
/// `collect` must not block; a runner puts a timeout around it.
#[async_trait]
pub trait Collector: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and metrics (`"emqx prod-1"`, `"scrape edge-7"`).
    fn name(&self) -> &str;

    /// Collects once.
    ///
    /// # Errors
    /// The source could not be reached, refused, or answered something unusable as a whole
    /// (individual bad lines or fields go into [`Collection::skipped`] instead).
    async fn collect(&self, now: Timestamp) -> Result<Collection>;
}

/// How many samples a sink took, and how many it refused and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Stored.
    pub stored: usize,
    /// Refused because a new series would exceed the cardinality limit.
    pub over_cardinality: usize,
    /// Refused because the value was NaN or infinite, or the time too old or too far ahead.
    pub invalid: usize,
}

/// Takes samples: the metric store, or anything a host wants to forward to.
pub trait SampleSink: Send + Sync + fmt::Debug + 'static {
    /// Takes these samples; never fails as a whole, reports what it refused.
    fn accept(&self, samples: &[Sample]) -> Accepted;
}

impl<S: SampleSink + ?Sized> SampleSink for Arc<S> {
    fn accept(&self, samples: &[Sample]) -> Accepted {
        (**self).accept(samples)
    }
}
