//! Whole-system scenarios of the `gridnode-bench` binary.

use gridnode::{Node, NodeConfig};

pub mod access;
pub mod execute;
pub mod federation;
pub mod footprint;
pub mod grpc;
pub mod registry;
pub mod search;
pub mod tools;

/// The limit of a REST read: an axum router that answers `GET /tools/{id}` with `bytes` and does
/// nothing else.
pub(crate) fn bare_router(bytes: axum::body::Bytes) -> axum::Router {
    axum::Router::new().route(
        "/tools/{id}",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], bytes) }
        }),
    )
}

/// Two federated nodes, `a` and `b` (b bootstraps from a), in `dir`; `a`'s config may be
/// adjusted first. Returns once both are started (not yet once they have heard each other).
pub(crate) async fn pair(
    dir: &std::path::Path,
    cluster: &str,
    adjust_a: impl FnOnce(&mut NodeConfig),
) -> Result<(Node, Node), Box<dyn std::error::Error>> {
    let default_tools = |config: &mut NodeConfig| config.tools_dir = None;
    let (a, _) = gridnode_tests::node(dir, "a")
        .in_cluster(cluster)
        .config(default_tools)
        .config(adjust_a)
        .start()
        .await;
    let (b, _) = gridnode_tests::node(dir, "b")
        .in_cluster(cluster)
        .bootstrap(&a)
        .config(default_tools)
        .start()
        .await;
    Ok((a, b))
}
