//! # ecp-edge
//!
//! Edge services for ecp-rs (being built: see the edge fleet issue).
//!
//! - [`transport`]: the [`EdgeTransport`] seam and its HTTP implementation.
//! - [`api`]: adapters for the real HTTP APIs of NeuronEX, Neuron, eKuiper and NanoMQ.
//! - `direct` (feature `direct`): the driver of services managed directly over their HTTP APIs.
//! - [`hosted`]: hosted edge services (specs, instances, batch install and upgrade tasks); feature
//!   `docker`: the Docker driver ([`hosted::docker::DockerDriver`]); feature `kubernetes`: a
//!   Deployment and a Service per service ([`hosted::kubernetes::KubernetesEdgeDriver`]).
//! - [`import`]: CSV batch import of edge services.
//! - [`fleet`]: the project-scoped fleet handle: registration, import, selectors, tags, probes, info
//!   sync, statistics, templates and their delivery as tasks.

pub mod agent;
pub mod api;
#[cfg(feature = "direct")]
pub mod direct;
pub mod driver;
pub mod error;
pub mod fleet;
pub mod hosted;
pub mod import;
mod managed;
pub mod telemetry;
pub mod template;
pub mod transport;

pub use error::{Error, Result, UpgradeCheck};
pub use transport::EdgeTransport;
