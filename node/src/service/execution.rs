//! Execute by id (contract section 11, the seed's ToolsManager): runs any registry tool or
//! function, loading it on demand, after the org's allow-list and the input have been checked,
//! and writes one audit entry per execution. Also the front door of cluster-tool execution, so
//! that every path that runs a tool enforces allow-lists and is audited the same way.
//!
//! How a registry tool runs is read from its record: `tool_system_function_rpc_id` → the
//! cluster tool of that name, on the best live node; `tool_service_url` → its input POSTed as
//! JSON there; `tool_source_code_link` (`…/blobs/<sha256>`) → its `tool.zip`, fetched, checked,
//! unpacked once and run as a process tool. `tool_metadata.runtime` overrides the guess.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gridnode_store::{
    AuditKind, Collection, FunctionEntry, Hlc, JsonMap, Record, Store, ToolEntry, is_sha256_hex,
};
use serde_json::Value;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::runtime::process::{Prepared, ProcessSettings, ProcessTool};
use crate::runtime::spec::InputValidator;
use crate::runtime::{CallOutcome, Tool};
use crate::service::Registry;
use crate::service::audit::Audit;
use crate::service::blobs::Blobs;
use crate::service::bundle_cache::BundleCache;
use crate::service::cluster_tools::ClusterTools;
use crate::service::orgs::Orgs;
use crate::service::remote::Remote;

/// Loaded tools kept at most (past this the cache starts over).
const MAX_LOADED: usize = 4096;

/// Which registry an id is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Tool,
    Function,
}

/// Who asks, for the allow-list and the audit log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub org: Option<&'a str>,
    /// The action the tool was selected through.
    pub action: Option<&'a str>,
}

/// How a registry tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    System,
    Remote,
    Bundle,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::System => "system",
            Runtime::Remote => "remote",
            Runtime::Bundle => "bundle",
        }
    }

    /// The runtime a tool record asks for (contract section 11).
    pub fn of(tool: &ToolEntry) -> Result<Runtime> {
        Runtime::from_fields(
            &tool.tool_id,
            tool.tool_metadata.get("runtime"),
            [
                &tool.tool_system_function_rpc_id,
                &tool.tool_service_url,
                &tool.tool_source_code_link,
            ],
        )
    }

    /// The same from a tool's JSON (the selection catalog's view).
    pub fn of_json(tool: &Value) -> Result<Runtime> {
        let text = |field: &str| tool.get(field).and_then(Value::as_str).unwrap_or_default();
        Runtime::from_fields(
            text("tool_id"),
            tool.get("tool_metadata").and_then(|m| m.get("runtime")),
            [
                text("tool_system_function_rpc_id"),
                text("tool_service_url"),
                text("tool_source_code_link"),
            ],
        )
    }

    /// `tool_metadata.runtime` when set, else the first of `[rpc id, service url, code link]`
    /// that is set.
    fn from_fields(
        id: &str,
        runtime: Option<&Value>,
        [rpc, url, link]: [&str; 3],
    ) -> Result<Runtime> {
        match runtime {
            Some(Value::String(name)) => match name.as_str() {
                "system" => Ok(Runtime::System),
                "remote" => Ok(Runtime::Remote),
                "bundle" => Ok(Runtime::Bundle),
                other => Err(Error::BadRequest(format!(
                    "tool '{id}' has tool_metadata.runtime '{}': use system, remote or bundle",
                    other.chars().take(40).collect::<String>()
                ))),
            },
            Some(_) => Err(Error::BadRequest(format!(
                "tool '{id}' has a tool_metadata.runtime that is not a string: use \"system\", \"remote\" or \"bundle\""
            ))),
            None if !rpc.is_empty() => Ok(Runtime::System),
            None if !url.is_empty() => Ok(Runtime::Remote),
            None if !link.is_empty() => Ok(Runtime::Bundle),
            None => Err(Error::BadRequest(format!(
                "tool '{id}' cannot run: its record sets none of tool_system_function_rpc_id, \
                 tool_service_url or tool_source_code_link (upload it with its tool.zip)"
            ))),
        }
    }
}

/// A tool ready to run: how, and its compiled input spec.
#[derive(Debug)]
struct Loaded {
    how: How,
    validator: InputValidator,
}

impl How {
    fn name(&self) -> &'static str {
        match self {
            How::System(_) => "system",
            How::Remote(_) => "remote",
            How::Bundle(_) => "bundle",
        }
    }
}

