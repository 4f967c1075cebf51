//! Examples of ecp-rs live in this package as `[[example]]` targets; run `cargo run --example quickstart`.

pub mod broker;
