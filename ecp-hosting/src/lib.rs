//! # ecp-hosting
//!
//! How ecp-rs reaches a Docker engine or a Kubernetes API server, written once for the backends
//! that run things there (EMQX clusters in ecp-cluster, hosted edge services in ecp-edge):
//!
//! - feature `docker`: `docker::DockerAddress` (the local default socket, a unix socket, plain
//!   TCP, TLS with a client certificate), `docker::connect` (timeout and API version
//!   negotiation) and `docker::DockerClient` (connected on first use), and the engine's errors;
//! - feature `kubernetes`: `kubernetes::KubeConnection` (inferred from the environment, a
//!   kubeconfig file and context, or the host's own client), client construction, the API
//!   server's errors, and the namespace and field manager checks;
//! - always: the one [`Error`] of both backends (the [`Backend`], the operation, the HTTP status
//!   of the answer if any, whether it is retryable, the backend's error boxed as its source).
//!
//! ecp-cluster and ecp-edge wrap [`Error`] as their `Error::Hosting`, so `is_not_found()` and
//! `is_retryable()` answer the same in both.
//!
//! ```
//! use ecp_hosting::{Backend, Error};
//!
//! // What a driver makes of a Docker engine's 404 (`docker::error` does it from bollard's error).
//! let e = Error::answered(Backend::Docker, "start container", 404, "No such container: line-1").context("node edge-1");
//! assert_eq!(e.to_string(), "docker: node edge-1: start container failed (404)");
//! assert!(e.is_not_found() && !e.is_retryable());
//! ```
//!
//! With the backends' features:
//!
//! ```no_run
//! # #[cfg(all(feature = "docker", feature = "kubernetes"))]
//! # async fn demo() -> Result<(), ecp_hosting::Error> {
//! use std::time::Duration;
//!
//! use ecp_hosting::docker::{DockerAddress, DockerClient};
//! use ecp_hosting::kubernetes::KubeConnection;
//!
//! let engine = DockerAddress::tls("tcp://10.0.0.5:2376", "ca.pem", "cert.pem", "key.pem");
//! let client = DockerClient::new(engine, Duration::from_secs(60));
//! let _docker = client.get().await?; // connected and the API version negotiated
//! let _kube = KubeConnection::kubeconfig("/etc/ecp/kubeconfig", Some("plant-1")).client().await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "docker")]
pub mod docker;
pub mod error;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;

pub use error::{Backend, Error, Result};
