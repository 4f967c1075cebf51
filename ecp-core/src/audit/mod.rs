//! The operation audit log: one record per mutating operation, hash-chained so that any changed,
//! removed or reordered record is found by [`verify_chain`].
//!
//! Each record carries the SHA-256 of the one before it (`prev_hash`) and its own hash over an
//! unambiguous, length-prefixed encoding of every field, including its sequence number. The store
//! appends a record in the same transaction as the change it describes, so a change is never
//! committed without its record. The store also keeps the chain's head (last sequence number and
//! hash) apart from the records, so removing the newest records is found too; a host that wants
//! protection against someone able to rewrite both can publish [`ChainHead`]s elsewhere and pass one
//! to [`verify_chain`] later.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::access::{Principal, ResourceKind, Subject};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{AuditId, OrgId, ProjectId};
use crate::page::PageRequest;

mod trail;
pub use trail::AuditTrail;

/// The largest `details` document one record may carry, in bytes of JSON; larger ones are replaced by
/// a note saying how large they were.
pub const MAX_DETAILS_BYTES: usize = 8 * 1024 * 1024;

/// The hash of the record before the first one.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What was done: a dotted, lowercase name (`"organization.create"`, `"edge_service.upgrade"`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Operation(Cow<'static, str>);

impl Operation {
    /// An operation name known at compile time. Names are checked by the unit tests of the modules
    /// that define them.
    pub const fn from_static(name: &'static str) -> Self {
        Operation(Cow::Borrowed(name))
    }

    /// Checks and wraps a name: 1–64 characters of `a-z`, `0-9`, `_` and `.`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`].
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        Self::check(&name)?;
        Ok(Operation(Cow::Owned(name)))
    }

    fn check(name: &str) -> Result<()> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if ok { Ok(()) } else { Err(Error::invalid("operation", "must be 1-64 characters of a-z, 0-9, '_' and '.'")) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name is well-formed (for `from_static` names, in tests).
    pub fn is_valid(&self) -> bool {
        Self::check(&self.0).is_ok()
    }
}

impl TryFrom<String> for Operation {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Operation::new(s)
    }
}

impl From<Operation> for String {
    fn from(o: Operation) -> String {
        o.0.into_owned()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// It was applied.
    Success,
    /// It was refused or failed.
    Failure {
        /// Why (an error's `Display`, never a secret).
        reason: String,
    },
}

impl Outcome {
    /// Whether this is [`Outcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// Who acted, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The subject.
    pub subject: Subject,
    /// Its display name at the time.
    pub name: String,
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Actor { subject: p.subject(), name: p.name().to_owned() }
    }
}

/// An id with the name it had at the time of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named<I> {
    /// The id.
    pub id: I,
    /// The name.
    pub name: String,
}

impl<I> Named<I> {
    /// An id and its name.
    pub fn new(id: I, name: impl Into<String>) -> Self {
        Self { id, name: name.into() }
    }
}

/// A record to append: what services write. The store adds id, sequence number, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who acted.
    pub actor: Actor,
    /// The organization it happened in.
    pub org: Option<Named<OrgId>>,
    /// The project it happened in.
    pub project: Option<Named<ProjectId>>,
    /// The kind of resource acted on.
    pub resource_kind: ResourceKind,
    /// The resource's id, if it has one.
    pub resource_id: Option<String>,
    /// The resource's name, if it has one.
    pub resource_name: Option<String>,
    /// What was done.
    pub operation: Operation,
    /// How it ended.
    pub outcome: Outcome,
    /// More: the changed fields, the per-target results of a batch. Never secrets.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// A successful `operation` on a `kind` of resource by `principal`; fill in the rest with the
    /// builder methods.
    pub fn new(principal: &Principal, resource_kind: ResourceKind, operation: Operation) -> Self {
        Self {
            actor: principal.into(),
            org: None,
            project: None,
            resource_kind,
            resource_id: None,
            resource_name: None,
            operation,
            outcome: Outcome::Success,
            details: serde_json::Value::Null,
        }
    }

    /// Sets the organization.
    #[must_use]
    pub fn org(mut self, id: OrgId, name: impl Into<String>) -> Self {
        self.org = Some(Named::new(id, name));
        self
    }

    /// Sets the project.
    #[must_use]
    pub fn project(mut self, id: ProjectId, name: impl Into<String>) -> Self {
        self.project = Some(Named::new(id, name));
        self
    }

    /// Sets the resource's id and name.
    #[must_use]
    pub fn resource(mut self, id: impl fmt::Display, name: Option<&str>) -> Self {
        self.resource_id = Some(id.to_string());
        self.resource_name = name.map(str::to_owned);
        self
    }

    /// Sets the details.
    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Marks the event as a failure for `reason`.
    #[must_use]
    pub fn failed(mut self, reason: impl fmt::Display) -> Self {
        self.outcome = Outcome::Failure { reason: reason.to_string() };
        self
    }

    /// The details as stored: compact JSON, replaced by a size note above [`MAX_DETAILS_BYTES`].
    pub fn details_json(&self) -> String {
        if self.details.is_null() {
            return String::new();
        }
        let json = self.details.to_string();
        if json.len() > MAX_DETAILS_BYTES { serde_json::json!({ "truncated": true, "bytes": json.len() }).to_string() } else { json }
    }
}

