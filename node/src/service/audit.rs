//! The audit trail (contract section 11): one entry per execution asked of this node, whatever
//! its outcome — refused by an allow-list, invalid input, failed, run, or abandoned by a caller
//! that went away mid-call — with the org, the tool, the node that ran it, the status and the
//! input's size; never the input, the output, an error text or a credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use gridnode_store::{AuditEntry, AuditKind, AuditQuery, ID_MAX_LEN, now_ms};

use crate::error::{Error, Result};
use crate::runtime::CallOutcome;
use gridnode_store::Store;

/// The status recorded for an execution whose caller went away before it finished (nginx's
/// "client closed request").
pub const CANCELLED: u16 = 499;

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    store: Store,
    keep: u64,
    metrics: crate::metrics::Metrics,
    /// A trim is running on the blocking pool.
    trimming: Arc<AtomicBool>,
}

/// An execution under way: finish it with its result; dropped unfinished (the caller went
/// away and the request was cancelled), it is recorded as cancelled.
#[derive(Debug)]
pub struct Pending {
    audit: Audit,
    entry: Option<AuditEntry>,
    started: Instant,
}

impl Audit {
    /// A log of at most `keep` entries; every entry is also counted in `metrics`
    /// (`gridnode_executions_total`).
    pub fn new(store: Store, keep: u64, metrics: crate::metrics::Metrics) -> Audit {
        Audit { store, keep, metrics, trimming: Arc::default() }
    }

    /// Starts the entry of one execution. Names are cut to the id length, so a hostile name
    /// cannot make entries large.
    pub fn start(
        &self,
        kind: AuditKind,
        tool: &str,
        org: Option<&str>,
        action: Option<&str>,
        input_bytes: usize,
    ) -> Pending {
        let cut = |text: &str| text.chars().take(ID_MAX_LEN).collect::<String>();
        Pending {
            audit: self.clone(),
            entry: Some(AuditEntry {
                seq: 0,
                time_ms: now_ms(),
                org: cut(org.unwrap_or_default()),
                kind,
                tool: cut(tool),
                action: cut(action.unwrap_or_default()),
                node: String::new(),
                success: false,
                status: CANCELLED,
                duration_ms: 0,
                input_bytes: input_bytes as u64,
            }),
            started: Instant::now(),
        }
    }

    /// Appends an entry: a sled insert without a flush (see `gridnode_store::audit`), cheap
    /// enough for the request's task. Removing the oldest entries, a batch at a time, runs on
    /// the blocking pool. A failure to append is logged, never the caller's error.
    fn append(&self, entry: &AuditEntry) {
        let kind = match entry.kind {
            AuditKind::Tool => "tool",
            AuditKind::Function => "function",
            AuditKind::ClusterTool => "cluster_tool",
        };
        self.metrics.execution(kind, entry.status);
        match self.store.append_audit(entry, self.keep) {
            Ok((_, over)) if over && !self.trimming.swap(true, Ordering::AcqRel) => {
                let (store, keep, trimming) =
                    (self.store.clone(), self.keep, self.trimming.clone());
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = store.trim_audit(keep) {
                        tracing::error!(%error, "audit log not trimmed");
                    }
                    trimming.store(false, Ordering::Release);
                });
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, tool = %entry.tool, "audit entry not written"),
        }
    }

    /// Entries, newest first (`GET /audit?limit=&org=&tool=`), narrowed by org and tool (an
    /// empty one narrows nothing). The log pages by `limit` only: it is read newest first and
    /// trimmed from the other end, so an offset would point at different entries each time.
    pub async fn entries(
        &self,
        org: Option<String>,
        tool: Option<String>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<Vec<AuditEntry>> {
        if offset.is_some() {
            return Err(Error::BadRequest(
                "the audit log pages by limit only (newest first); narrow it with org= and tool="
                    .into(),
            ));
        }
        let given = |text: Option<String>| text.filter(|text| !text.is_empty());
        let limit = crate::service::page(limit, None)?.limit;
        let query = AuditQuery { org: given(org), tool: given(tool), limit };
        crate::service::blocking(&self.store, move |store| store.audit(&query).map_err(Error::from))
            .await
    }
}

impl Pending {
    /// Records the execution's outcome.
    pub fn finish(mut self, result: Result<&CallOutcome, &Error>) {
        if let Some(mut entry) = self.entry.take() {
            match result {
                Ok(outcome) => {
                    entry.success = outcome.success;
                    entry.status = if outcome.success { 200 } else { 500 };
                    entry.node = outcome.metadata.get("node_id").cloned().unwrap_or_default();
                }
                Err(error) => entry.status = error.status(),
            }
            entry.duration_ms = self.started.elapsed().as_millis() as u64;
            self.audit.append(&entry);
        }
    }
}

impl Pending {
    /// Names the tool once it is known (the one an action's selector chose).
    pub fn names(&mut self, tool: &str) {
        if let Some(entry) = &mut self.entry {
            entry.tool = tool.chars().take(ID_MAX_LEN).collect();
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.duration_ms = self.started.elapsed().as_millis() as u64;
            self.audit.append(&entry);
        }
    }
}
