//! Kubernetes API servers (feature `kubernetes`): how to reach one ([`KubeConnection`]), its
//! errors as this crate's ([`error`], [`error_redacting`]), and the name checks every backend on
//! it makes ([`is_dns_label`], [`validate_namespace`], [`validate_field_manager`]).
//!
//! [`KubeConnection::from_client`] takes a `kube::Client`: the one constructor for hosts that
//! already have a client (or tests with a scripted one), which ties them to this crate's kube
//! version. [`KubeConnection::client`] hands out a `kube::Client` and [`error`] takes kube's
//! error: they are the plumbing of the Kubernetes backends of ecp-cluster and ecp-edge.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use crate::error::{Backend, Error, Result};

/// How to reach a Kubernetes API server: inferred from the environment (the default), a kubeconfig
/// file, or a client the host already has.
#[derive(Clone, Default)]
pub struct KubeConnection(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    Infer,
    Kubeconfig {
        path: PathBuf,
        context: Option<String>,
    },
    Client(kube::Client),
}

impl fmt::Debug for KubeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Infer => f.write_str("Infer"),
            Source::Kubeconfig { path, context } => f.debug_struct("Kubeconfig").field("path", path).field("context", context).finish(),
            Source::Client(_) => f.write_str("Client"),
        }
    }
}

impl KubeConnection {
    /// The configuration kube-rs infers: the in-cluster service account, else `$KUBECONFIG` or
    /// `~/.kube/config` with its current context.
    pub fn infer() -> Self {
        KubeConnection(Source::Infer)
    }

    /// A kubeconfig file, with `context` (`None`: its current context).
    pub fn kubeconfig(path: impl Into<PathBuf>, context: Option<&str>) -> Self {
        KubeConnection(Source::Kubeconfig { path: path.into(), context: context.map(str::to_owned) })
    }

    /// A `kube::Client` the host already has (or a scripted one in tests). This is the one public
    /// signature with a kube type: it ties the caller to this crate's kube version.
    pub fn from_client(client: kube::Client) -> Self {
        KubeConnection(Source::Client(client))
    }

    /// The client: made from the configuration (no request is sent), or the host's.
    ///
    /// # Errors
    /// Operation `connect`, not retryable, when no configuration is found, the file cannot be
    /// read, or its context is unusable.
    pub async fn client(&self) -> Result<kube::Client> {
        let connect = |e: Box<dyn std::error::Error + Send + Sync>| Error::new(Backend::Kubernetes, "connect", e);
        let config = match &self.0 {
            Source::Client(client) => return Ok(client.clone()),
            Source::Infer => kube::Config::infer().await.map_err(|e| connect(Box::new(e)))?,
            Source::Kubeconfig { path, context } => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| connect(Box::new(e)))?;
                let options = kube::config::KubeConfigOptions { context: context.clone(), ..Default::default() };
                kube::Config::from_custom_kubeconfig(file, &options).await.map_err(|e| connect(Box::new(e)))?
            }
        };
        kube::Client::try_from(config).map_err(|e| connect(Box::new(e)))
    }
}

/// The API server's `Status` of a failed request, without kube types: `Display` is
/// `reason: message` (the status code is the [`Error`]'s).
#[derive(Debug)]
struct ApiStatus {
    reason: String,
    message: String,
}

impl fmt::Display for ApiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.reason, self.message),
            (false, true) => f.write_str(&self.reason),
            (true, _) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiStatus {}

/// A kube error as this crate's: the API server's `Status` answers with their code (404 is
/// [`Error::is_not_found`]; 5xx, 409 and 429 retryable) and `reason: message` as the source; a
/// connection that failed or was lost retryable; the rest (an answer that cannot be decoded,
/// authentication) not.
pub fn error(operation: impl Into<Cow<'static, str>>, e: kube::Error) -> Error {
    error_redacting(operation, e, "")
}

/// As [`error`], with `secret` (when not empty) cut out of the API server's message: for writes of
/// objects holding a secret, which the server may echo (`Invalid value: "<the secret>"`).
pub fn error_redacting(operation: impl Into<Cow<'static, str>>, e: kube::Error, secret: &str) -> Error {
    match e {
        kube::Error::Api(status) => {
            let mut message = status.message.clone();
            if !secret.is_empty() {
                message = message.replace(secret, "[REDACTED]");
            }
            let source = ApiStatus { reason: status.reason.clone(), message };
            match status.code {
                0 => Error::new(Backend::Kubernetes, operation, source),
                code => Error::answered(Backend::Kubernetes, operation, code, source),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => Error::unreachable(Backend::Kubernetes, operation, e),
        other => Error::new(Backend::Kubernetes, operation, other),
    }
}

/// Whether `s` is a DNS-1123 label (a namespace, a Service's name, a label of a domain): 1..=63
/// of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks a namespace.
///
/// # Errors
/// `InvalidInput` (field `namespace`) when it is not a [DNS-1123 label](is_dns_label).
pub fn validate_namespace(namespace: &str) -> std::result::Result<(), ecp_core::Error> {
    if !is_dns_label(namespace) {
        return Err(ecp_core::Error::invalid("namespace", "must be a DNS-1123 label: 1..=63 of [a-z0-9-], alphanumeric at both ends"));
    }
    Ok(())
}

/// Checks the field manager named in writes.
///
/// # Errors
/// `InvalidInput` (field `field_manager`) unless it is 1..=128 printable ASCII characters.
pub fn validate_field_manager(manager: &str) -> std::result::Result<(), ecp_core::Error> {
    if manager.is_empty() || manager.len() > 128 || !manager.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ecp_core::Error::invalid("field_manager", "must be 1..=128 printable ASCII characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed request's `Status`, as the API server sends it.
    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure(message, reason).with_code(code)))
    }

    #[test]
    fn api_statuses_keep_their_code_and_reason() {
        let e = error("GET /api/v1/namespaces/x/services/y", api(404, "NotFound", "services \"y\" not found"));
        assert_eq!(e.to_string(), "kubernetes: GET /api/v1/namespaces/x/services/y failed (404)");
        assert!(e.is_not_found() && !e.is_retryable());
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "NotFound: services \"y\" not found");
        assert!(error("stop", api(409, "Conflict", "modified")).is_retryable());
        assert!(error("state", api(500, "InternalError", "etcd")).is_retryable());
        let e = error("state", api(0, "", "odd"));
        assert_eq!((e.status(), e.is_retryable()), (None, false));
    }

    #[test]
    fn secrets_are_cut_out_of_messages() {
        let e = error_redacting("create", api(422, "Invalid", "Invalid value: \"s3cret-sentinel\": too long"), "s3cret-sentinel");
        let shown = format!("{e} {e:?} {}", std::error::Error::source(&e).unwrap());
        assert!(shown.contains("[REDACTED]") && !shown.contains("sentinel"), "{shown}");
    }

    #[test]
    fn names_validate() {
        for ok in ["default", "emqx", "a", "edge-1", &"a".repeat(63)] {
            assert!(is_dns_label(ok) && validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Bad_NS", "-x", "x-", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad) && validate_namespace(bad).is_err(), "{bad}");
        }
        assert!(validate_field_manager("ecp").is_ok());
        assert!(validate_field_manager("").is_err());
        assert!(validate_field_manager("a b").is_err());
        assert!(validate_field_manager(&"m".repeat(129)).is_err());
    }
}