/// A stored record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its id.
    pub id: AuditId,
    /// Its position in the chain, from 1, without gaps.
    pub seq: u64,
    /// When it was appended (microsecond resolution).
    pub at: Timestamp,
    /// The event.
    pub event: AuditEvent,
    /// The hash of the record before (or [`GENESIS_HASH`]), hex.
    pub prev_hash: String,
    /// This record's hash, hex.
    pub hash: String,
}

impl AuditRecord {
    /// Builds the record that follows `prev_hash` at `seq`, computing its hash.
    pub fn seal(event: AuditEvent, id: AuditId, seq: u64, at: Timestamp, prev_hash: String) -> Self {
        let at = Timestamp::from_microsecond(at.as_microsecond()).unwrap_or(at);
        let mut rec = AuditRecord { id, seq, at, event, prev_hash, hash: String::new() };
        rec.hash = rec.compute_hash(&rec.event.details_json());
        rec
    }

    /// The hash this record should have, given the details exactly as stored.
    pub fn compute_hash(&self, stored_details: &str) -> String {
        let e = &self.event;
        let mut h = Sha256::new();
        h.update(b"ecp-audit-v1");
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        let opt = |o: Option<String>| o.map(|s| format!("+{s}")).unwrap_or_else(|| "-".to_owned());
        field(self.prev_hash.as_bytes());
        field(&self.seq.to_le_bytes());
        field(self.id.to_string().as_bytes());
        field(&self.at.as_microsecond().to_le_bytes());
        field(e.actor.subject.kind().as_bytes());
        field(opt(e.actor.subject.id_string()).as_bytes());
        field(e.actor.name.as_bytes());
        field(opt(e.org.as_ref().map(|o| o.id.to_string())).as_bytes());
        field(opt(e.org.as_ref().map(|o| o.name.clone())).as_bytes());
        field(opt(e.project.as_ref().map(|p| p.id.to_string())).as_bytes());
        field(opt(e.project.as_ref().map(|p| p.name.clone())).as_bytes());
        field(e.resource_kind.as_str().as_bytes());
        field(opt(e.resource_id.clone()).as_bytes());
        field(opt(e.resource_name.clone()).as_bytes());
        field(e.operation.as_str().as_bytes());
        match &e.outcome {
            Outcome::Success => field(b"success"),
            Outcome::Failure { reason } => {
                field(b"failure");
                field(reason.as_bytes());
            }
        }
        field(stored_details.as_bytes());
        hex::encode(h.finalize())
    }
}

/// The newest record of the chain: publish it somewhere else to detect a rewrite of the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The last sequence number (0 for an empty log).
    pub seq: u64,
    /// Its hash ([`GENESIS_HASH`] for an empty log).
    pub hash: String,
}

/// A record as read back for verification: the record and its details exactly as stored.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The record.
    pub record: AuditRecord,
    /// The `details` text exactly as stored.
    pub stored_details: String,
}

/// What [`verify_chain`] found on a sound chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// The head of the chain.
    pub head: ChainHead,
}

/// Filters of an audit query; all set filters must match. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
    /// By this subject.
    pub actor: Option<Subject>,
    /// By an actor whose name contains this (case-insensitive).
    pub actor_name_contains: Option<String>,
    /// In this organization.
    pub org: Option<OrgId>,
    /// In this project.
    pub project: Option<ProjectId>,
    /// On this kind of resource.
    pub resource_kind: Option<ResourceKind>,
    /// On this resource.
    pub resource_id: Option<String>,
    /// This operation, or (ending in `.`) operations starting with it: `"organization."`.
    pub operation: Option<String>,
    /// Only successes (`Some(true)`) or only failures (`Some(false)`).
    pub success: Option<bool>,
}

impl AuditQuery {
    /// Checks the sizes of the text filters.
    ///
    /// # Errors
    /// [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        if self.actor_name_contains.as_ref().is_some_and(|s| s.len() > 256) {
            return Err(Error::invalid("actor_name_contains", "longer than 256 bytes"));
        }
        if self.resource_id.as_ref().is_some_and(|s| s.len() > 256) {
            return Err(Error::invalid("resource_id", "longer than 256 bytes"));
        }
        if self.operation.as_ref().is_some_and(|s| s.len() > 65) {
            return Err(Error::invalid("operation", "longer than 65 bytes"));
        }
        Ok(())
    }
}

/// Where a query may look: the scopes the asking principal may see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditScope {
    /// Everything.
    pub all: bool,
    /// Records of these organizations.
    pub orgs: Vec<OrgId>,
    /// Records of these projects.
    pub projects: Vec<ProjectId>,
}

/// Reads the chain in order, a page at a time, for [`verify_chain`].
#[async_trait::async_trait]
pub trait ChainReader: Send + Sync {
    /// Up to `limit` records with `seq > after`, in sequence order.
    async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<StoredRecord>>;
    /// The head the store keeps apart from the records.
    async fn stored_head(&self) -> Result<ChainHead>;
}

