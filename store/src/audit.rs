//! The audit log: one entry per execution (contract section 11), appended in order, never
//! changed, trimmed from the oldest end past a configured size. Entries say who ran what where
//! and how it went — never the input or any credential. The log is this node's own: it is not
//! replicated (each node audits the executions it was asked for).
//!
//! Appends are not flushed one by one: sled writes them out within its flush interval (half a
//! second), so a crash may lose the last moments of the log, never a registration.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::{Error, Result, Store};

/// What kind of thing an execution ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A Tools Registry tool, by id.
    Tool,
    /// A Functions Registry function, by id.
    Function,
    /// A node-local tool, by name (`POST /cluster-tools/execute`).
    ClusterTool,
    /// The records written through the registry's doors (contract section 12): their
    /// entries say which record, how (`operation`) and by which token.
    Action,
    AllowList,
    AclToken,
    Member,
}

impl AuditKind {
    /// The kind as `GET /audit` and the metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            AuditKind::Tool => "tool",
            AuditKind::Function => "function",
            AuditKind::ClusterTool => "cluster_tool",
            AuditKind::Action => "action",
            AuditKind::AllowList => "allow_list",
            AuditKind::AclToken => "acl_token",
            AuditKind::Member => "member",
        }
    }
}

/// One execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in this node's log, assigned on append (0 before).
    pub seq: u64,
    /// When the execution was asked for, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The org the request named (empty when none).
    pub org: String,
    pub kind: AuditKind,
    /// The tool id, function id or cluster tool name.
    pub tool: String,
    /// The action it was selected through (empty when run directly).
    pub action: String,
    /// The node that ran it (empty when it never ran).
    pub node: String,
    pub success: bool,
    /// The HTTP status answered (403 refused by the allow-list, 400 invalid input, …).
    pub status: u16,
    pub duration_ms: u64,
    /// The size of the input, in bytes.
    pub input_bytes: u64,
    /// What was done: `execute`, or a registry write (`create`, `update`, `delete`).
    pub operation: String,
    /// The id of the token the request came with (`admin` for the management secret); empty
    /// when access control is off. Never the secret.
    pub token: String,
}

/// An entry as written before entries named their operation and token: read back as an
/// execution by no token.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EntryV1 {
    seq: u64,
    time_ms: u64,
    org: String,
    kind: AuditKind,
    tool: String,
    action: String,
    node: String,
    success: bool,
    status: u16,
    duration_ms: u64,
    input_bytes: u64,
}

impl From<EntryV1> for AuditEntry {
    fn from(v1: EntryV1) -> AuditEntry {
        AuditEntry {
            seq: v1.seq,
            time_ms: v1.time_ms,
            org: v1.org,
            kind: v1.kind,
            tool: v1.tool,
            action: v1.action,
            node: v1.node,
            success: v1.success,
            status: v1.status,
            duration_ms: v1.duration_ms,
            input_bytes: v1.input_bytes,
            operation: "execute".into(),
            token: String::new(),
        }
    }
}

