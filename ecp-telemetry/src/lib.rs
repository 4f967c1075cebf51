//! # ecp-telemetry
//!
//! Telemetry for ecp-rs:
//!
//! - [`sample`]: samples and series (metric name, labels, the project they belong to, value, time);
//! - [`collector`]: the `Collector` and `SampleSink` seams; [`prom`]: a lenient Prometheus text
//!   parser and (feature `http`) scraper; [`runner`]: runs collectors on their own intervals so a
//!   slow source never blocks the others (the EMQX 5 REST poller is ecp-cluster's, on its client);
//! - [`store`]: a bounded in-memory metric store with retention, downsampling and a cardinality limit;
//! - [`alarm`]: rules that fire after N breaching evaluations and clear after P healthy ones,
//!   built-in rules, silences, acknowledgement, history, the storm guard, custom alarms;
//! - [`notify`]: webhook (feature `webhook`) and email (feature `email`) notifiers, routed by tags;
//! - [`logs`]: log records, queries, a bounded store and a syslog sink;
//! - [`own`]: the control plane's own metrics in Prometheus text format.
//!
//! ```
//! use std::sync::Arc;
//! use ecp_core::{OrgId, ProjectId, SystemClock, Timestamp};
//! use ecp_telemetry::alarm::{AlarmConfig, AlarmEngine, AlarmRule, Comparison, Condition, MetricReader};
//! use ecp_telemetry::{Labels, MetricName, MetricScope, MetricStore, MetricStoreConfig, Sample, SampleSink, SeriesSelector, Severity};
//!
//! # fn main() -> ecp_telemetry::Result<()> {
//! let scope = MetricScope::new(OrgId::new(), ProjectId::new());
//! let store = Arc::new(MetricStore::new(MetricStoreConfig::default()));
//! let cpu = MetricName::new("emqx_vm_cpu_use")?;
//! let sample = Sample::new(scope, cpu.clone(), Labels::new([("node", "emqx@a")])?, Timestamp::now(), 97.0);
//! assert_eq!(store.accept(&[sample]).stored, 1);
//!
//! let engine = AlarmEngine::new(store.clone() as Arc<dyn MetricReader>, Arc::new(SystemClock), AlarmConfig::default())?;
//! engine.attach(scope); // the project, with its built-in rules
//! let mut events = engine.subscribe();
//! # let _ = AlarmRule::new("cpu", Condition::Threshold { selector: SeriesSelector::metric(cpu), comparison: Comparison::Gt, threshold: 90.0 }, Severity::Critical);
//! engine.evaluate();
//! assert!(events.try_recv().is_err(), "built-in EMQX rules are off by default, as in the product");
//! # Ok(())
//! # }
//! ```

pub mod alarm;
pub mod collector;
pub mod error;
pub mod logs;
pub mod notify;
pub mod own;
pub mod prom;
pub mod runner;
pub mod sample;
pub mod store;

pub use collector::{Accepted, Collection, Collector, SampleSink, Skipped};
#[cfg(any(feature = "http", feature = "webhook"))]
pub use ecp_http::{EgressDenied, EgressPolicy};
pub use error::{Error, Result};
pub use logs::{
    Level, LogCursor, LogPage, LogQuery, LogRecord, LogScope, LogSink, LogStore, LogStoreConfig, Product, SyslogConfig, SyslogNetwork,
    SyslogSink,
};
pub use notify::{DeliveryReport, Notification, NotificationRouter, Notifier};
pub use own::{ControlPlaneMetrics, CountingAuthorizer};
pub use runner::{CollectorOptions, CollectorOptionsBuilder, CollectorRunner, CollectorStatus};
pub use sample::{LabelMatcher, Labels, MatchOp, MetricName, MetricScope, Point, Sample, SeriesKey, SeriesSelector, Severity};
pub use store::{Aggregation, MetricStore, MetricStoreConfig, RangeQuery, SeriesRange, StoreStats};
