//! The EMQX 5 REST API's answers, as they are on the wire (5.3 to 5.10), quirks included.
//!
//! Everything but the identifying field of each object is optional or defaulted, since versions
//! add and drop keys; unknown keys are ignored.

mod clients;
mod common;
mod json;
mod license;
mod listeners;
mod nodes;
mod readings;
mod stats;
#[cfg(test)]
mod tests;

pub use clients::{Alarm, ClientInfo};
pub use common::{ErrorBody, Limit, Page, PageMeta};
pub use json::parse_memory;
pub use license::{License, LicenseSetting, LicenseType};
pub use listeners::{ListenerInfo, ListenerRunning, ListenerStatus, NodeListenerStatus};
pub use nodes::{Node, NodeHealth, NodeStatus, StatusReport};
pub(crate) use readings::{CounterReadings, Element, Field, LicenseReading, MetricsReading, MonitorReading, NodeReadings, Reading};
pub use stats::{Metrics, MonitorCurrent, Stats};
