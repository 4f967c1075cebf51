//! The state file: which version of each desired item the agent started, and its outcome.

use std::collections::BTreeMap;
use std::path::Path;

use ecp_agent_proto::proto::Applied;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::*;
use crate::error::{Error, Result};

/// The format of the state file.
pub(crate) const STATE_FORMAT: u32 = 1;

/// The outcome of an item as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub(crate) ok: bool,
    #[serde(default)]
    pub(crate) detail: Value,
}

/// One item key's record: the last version started, and its outcome once known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) outcome: Option<Outcome>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct StateFile {
    #[serde(default)]
    pub(crate) format: u32,
    #[serde(default)]
    pub(crate) items: BTreeMap<String, Record>,
    /// The version of the newest desired set taken (0 in files written before it was kept).
    #[serde(default)]
    pub(crate) set_version: u64,
}

/// The recorded items and the version of the newest desired set taken.
pub(crate) fn load_state(path: &Path) -> Result<(BTreeMap<String, Record>, u64)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((BTreeMap::new(), 0)),
        Err(e) => return Err(Error::invalid("state_file", format!("cannot be read: {e}"))),
    };
    let mut state: StateFile =
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid("state_file", format!("is not a state file: {e}")))?;
    if state.format > STATE_FORMAT {
        return Err(Error::invalid("state_file", format!("has format {}, newer than this agent's {STATE_FORMAT}", state.format)));
    }
    let mut interrupted = false;
    for (key, record) in &mut state.items {
        if record.outcome.is_none() {
            tracing::warn!(key = %key, version = record.version, "edge agent: an item was interrupted while being applied; not applied again");
            record.outcome = Some(Outcome { ok: false, detail: json!("interrupted") });
            interrupted = true;
        }
    }
    if interrupted {
        save_state_sync(path, &state.items, state.set_version)
            .map_err(|e| Error::invalid("state_file", format!("cannot be written: {e}")))?;
    }
    Ok((state.items, state.set_version))
}

pub(crate) fn state_bytes(items: &BTreeMap<String, Record>, set_version: u64) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        format: u32,
        items: &'a BTreeMap<String, Record>,
        set_version: u64,
    }
    serde_json::to_vec(&Out { format: STATE_FORMAT, items, set_version }).unwrap_or_default()
}

pub(crate) fn save_state_sync(path: &Path, items: &BTreeMap<String, Record>, set_version: u64) -> std::io::Result<()> {
    ecp_agent_proto::files::write_atomic(path, &state_bytes(items, set_version))
}

pub(crate) fn applied_view(items: &BTreeMap<String, Record>) -> BTreeMap<String, Applied> {
    items
        .iter()
        .map(|(k, r)| {
            let o = r.outcome.clone().unwrap_or(Outcome { ok: false, detail: json!("in progress") });
            (k.clone(), Applied { key: k.clone(), version: r.version, ok: o.ok, detail: o.detail })
        })
        .collect()
}

impl Core {
    pub(crate) async fn persist(&self, items: &BTreeMap<String, Record>) -> std::io::Result<()> {
        let Some(path) = self.config.state_file.clone() else { return Ok(()) };
        let bytes = state_bytes(items, self.set_version.load(std::sync::atomic::Ordering::SeqCst));
        tokio::task::spawn_blocking(move || ecp_agent_proto::files::write_atomic(&path, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}
