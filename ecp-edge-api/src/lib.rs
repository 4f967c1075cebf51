//! # ecp-edge-api
//!
//! The HTTP APIs of the edge products ecp-rs manages (NeuronEX, Neuron 2.x, eKuiper, NanoMQ) as a
//! library of its own, usable without the rest of the SDK: the control plane uses it to manage
//! services directly over HTTP, and the edge agent (`ecp-agent`) uses the same code next to the
//! services it fronts.
//!
//! Each product module ([`neuron`], [`ekuiper`], [`nanomq`], [`neuronex`]) has the same shape, as
//! kube-core and kube-client split a client:
//! - `request`: a request builder (`NeuronApi`, `EkuiperApi`, `NanoMqApi`, `NeuronExApi`) of pure
//!   functions that turn arguments into an [`ApiCall`], an `http::Request` plus the pure function
//!   that reads its answer;
//! - `types`: typed answers that model the wire format as the products really send it, quirks
//!   included (Neuron's errors under HTTP 200, eKuiper's JSON errors sent as `text/plain`,
//!   NanoMQ's `client_id` next to `clientid`, NanoMQ 0.25's float `keepalive_backoff`);
//! - `client`: a thin client (`NeuronClient`, `EkuiperClient`, `NanoMqClient`, `NeuronExClient`)
//!   that sends calls over an [`EdgeTransport`] and handles authentication: HTTP Basic, a static
//!   token, or a token obtained by logging in, renewed once when the service says it expired;
//! - `codes`: the product's error codes, so that errors are classified by what the product means
//!   and not only by the HTTP status ([`Error::is_not_found`](crate::Error::is_not_found)).
//!
//! On top of them, [`ServiceClient`] is the client of a service of any [`EdgeKind`], with what the
//! platform does through it: [`probe`](ServiceClient::probe),
//! [`sync_info`](ServiceClient::sync_info), and [`apply`](ServiceClient::apply) of a
//! [`ConfigChange`] that converges when applied again.
//!
//! The [`EdgeTransport`] seam moves requests: [`HttpTransport`] (feature `http`, on by default)
//! sends them over HTTP(S); the control plane's agent hub tunnels them through MQTT to an edge
//! agent next to the service, so the same adapters work in both modes.
//!
//! ```no_run
//! # async fn demo() -> ecp_edge_api::Result<()> {
//! use std::sync::Arc;
//!
//! use ecp_edge_api::neuron::NodeType;
//! use ecp_edge_api::{Credentials, HttpTransportConfig, NeuronExClient};
//!
//! let transport = Arc::new(HttpTransportConfig::new("http://10.0.0.5:8085").build()?);
//! let credentials = Credentials::Basic { username: "admin".into(), password: "0000".to_owned().into() };
//! let neuronex = NeuronExClient::new(transport, credentials)?;
//! println!("NeuronEX {}", neuronex.version().await?.version);
//! for driver in neuronex.neuron().nodes(NodeType::Driver, &Default::default()).await? {
//!     println!("south driver {} ({})", driver.name, driver.plugin);
//! }
//! for rule in neuronex.ekuiper().rules().await? {
//!     println!("rule {}: {}", rule.id, rule.status);
//! }
//! # Ok(()) }
//! ```

mod call;
pub mod change;
mod client;
pub mod codes;
pub mod ekuiper;
pub mod error;
pub mod info;
pub mod nanomq;
pub mod neuron;
pub mod neuronex;
mod raw;
mod service;
mod session;
pub mod transport;

pub use call::{ApiCall, IDEMPOTENCY_KEY, check_request_path};
pub use change::{ChangeKind, ConfigChange, GroupSpec, TagSpec};
pub use client::ServiceClient;
#[cfg(feature = "http")]
pub use ecp_http::{EgressDenied, EgressPolicy};
pub use ekuiper::{EkuiperApi, EkuiperClient};
pub use error::{Error, Result};
pub use info::{EdgeInfo, GroupInfo, Health, NodeInfo, RuleInfo};
pub use nanomq::{NanoMqApi, NanoMqClient};
pub use neuron::{NeuronApi, NeuronClient};
pub use neuronex::{NeuronExApi, NeuronExClient};
pub use raw::RawClient;
pub use service::{Credentials, EdgeKind};
pub use session::LoginToken;
pub use transport::{DEFAULT_MAX_BODY, EdgeTransport};
#[cfg(feature = "http")]
pub use transport::{HttpTransport, HttpTransportConfig};

#[cfg(test)]
pub(crate) mod testing;