/// An entry as stored, in this build's shape or the one before.
fn decode_entry(bytes: &[u8]) -> Result<AuditEntry> {
    decode::<AuditEntry>(bytes)
        .or_else(|error| decode::<EntryV1>(bytes).map(AuditEntry::from).map_err(|_| error))
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub org: Option<String>,
    pub tool: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// Entries past `keep` tolerated before a trim: trimming is batched, so that appends do not pay
/// for a removal every time.
pub fn trim_slack(keep: u64) -> u64 {
    (keep / 16).max(1)
}

/// The sequence numbers the log holds: `first..next`. Atomics, not a lock: an append takes its
/// number and writes its entry without waiting for other appends (many run at once on a busy
/// node), and a trim moves `first` before it removes anything.
#[derive(Debug)]
pub(crate) struct Span {
    first: AtomicU64,
    next: AtomicU64,
}

impl Span {
    /// The span of the log in `tree`, as a store opens it.
    pub(crate) fn of(tree: &sled::Tree) -> Result<Span> {
        let (first, next) = match (tree.first()?, tree.last()?) {
            (Some((first, _)), Some((last, _))) => (seq_of(&first)?, seq_of(&last)? + 1),
            _ => (1, 1),
        };
        Ok(Span { first: AtomicU64::new(first), next: AtomicU64::new(next) })
    }
}

impl Store {
    /// Appends an entry (its `seq` is assigned) and returns its seq and whether the log now
    /// holds more than `keep` entries plus the slack (then call [`Store::trim_audit`], off the
    /// request path: it removes a batch).
    pub fn append_audit(&self, entry: &AuditEntry, keep: u64) -> Result<(u64, bool)> {
        let span = self.audit_span();
        let seq = span.next.fetch_add(1, Ordering::Relaxed);
        let mut entry = entry.clone();
        entry.seq = seq;
        self.audit_tree().insert(seq.to_be_bytes(), encode(&entry)?)?;
        let held = (seq + 1).saturating_sub(span.first.load(Ordering::Relaxed));
        Ok((seq, held > keep + trim_slack(keep)))
    }

    /// Appends entries in one batch, in order (their `seq`s are assigned); returns whether the
    /// log now holds more than `keep` entries plus the slack.
    pub fn append_audit_batch(&self, entries: &mut [AuditEntry], keep: u64) -> Result<bool> {
        let span = self.audit_span();
        let first = span.next.fetch_add(entries.len() as u64, Ordering::Relaxed);
        let mut batch = sled::Batch::default();
        for (seq, entry) in (first..).zip(entries.iter_mut()) {
            entry.seq = seq;
            batch.insert(&seq.to_be_bytes(), encode(&*entry)?);
        }
        self.audit_tree().apply_batch(batch)?;
        let held =
            (first + entries.len() as u64).saturating_sub(span.first.load(Ordering::Relaxed));
        Ok(held > keep + trim_slack(keep))
    }

    /// Removes the oldest entries until at most `keep` are left; returns how many went. The
    /// span's start moves first; the removals follow (appends do not wait for them).
    pub fn trim_audit(&self, keep: u64) -> Result<u64> {
        let span = self.audit_span();
        let end = span.next.load(Ordering::Relaxed).saturating_sub(keep);
        let first = span.first.fetch_max(end, Ordering::Relaxed);
        let tree = self.audit_tree();
        let mut removed = 0;
        if end > first {
            for key in tree.range(first.to_be_bytes()..end.to_be_bytes()).keys() {
                tree.remove(key?)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Entries matching `query`, newest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        for item in self.audit_tree().iter().rev() {
            if out.len() >= query.limit {
                break;
            }
            let (_, bytes) = item?;
            let entry = decode_entry(&bytes)?;
            let wanted = query.org.as_ref().is_none_or(|org| *org == entry.org)
                && query.tool.as_ref().is_none_or(|tool| *tool == entry.tool);
            if wanted {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// How many entries the log holds now.
    pub fn audit_len(&self) -> Result<u64> {
        let span = self.audit_span();
        Ok(span.next.load(Ordering::Relaxed).saturating_sub(span.first.load(Ordering::Relaxed)))
    }
}

fn seq_of(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] =
        key.try_into().map_err(|_| Error::Corrupt("audit key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_written_before_operations_and_tokens_reads_back_as_an_execution() {
        let old = EntryV1 {
            seq: 7,
            time_ms: 1,
            org: "acme".into(),
            kind: AuditKind::Function,
            tool: "f".into(),
            action: String::new(),
            node: "n1".into(),
            success: true,
            status: 200,
            duration_ms: 2,
            input_bytes: 3,
        };
        let entry = decode_entry(&encode(&old).unwrap()).unwrap();
        assert_eq!((entry.seq, entry.tool.as_str(), entry.kind), (7, "f", AuditKind::Function));
        assert_eq!((entry.operation.as_str(), entry.token.as_str()), ("execute", ""));
        let mut new = entry.clone();
        new.operation = "delete".into();
        new.token = "tok1".into();
        assert_eq!(decode_entry(&encode(&new).unwrap()).unwrap(), new);
        assert!(decode_entry(b"\x01").is_err());
    }
}
