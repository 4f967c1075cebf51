//! The integration tests of ecp-core, one test binary with a module per area (a binary per
//! file linked the crate's dependencies once per file).

mod parsers;
#[cfg(feature = "postgres")]
mod replicas;
#[cfg(feature = "sqlite")]
mod sealing;
mod store_conformance;
mod task_engine;
