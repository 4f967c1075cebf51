//! `/api/v5/license` and `/api/v5/license/setting` (Enterprise).

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use super::common::Limit;
use super::json::opt_count;

/// A license's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LicenseType {
    /// `community`.
    Community,
    /// `official`.
    Official,
    /// `trial`.
    Trial,
    /// Another word.
    Other(String),
}

impl<'de> Deserialize<'de> for LicenseType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "community" => LicenseType::Community,
            "official" => LicenseType::Official,
            "trial" => LicenseType::Trial,
            _ => LicenseType::Other(s),
        })
    }
}

/// `/api/v5/license` (Enterprise; open source answers 404).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct License {
    /// The customer.
    #[serde(default)]
    pub customer: Option<String>,
    /// The customer's email.
    #[serde(default)]
    pub email: Option<String>,
    /// The deployment.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The customer type code (10 for evaluation; 3 is business-critical).
    #[serde(default)]
    pub customer_type: Option<i64>,
    /// `community`, `official`, `trial`.
    #[serde(rename = "type", default)]
    pub license_type: Option<LicenseType>,
    /// Start date (`2022-01-11`).
    #[serde(default)]
    pub start_at: Option<String>,
    /// Expiry date (`2295-10-27`).
    #[serde(default)]
    pub expiry_at: Option<String>,
    /// Whether it has expired.
    #[serde(default)]
    pub expiry: Option<bool>,
    /// The session limit.
    #[serde(default)]
    pub max_sessions: Option<Limit>,
    /// The connection limit (an alias of `max_sessions`).
    #[serde(default)]
    pub max_connections: Option<Limit>,
}

impl License {
    /// The connection limit: `max_connections`, else `max_sessions`.
    pub fn connection_limit(&self) -> Option<Limit> {
        self.max_connections.or(self.max_sessions)
    }
}

/// `/api/v5/license/setting` (Enterprise, 5.7+): the usage alarm watermarks and, for
/// business-critical licenses only, `dynamic_max_connections`, the connection limit the cluster
/// takes from its license (the product's "Update Connect Limit"). EMQX merges a `PUT` into the
/// current setting and silently drops `dynamic_max_connections` for other licenses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LicenseSetting {
    /// Below this usage the quota alarm clears (`"75%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_low_watermark: Option<String>,
    /// Above this usage the quota alarm fires (`"80%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_high_watermark: Option<String>,
    /// The connection limit in force (business-critical licenses only).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_count")]
    pub dynamic_max_connections: Option<u64>,
}

impl LicenseSetting {
    /// A setting that changes only the connection limit.
    pub fn connection_limit(max_connections: u64) -> Self {
        Self { dynamic_max_connections: Some(max_connections), ..Self::default() }
    }
}
