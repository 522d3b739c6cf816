//! Real nodes for tests: on loopback, every port picked by the OS, mDNS off, data under the
//! test's directory. A node started alone is a cluster of one with its own key; nodes started
//! [`in_cluster`](NodeBuilder::in_cluster) share that cluster's key file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use gridnode::{Node, NodeConfig};

use crate::api::Api;

/// A cluster name no other test (in this process or another) uses.
pub fn unique_cluster(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The key file of `cluster` in `dir`, made on first use: every node of a test's cluster
/// holds it.
pub fn cluster_key(dir: &Path, cluster: &str) -> PathBuf {
    let path = dir.join(format!("{cluster}.key"));
    gridnode::ClusterKey::load_or_create(&path).expect("the cluster key is written");
    path
}

/// The TCP one of a node's p2p listen addresses (to bootstrap another node from).
pub fn tcp_addr(p2p_addrs: &[String]) -> String {
    p2p_addrs.iter().find(|a| a.contains("/tcp/")).expect("a tcp p2p listener").clone()
}

/// A node `name` whose data lives in `<dir>/<name>`.
pub fn node(dir: &Path, name: &str) -> NodeBuilder {
    let mut config = NodeConfig { node_id: name.into(), ..NodeConfig::loopback(dir.join(name)) };
    // No tools dir of its own unless given: the node hosts the built-ins only.
    config.tools_dir = Some(dir.join(name).join("no-tools"));
    NodeBuilder { dir: dir.to_owned(), config }
}

/// How a test node is started.
#[derive(Debug)]
#[must_use]
pub struct NodeBuilder {
    dir: PathBuf,
    config: NodeConfig,
}

impl NodeBuilder {
    /// Joins `cluster`, holding its key (made in the test's directory on first use).
    pub fn in_cluster(mut self, cluster: &str) -> NodeBuilder {
        self.config.cluster = cluster.into();
        self.config.federation.cluster_key_file = Some(cluster_key(&self.dir, cluster));
        self
    }

    /// Heartbeats every `heartbeat_ms` and anti-entropy rounds every half second: what a node
    /// does in the background shows up within a test's patience.
    pub fn brisk(mut self, heartbeat_ms: u64) -> NodeBuilder {
        self.config.federation.heartbeat_ms = heartbeat_ms;
        self.config.federation.anti_entropy_ms = 500;
        self
    }

    /// Dials `peer` at start.
    pub fn bootstrap(mut self, peer: &Node) -> NodeBuilder {
        self.config.bootstrap.push(tcp_addr(&peer.p2p_addrs()));
        self
    }

    /// Hosts the process tools of `tools`.
    pub fn tools(mut self, tools: impl Into<PathBuf>) -> NodeBuilder {
        self.config.tools_dir = Some(tools.into());
        self
    }

    /// Access control on, with `admin_secret` as the management secret.
    pub fn acl(mut self, admin_secret: &str) -> NodeBuilder {
        self.config.acl.enabled = Some(true);
        self.config.acl.admin_token = Some(gridnode::config::Secret(admin_secret.into()));
        self
    }

    /// Any other setting.
    pub fn config(mut self, change: impl FnOnce(&mut NodeConfig)) -> NodeBuilder {
        change(&mut self.config);
        self
    }

    /// The configuration the node would start with.
    pub fn into_config(self) -> NodeConfig {
        self.config
    }

    /// Starts the node, and a client for its REST API.
    pub async fn start(self) -> (Node, Api) {
        let node = Node::start(self.config).await.expect("the node starts");
        let api = Api::new(format!("http://{}", node.http_addr()));
        (node, api)
    }
}

/// Nodes `names`, in order, in a new cluster (named from `prefix`) under `dir`: every node after
/// the first bootstraps from the first. `each` adjusts a node's builder, by name.
pub async fn cluster(
    dir: &Path,
    prefix: &str,
    names: &[&str],
    each: impl Fn(&str, NodeBuilder) -> NodeBuilder,
) -> Vec<(Node, Api)> {
    let cluster = unique_cluster(prefix);
    let mut nodes: Vec<(Node, Api)> = Vec::with_capacity(names.len());
    for name in names {
        let mut builder = node(dir, name).in_cluster(&cluster);
        if let Some((first, _)) = nodes.first() {
            builder = builder.bootstrap(first);
        }
        nodes.push(each(name, builder).start().await);
    }
    nodes
}

/// Three nodes `a`, `b` and `c` in a new cluster (b and c bootstrap from a), heartbeating every
/// `heartbeat_ms`, b hosting the tools of `tools_b` and c those of `tools_c`.
pub async fn trio(
    dir: &Path,
    prefix: &str,
    heartbeat_ms: u64,
    tools_b: &Path,
    tools_c: &Path,
) -> [(Node, Api); 3] {
    let nodes = cluster(dir, prefix, &["a", "b", "c"], |name, node| {
        let node = node.brisk(heartbeat_ms);
        match name {
            "b" => node.tools(tools_b),
            "c" => node.tools(tools_c),
            _ => node,
        }
    });
    nodes.await.try_into().expect("three names, three nodes")
}
