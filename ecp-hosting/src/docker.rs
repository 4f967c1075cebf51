//! Docker engines (feature `docker`): where one is ([`DockerAddress`]), how to connect to it
//! ([`connect`], or [`DockerClient`] to connect on first use), and its errors as this crate's
//! ([`error`]).
//!
//! [`connect`] and [`DockerClient::get`] hand out a `bollard::Docker`, and [`error`] takes
//! bollard's error: they are the plumbing of the Docker backends of ecp-cluster and ecp-edge, which
//! speak the Engine API through bollard. A host only names [`DockerAddress`].

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::error::{Backend, Error, Result};

/// Where a Docker engine listens.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DockerAddress {
    /// The local engine's default socket: `DOCKER_HOST` when it names a `unix://` socket, else
    /// `/var/run/docker.sock`.
    #[default]
    Local,
    /// A unix socket (`/var/run/docker.sock`).
    Socket(PathBuf),
    /// Plain TCP (`tcp://10.0.0.5:2375`), for a trusted network only.
    Tcp(String),
    /// TCP with TLS and a client certificate (`tcp://10.0.0.5:2376`): PEM files of the CA that
    /// signed the engine's certificate, of the client certificate, and of its key.
    Tls {
        /// The engine's address.
        addr: String,
        /// The CA bundle.
        ca: PathBuf,
        /// The client certificate.
        cert: PathBuf,
        /// The client key: read when connecting, never shown by `Debug`.
        key: PathBuf,
    },
}

impl fmt::Debug for DockerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerAddress::Local => f.write_str("Local"),
            DockerAddress::Socket(p) => f.debug_tuple("Socket").field(p).finish(),
            DockerAddress::Tcp(a) => f.debug_tuple("Tcp").field(a).finish(),
            DockerAddress::Tls { addr, ca, cert, .. } => {
                f.debug_struct("Tls").field("addr", addr).field("ca", ca).field("cert", cert).field("key", &"[path]").finish()
            }
        }
    }
}

impl DockerAddress {
    /// A unix socket.
    pub fn socket(path: impl Into<PathBuf>) -> Self {
        DockerAddress::Socket(path.into())
    }

    /// Plain TCP (`tcp://host:2375`).
    pub fn tcp(addr: impl Into<String>) -> Self {
        DockerAddress::Tcp(addr.into())
    }

    /// TCP with TLS (`tcp://host:2376`) and a client certificate.
    pub fn tls(addr: impl Into<String>, ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        DockerAddress::Tls { addr: addr.into(), ca: ca.into(), cert: cert.into(), key: key.into() }
    }

    /// Checks that the address and file paths are not empty (whether they work shows when
    /// connecting).
    ///
    /// # Errors
    /// `InvalidInput` (field `address`) for an empty address or path.
    pub fn validate(&self) -> std::result::Result<(), ecp_core::Error> {
        let empty = match self {
            DockerAddress::Local => false,
            DockerAddress::Socket(p) => p.as_os_str().is_empty(),
            DockerAddress::Tcp(a) => a.trim().is_empty(),
            DockerAddress::Tls { addr, ca, cert, key } => {
                addr.trim().is_empty() || ca.as_os_str().is_empty() || cert.as_os_str().is_empty() || key.as_os_str().is_empty()
            }
        };
        if empty {
            return Err(ecp_core::Error::invalid("address", "the address and files must not be empty"));
        }
        Ok(())
    }
}

/// Connects to the engine at `address`: makes the client, with `timeout` for each request (whole
/// seconds, at least one), and negotiates the Engine API version with the engine (bollard's own
/// version, or the engine's if it is older: engines from API 1.41, Docker 20.10, on work).
///
/// # Errors
/// Operation `connect`, not retryable, when the client cannot be made (a bad address, a
/// certificate file that cannot be read); the engine's error from `negotiate the API version`
/// ([`error`]: retryable when it cannot be reached).
pub async fn connect(address: &DockerAddress, timeout: Duration) -> Result<Docker> {
    let secs = timeout.as_secs().max(1);
    let version = bollard::API_DEFAULT_VERSION;
    let docker = match address {
        DockerAddress::Local => Docker::connect_with_local_defaults().map(|d| d.with_timeout(Duration::from_secs(secs))),
        DockerAddress::Socket(path) => Docker::connect_with_socket(&path.to_string_lossy(), secs, version),
        DockerAddress::Tcp(addr) => Docker::connect_with_http(addr, secs, version),
        DockerAddress::Tls { addr, ca, cert, key } => Docker::connect_with_ssl(addr, key, cert, ca, secs, version),
    }
    .map_err(|e| Error::new(Backend::Docker, "connect", e))?;
    docker.negotiate_version().await.map_err(|e| error("negotiate the API version", e))
}

/// An engine's client, [connected](connect) on first use; a failed connection is tried again on
/// the next use.
pub struct DockerClient {
    address: DockerAddress,
    timeout: Duration,
    docker: OnceCell<Docker>,
}

impl fmt::Debug for DockerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerClient")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .field("connected", &self.docker.initialized())
            .finish()
    }
}

impl DockerClient {
    /// A client of the engine at `address`, with `timeout` for each request; nothing is connected
    /// yet.
    pub fn new(address: DockerAddress, timeout: Duration) -> Self {
        DockerClient { address, timeout, docker: OnceCell::new() }
    }

    /// The engine's address.
    pub fn address(&self) -> &DockerAddress {
        &self.address
    }

    /// The time one request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connected client.
    ///
    /// # Errors
    /// As [`connect`].
    pub async fn get(&self) -> Result<&Docker> {
        self.docker.get_or_try_init(|| connect(&self.address, self.timeout)).await
    }
}

/// An Engine API error as this crate's: the engine's error answers with their status (404 is
/// [`Error::is_not_found`]; 5xx, 409 and 429 retryable), everything else (connection, timeout,
/// TLS, an answer that cannot be read) retryable without a status.
pub fn error(operation: impl Into<Cow<'static, str>>, e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            Error::answered(Backend::Docker, operation, status_code, message)
        }
        other => Error::unreachable(Backend::Docker, operation, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_path_is_never_shown() {
        let a = DockerAddress::tls("tcp://h:2376", "/etc/docker/ca.pem", "/etc/docker/cert.pem", "/etc/docker/sentinel-key.pem");
        let shown = format!("{a:?} {:?}", DockerClient::new(a.clone(), Duration::from_secs(1)));
        assert!(shown.contains("ca.pem") && shown.contains("cert.pem") && !shown.contains("sentinel"), "{shown}");
    }

    #[test]
    fn addresses_validate() {
        assert!(DockerAddress::Local.validate().is_ok());
        assert!(DockerAddress::socket("/var/run/docker.sock").validate().is_ok());
        assert!(DockerAddress::socket("").validate().is_err());
        assert!(DockerAddress::tcp(" ").validate().is_err());
        assert!(DockerAddress::tls("tcp://h:2376", "ca.pem", "cert.pem", "").validate().is_err());
        assert_eq!(DockerAddress::default(), DockerAddress::Local);
    }

    #[test]
    fn engine_answers_keep_their_status() {
        let e = error("start container", bollard::errors::Error::DockerResponseServerError { status_code: 304, message: "".into() });
        assert_eq!((e.status(), e.is_retryable()), (Some(304), false));
        let e = error("create container", bollard::errors::Error::DockerResponseServerError { status_code: 500, message: "x".into() });
        assert!(e.is_retryable());
        let e = error("list containers", bollard::errors::Error::RequestTimeoutError);
        assert_eq!((e.status(), e.is_retryable(), e.backend()), (None, true, Backend::Docker));
    }
}
