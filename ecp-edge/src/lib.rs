//! # ecp-edge
//!
//! Edge services for ecp-rs. This crate will own (see the edge fleet, edge agent and hosted
//! runtimes issues):
//!
//! - the edge service model (NeuronEX, Neuron, eKuiper, NanoMQ, custom) and the `EdgeDriver` trait
//!   with a `capabilities()` answer: hosted backends (`docker`, `kubernetes`) install, upgrade, start
//!   and stop; managed ones (`direct`, `agent`) answer `Unsupported` for those;
//! - REST adapters for each product's real HTTP API over one `EdgeTransport` seam (HTTP, or an MQTT
//!   tunnel through the agent);
//! - the MQTT agent hub (cloud side) and the edge agent library (edge side);
//! - fleets: tags, selectors, CSV batch import, configuration templates and their delivery as tasks
//!   under rollout policies.
//!
//! Nothing is implemented yet; the crate exists so the dependency direction is fixed from the
//! start. `ecp-edge` and `ecp-cluster` never depend on each other.

pub use ecp_telemetry;
