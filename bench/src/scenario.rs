//! Whole-system scenarios of the `gridnode-bench` binary.

use gridnode::{Node, NodeConfig};

pub mod execute;
pub mod federation;
pub mod footprint;
pub mod grpc;
pub mod registry;
pub mod search;
pub mod tools;

/// Two federated nodes, `a` and `b` (b bootstraps from a), in `dir`; `a`'s config may be
/// adjusted first. Returns once both are started (not yet once they have heard each other).
pub(crate) async fn pair(
    dir: &std::path::Path,
    cluster: &str,
    adjust_a: impl FnOnce(&mut NodeConfig),
) -> Result<(Node, Node), Box<dyn std::error::Error>> {
    let key = cluster_key(dir, cluster)?;
    let mut config_a = NodeConfig {
        node_id: "a".into(),
        cluster: cluster.into(),
        ..NodeConfig::loopback(dir.join("a"))
    };
    config_a.federation.cluster_key_file = Some(key.clone());
    adjust_a(&mut config_a);
    let a = Node::start(config_a).await?;
    let tcp =
        a.p2p_addrs().into_iter().find(|addr| addr.contains("/tcp/")).ok_or("no tcp listener")?;
    let mut config_b = NodeConfig {
        node_id: "b".into(),
        cluster: cluster.into(),
        bootstrap: vec![tcp],
        ..NodeConfig::loopback(dir.join("b"))
    };
    config_b.federation.cluster_key_file = Some(key);
    let b = Node::start(config_b).await?;
    Ok((a, b))
}

/// The key file every node of `cluster` in `dir` holds, made on first use.
pub(crate) fn cluster_key(
    dir: &std::path::Path,
    cluster: &str,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join(format!("{cluster}.key"));
    gridnode::ClusterKey::load_or_create(&path)?;
    Ok(path)
}
