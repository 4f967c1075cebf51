//! The HTTP transport (being written).

/// Configuration of [`HttpTransport`].
#[derive(Debug, Clone)]
pub struct HttpTransportConfig;

/// Sends requests over HTTP(S) with reqwest.
#[derive(Debug, Clone)]
pub struct HttpTransport;