#[derive(Debug)]
enum How {
    /// The cluster tool of this name.
    System(String),
    /// POST to this URL.
    Remote(String),
    Bundle(Bundle),
}

#[derive(Debug)]
struct Bundle {
    sha256: String,
    /// The base URL of the node that handed out the link: asked first for the blob.
    origin: String,
    timeout: Duration,
    env: Vec<(String, String)>,
    /// Built on the first call, once the bundle is unpacked.
    tool: Mutex<Option<Arc<ProcessTool>>>,
}

/// `(collection, id)` → the version loaded, the store sequence when last checked, the tool.
type LoadedCache = HashMap<(Collection, String), (Hlc, u64, Arc<Loaded>)>;

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Execution {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    cluster_tools: ClusterTools,
    orgs: Orgs,
    audit: Audit,
    blobs: Blobs,
    bundles: BundleCache,
    remote: Remote,
    process: ProcessSettings,
    metrics: crate::metrics::Metrics,
    loaded: Mutex<LoadedCache>,
}

/// What the execution service is built from.
#[derive(Debug)]
pub struct Parts {
    pub registry: Registry,
    pub cluster_tools: ClusterTools,
    pub orgs: Orgs,
    pub audit: Audit,
    pub blobs: Blobs,
    pub bundles: BundleCache,
    pub remote: Remote,
    /// Limits of bundle tools (their working directories are under `work_root`).
    pub process: ProcessSettings,
    /// Where bundle and remote tool calls are counted.
    pub metrics: crate::metrics::Metrics,
}

impl Execution {
    pub fn new(parts: Parts) -> Execution {
        Execution {
            inner: Arc::new(Inner {
                registry: parts.registry,
                cluster_tools: parts.cluster_tools,
                orgs: parts.orgs,
                audit: parts.audit,
                blobs: parts.blobs,
                bundles: parts.bundles,
                remote: parts.remote,
                process: parts.process,
                metrics: parts.metrics,
                loaded: Mutex::default(),
            }),
        }
    }

    pub fn orgs(&self) -> &Orgs {
        &self.inner.orgs
    }

    pub fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    pub fn bundles(&self) -> &BundleCache {
        &self.inner.bundles
    }

    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// Runs registry tool or function `id` (`POST /tools/{id}/execute`,
    /// `POST /functions/{id}/execute`).
    pub async fn by_id(
        &self,
        kind: Registered,
        caller: Caller<'_>,
        id: &str,
        input: &[u8],
    ) -> Result<CallOutcome> {
        let audit_kind = match kind {
            Registered::Tool => AuditKind::Tool,
            Registered::Function => AuditKind::Function,
        };
        let pending =
            self.inner.audit.start(audit_kind, id, caller.org, caller.action, input.len());
        let result = match kind {
            Registered::Tool => self.run::<ToolEntry>(caller, id, input).await,
            Registered::Function => self.run::<FunctionEntry>(caller, id, input).await,
        };
        pending.finish(result.as_ref());
        result
    }

    /// Runs a cluster tool on the best live node (`POST /cluster-tools/execute`).
    pub async fn cluster_tool(
        &self,
        caller: Caller<'_>,
        name: &str,
        input: &[u8],
        pin: Option<&str>,
    ) -> Result<CallOutcome> {
        let pending =
            self.inner.audit.start(AuditKind::ClusterTool, name, caller.org, None, input.len());
        let result = async {
            self.inner.orgs.check(caller.org, name).await?;
            self.inner.cluster_tools.execute(name, input, pin).await
        }
        .await;
        pending.finish(result.as_ref());
        result
    }

    async fn run<R: Runnable>(
        &self,
        caller: Caller<'_>,
        id: &str,
        input: &[u8],
    ) -> Result<CallOutcome> {
        gridnode_store::validate_id(R::COLLECTION.kind(), id)?;
        // The allow-list is checked before anything is read, resolved or run.
        self.inner.orgs.check(caller.org, id).await?;
        let loaded = self.load::<R>(id).await?;
        loaded
            .validator
            .validate(input)
            .map_err(|why| Error::BadRequest(format!("invalid input for '{id}': {why}")))?;
        let span = tracing::debug_span!("tool_call", tool = %id, runtime = loaded.how.name());
        let result = match &loaded.how {
            // Counted by the runtime of the node that runs it.
            How::System(name) => {
                return self.inner.cluster_tools.execute(name, input, None).instrument(span).await;
            }
            How::Remote(url) => {
                let what = format!("{} '{id}'", R::COLLECTION.kind());
                self.inner.remote.call(&what, url, input).instrument(span).await.map(
                    |mut outcome| {
                        outcome.metadata.insert("node_id".into(), self.node_id().to_owned());
                        outcome
                    },
                )
            }
            How::Bundle(bundle) => self.run_bundle(id, bundle, input).instrument(span).await,
        };
        self.inner.metrics.tool_call(id, result.as_ref().is_ok_and(|outcome| outcome.success));
        result
    }

