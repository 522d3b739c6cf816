//! The `toolrpc.ToolExecutor` protocol (seed `system-tools-rpc-sdk.txt`): `CallFunction` with
//! `CallFunctionRequest { tool_name, input }` and `CallFunctionResponse { success, output, error,
//! metadata }`, field numbers exactly as in the seed so its Python clients work unchanged.
//!
//! Generated code only (server and client), compiled from `rpc_service.proto` in `build.rs`; no
//! logic lives here.

#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

/// The generated `toolrpc` package.
pub mod toolrpc {
    tonic::include_proto!("toolrpc");
}

pub use toolrpc::tool_executor_client::ToolExecutorClient;
pub use toolrpc::tool_executor_server::{ToolExecutor, ToolExecutorServer};
pub use toolrpc::{CallFunctionRequest, CallFunctionResponse};
