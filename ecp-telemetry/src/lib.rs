//! # ecp-telemetry
//!
//! Telemetry for ecp-rs:
//!
//! - [`sample`]: samples and series (metric name, labels, the project they belong to, value, time);
//! - collectors behind one `Collector` trait: a Prometheus text scraper, an EMQX REST poller, and
//!   samples pushed by edge agents;
//! - a bounded in-memory metric store with retention, downsampling and a cardinality limit;
//! - alarm rules (fire after N breaching evaluations, clear after P healthy ones), their lifecycle,
//!   the storm guard, and custom alarms pushed with a project token;
//! - notifiers (webhook, email) behind a `Notifier` trait;
//! - log records and queries behind a `LogSink` trait;
//! - the control plane's own metrics in Prometheus text format.

pub mod alarm;
pub mod collector;
#[cfg(feature = "http")]
pub mod emqx;
pub mod error;
pub mod prom;
pub mod runner;
pub mod logs;
pub mod notify;
pub mod own;
pub mod sample;
pub mod store;

pub use ecp_core;
pub use ecp_rbac;
pub use error::{Error, Result};
pub use runner::{CollectorOptions, CollectorRunner, CollectorStatus};
pub use logs::{Level, LogCursor, LogPage, LogQuery, LogRecord, LogScope, LogSink, LogStore, LogStoreConfig, Product, SyslogConfig, SyslogNetwork, SyslogSink};
pub use notify::{DeliveryReport, Notification, NotificationRouter, Notifier};
pub use own::{ControlPlaneMetrics, CountingAuthorizer};
pub use collector::{Accepted, Collection, Collector, SampleSink, Skipped};
pub use sample::{LabelMatcher, Labels, MatchOp, MetricName, MetricScope, Point, Sample, SeriesKey, SeriesSelector, Severity};
pub use store::{Aggregation, MetricStore, MetricStoreConfig, RangeQuery, SeriesRange, StoreStats};
