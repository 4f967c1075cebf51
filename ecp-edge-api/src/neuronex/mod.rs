//! NeuronEX 3.x (`:8085`): its own login, version and system endpoints, and the Neuron and eKuiper
//! APIs it proxies under `/api/neuron/*` and `/api/ekuiper/*` with the same bodies and codes, all
//! behind one `Bearer` token.
//!
//! Wire quirks kept (reference §0.5, §3, §7): the login body says **`password`** (Neuron's says
//! `pass`) and answers `{"token","role"}`; a bad or expired token is 401 (its body is not
//! documented; Neuron-style `{"error":N}` codes are recognised too).

use bytes::Bytes;
use http::StatusCode;

mod client;
mod request;
#[cfg(test)]
mod tests;
mod types;

pub use client::NeuronExClient;
pub use request::NeuronExApi;
pub use types::{SystemInfo, Version};

/// Where NeuronEX proxies Neuron's `/api/v2`.
pub const NEURON_PREFIX: &str = "/api/neuron";
/// Where NeuronEX proxies eKuiper.
pub const EKUIPER_PREFIX: &str = "/api/ekuiper";

/// Whether a NeuronEX answer refuses the token: any 401, or Neuron's token codes from the proxied
/// Neuron.
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED || crate::neuron::codes::token_refused(response)
}
