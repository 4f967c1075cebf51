//! Adapters for the HTTP APIs of NeuronEX, Neuron, eKuiper and NanoMQ.
//!
//! Each product module has three layers, as kube-core and kube-client split them:
//! - a request builder (`NeuronApi`, `EkuiperApi`, `NanoMqApi`, `NeuronExApi`): pure functions
//!   that turn arguments into an [`ApiCall`], an `http::Request` plus the pure function that reads
//!   its answer;
//! - typed answers that model the wire format as the products really send it, quirks included
//!   (Neuron's errors under HTTP 200, eKuiper's JSON errors sent as `text/plain`, NanoMQ's
//!   `client_id` next to `clientid`, string-typed numbers);
//! - a thin client (`NeuronClient`, `EkuiperClient`, `NanoMqClient`, `NeuronExClient`) that sends
//!   calls over an [`EdgeTransport`](crate::EdgeTransport) and handles authentication: HTTP Basic,
//!   a static token, or a token obtained by logging in, renewed once when the service says it
//!   expired.
//!
//! NeuronEX proxies Neuron under `/api/neuron` and eKuiper under `/api/ekuiper`;
//! [`NeuronExClient::neuron`] and [`NeuronExClient::ekuiper`] return the Neuron and eKuiper clients
//! on those prefixes, sharing the NeuronEX login.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use ecp_edge::EdgeTransport;
//! // `transport` is an `HttpTransport` (feature `direct`:
//! // `HttpTransportConfig::new("http://10.0.0.5:8085").build()?`) or an agent's.
//! # async fn demo(transport: Arc<dyn EdgeTransport>) -> ecp_edge::Result<()> {
//! use ecp_core::edge::Credentials;
//! use ecp_edge::api::{NeuronExClient, NodeType};
//!
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
pub mod ekuiper;
pub mod nanomq;
pub mod neuron;
pub mod neuronex;
mod raw;
mod session;

pub use call::{ApiCall, IDEMPOTENCY_KEY};
pub use ekuiper::{EkuiperApi, EkuiperClient};
pub use nanomq::{NanoMqApi, NanoMqClient};
pub use neuron::{NeuronApi, NeuronClient, NodeType};
pub use neuronex::{NeuronExApi, NeuronExClient};
pub use raw::RawClient;
pub use session::LoginToken;

#[cfg(test)]
pub(crate) mod testing;
