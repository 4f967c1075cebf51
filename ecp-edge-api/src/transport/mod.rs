//! The seam between the product adapters and the network: an [`EdgeTransport`] sends one HTTP
//! request to one edge service and returns its answer.
//!
//! The product modules build requests as pure functions (method, path relative to the service's
//! base URL, headers, body) and parse answers as pure functions; a transport only moves them.
//! `HttpTransport` (feature `http`) sends them over HTTP with reqwest; the control plane's agent
//! hub tunnels them through MQTT to an edge agent next to the service, so the same adapters work
//! in both modes.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// The largest response body a transport accepts by default (8 MiB); larger answers are refused
/// with [`Error::TooLarge`](crate::Error::TooLarge).
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

/// Sends requests to one edge service.
///
/// The request's URI is a path and query relative to the service's base URL (`/api/v2/node?type=1`);
/// the transport knows where the service is. Implementations must refuse bodies over their limit,
/// time out, and never put credentials in errors.
#[async_trait]
pub trait EdgeTransport: Send + Sync + Debug + 'static {
    /// Sends `request` and returns the answer, whatever its status.
    ///
    /// # Errors
    /// [`Error::Transport`](crate::Error::Transport) when the service cannot be reached or does not
    /// answer in time, [`Error::TooLarge`](crate::Error::TooLarge) for an oversized body.
    async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>>;

    /// A short, credential-free description of where requests go (`http://10.0.0.5:8085`), for
    /// errors and logs.
    fn describe(&self) -> String;
}

#[cfg(feature = "http")]
mod http_transport;
#[cfg(feature = "http")]
pub use http_transport::{HttpTransport, HttpTransportConfig};
