//! The `toolrpc.ToolExecutor` gRPC door (contract section 6): a thin adapter over the services.
//!
//! Two kinds of callers use it:
//! - **outside clients** (the seed's SDKs, scripts): the call goes through the one execution
//!   door, [`Execution::call`] with [`Target::Hosted`] — allow-list (the `x-org-id` metadata),
//!   audit, input check — and runs here, on this node;
//! - **peers**, as the member hop of a plan their node made and checked (token, scope, org,
//!   allow-list, audit, input): such a call carries [`HOP`] and a [`MemberProof`] in [`PROOF`],
//!   and goes straight to this node's runtime, which still checks the input against its own copy
//!   of the tool.
//!
//! With access control on (contract section 12), an outside client presents its token in the
//! `authorization` metadata (`Bearer <secret>`): none or an unknown one is `Unauthenticated`, one
//! without the `execute` scope or naming another org than its own is `PermissionDenied`. A hop
//! whose proof does not verify is `PermissionDenied`. In an open cluster (no cluster key) a hop
//! cannot be proven: with access control on it is then held to a token like any client.
//!
//! Every other failure is `success: false` with a clear `error` (the seed's behaviour); an
//! execution refused before the tool ran says why in the `error_code` metadata, the gRPC code
//! name of its status (see [`Error::grpc_code`]).

use std::sync::Arc;

use gridnode_proto::{CallFunctionRequest, CallFunctionResponse, ToolExecutor, ToolExecutorServer};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::runtime::{CallOutcome, Input};
use crate::service::acl::Scope;
use crate::service::execution::{Caller, Target};
use crate::services::Services;

/// Largest request accepted, in bytes (tonic's default is 4 MiB).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// The metadata a peer's call carries: the node id of the node whose plan it is a hop of.
pub const HOP: &str = "x-gridnode-hop";
/// The metadata naming an outside client's org (as `X-Org-Id` does over REST).
pub const ORG: &str = "x-org-id";
/// The metadata carrying a hop's [`MemberProof`].
pub const PROOF: &str = "x-gridnode-proof";
/// How far a proof's time may be from this node's clock, in milliseconds.
const PROOF_WINDOW_MS: u64 = 60_000;
const PROOF_DOMAIN: &[u8] = b"gridnode/grpc-hop/1\0";

/// Proof that a gRPC call comes from an admitted member: `<time ms>.<hex HMAC-SHA256>` over the
/// time, the origin node, the tool and the input's SHA-256, keyed by a key derived from the
/// cluster key. It binds the call's content, so it cannot be moved to another call; a copy of
/// the same call can be replayed within [`PROOF_WINDOW_MS`] by someone who saw it (TLS, contract
/// section 14, keeps it from being seen).
#[derive(Clone, Default)]
pub struct MemberProof {
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for MemberProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberProof").field("keyed", &self.key.is_some()).finish()
    }
}

impl MemberProof {
    /// From the cluster key; none in an open cluster, where nothing can be proven.
    pub fn new(cluster_key: Option<&gridnode_federation::ClusterKey>) -> MemberProof {
        MemberProof { key: cluster_key.map(|key| key.derive(PROOF_DOMAIN)) }
    }

    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The proof of a call from `origin`; none in an open cluster.
    pub fn sign(&self, origin: &str, tool: &str, input: &[u8]) -> Option<String> {
        let now = gridnode_store::now_ms();
        let mac = self.mac(now, origin, tool, input)?;
        Some(format!("{now}.{}", hex(&mac)))
    }

    /// Whether `proof` proves a call from `origin` of `tool` with `input`.
    pub fn verify(&self, proof: &str, origin: &str, tool: &str, input: &[u8]) -> bool {
        let Some((time, mac)) = proof.split_once('.') else { return false };
        let Ok(time) = time.parse::<u64>() else { return false };
        if gridnode_store::now_ms().abs_diff(time) > PROOF_WINDOW_MS {
            return false;
        }
        let Some(expected) = self.mac(time, origin, tool, input) else { return false };
        use subtle::ConstantTimeEq;
        bool::from(hex(&expected).as_bytes().ct_eq(mac.as_bytes()))
    }

    fn mac(&self, time: u64, origin: &str, tool: &str, input: &[u8]) -> Option<[u8; 32]> {
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref()?).ok()?;
        mac.update(&time.to_be_bytes());
        for part in [origin.as_bytes(), tool.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&Sha256::digest(input));
        Some(mac.finalize().into_bytes().into())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
        let client = request.remote_addr().map(|addr| addr.ip());
        let _permit = self
            .services
            .grpc_limiter
            .enter(client)
            .map_err(|full| Status::unavailable(full.message()))?;
        let text = |name: &str| {
            request.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let (hop, proof, org) = (text(HOP), text(PROOF), text(ORG));
        let secret = text("authorization");
        let CallFunctionRequest { tool_name, input } = request.into_inner();
        let services = &self.services;
        let member = match (&hop, services.member_proof.is_keyed()) {
            (Some(origin), true) => {
                let proof = proof.as_deref().unwrap_or_default();
                if !services.member_proof.verify(proof, origin, &tool_name, &input) {
                    return Err(Status::permission_denied(
                        "this call claims to come from a cluster member but its proof does not \
                         verify (a different cluster key, or a clock more than a minute off)",
                    ));
                }
                true
            }
            // An open cluster proves nothing: a hop is taken on its word only with access
            // control off, where anyone may call anyway.
            (Some(_), false) => !services.acl.enabled(),
            (None, _) => false,
        };
        let input = Input::from_bytes(input);
        let outcome = if member {
            services.runtime.call(&tool_name, &input).await
        } else {
            let principal = services
                .acl
                .authenticate(secret.as_deref().and_then(crate::service::acl::bearer))
                .map_err(|error| status(&error))?;
            principal.require(Scope::Execute).map_err(|error| status(&error))?;
            let org = principal.acting_org(org).map_err(|error| status(&error))?;
            let caller = Caller { org: org.as_deref(), token: principal.token_id() };
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

/// A refusal of the caller itself (no token, wrong scope, another org) as a gRPC status.
fn status(error: &Error) -> Status {
    Status::new(error.grpc_code(), error.to_string())
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
