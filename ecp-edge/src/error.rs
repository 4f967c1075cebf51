//! The errors of ecp-edge.

/// What went wrong talking to, or managing, edge services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The edge service's API, or the way to it (HTTP, or an edge agent's tunnel), failed: an
    /// error answer (with the product's code), refused credentials, no answer in time, an
    /// unexpected or oversized answer. Invalid input, conflicts and unsupported operations of
    /// `ecp-edge-api` become [`Error::Core`] of the same kind.
    #[error(transparent)]
    Service(ecp_edge_api::Error),
    /// A hosting backend (a Docker engine, a Kubernetes API server) refused or failed an operation,
    /// or could not be reached (the `docker` and `kubernetes` drivers): the backend, the operation
    /// (`"node edge-1: create container"`, `"PATCH /apis/apps/v1/..."`), the status of its answer,
    /// whether it is retryable, and its error as the source.
    #[cfg(any(feature = "docker", feature = "kubernetes"))]
    #[error(transparent)]
    Hosting(#[from] ecp_hosting::Error),
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
    /// Whether trying again may succeed: transport failures marked so, 5xx answers, 429, a hosting
    /// backend that could not be reached or answered 5xx, 409 or 429, and retryable store errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Service(e) => e.is_retryable(),
            #[cfg(any(feature = "docker", feature = "kubernetes"))]
            Error::Hosting(e) => e.is_retryable(),
            Error::Core(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether this is an `Unsupported` operation of a backend.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_unsupported())
    }

    /// Whether this is a `NotFound`: of the store, the service's own (a 404, or a product error
    /// code that means "not found" such as Neuron's 2005 under HTTP 200), or a hosting backend's 404.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Core(e) => e.is_not_found(),
            Error::Service(e) => e.is_not_found(),
            #[cfg(any(feature = "docker", feature = "kubernetes"))]
            Error::Hosting(e) => e.is_not_found(),
            _ => false,
        }
    }
}

impl From<ecp_edge_api::Error> for Error {
    /// Keeps the service's errors as [`Error::Service`]; what `ecp-edge-api` says of the request
    /// itself (invalid input, a conflict, an unsupported operation) becomes the core error of the
    /// same kind, so that callers classify it as they classify the store's.
    fn from(e: ecp_edge_api::Error) -> Self {
        use ecp_edge_api::Error as Api;
        match e {
            Api::InvalidInput { field, reason } => Error::Core(ecp_core::Error::InvalidInput { field, reason }),
            Api::Conflict { kind, id, reason } => Error::Core(ecp_core::Error::Conflict { kind, id, reason }),
            Api::Unsupported { operation, backend } => Error::Core(ecp_core::Error::Unsupported { operation, backend }),
            other => Error::Service(other),
        }
    }
}

impl From<ecp_agent_proto::Error> for Error {
    /// Invalid protocol values (agent ids, topic prefixes, broker settings, hashes) are invalid
    /// input; a file that cannot be written or a failed random generator is a backend error.
    fn from(e: ecp_agent_proto::Error) -> Self {
        match e {
            ecp_agent_proto::Error::InvalidInput { field, reason } => Error::Core(ecp_core::Error::InvalidInput { field, reason }),
            other => Error::Core(ecp_core::Error::backend("agent protocol", other)),
        }
    }
}

/// The result type of ecp-edge.
pub type Result<T, E = Error> = std::result::Result<T, E>;
