//! The one error of both backends: what a Docker engine or a Kubernetes API server refused or
//! failed, without their types.

use std::borrow::Cow;
use std::fmt;

use ecp_core::BoxError;

/// The hosting backend an [`Error`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// A Docker engine.
    Docker,
    /// A Kubernetes API server.
    Kubernetes,
}

impl Backend {
    /// The stable name: `docker`, `kubernetes`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Docker => "docker",
            Backend::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Docker engine or a Kubernetes API server refused or failed an operation, or could not be
/// reached.
///
/// It holds the backend, the operation (as the caller named it: `"start container"`,
/// `"node edge-1: connect"`, `"PATCH /apis/apps/v1/..."`), the HTTP status of the backend's answer
/// when it gave one, whether the same request may succeed later, and the backend's own error as
/// its [`source`](std::error::Error::source), boxed: no bollard or kube type shows.
///
/// `Display` is lowercase (`docker: start container failed (404)`) and does not repeat its source.
///
/// ```
/// use ecp_hosting::{Backend, Error};
///
/// let e = Error::answered(Backend::Kubernetes, "scale", 409, "the object has been modified");
/// assert_eq!(e.to_string(), "kubernetes: scale failed (409)");
/// assert_eq!(e.status(), Some(409));
/// assert!(e.is_retryable() && !e.is_not_found());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {operation} failed{}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
pub struct Error {
    backend: Backend,
    operation: Cow<'static, str>,
    status: Option<u16>,
    retryable: bool,
    #[source]
    source: BoxError,
}

impl Error {
    /// A failure without an answer from the backend and that trying again does not cure: a client
    /// that cannot be made (a bad address, an unreadable certificate, no kubeconfig), an answer that
    /// cannot be read, a driver's own failure on this backend.
    pub fn new(backend: Backend, operation: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Error { backend, operation: operation.into(), status: None, retryable: false, source: source.into() }
    }

    /// The backend's error answer with HTTP `status`: retryable for 5xx, 409 (a concurrent change)
    /// and 429.
    pub fn answered(backend: Backend, operation: impl Into<Cow<'static, str>>, status: u16, source: impl Into<BoxError>) -> Self {
        let retryable = status >= 500 || status == 409 || status == 429;
        Error { backend, operation: operation.into(), status: Some(status), retryable, source: source.into() }
    }

    /// The backend could not be reached, or did not answer in time: retryable.
    pub fn unreachable(backend: Backend, operation: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Error { backend, operation: operation.into(), status: None, retryable: true, source: source.into() }
    }

    /// The same error with `context` before its operation: `node edge-1: connect`.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.operation = format!("{context}: {}", self.operation).into();
        self
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The operation, as the caller named it.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The HTTP status of the backend's answer, if it gave one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Whether the same request may succeed later: the backend could not be reached or did not
    /// answer in time, or answered 5xx, 409 or 429.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the backend answered 404: the container, network or object is not there.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

/// The result type of ecp-hosting.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_display() {
        let gone = Error::answered(Backend::Docker, "inspect container", 404, "No such container: x");
        assert_eq!(gone.to_string(), "docker: inspect container failed (404)");
        assert!(gone.is_not_found() && !gone.is_retryable());
        assert_eq!(std::error::Error::source(&gone).unwrap().to_string(), "No such container: x");
        for (status, retryable) in [(304, false), (400, false), (409, true), (422, false), (429, true), (500, true), (503, true)] {
            assert_eq!(Error::answered(Backend::Kubernetes, "x", status, "y").is_retryable(), retryable, "{status}");
        }
        let lost = Error::unreachable(Backend::Docker, "list containers", "connection refused").context("node edge-1");
        assert_eq!(lost.to_string(), "docker: node edge-1: list containers failed");
        assert_eq!((lost.operation(), lost.status(), lost.is_retryable()), ("node edge-1: list containers", None, true));
        let bad = Error::new(Backend::Kubernetes, "connect", "no kubeconfig");
        assert_eq!((bad.backend(), bad.is_retryable(), bad.is_not_found()), (Backend::Kubernetes, false, false));
        assert_eq!(bad.to_string(), "kubernetes: connect failed");
    }
}
