//! The errors of ecp-agent.

use std::borrow::Cow;

/// What went wrong setting up or running the agent. Connection failures are not errors: the agent
/// retries them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is malformed or out of range, or the state file cannot be used.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The setting (`"heartbeat"`, `"service url"`, `"state_file"` ...).
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A local service's client could not be set up.
    #[error(transparent)]
    Service(ecp_edge_api::Error),
    /// The agent's task ended abnormally (it panicked, or its runtime shut down).
    #[error("the agent's task failed")]
    Task {
        /// Tokio's error.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput { field: field.into(), reason: reason.into() }
    }
}

impl From<ecp_edge_api::Error> for Error {
    fn from(e: ecp_edge_api::Error) -> Self {
        match e {
            ecp_edge_api::Error::InvalidInput { field, reason } => Error::InvalidInput { field, reason },
            other => Error::Service(other),
        }
    }
}

impl From<ecp_agent_proto::Error> for Error {
    fn from(e: ecp_agent_proto::Error) -> Self {
        match e {
            ecp_agent_proto::Error::InvalidInput { field, reason } => Error::InvalidInput { field, reason },
            other => Error::invalid("agent", other.to_string()),
        }
    }
}

/// The result type of ecp-agent.
pub type Result<T, E = Error> = std::result::Result<T, E>;
