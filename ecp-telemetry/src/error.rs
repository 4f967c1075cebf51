//! The errors of ecp-telemetry.

use ecp_core::BoxError;

/// What went wrong collecting, storing, alarming on or forwarding telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A source (an exporter, an EMQX REST API) answered with an error status.
    #[error("{source_name}: {endpoint} answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Api {
        /// The source, as configured (`"emqx prod-1"`).
        source_name: String,
        /// The request, as `METHOD path` (never with credentials).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The product's error code and message, where it gives them.
        message: Option<String>,
    },
    /// A source could not be reached or did not answer in time.
    #[error("{source_name}: {endpoint}: transport failed{}", if *retryable { " (retryable)" } else { "" })]
    Transport {
        /// The source.
        source_name: String,
        /// The request.
        endpoint: String,
        /// Whether the same request may succeed later.
        retryable: bool,
        /// The transport's own error.
        #[source]
        source: BoxError,
    },
    /// A source's answer did not have the expected shape.
    #[error("{source_name}: unexpected answer: {reason}")]
    Decode {
        /// The source.
        source_name: String,
        /// What was wrong.
        reason: String,
    },
    /// A body exceeded the configured limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large (`"scrape body"`, `"log message"`).
        what: &'static str,
        /// The size (or a lower bound).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A notification could not be delivered (after its retries).
    #[error("notifier {notifier}: delivery failed after {attempts} attempt(s): {reason}")]
    Notify {
        /// The notifier's name.
        notifier: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure, without secrets.
        reason: String,
    },
    /// An error of the store, tenancy, authorization, bad input or an unsupported operation.
    #[error(transparent)]
    Core(#[from] ecp_core::Error),
}

impl Error {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { retryable, .. } => *retryable,
            Error::Api { status, .. } => *status >= 500 || *status == 429,
            Error::Core(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// A short, stable, lowercase label of the variant, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Api { .. } => "api",
            Error::Transport { .. } => "transport",
            Error::Decode { .. } => "decode",
            Error::TooLarge { .. } => "too_large",
            Error::Notify { .. } => "notify",
            Error::Core(e) => e.label(),
        }
    }

    /// An [`Error::Core`] of kind [`ecp_core::Error::InvalidInput`].
    pub fn invalid(field: impl Into<std::borrow::Cow<'static, str>>, reason: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Error::Core(ecp_core::Error::invalid(field, reason))
    }
}

/// The result type of ecp-telemetry.
pub type Result<T, E = Error> = std::result::Result<T, E>;
