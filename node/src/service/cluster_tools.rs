//! The cluster-tools service (contract section 6, the seed's Org Tools Executor): registers the
//! tools of nodes outside the federation, resolves a tool to a node hosting it and that node's
//! gRPC endpoint, and calls a tool on the peers an execution plan names, failing over to the
//! next when a node cannot be reached.
//!
//! It runs nothing itself: [`Execution`](crate::service::execution) plans every call (see
//! [`candidates::plan`]) and runs local tools in the runtime; this service calls the peers of a
//! plan through its connection pool.
//!
//! Candidates are the live nodes hosting the tool: this node first (run in-process, no network
//! hop), then gridnode peers by the load in their heartbeats, then outside nodes; ties take
//! turns. A call that cannot reach its node (no connection, not a ToolExecutor there) moves on
//! to the next candidate, within `execute.max_attempts` and `execute.deadline_ms`; a tool that
//! ran and failed is the answer, never retried elsewhere (it may not be idempotent).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gridnode_proto::CallFunctionRequest;
use gridnode_store::{ClusterLocalTool, ID_RULE, JsonMap, Page, Record};
use serde_json::Value;

use crate::config::{ExecuteSettings, RESERVED_NODE_IDS};
use crate::error::{Error, Result};
use crate::resolve::Chain;
use crate::runtime::spec::InputValidator;
use crate::runtime::{CallOutcome, Input};
use crate::service::cluster::Cluster;
use crate::service::fresh::Fresh;
use crate::service::{HostedTool, Registry};

pub mod candidates;
pub mod pool;

use candidates::{Candidate, Failover, Validator};
use pool::{CallError, Pool};

/// Tool lookups cached at most (past this, stale entries are dropped).
const MAX_CACHED_HOSTS: usize = 4096;
/// The longest tool name echoed in a message.
const MAX_ECHO: usize = 128;

/// The records of a tool, each with its compiled input spec.
type Hosts = Vec<(HostedTool, Validator)>;
/// `(tool, pinned node)` → its hosts, while the store has not changed since they were read.
type HostsCache = Fresh<(String, Option<String>), Arc<Hosts>>;

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterTools {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    cluster: Cluster,
    chain: Chain,
    pool: Pool,
    settings: ExecuteSettings,
    /// Hosts of a tool (or of a tool on one node), read at a store sequence number: valid
    /// while the store has committed nothing since. Spares the store a read per call.
    hosts: HostsCache,
    /// Turns among equally loaded candidates.
    turn: AtomicUsize,
    stats: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    local_calls: AtomicU64,
    remote_calls: AtomicU64,
    failovers: AtomicU64,
}

/// Calls made so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecuteStats {
    /// Run in this node's runtime.
    pub local_calls: u64,
    /// Sent to another node over gRPC (each attempt).
    pub remote_calls: u64,
    /// Attempts that could not reach their node, so the next candidate was tried.
    pub failovers: u64,
}

/// Where a tool would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub endpoint: String,
    pub node_id: String,
}

impl ClusterTools {
    pub fn new(
        registry: Registry,
        cluster: Cluster,
        chain: Chain,
        settings: ExecuteSettings,
        max_output_bytes: usize,
        member_proof: crate::grpc::MemberProof,
        tls: Option<&crate::tls::Tls>,
    ) -> ClusterTools {
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let tls = tls.map(crate::tls::Tls::grpc_client);
        let pool = Pool::new(connect_timeout, max_output_bytes, member_proof, tls);
        ClusterTools {
            inner: Arc::new(Inner {
                registry,
                cluster,
                chain,
                pool,
                settings,
                hosts: Fresh::new(MAX_CACHED_HOSTS),
                turn: AtomicUsize::new(0),
                stats: Counters::default(),
            }),
        }
    }

    pub fn stats(&self) -> ExecuteStats {
        let stats = &self.inner.stats;
        ExecuteStats {
            local_calls: stats.local_calls.load(Ordering::Relaxed),
            remote_calls: stats.remote_calls.load(Ordering::Relaxed),
            failovers: stats.failovers.load(Ordering::Relaxed),
        }
    }

    /// The resolver chain, for callers that resolve nodes themselves (benchmarks).
    pub fn chain(&self) -> &Chain {
        &self.inner.chain
    }

    /// Node-local tool records, all or one node's, each with its `alive` flag
    /// (`GET /cluster-tools`, `GET /cluster-tools/{node_id}`).
    pub async fn list(&self, node_id: Option<String>, page: Page) -> Result<Vec<Value>> {
        let records = self.inner.registry.cluster_tools(node_id, page).await?;
        Ok(records.into_iter().map(|hosted| self.with_liveness(hosted)).collect())
    }

