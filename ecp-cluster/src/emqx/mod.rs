//! The EMQX 5 REST client (feature `existing`): what the platform reads from a running cluster
//! (5.3 to 5.10, open source and Enterprise) on port 18083.
//!
//! - [`request`]: pure functions that build each [`Request`] (method, path, query, body);
//! - [`types`]: the answers as they are on the wire, quirks included: `memory_total` as `"7.63G"`,
//!   `"infinity"` for limits ([`Limit`]), a listener's `running` as `true`, `false` or
//!   `"inconsistent"` ([`ListenerRunning`]), `null` usernames, stopped nodes of three keys,
//!   5.3's short `monitor_current`, an optional `meta.count`, `/status` as text or JSON whatever
//!   the content type (5.3 and 5.6 send `applicatin/json`);
//! - [`EmqxClient`]: sends them with the API key as HTTP Basic and `Accept: application/json`,
//!   under a timeout and a body size limit, and maps every error answer to a typed [`Error`]:
//!
//! | answer | error |
//! |---|---|
//! | 401 (`BAD_API_KEY_OR_SECRET`, `API_KEY_NOT_ALLOW` ...), 403 (`UNAUTHORIZED_ROLE`) | [`Error::Unauthorized`] with the status, code and message |
//! | any other non-2xx (`{"code","message"}`, extra keys, text, HTML or nothing) | [`Error::Api`]; 404 is [`Error::is_not_found`], 5xx [`Error::is_retryable`] |
//! | a 2xx body of the wrong shape | [`Error::Decode`] |
//! | a body over the limit | [`Error::TooLarge`] |
//! | no answer in time, refused connection | [`Error::Transport`] (retryable) |
//!
//! `/api/v5/license` and `/license/setting` answer 404 on open source: that is `Ok(None)`.
//!
//! [`poller`]: [`EmqxPoller`], ecp-telemetry's `Collector` of a cluster's gauges and counters,
//! built on the client; it reads the answers leniently, so that a malformed field costs only
//! itself.
//!
//! ```no_run
//! # async fn demo() -> ecp_cluster::Result<()> {
//! use std::time::Duration;
//!
//! use ecp_cluster::emqx::{ClientOptions, EmqxClient};
//! use ecp_cluster::{ApiKey, ClusterApi};
//!
//! let api = ClusterApi { base_url: "http://10.0.0.1:18083".into(), key: ApiKey::new("ecp", "s3cret-key".into())? };
//! let options = ClientOptions::builder().timeout(Duration::from_secs(5)).build()?;
//! let client = EmqxClient::new(&api, &options)?;
//! for node in client.nodes().await? {
//!     println!("{} {} {:?} bytes used", node.node, node.node_status.as_str(), node.memory_used);
//! }
//! # Ok(()) }
//! ```
//!
//! [`Error`]: crate::Error
//! [`Error::Unauthorized`]: crate::Error::Unauthorized
//! [`Error::Api`]: crate::Error::Api
//! [`Error::Decode`]: crate::Error::Decode
//! [`Error::TooLarge`]: crate::Error::TooLarge
//! [`Error::Transport`]: crate::Error::Transport
//! [`Error::is_not_found`]: crate::Error::is_not_found
//! [`Error::is_retryable`]: crate::Error::is_retryable

mod client;
pub mod poller;
pub mod request;
pub mod types;

pub use client::{ClientOptions, ClientOptionsBuilder, EmqxClient};
pub use ecp_http::{EgressDenied, EgressPolicy};
pub use poller::{EmqxPoller, EmqxPollerConfig};
pub use request::{ClientQuery, ConnState, Method, PageRequest, Request};
pub use types::{
    Alarm, ClientInfo, ErrorBody, License, LicenseSetting, LicenseType, Limit, ListenerInfo, ListenerRunning, ListenerStatus, Metrics,
    MonitorCurrent, Node, NodeHealth, NodeListenerStatus, NodeStatus, Page, PageMeta, Stats, StatusReport, parse_memory,
};
