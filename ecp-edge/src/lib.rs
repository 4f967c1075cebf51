//! # ecp-edge
//!
//! Edge services for ecp-rs: the fleets of NeuronEX, Neuron, eKuiper and NanoMQ services a
//! project manages, and the drivers that reach them.
//!
//! - [`fleet`]: the project-scoped [`Fleet`](fleet::Fleet) handle: registration, CSV import,
//!   selectors, tags, probes, information sync, statistics, templates and their delivery to many
//!   services as one task under a rollout policy.
//! - [`driver`]: the [`EdgeDriver`](driver::EdgeDriver) trait, what the platform does to a service
//!   of each management mode, and [`Drivers`](driver::Drivers), one driver per mode.
//! - `direct` (feature `direct`): the driver of services managed directly over their HTTP APIs
//!   (through `ecp-edge-api`).
//! - [`agent`] (feature `mqtt`): the cloud side of the agent protocol: the [`AgentHub`](agent::AgentHub)
//!   (presence, correlated requests, desired state, per-agent broker credentials) and the
//!   [`AgentDriver`](agent::AgentDriver), which runs the same product adapters through an edge
//!   agent's tunnel. The edge side is the `ecp-agent` crate.
//! - [`hosted`]: hosted edge services (specs, instances, batch install and upgrade tasks); feature
//!   `docker`: the Docker driver; feature `kubernetes`: a Deployment and a Service per service.
//!   Both reach their engine or API server through ecp-hosting (re-exported as `hosting`: a
//!   `DockerAddress` per node, a `KubeConnection`), and their errors are `Error::Hosting`.
//! - [`import`]: CSV batch import; [`template`]: typed configuration templates with parameters;
//!   [`telemetry`]: driver and rule states as samples.
//!
//! The products' APIs themselves are `ecp-edge-api`'s; the agent protocol is `ecp-agent-proto`'s.
//!
//! ```no_run
//! # async fn demo(fleet: ecp_edge::fleet::Fleet, admin: ecp_core::Principal, project: ecp_core::ProjectId) -> ecp_edge::Result<()> {
//! use ecp_core::PageRequest;
//! use ecp_core::edge::{Credentials, EdgeKind, EdgeSelector};
//! use ecp_edge::fleet::NewEdgeService;
//!
//! // `fleet` is made once per process from the store, the authorizer and the drivers.
//! let plant = fleet.project(&admin, project).await?;
//! let credentials = Credentials::Basic { username: "admin".into(), password: "0000".to_owned().into() };
//! let new = NewEdgeService::direct("line-1", EdgeKind::NeuronEx, "http://10.0.0.5:8085").credentials(credentials).tags(["line1"]);
//! plant.register(new).await?;
//! let line1 = plant.select(&EdgeSelector::with_tags(["line1"]), &PageRequest::default()).await?;
//! println!("{} services on line 1", line1.items.len());
//! # Ok(()) }
//! ```

#[cfg(feature = "mqtt")]
pub mod agent;
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

#[cfg(any(feature = "docker", feature = "kubernetes"))]
pub use error::UpgradeCheck;
pub use error::{Error, Result};
