//! Neuron 2.x (`:7000`, base `/api/v2`), standalone or proxied by NeuronEX under `/api/neuron`.
//!
//! Wire quirks kept (reference §3, §8):
//! - every error is `{"error":N}`, and many come with HTTP 200 (all 3xxx plugin errors, 2005 ...):
//!   a non-zero `error` is an error whatever the status; success of a change is `{"error":0}`;
//! - login takes `{"name","pass"}`; the header is always `Authorization: Bearer <token>`; a missing
//!   or undecodable token is 401 `1004`/`1005`, an expired or invalid one **403** `1006`–`1008`;
//! - group bodies use the key `group` (the docs' `name` is stale); the group list has different
//!   keys with and without `?node=`, and `node/state?node=` answers a flat object without the name;
//! - unknown routes answer an HTML page;
//! - `/metrics` is Prometheus text and needs no token.

use crate::service::EdgeKind;

mod client;
pub mod codes;
mod request;
#[cfg(test)]
mod tests;
mod types;

pub use client::*;
pub use codes::error_text;
use codes::token_refused;
pub use request::*;
pub use types::*;

/// The base path of standalone Neuron's API.
pub const DEFAULT_PREFIX: &str = "/api/v2";
