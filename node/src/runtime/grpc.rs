//! The `toolrpc.ToolExecutor` gRPC service: a thin adapter over [`Runtime::call`]. Every failure
//! is `success: false` with a clear `error`, never a gRPC-level error.

use std::sync::Arc;

use gridnode_proto::{CallFunctionRequest, CallFunctionResponse, ToolExecutor, ToolExecutorServer};
use tonic::{Request, Response, Status};

use super::Runtime;

/// Largest request accepted, in bytes (tonic's default is 4 MiB).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The service over a runtime.
#[derive(Debug, Clone)]
pub struct Executor {
    runtime: Arc<Runtime>,
}

impl Executor {
    pub fn new(runtime: Arc<Runtime>) -> Executor {
        Executor { runtime }
    }

    /// The tonic service, with its message size bounds.
    pub fn into_service(self) -> ToolExecutorServer<Executor> {
        ToolExecutorServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(usize::MAX)
    }
}

#[tonic::async_trait]
impl ToolExecutor for Executor {
    async fn call_function(
        &self,
        request: Request<CallFunctionRequest>,
    ) -> Result<Response<CallFunctionResponse>, Status> {
        let request = request.into_inner();
        let outcome = self.runtime.call(&request.tool_name, &request.input).await;
        Ok(Response::new(CallFunctionResponse {
            success: outcome.success,
            output: outcome.output,
            error: outcome.error,
            metadata: outcome.metadata.into_iter().collect(),
        }))
    }
}
