//! The gridnode node: configuration, the services over the store, and their transports (REST,
//! GraphQL, gRPC, the CLI).
//!
//! This crate must never:
//! - run a tool anywhere but through [`service::execution::Execution::call`] (the one door that
//!   checks allow-lists, audits, validates and plans) or, for a peer's member hop, this node's
//!   [`runtime::Runtime`];
//! - put a rule in a transport: handlers parse, call one service, and render;
//! - trust what a client or a peer sends: every input is bounded and checked before use, and
//!   bad input is an error, never a panic;
//! - block the async executor on the store: scans and writes go to the blocking pool;
//! - write a record that was not validated, or lose one that was acknowledged;
//! - echo a credential (`default_tool_usage_credentials`) into argv, logs or the audit log.
//!
//! `main.rs` only parses flags and calls [`Node::start`]; everything else lives here so tests
//! can start real nodes in-process. [`services::Services::build`] wires the services once, for
//! the node, the tests and the benchmarks alike.

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod graphql;
pub mod grpc;
pub mod http;
pub mod limiter;
pub mod load;
pub mod metrics;
pub mod node;
pub mod resolve;
pub mod runtime;
pub mod service;
pub mod services;
pub mod tls;

pub use config::NodeConfig;
pub use error::{Error, Result};
pub use gridnode_federation::ClusterKey;
pub use node::Node;
