//! Whole-system scenarios of the `gridnode-bench` binary.

pub mod execute;
pub mod federation;
pub mod footprint;
pub mod grpc;
pub mod registry;
pub mod search;
pub mod tools;
