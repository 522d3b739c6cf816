//! The audit trail (contract section 11): one entry per execution asked of this node, whatever
//! its outcome — refused by an allow-list, invalid input, failed, run, or abandoned by a caller
//! that went away mid-call — with the org, the tool, the node that ran it, the status and the
//! input's size; never the input, the output, an error text or a credential.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Instant;

use gridnode_store::{AuditEntry, AuditKind, AuditQuery, ID_MAX_LEN, now_ms};

use crate::error::{Error, Result};
use crate::runtime::CallOutcome;
use gridnode_store::Store;

/// The status recorded for an execution whose caller went away before it finished (nginx's
/// "client closed request").
pub const CANCELLED: u16 = 499;

/// Entries waiting for the writer at most; past it, an execution writes its own entry.
const QUEUED: usize = 16 * 1024;
/// Entries the writer appends in one batch at most.
const MAX_BATCH: usize = 1024;
/// How long the writer lets entries gather after a batch (entries are visible to
/// [`Audit::entries`] at once all the same: it waits for the writer).
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    store: Store,
    keep: u64,
    metrics: crate::metrics::Metrics,
    /// The log's writer: a thread that appends what arrives, in batches (a request hands its
    /// entry over and goes on), and trims the oldest entries when the log is over `keep`.
    writer: SyncSender<Job>,
    /// The writer thread, joined by [`Audit::close`].
    thread: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Set by [`Audit::close`] before it stops the writer: from then on entries are written in
    /// place (a hand-over is made under the read lock, so none lands behind the stop).
    closed: std::sync::Arc<std::sync::RwLock<bool>>,
}

#[derive(Debug)]
enum Job {
    Append(AuditEntry),
    /// Answered once every entry sent before it is in the log.
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// Write what came before, then stop.
    Stop,
}

/// A registry write, as [`Audit::write`] records it.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub kind: AuditKind,
    /// The record's id (empty when the request named none and the write failed).
    pub id: &'a str,
    pub org: Option<&'a str>,
    /// `create`, `update` or `delete`.
    pub operation: &'static str,
    pub token: Option<&'a str>,
    pub status: u16,
    pub duration_ms: u64,
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
        let (writer, jobs) = std::sync::mpsc::sync_channel(QUEUED);
        let log = store.clone();
        let spawned = std::thread::Builder::new()
            .name("gridnode-audit".into())
            .spawn(move || write(&log, keep, &jobs));
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(error) => {
                // The jobs' receiver is gone with the closure: every entry is written in place.
                tracing::error!(%error, "no audit writer thread: executions write their own entries");
                None
            }
        };
        let (thread, closed) = (std::sync::Arc::new(thread.into()), std::sync::Arc::default());
        Audit { store, keep, metrics, writer, thread, closed }
    }

    /// Writes every entry handed over, then stops the writer (its store handle released);
    /// entries that come later are written in place. Shutdown calls it.
    pub async fn close(&self) {
        let (writer, thread, closed) =
            (self.writer.clone(), self.thread.clone(), self.closed.clone());
        let joined = tokio::task::spawn_blocking(move || {
            *closed.write().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            let _ = writer.send(Job::Stop);
            let handle = thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            handle.map(std::thread::JoinHandle::join)
        });
        if let Ok(Some(Err(_))) = joined.await {
            tracing::error!("the audit writer panicked");
        }
    }

    /// Starts the entry of one execution. Names are cut to the id length, so a hostile name
    /// cannot make entries large.
    pub fn start(
        &self,
        kind: AuditKind,
        tool: &str,
        org: Option<&str>,
        action: Option<&str>,
        token: Option<&str>,
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
                operation: "execute".into(),
                token: cut(token.unwrap_or_default()),
            }),
            started: Instant::now(),
        }
    }

    /// Records a registry write (contract section 12): which record, how, by which token, and
    /// the status it was answered with.
    pub fn write(&self, write: Write<'_>) {
        let cut = |text: &str| text.chars().take(ID_MAX_LEN).collect::<String>();
        self.append(AuditEntry {
            seq: 0,
            time_ms: now_ms(),
            org: cut(write.org.unwrap_or_default()),
            kind: write.kind,
            tool: cut(write.id),
            action: String::new(),
            node: String::new(),
            success: (200..300).contains(&write.status),
            status: write.status,
            duration_ms: write.duration_ms,
            input_bytes: 0,
            operation: write.operation.into(),
            token: cut(write.token.unwrap_or_default()),
        });
    }

    /// Hands an entry to the writer. When the writer is behind by [`QUEUED`] entries (or
    /// gone), the entry is written here: a sled insert without a flush, like the writer's
    /// (see `gridnode_store::audit`). A failure to append is logged, never the caller's error.
    fn append(&self, entry: AuditEntry) {
        if entry.operation == "execute" {
            self.metrics.execution(entry.kind.name(), entry.status);
        }
        let entry = {
            let closed = self.closed.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *closed {
                Job::Append(entry)
            } else {
                match self.writer.try_send(Job::Append(entry)) {
                    Ok(()) => return,
                    Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
                }
            }
        };
        if let Job::Append(entry) = entry
            && let Err(error) = self.store.append_audit(&entry, self.keep)
        {
            tracing::error!(%error, tool = %entry.tool, "audit entry not written");
        }
    }

    /// Waits until every entry handed over so far is in the log.
    async fn written(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        let writer = self.writer.clone();
        // A blocking send (the queue may be full), off the async threads.
        let sent = tokio::task::spawn_blocking(move || writer.send(Job::Barrier(done)).is_ok());
        if sent.await.unwrap_or(false) {
            let _ = written.await;
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
        self.written().await;
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
            self.audit.append(entry);
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
            self.audit.append(entry);
        }
    }
}

/// The writer: appends what arrives in batches of up to [`MAX_BATCH`], trims the log when it
/// is over `keep` (plus the slack), answers barriers once what came before them is written, and
/// ends when told to stop or when the last [`Audit`] is dropped.
fn write(store: &Store, keep: u64, jobs: &Receiver<Job>) {
    let mut entries = Vec::with_capacity(MAX_BATCH);
    let mut barriers = Vec::new();
    let mut stop = false;
    loop {
        // Once told to stop, what is still queued is written, then the writer ends.
        let first = if stop { jobs.try_recv().ok() } else { jobs.recv().ok() };
        let Some(first) = first else { return };
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Append(entry) => entries.push(entry),
                Job::Barrier(done) => barriers.push(done),
                Job::Stop => stop = true,
            }
            next = if entries.len() < MAX_BATCH { jobs.try_recv().ok() } else { None };
        }
        if !entries.is_empty() {
            match store.append_audit_batch(&mut entries, keep) {
                Ok(true) => {
                    if let Err(error) = store.trim_audit(keep) {
                        tracing::error!(%error, "audit log not trimmed");
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, entries = entries.len(), "audit entries not written");
                }
            }
            entries.clear();
        }
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
        // What arrives while the writer waits goes into the next batch: a sled insert costs
        // tens of µs each, so appends are grouped rather than woken for one by one.
        if !stop {
            std::thread::sleep(BATCH_WINDOW);
        }
    }
}
