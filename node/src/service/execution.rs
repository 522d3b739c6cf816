//! The one door through which anything runs (contract sections 6 and 11). Every transport —
//! REST, gRPC from outside clients, and agents next — calls [`Execution::call`] with who asks,
//! what to run and the input parsed once at its edge; the call then goes, always in this order:
//!
//! 1. **audit**: one entry per call, whatever its outcome (never the input, output, error text
//!    or credentials);
//! 2. **select**: an action's selector picks the tool;
//! 3. **allow-list**: the org's list is checked before anything is read, resolved or run;
//! 4. **plan** (pure): the record (compiled once per version) or the live hosts of a cluster
//!    tool become a [`Plan`] — a tool of this node, a bundle, peers in failover order, or an
//!    HTTP URL;
//! 5. **validate**, once per spec: the input remembers the specs it has passed;
//! 6. **dispatch**: this node's [`Runtime`] runs local tools and bundles, the cluster tools'
//!    pool calls peers, [`Remote`] POSTs to HTTP tools.
//!
//! The gRPC door from peers is the member hop of a plan another node has already made and
//! checked: it goes straight to the runtime (see [`crate::grpc`]).
//!
//! How a registry tool runs is read from its record: `tool_system_function_rpc_id` → the
//! cluster tool of that name, on the best live node; `tool_service_url` → its input POSTed as
//! JSON there; `tool_source_code_link` (`…/blobs/<sha256>`) → its `tool.zip`, fetched, checked,
//! unpacked once and run as a process tool. `tool_metadata.runtime` overrides the guess.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gridnode_store::{
    AuditKind, Collection, FunctionEntry, Hlc, JsonMap, Record, Store, ToolEntry, is_sha256_hex,
};
use serde_json::Value;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::runtime::process::{Prepared, ProcessSettings, ProcessTool};
use crate::runtime::spec::InputValidator;
use crate::runtime::{CallOutcome, Input, Runtime};
use crate::service::actions::Actions;
use crate::service::audit::{Audit, Pending};
use crate::service::blobs::Blobs;
use crate::service::bundle_cache::BundleCache;
use crate::service::cluster_tools::ClusterTools;
use crate::service::cluster_tools::candidates::{self, Failover};
use crate::service::orgs::Orgs;
use crate::service::remote::Remote;
use crate::service::secrets::Sealer;

