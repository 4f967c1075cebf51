//! The errors of ecp-cluster.

use ecp_core::BoxError;

/// What went wrong managing, or talking to, an EMQX cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The EMQX REST API answered with an error: its HTTP status and the `{"code","message"}` body
    /// (`code` is an open string: EMQX handlers emit unregistered codes such as `NODE_DOWN`).
    #[error("{endpoint} answered {status}{}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Api {
        /// The request, as `METHOD path` (never with credentials).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// EMQX's error code (`BAD_API_KEY_OR_SECRET`, `NOT_FOUND` ...), if the body had one.
        code: Option<String>,
        /// EMQX's message, if any.
        message: Option<String>,
    },
    /// The API key was refused (401), or lacks the role or scope for the call (403).
    #[error("{endpoint}: api key refused ({status}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Unauthorized {
        /// The request.
        endpoint: String,
        /// 401 or 403.
        status: u16,
        /// EMQX's code (`BAD_API_KEY_OR_SECRET`, `API_KEY_NOT_ALLOW`, `UNAUTHORIZED_ROLE` ...).
        code: Option<String>,
        /// EMQX's message (`Check api_key/api_secret`), if any, without the credentials should the
        /// server echo them.
        message: Option<String>,
    },
    /// The cluster's REST API could not be reached, or did not answer in time.
    #[error("{endpoint}: transport failed{}", if *retryable { " (retryable)" } else { "" })]
    Transport {
        /// The request.
        endpoint: String,
        /// Whether the same request may succeed later (timeouts, refused connections).
        retryable: bool,
        /// The transport's own error.
        #[source]
        source: BoxError,
    },
    /// The answer did not have the expected shape.
    #[error("{endpoint}: unexpected answer: {reason}")]
    Decode {
        /// The request.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// The server is not an EMQX 5 cluster, or lacks what the call needs (an EMQX 4 node, an open
    /// source build asked for a license setting, another HTTP server).
    #[error("{endpoint}: incompatible cluster: {reason}")]
    Incompatible {
        /// The request that showed it.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A response body exceeded the configured limit.
    #[error("{endpoint}: body of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The request.
        endpoint: String,
        /// The body's size (or a lower bound).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A Docker engine or a Kubernetes API server refused or failed an operation, or could not be
    /// reached (the `docker` and `kubernetes` backends): the backend, the operation, the status of
    /// its answer, whether it is retryable, and its error as the source.
    #[cfg(any(feature = "docker", feature = "kubernetes"))]
    #[error(transparent)]
    Hosting(#[from] ecp_hosting::Error),
    /// Another backend failed an operation: the `existing` backend's HTTP client, or a driver of the
    /// host's own.
    #[error("{backend}: {operation} failed{}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Backend {
        /// `"existing"`, or the host driver's name.
        backend: &'static str,
        /// What was being done (`"create"`, `"scale"` ...).
        operation: &'static str,
        /// The HTTP status of the backend's answer, if it gave one.
        status: Option<u16>,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// An error of the store, tenancy, authorization, license, invalid input, or an unsupported
    /// operation of a backend.
    #[error(transparent)]
    Core(#[from] ecp_core::Error),
}

impl Error {
    /// Whether trying again may succeed: transport failures marked so, 5xx and 429 answers, 5xx,
    /// 409 and 429 of a backend, a Docker engine or Kubernetes API server that could not be
    /// reached, and retryable store errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { retryable, .. } => *retryable,
            Error::Api { status, .. } => *status >= 500 || *status == 429,
            #[cfg(any(feature = "docker", feature = "kubernetes"))]
            Error::Hosting(e) => e.is_retryable(),
            Error::Backend { status, .. } => status.is_some_and(|s| s >= 500 || s == 409 || s == 429),
            Error::Core(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether this is an `Unsupported` operation of a backend.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_unsupported())
    }

    /// Whether the cluster cannot do what was asked (an `Unsupported` operation of the backend,
    /// or an EMQX whose edition or license lacks it).
    pub fn is_beyond_the_cluster(&self) -> bool {
        self.is_unsupported() || matches!(self, Error::Incompatible { .. })
    }

    /// Whether this is a `NotFound` (of the store, a 404 of EMQX or of a backend).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Core(e) => e.is_not_found(),
            Error::Api { status, .. } => *status == 404,
            #[cfg(any(feature = "docker", feature = "kubernetes"))]
            Error::Hosting(e) => e.is_not_found(),
            Error::Backend { status, .. } => *status == Some(404),
            _ => false,
        }
    }

    /// The `Unsupported` error of `operation` on `backend`.
    pub fn unsupported(operation: &'static str, backend: &'static str) -> Self {
        Error::Core(ecp_core::Error::unsupported(operation, backend))
    }

    /// An `InvalidInput` error about `field`.
    pub fn invalid(field: &'static str, reason: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Error::Core(ecp_core::Error::invalid(field, reason))
    }
}

/// The result type of ecp-cluster.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_and_does_not_repeat_its_source() {
        let e = Error::Api {
            endpoint: "GET /api/v5/nodes".into(),
            status: 500,
            code: Some("NODE_DOWN".into()),
            message: Some("bad rpc call".into()),
        };
        assert_eq!(e.to_string(), "GET /api/v5/nodes answered 500 (NODE_DOWN): bad rpc call");
        assert!(e.is_retryable());
        let e = Error::Backend { backend: "kubernetes", operation: "scale", status: Some(404), source: "gone".into() };
        assert_eq!(e.to_string(), "kubernetes: scale failed (404)");
        assert!(e.is_not_found());
        assert!(Error::unsupported("scale", "existing").is_unsupported());
    }

    #[cfg(any(feature = "docker", feature = "kubernetes"))]
    #[test]
    fn hosting_errors_classify_as_the_backends_do() {
        use ecp_hosting::Backend;
        let e = Error::from(ecp_hosting::Error::answered(Backend::Kubernetes, "scale", 404, "gone"));
        assert_eq!(e.to_string(), "kubernetes: scale failed (404)");
        assert!(e.is_not_found() && !e.is_retryable());
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "gone");
        let e = Error::from(ecp_hosting::Error::unreachable(Backend::Docker, "list containers", "refused"));
        assert!(e.is_retryable() && !e.is_not_found());
    }
}
