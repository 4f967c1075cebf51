//! The integration tests of ecp-rbac, one test binary with a module per area (a binary per
//! file linked the crate's dependencies once per file).

mod adversarial;
mod auth;
mod common;
mod denials;
mod isolation;
mod permission_matrix;
mod replicas;
mod secrets;
mod services;
