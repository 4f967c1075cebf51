//! The errors of ecp-agent-proto.

use std::borrow::Cow;
use std::path::PathBuf;

/// What went wrong checking, generating or writing protocol values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value is malformed or out of range (an agent id, a topic prefix, a password hash, broker
    /// settings).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The value (`"agent id"`, `"mqtt port"` ...).
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the system's random number generator failed: {reason}")]
    Random {
        /// What it said.
        reason: String,
    },
}

impl Error {
    /// An [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput { field: field.into(), reason: reason.into() }
    }
}

/// The result type of ecp-agent-proto.
pub type Result<T, E = Error> = std::result::Result<T, E>;
