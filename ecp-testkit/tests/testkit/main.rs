//! The integration tests of ecp-testkit, one test binary with a module per area (a binary per
//! file linked the crate's dependencies once per file).

mod docker_images;
mod mosquitto;
mod sim;
mod sim_edge;
