//! The errors of ecp-edge-api.

use std::borrow::Cow;

use crate::service::EdgeKind;

/// A boxed error from the transport's own library, kept out of public signatures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong talking to an edge service.
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
        /// The product whose error code table `code` is from (none for a generic answer).
        product: Option<EdgeKind>,
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
    /// An argument or setting is malformed or out of range (never repeating a secret or a URL).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The argument (`"path"`, `"credentials"`, `"group.interval"` ...).
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The service holds something that contradicts the change (a Neuron node of another plugin).
    #[error("{kind} {id}: {reason}")]
    Conflict {
        /// What kind of thing (`"node"`).
        kind: &'static str,
        /// Its name.
        id: String,
        /// Why the change cannot be applied.
        reason: Cow<'static, str>,
    },
    /// This kind of service cannot do the operation at all.
    #[error("{operation} is not supported by {backend}")]
    Unsupported {
        /// The operation asked for.
        operation: &'static str,
        /// What cannot do it (`"custom services"`).
        backend: &'static str,
    },
}

impl Error {
    /// An [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput { field: field.into(), reason: reason.into() }
    }

    /// Whether trying again may succeed: transport failures marked so, 5xx answers and 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { retryable, .. } => *retryable,
            Error::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether the service said the thing does not exist: HTTP 404, or a product error code that
    /// means "not found" whatever the status (Neuron answers "setting not found", 2005, under
    /// HTTP 200); see [`codes`](crate::codes).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Api { status: 404, .. } => true,
            Error::Api { product: Some(product), code: Some(code), .. } => crate::codes::is_not_found(*product, *code),
            _ => false,
        }
    }

    /// Whether the service answered with the product error `code`.
    pub fn has_code(&self, code: i64) -> bool {
        matches!(self, Error::Api { code: Some(c), .. } if *c == code)
    }

    /// Whether this kind of service cannot do the operation.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }
}

/// The result type of ecp-edge-api.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A serde error's text without the strings of the input it quotes (`invalid type: string "…"`,
/// ``unknown field `…` ``): an answer or a message may hold a token or a password where another
/// value belongs (a login token where an object is expected, a driver's password moved into a
/// list, a tunnelled body in the wrong field), and errors are logged and shown. Field names, the
/// expected types and the position stay. The agent protocol's codec uses it too.
pub fn redacted(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    loop {
        let quote = rest.find('"');
        let named = ["unknown variant `", "unknown field `"].iter().filter_map(|p| rest.find(p).map(|i| i + p.len())).min();
        match (quote, named) {
            (Some(q), n) if n.is_none_or(|n| q < n) => {
                // A string, escaped (as Rust's `Debug` or JSON does): up to the first unescaped quote.
                out.push_str(&rest[..=q]);
                out.push_str("…\"");
                let after = &rest[q + 1..];
                let mut escaped = false;
                let end = after.char_indices().find_map(|(i, c)| match c {
                    _ if escaped => {
                        escaped = false;
                        None
                    }
                    '\\' => {
                        escaped = true;
                        None
                    }
                    '"' => Some(i + 1),
                    _ => None,
                });
                rest = &after[end.unwrap_or(after.len())..];
            }
            (_, Some(n)) => {
                // A name, unescaped: it ends before serde's own continuation of the message.
                out.push_str(&rest[..n]);
                out.push('…');
                let after = &rest[n..];
                let end = ["`, expected", "`, there are no"].iter().filter_map(|m| after.rfind(m)).max();
                rest = &after[end.unwrap_or(after.len())..];
            }
            _ => break,
        }
    }
    out.push_str(rest);
    out
}
