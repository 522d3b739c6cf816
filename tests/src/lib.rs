//! Test support shared by gridnode's end-to-end tests: an HTTP client for a node's REST API, zip
//! bundles, a walk through every registry route with the seeds' own example requests, a
//! stand-in Kubernetes API server, and the seed's Python grpcio tooling.
//!
//! It depends on no gridnode crate, so the binary's own tests (in `node/`) can use it too.

pub mod api;
pub mod bundle;
pub mod kube;
pub mod python;
pub mod tool_dir;
pub mod walk;
