//! [`ConfigChange`]: a configuration change for one edge service, as typed data. Templates render
//! to it (`ecp-edge`), the agent protocol carries it, and [`ServiceClient::apply`](crate::ServiceClient::apply)
//! applies it, converging.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::service::EdgeKind;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::invalid(field, reason.into())
}

/// A tag point of a Neuron group (the fields of `POST /api/v2/tags`; unknown ones are passed on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagSpec {
    /// Its name.
    pub name: String,
    /// Its address (`"1!400001"`).
    pub address: String,
    /// Bits: 1 read, 2 write, 4 subscribe, 8 static.
    pub attribute: u8,
    /// Neuron's type code (1 int8 ... 9 float, 10 double, 11 bit, 12 bool, 13 string, 14 bytes).
    #[serde(rename = "type")]
    pub kind: u8,
    /// Anything else (`precision`, `decimal`, `description`, `unit` ...).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A group of a Neuron south device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Its name.
    pub name: String,
    /// Its polling interval, ms.
    pub interval: u64,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<TagSpec>,
}

/// A configuration change for one edge service: what a template renders to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConfigChange {
    /// A Neuron south device (node), its settings, groups and tags (Neuron, NeuronEX).
    NeuronSouthDevice {
        /// The node's name.
        node: String,
        /// Its plugin (`"Modbus TCP"`).
        plugin: String,
        /// Its settings (`POST /node/setting` params).
        #[serde(default)]
        params: Map<String, Value>,
        /// Its groups.
        #[serde(default)]
        groups: Vec<GroupSpec>,
    },
    /// An eKuiper stream (eKuiper, NeuronEX).
    EkuiperStream {
        /// Its name.
        name: String,
        /// Its `CREATE STREAM ...` statement.
        sql: String,
    },
    /// An eKuiper rule (eKuiper, NeuronEX).
    EkuiperRule {
        /// Its id.
        id: String,
        /// Its name.
        #[serde(default)]
        name: Option<String>,
        /// Its SQL.
        sql: String,
        /// Its actions (`[{"log":{}}]`).
        actions: Vec<Value>,
        /// Its options.
        #[serde(default)]
        options: Option<Value>,
    },
    /// A NanoMQ configuration fragment (`POST /api/v4/reload {"data": ...}`).
    #[serde(rename = "nanomq_config")]
    NanoMqConfig {
        /// The settings to change.
        data: Map<String, Value>,
    },
    /// One call to the service's API (any kind).
    RawApiCall {
        /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
        method: String,
        /// A path relative to the service's base URL, starting with `/`.
        path: String,
        /// The JSON body.
        #[serde(default)]
        body: Option<Value>,
    },
}

fn nonempty(field: &'static str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(invalid(field, format!("must be 1..={max} characters without control characters")));
    }
    Ok(())
}

impl ConfigChange {
    /// Which kind of change this is.
    pub fn kind(&self) -> ChangeKind {
        match self {
            ConfigChange::NeuronSouthDevice { .. } => ChangeKind::NeuronSouthDevice,
            ConfigChange::EkuiperStream { .. } => ChangeKind::EkuiperStream,
            ConfigChange::EkuiperRule { .. } => ChangeKind::EkuiperRule,
            ConfigChange::NanoMqConfig { .. } => ChangeKind::NanoMqConfig,
            ConfigChange::RawApiCall { .. } => ChangeKind::RawApiCall,
        }
    }

    /// Checks the change's fields.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            ConfigChange::NeuronSouthDevice { node, plugin, groups, .. } => {
                nonempty("node", node, 128)?;
                nonempty("plugin", plugin, 128)?;
                let mut names = BTreeSet::new();
                for g in groups {
                    nonempty("group.name", &g.name, 128)?;
                    if !names.insert(g.name.as_str()) {
                        return Err(invalid("groups", format!("group {:?} appears twice", g.name)));
                    }
                    if g.interval < 100 {
                        return Err(invalid("group.interval", "must be at least 100 ms"));
                    }
                    for t in &g.tags {
                        nonempty("tag.name", &t.name, 128)?;
                        nonempty("tag.address", &t.address, 256)?;
                        if t.attribute == 0 || t.attribute > 15 || !(1..=14).contains(&t.kind) {
                            return Err(invalid("tag", format!("tag {:?}: attribute must be 1..=15 and type 1..=14", t.name)));
                        }
                    }
                }
            }
            ConfigChange::EkuiperStream { name, sql } => {
                nonempty("name", name, 128)?;
                nonempty("sql", sql, 64 * 1024)?;
            }
            ConfigChange::EkuiperRule { id, sql, actions, .. } => {
                nonempty("id", id, 128)?;
                nonempty("sql", sql, 64 * 1024)?;
                if actions.is_empty() {
                    return Err(invalid("actions", "a rule needs at least one action"));
                }
            }
            ConfigChange::NanoMqConfig { data } => {
                if data.is_empty() {
                    return Err(invalid("data", "nothing to change"));
                }
            }
            ConfigChange::RawApiCall { method, path, .. } => {
                if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                    return Err(invalid("method", "must be GET, POST, PUT, PATCH or DELETE"));
                }
                if !path.starts_with('/') || path.starts_with("//") || path.contains("://") || path.len() > 2048 {
                    return Err(invalid("path", "must be a path on the service, starting with one '/'"));
                }
                if path.split(['/', '?']).any(|seg| seg == "..") || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(invalid("path", "must not climb out with '..' or hold whitespace"));
                }
            }
        }
        Ok(())
    }

    /// Whether a service of `kind` can take this change.
    pub fn fits(&self, kind: EdgeKind) -> bool {
        self.kind().fits(kind)
    }
}

/// The kinds of configuration change (and of the templates that render them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// A Neuron south device.
    NeuronSouthDevice,
    /// An eKuiper stream.
    EkuiperStream,
    /// An eKuiper rule.
    EkuiperRule,
    /// A NanoMQ configuration fragment.
    #[serde(rename = "nanomq_config")]
    NanoMqConfig,
    /// A raw API call.
    RawApiCall,
}

impl ChangeKind {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::NeuronSouthDevice => "neuron_south_device",
            ChangeKind::EkuiperStream => "ekuiper_stream",
            ChangeKind::EkuiperRule => "ekuiper_rule",
            ChangeKind::NanoMqConfig => "nanomq_config",
            ChangeKind::RawApiCall => "raw_api_call",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::NeuronSouthDevice, Self::EkuiperStream, Self::EkuiperRule, Self::NanoMqConfig, Self::RawApiCall]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// Whether services of `kind` take changes of this kind.
    pub fn fits(self, kind: EdgeKind) -> bool {
        match self {
            ChangeKind::NeuronSouthDevice => matches!(kind, EdgeKind::Neuron | EdgeKind::NeuronEx),
            ChangeKind::EkuiperStream | ChangeKind::EkuiperRule => matches!(kind, EdgeKind::Ekuiper | EdgeKind::NeuronEx),
            ChangeKind::NanoMqConfig => kind == EdgeKind::NanoMq,
            ChangeKind::RawApiCall => true,
        }
    }
}
