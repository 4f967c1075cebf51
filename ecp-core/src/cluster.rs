//! The stored form of EMQX clusters: backend, spec, REST API endpoint and key, connection limit
//! (its share of the license's floating pool), status. Drivers and the cluster model are
//! `ecp-cluster`'s; the project and the name live in the project's resource registry, so a
//! transfer ([`TenancyStore::move_resource`](crate::store::TenancyStore::move_resource)) moves the
//! cluster and a project holding clusters cannot be deleted.

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{ClusterId, ProjectId};
use crate::license::License;

/// The longest stored cluster spec (JSON), in bytes.
pub const MAX_SPEC_BYTES: usize = 512 * 1024;

/// A stored EMQX cluster. The API secret is redacted in `Debug`.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClusterRecord {
    /// Its id.
    pub id: ClusterId,
    /// The project holding it.
    pub project: ProjectId,
    /// Its name, unique per project regardless of case.
    pub name: String,
    /// Its backend (`"kubernetes"`, `"docker"`, `"existing"`).
    pub backend: String,
    /// The hosted spec as the backend's model serializes it (`null` for onboarded clusters); never
    /// holds secrets.
    pub spec: serde_json::Value,
    /// The REST API's base URL, where known.
    pub api_url: Option<String>,
    /// The REST API key, where known.
    pub api_key: Option<String>,
    /// The REST API secret.
    pub api_secret: Option<SecretString>,
    /// Its connection limit: its share of the license's connection pool.
    pub connection_limit: u64,
    /// Whether it is enabled; a disabled cluster holds no share of the pool.
    pub enabled: bool,
    /// Its status name (`"creating"`, `"running"`, `"error"` ...).
    pub status: String,
    /// The cause of an `error` status.
    pub status_cause: Option<String>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl ClusterRecord {
    /// A new, enabled cluster of `project` named `name` on `backend`, with status `status`.
    pub fn new(
        id: ClusterId,
        project: ProjectId,
        name: impl Into<String>,
        backend: impl Into<String>,
        connection_limit: u64,
        status: impl Into<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            project,
            name: name.into(),
            backend: backend.into(),
            spec: serde_json::Value::Null,
            api_url: None,
            api_key: None,
            api_secret: None,
            connection_limit,
            enabled: true,
            status: status.into(),
            status_cause: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// With its REST API.
    #[must_use]
    pub fn with_api(mut self, url: impl Into<String>, key: impl Into<String>, secret: SecretString) -> Self {
        self.api_url = Some(url.into());
        self.api_key = Some(key.into());
        self.api_secret = Some(secret);
        self
    }

    /// With its hosted spec.
    #[must_use]
    pub fn with_spec(mut self, spec: serde_json::Value) -> Self {
        self.spec = spec;
        self
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        crate::tenancy::validate_resource_name(&self.name)?;
        if self.backend.is_empty() || self.backend.len() > 32 {
            return Err(crate::error::Error::invalid("backend", "must be 1..=32 bytes"));
        }
        if self.status.is_empty() || self.status.len() > 32 {
            return Err(crate::error::Error::invalid("status", "must be 1..=32 bytes"));
        }
        if self.status_cause.as_ref().is_some_and(|c| c.len() > 4096) {
            return Err(crate::error::Error::invalid("status_cause", "longer than 4 KiB"));
        }
        if self.api_url.as_ref().is_some_and(|u| u.len() > 2048) || self.api_key.as_ref().is_some_and(|k| k.len() > 256) {
            return Err(crate::error::Error::invalid("api", "url or key too long"));
        }
        if self.spec.to_string().len() > MAX_SPEC_BYTES {
            return Err(crate::error::Error::invalid("spec", "longer than 512 KiB"));
        }
        Ok(())
    }
}

impl fmt::Debug for ClusterRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRecord")
            .field("id", &self.id)
            .field("project", &self.project)
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("spec", &self.spec)
            .field("api_url", &self.api_url)
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret.as_ref().map(|_| "[REDACTED]"))
            .field("connection_limit", &self.connection_limit)
            .field("enabled", &self.enabled)
            .field("status", &self.status)
            .field("status_cause", &self.status_cause)
            .finish_non_exhaustive()
    }
}

/// What the license allows the clusters of the whole installation: the store checks both in the
/// same transaction as the change, so concurrent replicas cannot overshoot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterQuota {
    /// Clusters registered in all.
    pub max_clusters: u64,
    /// The floating pool: connection limits of enabled clusters summed.
    pub max_connections: u64,
}

impl ClusterQuota {
    /// The license's quota.
    pub fn of(license: &License) -> Self {
        Self { max_clusters: license.max_clusters, max_connections: license.max_connections }
    }

    /// No limit.
    pub const fn unlimited() -> Self {
        Self { max_clusters: u64::MAX, max_connections: u64::MAX }
    }
}

/// What the installation uses of its license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LicenseUsage {
    /// Clusters registered.
    pub clusters: u64,
    /// Connections allocated to enabled clusters.
    pub connections: u64,
    /// Edge services registered.
    pub edge_services: u64,
}