/// Loaded tools kept at most (past this the cache starts over).
const MAX_LOADED: usize = 4096;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A registry tool (`POST /tools/{id}/execute`).
    Tool(&'a str),
    /// A registry function (`POST /functions/{id}/execute`).
    Function(&'a str),
    /// A cluster tool on the best live node hosting it, or on `pin` only
    /// (`POST /cluster-tools/execute`).
    ClusterTool { name: &'a str, pin: Option<&'a str> },
    /// The tool an action's selector picks (`POST /actions/{org}/{type}/execute`).
    Action { org: &'a str, action_type: &'a str, params: &'a JsonMap },
    /// A tool this node hosts, run here and nowhere else (gRPC from an outside client).
    Hosted(&'a str),
}

/// Who asks, for the allow-list and the audit log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub org: Option<&'a str>,
    /// The id of the token the request came with (never the secret).
    pub token: Option<&'a str>,
}

/// What a call answers: the tool's outcome, and the tool an action chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub outcome: CallOutcome,
    pub tool_id: Option<String>,
}

/// How one call runs, made without I/O from what was read (see the module doc).
#[derive(Debug)]
pub enum Plan<'a> {
    /// A tool this node hosts: its runtime runs it.
    Here(&'a str),
    /// A cluster tool hosted elsewhere: the nodes to try, in failover order.
    Peers(Failover),
    /// A registry tool's bundle: this node's runtime runs it.
    Bundle(&'a Bundle),
    /// An HTTP tool or function (`what`, for messages): the input is POSTed to `url`.
    Http { url: &'a str, what: String },
}

/// How a registry record runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    System,
    Remote,
    Bundle,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::System => "system",
            Kind::Remote => "remote",
            Kind::Bundle => "bundle",
        }
    }

    /// How a tool record asks to run (contract section 11).
    pub fn of(tool: &ToolEntry) -> Result<Kind> {
        Kind::from_fields(
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
    pub fn of_json(tool: &Value) -> Result<Kind> {
        let text = |field: &str| tool.get(field).and_then(Value::as_str).unwrap_or_default();
        Kind::from_fields(
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
    fn from_fields(id: &str, runtime: Option<&Value>, [rpc, url, link]: [&str; 3]) -> Result<Kind> {
        match runtime {
            Some(Value::String(name)) => match name.as_str() {
                "system" => Ok(Kind::System),
                "remote" => Ok(Kind::Remote),
                "bundle" => Ok(Kind::Bundle),
                other => Err(Error::BadRequest(format!(
                    "tool '{id}' has tool_metadata.runtime '{}': use system, remote or bundle",
                    other.chars().take(40).collect::<String>()
                ))),
            },
            Some(_) => Err(Error::BadRequest(format!(
                "tool '{id}' has a tool_metadata.runtime that is not a string: use \"system\", \"remote\" or \"bundle\""
            ))),
            None if !rpc.is_empty() => Ok(Kind::System),
            None if !url.is_empty() => Ok(Kind::Remote),
            None if !link.is_empty() => Ok(Kind::Bundle),
            None => Err(Error::BadRequest(format!(
                "tool '{id}' cannot run: its record sets none of tool_system_function_rpc_id, \
                 tool_service_url or tool_source_code_link (upload it with its tool.zip)"
            ))),
        }
    }
}

/// A registry record ready to run: its route and its compiled input spec.
#[derive(Debug)]
struct Loaded {
    route: Route,
    validator: InputValidator,
}

/// Where a registry record's calls go.
#[derive(Debug)]
enum Route {
    /// The cluster tool of this name.
    System(String),
    /// POST to this URL.
    Http(String),
    Bundle(Bundle),
}

impl Route {
    fn kind(&self) -> Kind {
        match self {
            Route::System(_) => Kind::System,
            Route::Http(_) => Kind::Remote,
            Route::Bundle(_) => Kind::Bundle,
        }
    }
}

/// A registry tool's bundle.
#[derive(Debug)]
pub struct Bundle {
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
    parts: Parts,
    loaded: Mutex<LoadedCache>,
}

/// What the execution service is built from.
#[derive(Debug)]
pub struct Parts {
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub cluster_tools: ClusterTools,
    pub actions: Actions,
    pub orgs: Orgs,
    pub audit: Audit,
    pub blobs: Blobs,
    pub bundles: BundleCache,
    pub remote: Remote,
    /// Limits of bundle tools (their working directories are under `work_root`).
    pub process: ProcessSettings,
    /// Opens a bundle tool's sealed credentials.
    pub sealer: Sealer,
    /// Where HTTP tool calls are counted (the runtime counts the calls it runs).
    pub metrics: crate::metrics::Metrics,
}

impl Execution {
    pub fn new(parts: Parts) -> Execution {
        Execution { inner: Arc::new(Inner { parts, loaded: Mutex::default() }) }
    }

    /// Runs `target` for `caller` (see the module doc for the steps).
    pub async fn call(
        &self,
        caller: Caller<'_>,
        target: Target<'_>,
        input: Input,
    ) -> Result<Answer> {
        let (kind, name, org, action) = match target {
            Target::Tool(id) => (AuditKind::Tool, id, caller.org, None),
            Target::Function(id) => (AuditKind::Function, id, caller.org, None),
            Target::ClusterTool { name, .. } | Target::Hosted(name) => {
                (AuditKind::ClusterTool, name, caller.org, None)
            }
            // Audited under the tool it chooses, named once chosen.
            Target::Action { org, action_type, .. } => {
                (AuditKind::Tool, "", Some(org), Some(action_type))
            }
        };
        let mut pending =
            self.inner.parts.audit.start(kind, name, org, action, caller.token, input.len());
        let result = self.run(caller, target, &input, &mut pending).await;
        pending.finish(result.as_ref().map(|answer| &answer.outcome));
        result
    }

    async fn run(
        &self,
        caller: Caller<'_>,
        target: Target<'_>,
        input: &Input,
        pending: &mut Pending,
    ) -> Result<Answer> {
        let parts = &self.inner.parts;
        let org = caller.org;
        let outcome = match target {
            // The selector picks a registry tool, run for the action's org.
            Target::Action { org, action_type, params } => {
                let choice = parts.actions.select(org, action_type, params, caller.org).await?;
                let id = choice.tool_ids.into_iter().next().ok_or_else(|| {
                    Error::Internal("the selection chose no tool and said nothing".into())
                })?;
                pending.names(&id);
                let outcome = self.registered::<ToolEntry>(Some(org), &id, input).await?;
                return Ok(Answer { outcome, tool_id: Some(id) });
            }
            Target::Tool(id) => self.registered::<ToolEntry>(org, id, input).await?,
            Target::Function(id) => self.registered::<FunctionEntry>(org, id, input).await?,
            Target::ClusterTool { name, pin } => {
                parts.orgs.check(org, name).await?;
                self.on_nodes(name, pin, input).await?
            }
            Target::Hosted(name) => {
                parts.orgs.check(org, name).await?;
                if let Some(Err(why)) = parts.runtime.check(name, input) {
                    return Err(Error::BadRequest(format!("invalid input for '{name}': {why}")));
                }
                self.dispatch(name, Plan::Here(name), input).await?
            }
        };
        Ok(Answer { outcome, tool_id: None })
    }

    /// A registry tool or function: checked, loaded, planned, validated, dispatched.
    async fn registered<R: Runnable>(
        &self,
        org: Option<&str>,
        id: &str,
        input: &Input,
    ) -> Result<CallOutcome> {
        gridnode_store::validate_id(R::COLLECTION.kind(), id)?;
        // The allow-list is checked before anything is read, resolved or run.
        self.inner.parts.orgs.check(org, id).await?;
        let loaded = self.load::<R>(id).await?;
        loaded
            .validator
            .validate(input)
            .map_err(|why| Error::BadRequest(format!("invalid input for '{id}': {why}")))?;
        let span =
            tracing::debug_span!("tool_call", tool = %id, runtime = loaded.route.kind().name());
        let plan = match &loaded.route {
            Route::System(name) => return self.on_nodes(name, None, input).instrument(span).await,
            Route::Http(url) => {
                Plan::Http { url, what: format!("{} '{id}'", R::COLLECTION.kind()) }
            }
            Route::Bundle(bundle) => Plan::Bundle(bundle),
        };
        self.dispatch(id, plan, input).instrument(span).await
    }

    /// A cluster tool: its live hosts, planned into an attempt order, dispatched.
    async fn on_nodes(&self, tool: &str, pin: Option<&str>, input: &Input) -> Result<CallOutcome> {
        let cluster_tools = &self.inner.parts.cluster_tools;
        let hosts = cluster_tools.candidates(tool, pin, "on any node").await?;
        let plan = match candidates::plan(tool, hosts, input)? {
            None => {
                return Err(Error::Unreachable(cluster_tools.no_live_node(tool, pin).to_string()));
            }
            Some(candidates::First::Here) => {
                cluster_tools.count_local();
                Plan::Here(tool)
            }
            Some(candidates::First::Peers(failover)) => Plan::Peers(failover),
        };
        self.dispatch(tool, plan, input).await
    }

    /// Runs a plan. `id` names the tool in metrics and messages.
    async fn dispatch(&self, id: &str, plan: Plan<'_>, input: &Input) -> Result<CallOutcome> {
        let parts = &self.inner.parts;
        match plan {
            Plan::Here(name) => Ok(parts.runtime.call(name, input).await),
            Plan::Peers(failover) => parts.cluster_tools.call_peers(&failover, input).await,
            Plan::Bundle(bundle) => self.run_bundle(id, bundle, input).await,
            Plan::Http { url, what } => {
                let result =
                    parts.remote.call(&what, url, input.bytes()).await.map(|mut outcome| {
                        outcome
                            .metadata
                            .insert("node_id".into(), parts.runtime.node_id().to_owned());
                        outcome
                    });
                parts.metrics.tool_call(id, result.as_ref().is_ok_and(|outcome| outcome.success));
                result
            }
        }
    }

    async fn run_bundle(&self, id: &str, bundle: &Bundle, input: &Input) -> Result<CallOutcome> {
        let parts = &self.inner.parts;
        let blobs = parts.blobs.clone();
        let (sha256, origin) = (bundle.sha256.clone(), bundle.origin.clone());
        let fetch = async move {
            blobs.fetch(&sha256, Some(&origin)).await.map_err(|error| match error {
                Error::NotFound(why) => {
                    Error::Unreachable(format!("the tool's bundle could not be fetched: {why}"))
                }
                other => other,
            })
        };
        let lease = parts.bundles.acquire(&bundle.sha256, fetch).await?;
        let built = bundle.tool.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let tool = match built {
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
                let tool = Arc::new(ProcessTool::prepare(prepared, &parts.process)?);
                *bundle.tool.lock().unwrap_or_else(PoisonError::into_inner) = Some(tool.clone());
                tool
            }
        };
        let metadata = BTreeMap::from([("runtime".to_owned(), "bundle".to_owned())]);
        let outcome = parts.runtime.run(id, tool.as_ref(), input, metadata).await;
        drop(lease);
        Ok(outcome)
    }

    /// The loaded form of record `id`, built again only when the record has changed.
    async fn load<R: Runnable>(&self, id: &str) -> Result<Arc<Loaded>> {
        let key = (R::COLLECTION, id.to_owned());
        let store = &self.inner.parts.store;
        let seq = store.last_seq();
        if let Some((_, at, loaded)) = self.cache().get(&key)
            && *at == seq
        {
            return Ok(loaded.clone());
        }
        let owned = id.to_owned();
        let (hlc, record) = crate::service::blocking(store, move |store: &Store| {
            let not_found = || {
                Error::Store(gridnode_store::Error::NotFound {
                    kind: R::COLLECTION.kind(),
                    id: owned.clone(),
                })
            };
            match store.envelope::<R>(&owned)? {
                Some(envelope) if !envelope.header.tombstone => match envelope.record {
                    Some(record) => Ok((envelope.header.hlc, record)),
                    None => Err(not_found()),
                },
                _ => Err(not_found()),
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
        let parts = &self.inner.parts;
        let loaded = Arc::new(record.loaded(&parts.process, &parts.sealer)?);
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
    fn loaded(&self, process: &ProcessSettings, sealer: &Sealer) -> Result<Loaded>;
}

impl Runnable for ToolEntry {
    fn loaded(&self, process: &ProcessSettings, sealer: &Sealer) -> Result<Loaded> {
        let id = &self.tool_id;
        let validator = compile(id, "tool_api_spec", &self.tool_api_spec)?;
        let route = match Kind::of(self)? {
            Kind::System => {
                let name = &self.tool_system_function_rpc_id;
                gridnode_store::validate_id("tool", name).map_err(|_| {
                    Error::BadRequest(format!(
                        "tool '{id}' has an invalid tool_system_function_rpc_id '{}'",
                        name.chars().take(64).collect::<String>()
                    ))
                })?;
                Route::System(name.clone())
            }
            Kind::Remote => {
                crate::service::remote::check_url(&format!("tool '{id}'"), &self.tool_service_url)?;
                Route::Http(self.tool_service_url.clone())
            }
            Kind::Bundle => {
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
                    let opened = sealer.open(&self.default_tool_usage_credentials)?;
                    vec![("GRIDNODE_CREDENTIALS".to_owned(), Value::Object(opened).to_string())]
                };
                Route::Bundle(Bundle {
                    sha256: sha256.to_owned(),
                    origin: origin.to_owned(),
                    timeout,
                    env,
                    tool: Mutex::new(None),
                })
            }
        };
        Ok(Loaded { route, validator })
    }
}

impl Runnable for FunctionEntry {
    fn loaded(&self, _process: &ProcessSettings, _sealer: &Sealer) -> Result<Loaded> {
        let id = &self.function_id;
        let validator = compile(id, "function_api_spec", &self.function_api_spec)?;
        Ok(Loaded { route: Route::Http(function_url(self)?), validator })
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
