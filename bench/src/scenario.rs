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
    let mut config_a = NodeConfig {
        node_id: "a".into(),
        cluster: cluster.into(),
        ..NodeConfig::loopback(dir.join("a"))
    };
    adjust_a(&mut config_a);
    let a = Node::start(config_a).await?;
    let tcp =
        a.p2p_addrs().into_iter().find(|addr| addr.contains("/tcp/")).ok_or("no tcp listener")?;
    let b = Node::start(NodeConfig {
        node_id: "b".into(),
        cluster: cluster.into(),
        bootstrap: vec![tcp],
        ..NodeConfig::loopback(dir.join("b"))
    })
    .await?;
    Ok((a, b))
}
