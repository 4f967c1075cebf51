//! [`MetricStoreConfig`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use ecp_core::{Clock, SystemClock};

use crate::error::{Error, Result};

use super::{MAX_RAW_POINTS_LIMIT, MAX_RETENTION};

#[cfg(doc)]
use super::MetricStore;

/// The configuration of a [`MetricStore`]; build it with [`MetricStoreConfig::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MetricStoreConfig {
    pub(super) raw_retention: Duration,
    pub(super) minute_retention: Duration,
    pub(super) hour_retention: Duration,
    pub(super) max_series: usize,
    pub(super) max_series_per_project: Option<usize>,
    pub(super) max_raw_points_per_series: usize,
    pub(super) max_future: Duration,
    pub(super) max_range_points: usize,
    pub(super) clock: Arc<dyn Clock>,
}

impl Default for MetricStoreConfig {
    fn default() -> Self {
        MetricStoreConfig {
            raw_retention: Duration::from_secs(2 * 3600),
            minute_retention: Duration::from_secs(2 * 24 * 3600),
            hour_retention: Duration::from_secs(30 * 24 * 3600),
            max_series: 100_000,
            max_series_per_project: None,
            max_raw_points_per_series: 720,
            max_future: Duration::from_secs(5 * 60),
            max_range_points: 1_000_000,
            clock: Arc::new(SystemClock),
        }
    }
}

impl MetricStoreConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> MetricStoreConfigBuilder {
        MetricStoreConfigBuilder { config: MetricStoreConfig::default() }
    }

    /// How long raw points are kept before they fold into 1-minute buckets (default 2 hours).
    pub fn raw_retention(&self) -> Duration {
        self.raw_retention
    }

    /// How long 1-minute buckets are kept before they fold into 1-hour buckets (default 2 days).
    pub fn minute_retention(&self) -> Duration {
        self.minute_retention
    }

    /// How long 1-hour buckets are kept (default 30 days).
    pub fn hour_retention(&self) -> Duration {
        self.hour_retention
    }

    /// The most series in the store (default 100 000).
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// The most series in one project (default: no limit beyond [`Self::max_series`]).
    pub fn max_series_per_project(&self) -> Option<usize> {
        self.max_series_per_project
    }

    /// The most raw points per series; older ones fold into minute buckets early (default 720).
    pub fn max_raw_points_per_series(&self) -> usize {
        self.max_raw_points_per_series
    }

    /// How far ahead of the clock a sample may be (default 5 minutes).
    pub fn max_future(&self) -> Duration {
        self.max_future
    }

    /// The most points one range query returns over all its series (default 1 000 000).
    pub fn max_range_points(&self) -> usize {
        self.max_range_points
    }

    /// The clock retention is measured against.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// Builds a [`MetricStoreConfig`]; setters never fail, [`build`](Self::build) validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricStoreConfigBuilder {
    config: MetricStoreConfig,
}

impl MetricStoreConfigBuilder {
    /// How long raw points are kept.
    pub fn raw_retention(mut self, d: Duration) -> Self {
        self.config.raw_retention = d;
        self
    }

    /// How long 1-minute buckets are kept (counted from now, so at least the raw retention).
    pub fn minute_retention(mut self, d: Duration) -> Self {
        self.config.minute_retention = d;
        self
    }

    /// How long 1-hour buckets are kept (counted from now, so at least the minute retention).
    pub fn hour_retention(mut self, d: Duration) -> Self {
        self.config.hour_retention = d;
        self
    }

    /// The most series in the store.
    pub fn max_series(mut self, n: usize) -> Self {
        self.config.max_series = n;
        self
    }

    /// The most series in one project (`None`: only the store's limit).
    pub fn max_series_per_project(mut self, n: Option<usize>) -> Self {
        self.config.max_series_per_project = n;
        self
    }

    /// The most raw points per series.
    pub fn max_raw_points_per_series(mut self, n: usize) -> Self {
        self.config.max_raw_points_per_series = n;
        self
    }

    /// How far ahead of the clock a sample may be.
    pub fn max_future(mut self, d: Duration) -> Self {
        self.config.max_future = d;
        self
    }

    /// The most points one range query returns over all its series.
    pub fn max_range_points(mut self, n: usize) -> Self {
        self.config.max_range_points = n;
        self
    }

    /// The clock (a `ManualClock` in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// The config.
    ///
    /// # Errors
    /// `InvalidInput` if a retention is zero or longer than [`MAX_RETENTION`], the retentions do not
    /// grow (raw ≤ minute ≤ hour), the future allowance exceeds [`MAX_RETENTION`], a limit is zero,
    /// or the raw points per series exceed [`MAX_RAW_POINTS_LIMIT`].
    pub fn build(self) -> Result<MetricStoreConfig> {
        let c = self.config;
        for (field, d) in
            [("raw_retention", c.raw_retention), ("minute_retention", c.minute_retention), ("hour_retention", c.hour_retention)]
        {
            if d.is_zero() || d > MAX_RETENTION {
                return Err(Error::invalid(field, format!("must be more than zero and at most {} days", MAX_RETENTION.as_secs() / 86_400)));
            }
        }
        if c.minute_retention < c.raw_retention {
            return Err(Error::invalid("minute_retention", "must be at least the raw retention"));
        }
        if c.hour_retention < c.minute_retention {
            return Err(Error::invalid("hour_retention", "must be at least the minute retention"));
        }
        if c.max_future > MAX_RETENTION {
            return Err(Error::invalid("max_future", format!("must be at most {} days", MAX_RETENTION.as_secs() / 86_400)));
        }
        if c.max_series == 0 {
            return Err(Error::invalid("max_series", "must be at least 1"));
        }
        if c.max_series_per_project == Some(0) {
            return Err(Error::invalid("max_series_per_project", "must be at least 1"));
        }
        if c.max_raw_points_per_series == 0 || c.max_raw_points_per_series > MAX_RAW_POINTS_LIMIT {
            return Err(Error::invalid("max_raw_points_per_series", format!("must be between 1 and {MAX_RAW_POINTS_LIMIT}")));
        }
        if c.max_range_points == 0 {
            return Err(Error::invalid("max_range_points", "must be at least 1"));
        }
        Ok(c)
    }
}
