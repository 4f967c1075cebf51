//! The errors of ecp-edge.

use ecp_core::BoxError;

/// What went wrong talking to, or managing, edge services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The edge service answered with an error (HTTP status, and the product's own code and message
    /// where it gives them: Neuron's `{"error":N}`, eKuiper's `{"error","message"}`, NanoMQ's
    /// `{"code":N}`).
    #[error("{endpoint} answered {status}{}{}", code.map(|c| format!(" (code {c})")).unwrap_or_default(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Api {
        /// The request, as `METHOD path` (never with credentials).
        endpoint: String,
        /// The HTTP status (200 for Neuron's errors under HTTP 200).
        status: u16,
        /// The product's error code, if any.
        code: Option<i64>,
        /// The product's message, if any.
        message: Option<String>,
    },
    /// The credentials were refused, or a token could not be renewed.
    #[error("{endpoint}: authentication refused")]
    Unauthorized {
        /// The request.
        endpoint: String,
    },
    /// The service could not be reached, or did not answer in time.
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
    /// A request or response body exceeded the configured limit.
    #[error("{endpoint}: body of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The request.
        endpoint: String,
        /// The body's size (or a lower bound).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A hosted service's new instance (of an install or an upgrade) failed a check: it was
    /// removed, and on an upgrade the old instance left serving (`rolled_back`), or it could not be
    /// brought back.
    #[error("{operation} of {service} to {image} failed its {check} check: {reason}{}", if *rolled_back { " (rolled back)" } else { " (not rolled back)" })]
    HostedCheckFailed {
        /// `install` or `upgrade`.
        operation: &'static str,
        /// The service (its name).
        service: String,
        /// The image it was to run.
        image: String,
        /// The check that failed.
        check: UpgradeCheck,
        /// What the check saw (the new instance's exit status and last log lines, the probe's
        /// error ...).
        reason: String,
        /// Whether the new instance was removed and (upgrade) the old one is back in service.
        rolled_back: bool,
    },
    /// An error of the store, tenancy, authorization, or an unsupported operation.
    #[error(transparent)]
    Core(#[from] ecp_core::Error),
}

/// The checks a hosted service's new instance passes before it replaces the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpgradeCheck {
    /// The new instance could be created (its image exists, its name is free).
    Create,
    /// The new instance started.
    Start,
    /// The new instance kept running (did not exit or restart).
    Running,
    /// The new instance answered the service's probe in time.
    Probe,
    /// The new instance took the old one's place (stop, remove, rename).
    Switch,
}

impl UpgradeCheck {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            UpgradeCheck::Create => "create",
            UpgradeCheck::Start => "start",
            UpgradeCheck::Running => "running",
            UpgradeCheck::Probe => "probe",
            UpgradeCheck::Switch => "switch",
        }
    }
}

impl std::fmt::Display for UpgradeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// Whether trying again may succeed: transport failures marked so, 5xx answers, 429, and
    /// retryable store errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { retryable, .. } => *retryable,
            Error::Api { status, .. } => *status >= 500 || *status == 429,
            Error::Core(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether this is an `Unsupported` operation of a backend.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_unsupported())
    }

    /// Whether this is a `NotFound` (of the store, or a 404 of the service).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Core(e) => e.is_not_found(),
            Error::Api { status, .. } => *status == 404,
            _ => false,
        }
    }
}

impl From<ecp_rbac::Error> for Error {
    fn from(e: ecp_rbac::Error) -> Self {
        match e {
            ecp_rbac::Error::Core(c) => Error::Core(c),
            other => Error::Core(ecp_core::Error::PermissionDenied {
                principal: String::new(),
                permission: String::new(),
                scope: String::new(),
                reason: other.to_string().into(),
            }),
        }
    }
}

/// The result type of ecp-edge.
pub type Result<T, E = Error> = std::result::Result<T, E>;
