//! The integration tests of ecp-telemetry, one test binary with a module per area (a binary per
//! file linked the crate's dependencies once per file).

mod alarms;
mod collector_runner;
mod denials;
mod logs;
mod metric_store;
mod notify;
mod own_metrics;
mod prom_fixtures;
mod prom_props;
mod prom_scrape;
