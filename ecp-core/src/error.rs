//! The error kinds shared by every crate of ecp-rs.

use std::borrow::Cow;

/// A boxed error from a backend library (sqlx, kube, bollard, rumqttc ...), kept out of public
/// signatures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of ecp-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with the context needed to act on it.
///
/// `Display` is lowercase and never repeats its [`source`](std::error::Error::source): print the
/// chain (`anyhow`'s `{:#}`, or walk `source()`) to see the cause of a [`Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing does not exist (or the caller may not know that it does).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What kind of thing (`"organization"`, `"project"`, `"user"` ...).
        kind: &'static str,
        /// The id or name that was looked up.
        id: String,
    },
    /// The request contradicts what is stored: a duplicate name, a resource still in use.
    #[error("{kind} {id}: {reason}")]
    Conflict {
        /// What kind of thing.
        kind: &'static str,
        /// Its id or name.
        id: String,
        /// Why the request cannot be applied.
        reason: Cow<'static, str>,
    },
    /// A field of the request is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field, as the caller named it (`"name"`, `"email"`, `"limits.max_projects"`).
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A configured limit would be exceeded (organizations, projects per organization ...).
    #[error("limit reached: at most {max} {limit}")]
    LimitExceeded {
        /// Which limit (`"organizations"`, `"projects per organization"`, `"projects"`).
        limit: &'static str,
        /// Its configured value.
        max: u64,
    },
    /// The acting principal may not do this.
    #[error("permission denied: {principal} may not {permission} at {scope}: {reason}")]
    PermissionDenied {
        /// Who asked (a display form of the principal, never a secret).
        principal: String,
        /// What was asked (`"edit project"`).
        permission: String,
        /// Where (`"org 0190..."`, `"project 0190..."`, `"system"`).
        scope: String,
        /// Why not.
        reason: Cow<'static, str>,
    },
    /// The backend cannot do this operation at all.
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported {
        /// The operation asked for.
        operation: &'static str,
        /// The backend that cannot do it.
        backend: &'static str,
    },
    /// Stored data failed an integrity check (the audit chain, a signature).
    #[error("integrity check failed for {what}: {reason}")]
    Integrity {
        /// What was checked.
        what: &'static str,
        /// What was found.
        reason: String,
    },
    /// A backend (database, broker, container engine, remote API) failed.
    #[error("{backend} backend failed{}", if *.retryable { " (retryable)" } else { "" })]
    Backend {
        /// Which backend (`"sqlite"`, `"postgres"`, `"docker"` ...).
        backend: &'static str,
        /// Whether the same request may succeed if tried again.
        retryable: bool,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// A [`Error::NotFound`].
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Error::NotFound { kind, id: id.to_string() }
    }

    /// A [`Error::Conflict`].
    pub fn conflict(kind: &'static str, id: impl ToString, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict { kind, id: id.to_string(), reason: reason.into() }
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput { field: field.into(), reason: reason.into() }
    }

    /// An [`Error::Unsupported`].
    pub fn unsupported(operation: &'static str, backend: &'static str) -> Self {
        Error::Unsupported { operation, backend }
    }

    /// A non-retryable [`Error::Backend`].
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend { backend, retryable: false, source: source.into() }
    }

    /// Whether trying the same request again may succeed (a lost connection, a busy database).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Backend { retryable: true, .. })
    }

    /// Whether this is a [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is a [`Error::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether this is a [`Error::PermissionDenied`].
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::PermissionDenied { .. })
    }

    /// Whether this is an [`Error::Unsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }

    /// Whether this is an [`Error::InvalidInput`].
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput { .. })
    }

    /// A short, stable, lowercase label of the variant, for audit records and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::InvalidInput { .. } => "invalid_input",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::PermissionDenied { .. } => "permission_denied",
            Error::Unsupported { .. } => "unsupported",
            Error::Integrity { .. } => "integrity",
            Error::Backend { .. } => "backend",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_and_does_not_repeat_the_source() {
        let io = std::io::Error::other("connection reset by peer");
        let err = Error::Backend { backend: "postgres", retryable: true, source: Box::new(io) };
        let shown = err.to_string();
        assert_eq!(shown, "postgres backend failed (retryable)");
        assert!(!shown.contains("connection reset"));
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "connection reset by peer");
        assert!(err.is_retryable());
    }

    #[test]
    fn helpers_classify() {
        assert!(Error::not_found("project", "x").is_not_found());
        assert!(Error::conflict("project", "x", "has clusters").is_conflict());
        assert!(!Error::invalid("name", "empty").is_retryable());
        assert_eq!(Error::unsupported("upgrade", "direct").to_string(), "upgrade is not supported by the direct backend");
        assert_eq!(Error::LimitExceeded { limit: "organizations", max: 100 }.to_string(), "limit reached: at most 100 organizations");
    }
}
