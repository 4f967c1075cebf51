//! The integration tests of ecp-edge, one test binary with a module per area (a binary per
//! file linked the crate's dependencies once per file).

mod adversarial;
mod agent_buffer;
mod agent_e2e;
mod agent_hub;
mod agent_metrics;
mod agent_tls;
mod denials;
mod direct;
mod docker_hosting;
mod edge_telemetry;
mod fleet;
mod import_props;
#[cfg(feature = "kubernetes")]
mod kubernetes_hosting;
mod template_props;
mod tenants_state_machine;
