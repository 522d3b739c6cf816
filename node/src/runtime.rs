//! The local tool runtime (contract section 6): the tools this node hosts, each a [`Tool`] —
//! built-ins compiled in, and process tools from the tools dir — with their input validated
//! against the tool's spec before it runs. The gRPC server ([`grpc`]) and the node's own REST
//! routes are thin adapters over [`Runtime::call`].

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
pub mod grpc;
pub mod process;
pub mod spec;

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
    fn call<'a>(&'a self, input: &'a [u8]) -> ToolFuture<'a>;
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
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
        let name = tool.name().to_owned();
        if self.tools.contains_key(&name) {
            return Err(format!("tool '{name}' is defined twice"));
        }
        gridnode_store::validate_id("tool", &name).map_err(|e| format!("tool '{name}': {e}"))?;
        let spec = tool.input_spec();
        let validator =
            InputValidator::compile(&spec).map_err(|e| format!("tool '{name}': {e}"))?;
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

    /// Counts a call made outside the runtime (a bundle tool's run) among the calls in flight
    /// that this node's heartbeat reports, until the guard is dropped.
    pub fn track(&self) -> InFlight<'_> {
        InFlight::enter(&self.in_flight)
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

    /// Validates the input against the tool's spec, then runs it. Never panics on bad input:
    /// an unknown tool, invalid input or a failing tool is `success: false` with a clear error.
    pub async fn call(&self, name: &str, input: &[u8]) -> CallOutcome {
        let span =
            tracing::debug_span!("tool_call", tool = %name.chars().take(128).collect::<String>());
        self.call_in(name, input).instrument(span).await
    }

    async fn call_in(&self, name: &str, input: &[u8]) -> CallOutcome {
        let started = Instant::now();
        let _running = InFlight::enter(&self.in_flight);
        let hosted = self.tools.get(name);
        let mut metadata = hosted.map(|h| h.call_metadata.clone()).unwrap_or_default();
        let result = match hosted {
            None => Err(format!(
                "tool '{}' is not hosted on node '{}' (it hosts: {})",
                name.chars().take(128).collect::<String>(),
                self.node_id,
                self.tools.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(hosted) => match hosted.validator.validate(input) {
                Err(why) => Err(format!("invalid input for '{name}': {why}")),
                Ok(()) => hosted.tool.call(input).await,
            },
        };
        metadata.insert("node_id".into(), self.node_id.clone());
        metadata.insert("duration_ms".into(), started.elapsed().as_millis().to_string());
        if let Some(metrics) = &self.metrics {
            let label = if hosted.is_some() { name } else { crate::metrics::UNKNOWN_TOOL };
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
pub struct InFlight<'a>(&'a AtomicU32);

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
