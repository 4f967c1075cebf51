//! The public API of ecp-edge-api: each product's client against wiremock with bodies shaped like
//! the real servers' (reference §3–§5, §8), the same clients against ecp-testkit's simulators over
//! real HTTP on loopback, and the HTTP transport's limits.

mod ekuiper;
mod nanomq;
mod neuron;
mod neuronex;
mod sim;
mod transport;
