//! Set-up shared by the multi-node test files (each compiles it as its own `mod support`).

use std::path::{Path, PathBuf};

use gridnode::{Node, NodeConfig};
use gridnode_tests::api::Api;

/// The key file of `cluster` in `dir`, made on first use: every node of a test's cluster
/// holds it.
pub fn cluster_key(dir: &Path, cluster: &str) -> PathBuf {
    let path = dir.join(format!("{cluster}.key"));
    gridnode::ClusterKey::load_or_create(&path).unwrap();
    path
}

/// A node `name` under `dir`, in `cluster`, dialling `bootstrap`, hosting the process tools of
/// `tools` (none when `None`), heartbeating every `heartbeat_ms`.
pub async fn start(
    dir: &Path,
    name: &str,
    cluster: &str,
    bootstrap: Vec<String>,
    tools: Option<PathBuf>,
    heartbeat_ms: u64,
) -> (Node, Api) {
    let mut config = NodeConfig {
        node_id: name.into(),
        cluster: cluster.into(),
        bootstrap,
        tools_dir: Some(tools.unwrap_or_else(|| dir.join(name).join("no-tools"))),
        ..NodeConfig::loopback(dir.join(name))
    };
    config.federation.heartbeat_ms = heartbeat_ms;
    config.federation.cluster_key_file = Some(cluster_key(dir, cluster));
    config.federation.anti_entropy_ms = 500;
    let node = Node::start(config).await.unwrap();
    let api = Api::new(format!("http://{}", node.http_addr()));
    (node, api)
}
