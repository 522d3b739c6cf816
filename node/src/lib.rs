//! The gridnode node: configuration, the service layer over the store, and the REST API.
//!
//! `main.rs` only parses flags and calls [`Node::start`]; everything else lives here so tests
//! can start real nodes in-process.

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod graphql;
pub mod http;
pub mod load;
pub mod metrics;
pub mod node;
pub mod resolve;
pub mod runtime;
pub mod service;

pub use config::NodeConfig;
pub use error::{Error, Result};
pub use gridnode_federation::ClusterKey;
pub use node::Node;