    /// One node-local tool record with its `alive` flag (`GET /cluster-tools/{node_id}/{name}`).
    pub async fn get(&self, node_id: String, name: String) -> Result<Value> {
        Ok(self.with_liveness(self.inner.registry.cluster_tool(node_id, name).await?))
    }

    /// A record with its `alive` flag (see [`Cluster::is_alive`]).
    fn with_liveness(&self, hosted: HostedTool) -> Value {
        let alive = self.inner.cluster.is_alive(&hosted.record.node_id, &hosted.written_by);
        let mut value = serde_json::to_value(hosted.record).unwrap_or_default();
        if let Value::Object(fields) = &mut value {
            fields.insert("alive".into(), Value::Bool(alive));
        }
        value
    }

    /// Registers a tool of a node outside the federation (`POST /cluster-tools`). The body
    /// needs `name`, `node_id` and `description`; `input_spec` must compile.
    /// Returns the record's key (`node_id/name`).
    pub async fn register(&self, body: Value) -> Result<String> {
        let Value::Object(fields) = &body else {
            return Err(Error::BadRequest(
                "expected a json object with name, node_id, description, and optionally \
                 input_spec and metadata"
                    .into(),
            ));
        };
        for field in ["name", "node_id", "description"] {
            if !fields.contains_key(field) {
                return Err(Error::BadRequest(format!("missing field '{field}'")));
            }
        }
        let record: ClusterLocalTool = serde_json::from_value(body)
            .map_err(|e| Error::BadRequest(format!("invalid tool record: {e}")))?;
        record.validate()?;
        if RESERVED_NODE_IDS.contains(&record.node_id.as_str()) {
            return Err(Error::BadRequest(format!(
                "'{}' cannot be a node id: it names a route under /cluster-tools",
                record.node_id
            )));
        }
        self.check_writable(&record.node_id, None)?;
        check_spec(&record.input_spec)?;
        self.inner
            .registry
            .blocking(move |store| {
                store.create(&record)?;
                Ok(record.id().into_owned())
            })
            .await
    }

    /// Changes an outside node's tool record (`PUT /cluster-tools/{node_id}/{name}`):
    /// `description`, `input_spec` and `metadata`; `name` and `node_id` may be given unchanged.
    pub async fn update(&self, node_id: String, name: String, patch: JsonMap) -> Result<()> {
        for (field, given) in [("name", &name), ("node_id", &node_id)] {
            if let Some(value) = patch.get(field)
                && value.as_str() != Some(given.as_str())
            {
                return Err(Error::BadRequest(format!(
                    "{field} is immutable: delete the tool and register it again under the new {field}"
                )));
            }
        }
        let hosted = self.inner.registry.cluster_tool(node_id.clone(), name.clone()).await?;
        self.check_writable(&node_id, Some(&hosted.written_by))?;
        if let Some(spec) = patch.get("input_spec") {
            match spec {
                Value::Object(spec) => check_spec(spec)?,
                Value::Null => {}
                _ => return Err(Error::BadRequest("input_spec must be a json object".into())),
            }
        }
        let key = ClusterLocalTool::key(&node_id, &name);
        self.inner
            .registry
            .blocking(move |store| {
                store.update::<ClusterLocalTool>(&key, |current| {
                    super::patched(current, &patch, "tool")
                })?;
                Ok(())
            })
            .await
    }

    /// Removes an outside node's tool record (`DELETE /cluster-tools/{node_id}/{name}`).
    pub async fn remove(&self, node_id: String, name: String) -> Result<()> {
        let hosted = self.inner.registry.cluster_tool(node_id.clone(), name.clone()).await?;
        self.check_writable(&node_id, Some(&hosted.written_by))?;
        let key = ClusterLocalTool::key(&node_id, &name);
        self.inner
            .registry
            .blocking(move |store| {
                store.delete::<ClusterLocalTool>(&key)?;
                Ok(())
            })
            .await
    }

    /// A gridnode node's records come from its runtime and only it writes them; REST writes
    /// are for nodes outside the federation.
    fn check_writable(&self, node_id: &str, written_by: Option<&str>) -> Result<()> {
        let cluster = &self.inner.cluster;
        if node_id == cluster.node_id() {
            return Err(Error::Forbidden(format!(
                "node '{node_id}' is this gridnode node: its tools are the built-ins and the \
                 process tools of its tools dir; add a folder there instead"
            )));
        }
        if cluster.federation().liveness(node_id).is_some() || written_by == Some(node_id) {
            return Err(Error::Forbidden(format!(
                "node '{node_id}' is a gridnode node: only it announces its tools; add the tool \
                 to that node's tools dir"
            )));
        }
        Ok(())
    }

