//! The tools every node hosts. Adding one is one small file here plus a line in [`all`].

use std::sync::Arc;

use super::Tool;

mod echo;
mod node_stats;
mod reverse_text;

pub use echo::Echo;
pub use node_stats::NodeStats;
pub use reverse_text::ReverseText;

/// Every built-in tool.
pub fn all(node_id: &str) -> Vec<Arc<dyn Tool>> {
    vec![Arc::new(ReverseText), Arc::new(Echo), Arc::new(NodeStats::new(node_id))]
}

/// The metadata every built-in reports: the node's version, and that it is built in.
fn builtin_metadata() -> gridnode_store::JsonMap {
    object(serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "builtin": true}))
}

/// A JSON object literal as a [`gridnode_store::JsonMap`].
fn object(value: serde_json::Value) -> gridnode_store::JsonMap {
    match value {
        serde_json::Value::Object(map) => map,
        _ => gridnode_store::JsonMap::new(),
    }
}
