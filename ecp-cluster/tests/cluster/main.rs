//! The integration tests of ecp-cluster, one test binary with a module per area (a binary per
//! file linked the crate's dependencies once per file).

mod clusters_service;
mod denials;
#[cfg(feature = "docker")]
mod docker_cluster;
mod emqx_poller;
mod existing_rest;
#[cfg(feature = "kubernetes")]
mod kubernetes_operator;
#[cfg(feature = "existing")]
mod onboarding_e2e;