/// Walks the whole chain and checks every link and hash, then the stored head, then (if given) an
/// anchor published earlier. Memory is bounded by the page size.
///
/// # Errors
/// [`Error::Integrity`] naming the first bad record: a changed record (its hash does not match), a
/// removed one (a gap in the sequence, or a broken link), a reordered pair (a broken link), removed
/// newest records (the head is ahead of the last record), or a rewritten log (the anchor's hash
/// differs); [`Error::Backend`] if reading fails.
pub async fn verify_chain(reader: &dyn ChainReader, anchor: Option<&ChainHead>) -> Result<VerifyReport> {
    const PAGE: u32 = 1000;
    let broken = |reason: String| Error::Integrity { what: "audit chain", reason };
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut last_seq = 0u64;
    let mut anchor_seen = anchor.is_none_or(|a| a.seq == 0);
    loop {
        let page = reader.records_after(last_seq, PAGE).await?;
        let n = page.len();
        for StoredRecord { record, stored_details } in page {
            let expected = last_seq + 1;
            if record.seq != expected {
                return Err(broken(format!("record {expected} is missing (next is {})", record.seq)));
            }
            if record.prev_hash != prev_hash {
                return Err(broken(format!("record {} does not follow record {}: link broken", record.seq, last_seq)));
            }
            if record.compute_hash(&stored_details) != record.hash {
                return Err(broken(format!("record {} was changed: its hash does not match", record.seq)));
            }
            if let Some(a) = anchor.filter(|a| a.seq == record.seq) {
                if a.hash != record.hash {
                    return Err(broken(format!("record {} differs from the published anchor", record.seq)));
                }
                anchor_seen = true;
            }
            prev_hash = record.hash;
            last_seq = record.seq;
        }
        if n < PAGE as usize {
            break;
        }
    }
    let head = reader.stored_head().await?;
    if head.seq != last_seq || head.hash != prev_hash {
        return Err(broken(format!(
            "the log ends at record {last_seq} but its head says {}: records were removed or the head was changed",
            head.seq
        )));
    }
    if !anchor_seen {
        return Err(broken(format!("the published anchor at record {} is past the end of the log", anchor.map_or(0, |a| a.seq))));
    }
    Ok(VerifyReport { records: last_seq, head })
}

/// Appends the failure record of an operation. A failure to append is logged (the caller returns the
/// operation's own error, which matters more to its caller).
pub async fn record_failure(store: &dyn crate::store::AuditStore, event: AuditEvent, err: &(dyn fmt::Display + Sync)) {
    let operation = event.operation.clone();
    if let Err(e) = store.append_audit(&event.failed(err)).await {
        tracing::warn!(error = %e, %operation, "could not append the audit record of a failed operation");
    }
}

/// Request for one page of an audit query.
pub type AuditPageRequest = PageRequest;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::UserId;

    fn event() -> AuditEvent {
        let p = Principal::user(UserId::new(), "ann@example.com");
        AuditEvent::new(&p, ResourceKind::Project, Operation::from_static("project.create"))
            .org(OrgId::new(), "acme")
            .project(ProjectId::new(), "plant 1")
            .resource("x", Some("plant 1"))
            .details(serde_json::json!({"b": 1, "a": [1, 2]}))
    }

    #[test]
    fn operation_names_are_checked() {
        assert!(Operation::new("organization.create").is_ok());
        for bad in ["", "Upper", "with space", "semi;", &"a".repeat(65)] {
            assert!(Operation::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Operation>("\"DROP TABLE\"").is_err());
    }

    #[test]
    fn hash_covers_every_field() {
        let rec = AuditRecord::seal(event(), AuditId::new(), 7, Timestamp::now(), GENESIS_HASH.into());
        let details = rec.event.details_json();
        assert_eq!(rec.compute_hash(&details), rec.hash);
        let mut changed = rec.clone();
        changed.seq = 8;
        assert_ne!(changed.compute_hash(&details), rec.hash);
        let mut changed = rec.clone();
        changed.event.actor.name.push('x');
        assert_ne!(changed.compute_hash(&details), rec.hash);
        let mut changed = rec.clone();
        changed.event.outcome = Outcome::Failure { reason: String::new() };
        assert_ne!(changed.compute_hash(&details), rec.hash);
        assert_ne!(rec.compute_hash(&details.replace('1', "2")), rec.hash);
        // Field boundaries are unambiguous: moving text between two fields changes the hash.
        let mut a = rec.clone();
        a.event.resource_id = Some("ab".into());
        a.event.resource_name = Some("c".into());
        let mut b = rec.clone();
        b.event.resource_id = Some("a".into());
        b.event.resource_name = Some("bc".into());
        assert_ne!(a.compute_hash(&details), b.compute_hash(&details));
    }

    #[test]
    fn oversized_details_are_replaced_by_a_note() {
        let big = "x".repeat(MAX_DETAILS_BYTES + 1);
        let e = event().details(serde_json::json!({ "blob": big }));
        let stored = e.details_json();
        assert!(stored.len() < 100);
        assert!(stored.contains("truncated"));
    }
}
