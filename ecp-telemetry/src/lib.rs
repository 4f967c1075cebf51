//! # ecp-telemetry
//!
//! Telemetry for ecp-rs. This crate will own (see the telemetry issue):
//!
//! - samples and series (metric name, labels with organization, project and source, value, time);
//! - collectors behind one `Collector` trait: a Prometheus text scraper, an EMQX REST poller, and
//!   samples pushed by edge agents;
//! - a bounded in-memory metric store with retention, downsampling and a cardinality limit;
//! - alarm rules (fire after N breaching evaluations, clear after P healthy ones), their lifecycle,
//!   the storm guard, and custom alarms pushed with a project token;
//! - notifiers (webhook, email) behind a `Notifier` trait;
//! - log records and queries behind a `LogSink` trait;
//! - the control plane's own metrics in Prometheus text format.
//!
//! Nothing is implemented yet; the crate exists so the dependency direction
//! (`ecp-core <- ecp-rbac <- ecp-telemetry <- {ecp-cluster, ecp-edge}`) is fixed from the start.

pub use ecp_core;
pub use ecp_rbac;
