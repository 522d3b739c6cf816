//! The `toolrpc.ToolExecutor` gRPC door (contract section 6): a thin adapter over the services.
//!
//! Two kinds of callers use it:
//! - **outside clients** (the seed's SDKs, scripts): the call goes through the one execution
//!   door, [`Execution::call`] with [`Target::Hosted`] — allow-list (the `x-org-id` metadata),
//!   audit, input check — and runs here, on this node;
//! - **peers**, as the member hop of a plan their node made and checked (allow-list, audit,
//!   input): such a call carries [`HOP`] and goes straight to this node's runtime, which still
//!   checks the input against its own copy of the tool.
//!
//! Until access control binds gRPC callers to tokens and members (contract section 12), the hop
//! marker is a claim, not a proof: a caller that sends it skips the audit entry and the
//! allow-list, which no caller could be held to before either.
//!
//! Every failure is `success: false` with a clear `error`, never a gRPC-level error (the seed's
//! behaviour); an execution refused before the tool ran says why in the `error_code` metadata,
//! the gRPC code name of its status (see [`Error::grpc_code`]).

use std::sync::Arc;

use gridnode_proto::{CallFunctionRequest, CallFunctionResponse, ToolExecutor, ToolExecutorServer};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::runtime::{CallOutcome, Input};
use crate::service::execution::{Caller, Target};
use crate::services::Services;

/// Largest request accepted, in bytes (tonic's default is 4 MiB).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// The metadata a peer's call carries: the node id of the node whose plan it is a hop of.
pub const HOP: &str = "x-gridnode-hop";
/// The metadata naming an outside client's org (as `X-Org-Id` does over REST).
pub const ORG: &str = "x-org-id";

/// The service over a node's services.
#[derive(Debug, Clone)]
pub struct Executor {
    services: Arc<Services>,
}

impl Executor {
    pub fn new(services: Arc<Services>) -> Executor {
        Executor { services }
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
        let hop = request.metadata().get(HOP).is_some();
        let org = request.metadata().get(ORG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let CallFunctionRequest { tool_name, input } = request.into_inner();
        let input = Input::from_bytes(input);
        let services = &self.services;
        let outcome = if hop {
            services.runtime.call(&tool_name, &input).await
        } else {
            let caller = Caller { org: org.as_deref() };
            match services.execution.call(caller, Target::Hosted(&tool_name), input).await {
                Ok(answer) => answer.outcome,
                Err(error) => refused(&error, services.runtime.node_id()),
            }
        };
        Ok(Response::new(CallFunctionResponse {
            success: outcome.success,
            output: outcome.output,
            error: outcome.error,
            metadata: outcome.metadata.into_iter().collect(),
        }))
    }
}

/// An execution refused before its tool ran, as the seed's response carries it.
fn refused(error: &Error, node_id: &str) -> CallOutcome {
    let metadata = [
        ("node_id".to_owned(), node_id.to_owned()),
        ("error_code".to_owned(), format!("{:?}", error.grpc_code())),
    ];
    CallOutcome {
        success: false,
        output: Vec::new(),
        error: error.to_string(),
        metadata: metadata.into_iter().collect(),
    }
}
