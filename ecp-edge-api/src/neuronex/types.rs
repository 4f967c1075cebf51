//! NeuronEX's own answers, as it sends them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::{self};

/// `GET /api/version`: `{"version":"3.1.0-beta.3"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Version {
    /// The version.
    pub version: String,
}

/// `GET /api/system`: strings describing the host and the two services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SystemInfo {
    /// Neuron's status (`running` ...).
    #[serde(default, rename = "neuronStatus", deserialize_with = "call::lenient::opt_string")]
    pub neuron_status: Option<String>,
    /// eKuiper's status.
    #[serde(default, rename = "ekuiperStatus", deserialize_with = "call::lenient::opt_string")]
    pub ekuiper_status: Option<String>,
    /// The OS.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub os: Option<String>,
    /// The CPU architecture.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub arch: Option<String>,
    /// Every other key.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}
