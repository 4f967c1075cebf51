//! # ecp-cluster
//!
//! EMQX clusters for ecp-rs. This crate will own (see the hosted runtimes and EMQX clusters issue):
//!
//! - the cluster model (name, image, core and replicant replicas, resources, network access mode,
//!   listener ports, statuses with their cause) and the `ClusterDriver` trait;
//! - backends behind cargo features: `kubernetes` (the EMQX Operator's `apps.emqx.io/v2beta1`
//!   `EMQX` resource through kube-rs), `docker` (a cluster of containers on a user network, through
//!   bollard), and `existing` (onboarding a running EMQX 5 cluster by its REST API);
//! - the EMQX 5 REST client, with the API's quirks modelled in its types;
//! - cluster transfer between projects, and connection limits drawn from the floating license.
//!
//! Nothing is implemented yet; the crate exists so the dependency direction is fixed from the
//! start. `ecp-cluster` and `ecp-edge` never depend on each other.

pub use ecp_telemetry;
