//! # ecp-testkit
//!
//! What the tests of ecp-rs need from the real world, found or started the same way everywhere.
//!
//! A test that needs a real component calls [`missing`] when it cannot find it: under `CI=true`
//! that fails the test with the reason; elsewhere it prints the reason and the test returns early.
//! A test never passes silently without the component it is about.
//!
//! - [`postgres`]: a fresh database on the server named by `ECP_TEST_POSTGRES_URL` (the test
//!   script starts Debian's PostgreSQL on a free loopback port and sets it).
//! - [`sim`]: simulated NeuronEX, Neuron, eKuiper and NanoMQ HTTP APIs on loopback, with the
//!   products' wire quirks, real in-memory state and fault injection (latency, failing the next N
//!   requests, going offline and back on the same port, token expiry). The `sim-edge` binary runs
//!   them from the command line (for Docker images and manual runs).
//! - [`mosquitto`]: a real mosquitto broker on a free loopback port, with password and ACL files,
//!   that tests can kill, restart on the same port and reload (SIGHUP). The binary is
//!   `ECP_MOSQUITTO`, `mosquitto` on `PATH` or Debian's `/usr/sbin/mosquitto` (the test script
//!   installs it); without one, starting a broker fails with a message that says to install it.
//! - [`emqx`]: a simulated EMQX 5 cluster's REST API (API key auth, nodes, stats, metrics, listeners,
//!   paged clients and alarms, license) for onboarding tests and the quickstart.
//! - `kube` (feature `kube`): a scripted Kubernetes API server (tower-test) that records every
//!   request and answers with real-shaped objects, for the Kubernetes drivers' tests.
//! - [`smtp`]: a small real SMTP server on a free loopback port (AUTH PLAIN/LOGIN, no TLS) that
//!   keeps the messages it receives, for tests of email notifiers.
//! - `mutate` (feature `mutate`): proptest strategies of well-formed samples mutated byte by byte
//!   and, while they are JSON, value by value, for the properties of every parser of outside
//!   input (a refusal is a typed error, never a panic).
//! - [`docker`]: static test binaries (`sim-edge`) packed into `FROM scratch` Docker images, built
//!   once and shared by parallel test processes, and the Docker engine check.

pub mod docker;
pub mod emqx;
#[cfg(feature = "kube")]
pub mod kube;
pub mod methods;
pub mod mosquitto;
#[cfg(feature = "mutate")]
pub mod mutate;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod proxy;
pub mod sim;
pub mod smtp;

/// Whether the tests run under CI (`CI=true`), where a missing component is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing component: panics under CI, prints and returns outside it (the caller then
/// returns early).
///
/// # Panics
/// Under `CI=true`, always: a test that needs a component must not pass without it.
pub fn missing(component: &str, why: &str) {
    if in_ci() {
        panic!("{component} is required under CI=true but is missing: {why}");
    }
    eprintln!("SKIPPED (not under CI): {component} is missing: {why}");
}
