//! The local tool runtime (contract section 6), the only place a tool runs on this node: the
//! tools it hosts, each a [`Tool`] — built-ins compiled in, and process tools from the tools
//! dir — with their input validated against the tool's spec before it runs, and the short-lived
//! tools execution hands it (a registry tool's unpacked bundle, [`Runtime::run`]). Calls in
//! flight (the heartbeat's load), call metadata and the tool-call metrics are kept here, once.
//!
//! Execution ([`crate::service::execution`]) decides *what* runs *where*; the runtime runs it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use gridnode_store::{ClusterLocalTool, JsonMap};
use serde_json::Value;
use tracing::Instrument;

pub mod builtin;
mod error;
mod input;
pub mod process;
pub mod spec;

pub use error::Error;
pub use input::Input;

use spec::InputValidator;

/// What a tool call returns: its output bytes, or a message saying why it failed.
pub type ToolResult = Result<Vec<u8>, String>;
/// A boxed tool-call future (tools are stored as trait objects).
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = ToolResult> + Send + 'a>>;

/// A tool this node can run: the Rust counterpart of the seed's `@register_tool`.
pub trait Tool: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// The input spec (JSON Schema or the seed's shorthand); empty accepts any bytes.
    fn input_spec(&self) -> JsonMap {
        JsonMap::new()
    }
    /// The tool's own metadata (`version`, …), returned with every call.
    fn metadata(&self) -> JsonMap {
        JsonMap::new()
    }
    /// Runs the tool on input that has already passed its spec.
    fn call<'a>(&'a self, input: &'a Input) -> ToolFuture<'a>;
}

/// The outcome of one call, as the gRPC response carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub success: bool,
    pub output: Vec<u8>,
    pub error: String,
    /// `node_id`, `duration_ms` and the tool's metadata (non-string values JSON-encoded).
    pub metadata: BTreeMap<String, String>,
}

struct Hosted {
    tool: Arc<dyn Tool>,
    validator: InputValidator,
    spec: JsonMap,
    metadata: JsonMap,
    /// `metadata` as a call's response carries it (non-string values JSON-encoded), made once.
    call_metadata: BTreeMap<String, String>,
}

/// The tools hosted by this node.
pub struct Runtime {
    node_id: String,
    tools: BTreeMap<String, Hosted>,
    /// Calls running now (the heartbeat's load).
    in_flight: AtomicU32,
    /// Where calls are counted, once the node sets it.
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("node_id", &self.node_id)
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Runtime {
    pub fn new(node_id: impl Into<String>) -> Runtime {
        Runtime {
            node_id: node_id.into(),
            tools: BTreeMap::new(),
            in_flight: AtomicU32::new(0),
            metrics: None,
        }
    }

    /// Hosts a tool, compiling its input spec once. A duplicate name or a bad spec is an error
    /// that names the tool.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), Error> {
        let name = tool.name().to_owned();
        if self.tools.contains_key(&name) {
            return Err(Error::Duplicate(name));
        }
        if let Err(source) = gridnode_store::validate_id("tool", &name) {
            return Err(Error::Name { tool: name, source });
        }
        let spec = tool.input_spec();
        let validator = InputValidator::compile(&spec)
            .map_err(|why| Error::Spec { tool: name.clone(), why })?;
        let metadata = tool.metadata();
        let call_metadata = metadata
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect();
        self.tools.insert(name, Hosted { tool, validator, spec, metadata, call_metadata });
        Ok(())
    }

    /// Counts every call in `metrics` (`gridnode_tool_calls_total`).
    pub fn set_metrics(&mut self, metrics: crate::metrics::Metrics) {
        self.metrics = Some(metrics);
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// How many calls are running now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// This node's `ClusterLocalTools` records.
    pub fn records(&self) -> Vec<ClusterLocalTool> {
        self.tools
            .iter()
            .map(|(name, hosted)| ClusterLocalTool {
                name: name.clone(),
                node_id: self.node_id.clone(),
                input_spec: hosted.spec.clone(),
                metadata: hosted.metadata.clone(),
                description: hosted.tool.description().to_owned(),
            })
            .collect()
    }

    /// Checks the input against a hosted tool's spec, so a plan can refuse it before the call
    /// (`None` when no such tool is hosted: the call says so).
    pub fn check(&self, name: &str, input: &Input) -> Option<Result<(), String>> {
        self.tools.get(name).map(|hosted| hosted.validator.validate(input))
    }

    /// Validates the input against the tool's spec (unless it passed that spec already on its
    /// way here), then runs it. Never panics on bad input: an unknown tool, invalid input or a
    /// failing tool is `success: false` with a clear error.
    pub async fn call(&self, name: &str, input: &Input) -> CallOutcome {
        let span =
            tracing::debug_span!("tool_call", tool = %name.chars().take(128).collect::<String>());
        let Some(hosted) = self.tools.get(name) else {
            let error = format!(
                "tool '{}' is not hosted on node '{}' (it hosts: {})",
                name.chars().take(128).collect::<String>(),
                self.node_id,
                self.tools.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            return self.finish(
                crate::metrics::UNKNOWN_TOOL,
                Err(error),
                BTreeMap::new(),
                Instant::now(),
            );
        };
        let run = async {
            match hosted.validator.validate(input) {
                Err(why) => Err(format!("invalid input for '{name}': {why}")),
                Ok(()) => hosted.tool.call(input).await,
            }
        };
        self.counted(name, hosted.call_metadata.clone(), run).instrument(span).await
    }

    /// Runs a tool this node does not host, for one call: a registry tool's bundle, whose
    /// input execution has checked against the record's spec. `label` names it in the metrics
    /// (the registry id); `metadata` is what the answer carries besides `node_id` and
    /// `duration_ms`.
    pub async fn run(
        &self,
        label: &str,
        tool: &dyn Tool,
        input: &Input,
        metadata: BTreeMap<String, String>,
    ) -> CallOutcome {
        let span = tracing::debug_span!("tool_call", tool = %label);
        self.counted(label, metadata, tool.call(input)).instrument(span).await
    }

    /// Runs `call` counted among the calls in flight, timed and metered.
    async fn counted(
        &self,
        label: &str,
        metadata: BTreeMap<String, String>,
        call: impl Future<Output = ToolResult>,
    ) -> CallOutcome {
        let started = Instant::now();
        let result = {
            let _running = InFlight::enter(&self.in_flight);
            call.await
        };
        self.finish(label, result, metadata, started)
    }

    fn finish(
        &self,
        label: &str,
        result: ToolResult,
        mut metadata: BTreeMap<String, String>,
        started: Instant,
    ) -> CallOutcome {
        metadata.insert("node_id".into(), self.node_id.clone());
        metadata.insert("duration_ms".into(), started.elapsed().as_millis().to_string());
        if let Some(metrics) = &self.metrics {
            metrics.tool_call(label, result.is_ok());
        }
        match result {
            Ok(output) => CallOutcome { success: true, output, error: String::new(), metadata },
            Err(error) => CallOutcome { success: false, output: Vec::new(), error, metadata },
        }
    }
}

/// Counts a call as running until dropped (also when the caller goes away mid-call).
#[derive(Debug)]
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU32) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