    /// The node that would run `tool` now, and its gRPC endpoint (`POST /cluster-tools/resolve`).
    pub async fn resolve(&self, tool: &str, pin: Option<&str>) -> Result<Resolution> {
        let candidates = self.candidates(tool, pin, "in database").await?;
        let mut failure = None;
        for candidate in &candidates {
            let node_id = candidate.node_id().to_owned();
            if candidate.local {
                let endpoint = self.inner.cluster.advertise_grpc().to_owned();
                return Ok(Resolution { endpoint, node_id });
            }
            match self.inner.chain.resolve(&node_id).await {
                Ok(resolved) => return Ok(Resolution { endpoint: resolved.endpoint, node_id }),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        Err(failure.map_or_else(|| self.no_live_node(tool, pin), Error::Resolve))
    }

    /// Counts a cluster tool's call that execution runs on this node.
    pub(crate) fn count_local(&self) {
        self.inner.stats.local_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls the peers of a failover plan in order (execution made the plan and checked the
    /// input). A node that cannot be reached makes way for the next, within
    /// `execute.max_attempts` and `execute.deadline_ms`; a node that got the request answers.
    pub(crate) async fn call_peers(&self, plan: &Failover, input: &Input) -> Result<CallOutcome> {
        let inner = &self.inner;
        let tool = plan.tool.as_str();
        let deadline = Instant::now() + Duration::from_millis(inner.settings.deadline_ms);
        let mut failures = plan.skipped.clone();
        let mut unresolved = None;
        let mut reached_none = false;
        let mut attempts = 0;
        for node_id in &plan.nodes {
            if attempts == inner.settings.max_attempts {
                failures.push(format!("{node_id}: not tried, execute.max_attempts reached"));
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let endpoint = match tokio::time::timeout(left, inner.chain.resolve(node_id)).await {
                Ok(Ok(resolved)) => resolved.endpoint,
                Ok(Err(error)) => {
                    failures.push(format!("{node_id}: {error}"));
                    unresolved.get_or_insert(error);
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{node_id}: not resolved before the deadline"));
                    reached_none = true;
                    break;
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                failures.push(format!("{node_id}: not tried, the deadline passed"));
                reached_none = true;
                break;
            }
            attempts += 1;
            let timeout = Duration::from_millis(inner.settings.call_timeout_ms).min(left);
            inner.stats.remote_calls.fetch_add(1, Ordering::Relaxed);
            let request =
                CallFunctionRequest { tool_name: tool.to_owned(), input: input.bytes().to_vec() };
            let started = Instant::now();
            match inner.pool.call(&endpoint, request, inner.cluster.node_id(), timeout).await {
                Ok(response) => {
                    inner.cluster.mark_reachable(node_id);
                    return Ok(answered(node_id, &endpoint, response, started.elapsed()));
                }
                Err(CallError::Unreached(why)) => {
                    tracing::warn!(%node_id, %endpoint, %why, "node unreachable; trying the next");
                    inner.stats.failovers.fetch_add(1, Ordering::Relaxed);
                    inner.cluster.mark_unreachable(node_id);
                    inner.pool.evict(&endpoint);
                    inner.chain.evict(node_id, &endpoint);
                    failures.push(format!("{node_id} at {endpoint}: {why}"));
                    reached_none = true;
                }
                Err(CallError::Failed(why)) => {
                    // The request reached the node: it may have run; not retried elsewhere. Its
                    // connection may be the problem (half-open): the next call connects afresh.
                    inner.pool.evict(&endpoint);
                    return Err(Error::Unreachable(format!(
                        "node '{node_id}' at {endpoint} did not complete the call to '{}': {why}",
                        echo(tool)
                    )));
                }
            }
        }
        match unresolved {
            Some(error) if !reached_none => Err(Error::Resolve(error)),
            _ => Err(Error::Unreachable(format!(
                "no node hosting '{}' could be reached ({})",
                echo(tool),
                failures.join("; ")
            ))),
        }
    }

    /// The least-loaded live node hosting `tool` and its load (nodes outside the federation
    /// report none); `None` when no live node with a load hosts it. Selection ranks by it.
    pub async fn least_loaded(&self, tool: &str) -> Option<(String, gridnode_federation::Load)> {
        let candidates = self.candidates(tool, None, "").await.ok()?;
        candidates
            .into_iter()
            .filter_map(|c| c.load.clone().map(|load| (c.node_id().to_owned(), load)))
            .min_by_key(|(node, load)| (candidates::load_rank(load), node.clone()))
    }

    /// The live nodes hosting `tool` (or only `pin`), best first. No record at all is a 404
    /// saying where nothing was found.
    pub(crate) async fn candidates(
        &self,
        tool: &str,
        pin: Option<&str>,
        place: &str,
    ) -> Result<Vec<Candidate>> {
        // A name no record can have is refused before any lookup (and never cached).
        gridnode_store::validate_id("tool", tool).map_err(|_| {
            Error::BadRequest(format!("invalid tool_name '{}': names {ID_RULE}", echo(tool)))
        })?;
        if let Some(node) = pin {
            gridnode_store::validate_id("node", node).map_err(|_| {
                Error::BadRequest(format!("invalid node_id '{}': names {ID_RULE}", echo(node)))
            })?;
        }
        let hosts = self.hosts(tool, pin).await?;
        if hosts.is_empty() {
            return Err(Error::NotFound(match pin {
                None => format!("Tool '{}' not found {place}", echo(tool)),
                Some(node) => {
                    format!("Tool '{}' not found {place} for node '{}'", echo(tool), echo(node))
                }
            }));
        }
        let cluster = &self.inner.cluster;
        let me = cluster.node_id();
        let live = hosts
            .iter()
            .filter_map(|(hosted, validator)| {
                let local = hosted.record.node_id == me;
                let standing = cluster.standing(&hosted.record.node_id, &hosted.written_by);
                (local || standing.alive).then(|| Candidate {
                    hosted: hosted.clone(),
                    validator: validator.clone(),
                    local,
                    load: standing.load,
                })
            })
            .collect();
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        Ok(candidates::order(live, turn))
    }

    /// The records of `tool` (on `pin` only, when given), from the cache while the store has
    /// not changed since they were read.
    async fn hosts(&self, tool: &str, pin: Option<&str>) -> Result<Arc<Hosts>> {
        let key = (tool.to_owned(), pin.map(str::to_owned));
        let seq = self.inner.registry.store().last_seq();
        if let Some(hosts) = self.inner.hosts.get(&key, seq) {
            return Ok(hosts);
        }
        let records = self.inner.registry.hosts_of(key.0.clone(), key.1.clone()).await?;
        let hosts: Arc<Hosts> = Arc::new(
            records
                .into_iter()
                .map(|hosted| {
                    let validator = Arc::new(
                        InputValidator::compile(&hosted.record.input_spec)
                            .map_err(|e| e.to_string()),
                    );
                    (hosted, validator)
                })
                .collect(),
        );
        if !hosts.is_empty() {
            self.inner.hosts.insert(key, seq, hosts.clone());
        }
        Ok(hosts)
    }

    pub(crate) fn no_live_node(&self, tool: &str, pin: Option<&str>) -> Error {
        Error::Unavailable(match pin {
            None => format!(
                "no live node hosts '{}': every node it is registered on is silent or unreachable (see GET /cluster-tools and GET /peers)",
                echo(tool)
            ),
            Some(node) => format!(
                "node '{}' hosts '{}' but is not alive now (see GET /peers)",
                echo(node),
                echo(tool)
            ),
        })
    }
}

/// A remote node's answer, its metadata completed with who ran it and how long the call took.
fn answered(
    node_id: &str,
    endpoint: &str,
    response: gridnode_proto::CallFunctionResponse,
    took: Duration,
) -> CallOutcome {
    let mut metadata: BTreeMap<String, String> = response.metadata.into_iter().collect();
    match metadata.get("node_id") {
        None => {
            metadata.insert("node_id".into(), node_id.to_owned());
        }
        Some(answering) if answering != node_id => {
            tracing::warn!(%node_id, %endpoint, %answering, "another node answered: check the endpoint its resolver gives");
        }
        Some(_) => {}
    }
    metadata.entry("duration_ms".into()).or_insert_with(|| took.as_millis().to_string());
    CallOutcome {
        success: response.success,
        output: response.output,
        error: response.error,
        metadata,
    }
}

fn check_spec(spec: &JsonMap) -> Result<()> {
    InputValidator::compile(spec)
        .map(drop)
        .map_err(|e| Error::BadRequest(format!("input_spec: {e}")))
}

/// Untrusted text cut to a length fit for a message.
fn echo(text: &str) -> String {
    text.chars().take(MAX_ECHO).collect()
}
