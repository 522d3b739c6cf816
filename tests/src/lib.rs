//! Test support shared by gridnode's tests and benchmarks: real nodes (a node and cluster
//! builder), an HTTP client for a node's REST API, one poll loop, zip bundles and tool folders,
//! a walk through every registry route with the seeds' own example requests, a stand-in
//! Kubernetes API server, and the seed's Python grpcio tooling.

pub mod api;
pub mod bundle;
pub mod kube;
pub mod node;
pub mod python;
pub mod tool_dir;
pub mod wait;
pub mod walk;

pub use node::{cluster_key, node, tcp_addr, unique_cluster};
pub use wait::{EVENTUALLY, until};