    fn node_id(&self) -> &str {
        self.inner.cluster_tools.runtime().node_id()
    }

    async fn run_bundle(&self, id: &str, bundle: &Bundle, input: &[u8]) -> Result<CallOutcome> {
        let inner = &self.inner;
        let blobs = inner.blobs.clone();
        let (sha256, origin) = (bundle.sha256.clone(), bundle.origin.clone());
        let fetch = async move {
            blobs.fetch(&sha256, Some(&origin)).await.map_err(|error| match error {
                Error::NotFound(why) => {
                    Error::Unreachable(format!("the tool's bundle could not be fetched: {why}"))
                }
                other => other,
            })
        };
        let lease = inner.bundles.acquire(&bundle.sha256, fetch).await?;
        let tool = {
            let built = bundle.tool.lock().unwrap_or_else(PoisonError::into_inner).clone();
            match built {
                Some(tool) => tool,
                None => {
                    let run = ["run", "code/run"]
                        .into_iter()
                        .map(|path| lease.dir().join(path))
                        .find(|path| path.is_file())
                        .ok_or_else(|| {
                            Error::BadRequest(format!(
                                "tool '{id}' cannot run: the bundle has no executable 'run' file at its root or in code/"
                            ))
                        })?;
                    let prepared = Prepared {
                        name: id.to_owned(),
                        run,
                        timeout: bundle.timeout,
                        env: bundle.env.clone(),
                        ..Prepared::default()
                    };
                    let tool = Arc::new(ProcessTool::prepare(prepared, &inner.process).map_err(
                        |why| Error::BadRequest(format!("tool '{id}' cannot run: {why}")),
                    )?);
                    *bundle.tool.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(tool.clone());
                    tool
                }
            }
        };
        let started = Instant::now();
        let running = inner.cluster_tools.runtime().track();
        let result = tool.call(input).await;
        drop((running, lease));
        let mut metadata = BTreeMap::new();
        metadata.insert("node_id".to_owned(), self.node_id().to_owned());
        metadata.insert("runtime".to_owned(), "bundle".to_owned());
        metadata.insert("duration_ms".to_owned(), started.elapsed().as_millis().to_string());
        Ok(match result {
            Ok(output) => CallOutcome { success: true, output, error: String::new(), metadata },
            Err(error) => CallOutcome { success: false, output: Vec::new(), error, metadata },
        })
    }

