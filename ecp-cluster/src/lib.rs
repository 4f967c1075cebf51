//! # ecp-cluster
//!
//! EMQX clusters for ecp-rs:
//!
//! - the cluster model ([`ClusterSpec`]: image, core and replicant replicas within
//!   [`ClusterLimits`], [`Resources`], [`NetworkMode`], [`Listener`] ports; [`ClusterStatus`] with
//!   its cause) and the [`ClusterDriver`] trait every backend implements;
//! - backends behind cargo features: `kubernetes` (the EMQX Operator's `apps.emqx.io/v2beta1`
//!   `EMQX` resource through kube-rs), `docker` (a cluster of containers on a user network, through
//!   bollard), and `existing` (onboarding a running EMQX 5 cluster by its REST API);
//! - the EMQX 5 REST client, with the API's quirks modelled in its types;
//! - the `docker` and `kubernetes` backends reach their engine or API server through ecp-hosting
//!   (re-exported as `hosting`): a `DockerAddress`, a `KubeConnection`, and their errors as
//!   `Error::Hosting`;
//! - cluster transfer between projects, and connection limits drawn from the floating license.
//!
//! `ecp-cluster` and `ecp-edge` never depend on each other.

#[cfg(feature = "docker")]
pub mod docker;
pub mod driver;
#[cfg(feature = "existing")]
pub mod emqx;
pub mod error;
#[cfg(feature = "existing")]
pub mod existing;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod model;
pub mod service;

pub use driver::{ClusterApi, ClusterDriver, ClusterOperation, ClusterRef};
#[cfg(any(feature = "docker", feature = "kubernetes"))]
pub use error::{Error, Result};
#[cfg(feature = "existing")]
pub use existing::{ClusterInfo, ExistingCluster, ExistingDriver};
#[cfg(feature = "kubernetes")]
pub use kubernetes::{KubernetesConfig, KubernetesConfigBuilder, KubernetesDriver};
pub use model::{
    ApiKey, ClusterBackend, ClusterLimits, ClusterLimitsBuilder, ClusterSpec, ClusterState, ClusterStatus, Listener, ListenerProtocol,
    NetworkMode, NodeSummary, ReplicaCount, Resources,
};
pub use service::{Cluster, Clusters, ClustersBuilder, NewExistingCluster, NewHostedCluster, ProjectClusters};
