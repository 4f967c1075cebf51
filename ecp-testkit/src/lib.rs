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
//!
//! Later issues add mosquitto on a free port, static test binaries packed into `FROM scratch`
//! Docker images, and simulated NeuronEX, eKuiper and NanoMQ APIs.

pub mod postgres;

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