    /// The loaded form of record `id`, built again only when the record has changed.
    async fn load<R: Runnable>(&self, id: &str) -> Result<Arc<Loaded>> {
        let key = (R::COLLECTION, id.to_owned());
        let seq = self.inner.registry.store().last_seq();
        if let Some((_, at, loaded)) = self.cache().get(&key)
            && *at == seq
        {
            return Ok(loaded.clone());
        }
        let owned = id.to_owned();
        let (hlc, record) = self
            .inner
            .registry
            .blocking(move |store: &Store| {
                let envelope = store.envelope::<R>(&owned)?;
                match envelope {
                    Some(envelope) if !envelope.header.tombstone => match envelope.record {
                        Some(record) => Ok((envelope.header.hlc, record)),
                        None => Err(Error::Store(gridnode_store::Error::NotFound {
                            kind: R::COLLECTION.kind(),
                            id: owned,
                        })),
                    },
                    _ => Err(Error::Store(gridnode_store::Error::NotFound {
                        kind: R::COLLECTION.kind(),
                        id: owned,
                    })),
                }
            })
            .await?;
        let mut cache = self.cache();
        if let Some((loaded_hlc, at, loaded)) = cache.get_mut(&key)
            && *loaded_hlc == hlc
        {
            *at = seq;
            return Ok(loaded.clone());
        }
        drop(cache);
        let loaded = Arc::new(record.loaded(&self.inner.process)?);
        let mut cache = self.cache();
        if cache.len() >= MAX_LOADED {
            cache.clear();
        }
        cache.insert(key, (hlc, seq, loaded.clone()));
        Ok(loaded)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LoadedCache> {
        self.inner.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A registry record that can run.
trait Runnable: Record {
    fn loaded(&self, process: &ProcessSettings) -> Result<Loaded>;
}

impl Runnable for ToolEntry {
    fn loaded(&self, process: &ProcessSettings) -> Result<Loaded> {
        let id = &self.tool_id;
        let validator = compile(id, "tool_api_spec", &self.tool_api_spec)?;
        let how = match Runtime::of(self)? {
            Runtime::System => {
                let name = &self.tool_system_function_rpc_id;
                gridnode_store::validate_id("tool", name).map_err(|_| {
                    Error::BadRequest(format!(
                        "tool '{id}' has an invalid tool_system_function_rpc_id '{}'",
                        name.chars().take(64).collect::<String>()
                    ))
                })?;
                How::System(name.clone())
            }
            Runtime::Remote => {
                crate::service::remote::check_url(&format!("tool '{id}'"), &self.tool_service_url)?;
                How::Remote(self.tool_service_url.clone())
            }
            Runtime::Bundle => {
                let link = &self.tool_source_code_link;
                let (origin, sha256) = link
                    .rsplit_once("/blobs/")
                    .filter(|(_, sha)| is_sha256_hex(sha))
                    .ok_or_else(|| {
                        Error::BadRequest(format!(
                            "tool '{id}' cannot run: its tool_source_code_link '{}' is not a gridnode blob link \
                             (…/blobs/<sha256>); upload the tool with its tool.zip (POST /tools/upload)",
                            link.chars().take(200).collect::<String>()
                        ))
                    })?;
                let timeout = match self.tool_metadata.get("timeout_ms").and_then(Value::as_u64) {
                    Some(ms) if (1..=crate::runtime::process::MAX_TIMEOUT_MS).contains(&ms) => {
                        Duration::from_millis(ms)
                    }
                    _ => process.default_timeout,
                };
                let env = if self.default_tool_usage_credentials.is_empty() {
                    Vec::new()
                } else {
                    let json =
                        Value::Object(self.default_tool_usage_credentials.clone()).to_string();
                    vec![("GRIDNODE_CREDENTIALS".to_owned(), json)]
                };
                How::Bundle(Bundle {
                    sha256: sha256.to_owned(),
                    origin: origin.to_owned(),
                    timeout,
                    env,
                    tool: Mutex::new(None),
                })
            }
        };
        Ok(Loaded { how, validator })
    }
}

impl Runnable for FunctionEntry {
    fn loaded(&self, _process: &ProcessSettings) -> Result<Loaded> {
        let id = &self.function_id;
        let validator = compile(id, "function_api_spec", &self.function_api_spec)?;
        Ok(Loaded { how: How::Remote(function_url(self)?), validator })
    }
}

/// A function's URL: its OpenAPI spec's first server, joined with the spec's one POST path
/// when it has exactly one (else the server URL itself).
pub fn function_url(function: &FunctionEntry) -> Result<String> {
    let spec = &function.open_api_spec;
    let server = spec
        .get("servers")
        .and_then(Value::as_array)
        .and_then(|servers| servers.first())
        .and_then(|server| server.get("url"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "function '{}' cannot run: its open_api_spec has no servers[0].url",
                function.function_id
            ))
        })?;
    let posts: Vec<&String> = spec
        .get("paths")
        .and_then(Value::as_object)
        .map(|paths| {
            paths
                .iter()
                .filter(|(_, ops)| ops.get("post").is_some())
                .map(|(path, _)| path)
                .collect()
        })
        .unwrap_or_default();
    let url = match posts.as_slice() {
        [path] => format!("{}/{}", server.trim_end_matches('/'), path.trim_start_matches('/')),
        _ => server.to_owned(),
    };
    crate::service::remote::check_url(&format!("function '{}'", function.function_id), &url)?;
    Ok(url)
}

fn compile(id: &str, field: &str, spec: &JsonMap) -> Result<InputValidator> {
    InputValidator::compile(spec).map_err(|why| {
        Error::BadRequest(format!("'{id}' cannot run: its {field} is not a valid spec ({why})"))
    })
}
