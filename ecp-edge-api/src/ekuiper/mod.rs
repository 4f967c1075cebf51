//! eKuiper (`:9081`, paths from `/`), standalone or proxied by NeuronEX under `/api/ekuiper`.
//!
//! Wire quirks kept (reference §4):
//! - success answers of changes are plain-text sentences (`Rule rule1 was created successfully.`,
//!   201 for creations), returned as they are;
//! - errors are JSON `{"error":N,"message":"…"}` sent as `text/plain` with a trailing newline,
//!   404 for code 1002 and 400 otherwise;
//! - with authentication on, the header is `Authorization: <token>` **without** `Bearer`, and
//!   failures are 401 plain text (`missing_token`, `validate token error: …`); `/` and `/ping` are
//!   exempt;
//! - `GET /` has string-typed numbers (`memoryTotal`) and omits empty ones;
//! - rule status is a flat object of `status`, `message`, timestamps and metrics whose keys are
//!   built from operator names (`source_demo_0_records_in_total`).

use crate::service::EdgeKind;

mod client;
pub mod codes;
mod request;
#[cfg(test)]
mod tests;
mod types;

pub use client::*;
use codes::token_refused;
pub use request::*;
pub use types::*;
