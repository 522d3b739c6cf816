//! The audit trail (contract section 11): one entry per execution asked of this node, whatever
//! its outcome — refused by an allow-list, invalid input, failed, or run — with the org, the
//! tool, the node that ran it, the status and the input's size; never the input or credentials.

use std::time::Instant;

use gridnode_store::{AuditEntry, AuditKind, AuditQuery, now_ms};

use crate::error::{Error, Result};
use crate::runtime::CallOutcome;
use crate::service::Registry;

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    registry: Registry,
    keep: u64,
}

/// What an execution was, as the audit log needs it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub kind: AuditKind,
    pub tool: &'a str,
    pub org: Option<&'a str>,
    pub action: Option<&'a str>,
    pub input_bytes: usize,
    pub time_ms: u64,
    pub started: Instant,
}

impl<'a> Asked<'a> {
    pub fn now(kind: AuditKind, tool: &'a str, org: Option<&'a str>, input_bytes: usize) -> Self {
        Asked {
            kind,
            tool,
            org,
            action: None,
            input_bytes,
            time_ms: now_ms(),
            started: Instant::now(),
        }
    }
}

impl Audit {
    /// A log of at most `keep` entries.
    pub fn new(registry: Registry, keep: u64) -> Audit {
        Audit { registry, keep }
    }

    /// Appends the entry of one execution. The append is a sled insert without a flush (see
    /// `gridnode_store::audit`), cheap enough to run on the request's task; a failure to append
    /// is logged, never the caller's error.
    pub fn record(&self, asked: &Asked<'_>, result: Result<&CallOutcome, &Error>) {
        let (success, status, node) = match result {
            Ok(outcome) => (
                outcome.success,
                if outcome.success { 200 } else { 500 },
                outcome.metadata.get("node_id").cloned().unwrap_or_default(),
            ),
            Err(error) => (false, error.status(), String::new()),
        };
        let entry = AuditEntry {
            seq: 0,
            time_ms: asked.time_ms,
            org: asked.org.unwrap_or_default().to_owned(),
            kind: asked.kind,
            tool: asked.tool.to_owned(),
            action: asked.action.unwrap_or_default().to_owned(),
            node,
            success,
            status,
            duration_ms: asked.started.elapsed().as_millis() as u64,
            input_bytes: asked.input_bytes as u64,
        };
        if let Err(error) = self.registry.store().append_audit(&entry, self.keep) {
            tracing::error!(%error, tool = %entry.tool, "audit entry not written");
        }
    }

    /// Entries, newest first (`GET /audit?limit=&org=&tool=`).
    pub async fn entries(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        self.registry.blocking(move |store| store.audit(&query).map_err(Error::from)).await
    }
}
