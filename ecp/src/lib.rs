//! # ecp
//!
//! ecp-rs is an embeddable SDK for edge-to-cloud IoT control planes: multi-tenant organizations and
//! projects with role-based access control, EMQX broker clusters in the cloud, and fleets of edge
//! services (NeuronEX, Neuron, eKuiper, NanoMQ) managed in batches, directly over their HTTP APIs or
//! through edge agents that dial out over MQTT.
//!
//! This crate is the facade: it re-exports the crates behind features, as `kube` does for
//! kube-core, kube-client and kube-runtime. Depend on it, or on the crates themselves.
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`core`] | `ecp-core`: ids, tenancy, the `Store`, the task engine, the audit log, scoped handles, licenses | always |
//! | `rbac` | `ecp-rbac`: users, roles, the authorizer, authentication | `rbac` (default) |
//! | `telemetry` | `ecp-telemetry`: collectors, metrics, alarms, notifiers, logs | `telemetry` (default) |
//! | `edge` | `ecp-edge`: fleets and their drivers (`direct`, `mqtt`, `docker`, `kubernetes`) | `edge` (default) |
//! | `edge_api` | `ecp-edge-api`: the products' HTTP APIs | `edge` or `agent` |
//! | `agent_proto` | `ecp-agent-proto`: the agent protocol | `edge` or `agent` |
//! | `cluster` | `ecp-cluster`: EMQX clusters (`existing`, `docker`, `kubernetes`) | `cluster` |
//! | `hosting` | `ecp-hosting`: how to reach a Docker engine or a Kubernetes API | `docker` or `kubernetes` |
//! | `agent` | `ecp-agent`: the edge agent library | `agent` |
//!
//! Backends are features named after them: `sqlite` (default), `postgres`, `direct` (default),
//! `mqtt`, `docker`, `kubernetes`, `existing`, `http`, `webhook`, `email`.
//!
//! ```no_run
//! # #[cfg(feature = "rbac")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use ecp::core::SqlStore;
//! use ecp::rbac::{AccessConfig, AccessControl};
//!
//! let store = Arc::new(SqlStore::memory().await?);
//! let ac = AccessControl::new(store, AccessConfig::builder().build()?).await?;
//! let password = "Adm1n-passw0rd!".to_owned().into();
//! ac.users.bootstrap_admin("admin@example.com", "Admin", &password).await?;
//! let tokens = ac.auth.login("admin@example.com", &password).await?;
//! let admin = ac.auth.authenticate(&tokens.access_token).await?;
//! let org = ac.tenancy.create_org(&admin, "Acme").await?;
//! # let _ = org; Ok(()) }
//! ```

#[cfg(feature = "agent")]
pub use ecp_agent as agent;
#[cfg(any(feature = "edge", feature = "agent"))]
pub use ecp_agent_proto as agent_proto;
#[cfg(feature = "cluster")]
pub use ecp_cluster as cluster;
pub use ecp_core as core;
#[cfg(feature = "edge")]
pub use ecp_edge as edge;
#[cfg(any(feature = "edge", feature = "agent"))]
pub use ecp_edge_api as edge_api;
#[cfg(any(feature = "docker", feature = "kubernetes"))]
pub use ecp_hosting as hosting;
#[cfg(feature = "rbac")]
pub use ecp_rbac as rbac;
#[cfg(feature = "telemetry")]
pub use ecp_telemetry as telemetry;
