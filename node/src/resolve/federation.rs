//! The `federation` resolver: the gRPC endpoint a gridnode peer advertises in its heartbeat.

use std::sync::Arc;

use gridnode_federation::Federation;

use super::{ResolveError, ResolveFuture, Resolver};

#[derive(Debug)]
pub struct FederationResolver {
    federation: Arc<Federation>,
}

impl FederationResolver {
    pub fn new(federation: Arc<Federation>) -> FederationResolver {
        FederationResolver { federation }
    }
}

impl Resolver for FederationResolver {
    fn name(&self) -> &'static str {
        "federation"
    }

    fn resolve<'a>(&'a self, node_id: &'a str) -> ResolveFuture<'a> {
        let answer = match self.federation.peer(node_id) {
            None => Err(ResolveError::Unknown(format!(
                "node '{node_id}' is not a gridnode peer this node has heard from"
            ))),
            Some(peer) if peer.heartbeat.grpc.is_empty() => {
                Err(ResolveError::Unknown(format!("node '{node_id}' advertises no gRPC endpoint")))
            }
            Some(peer) => Ok(peer.heartbeat.grpc),
        };
        Box::pin(std::future::ready(answer))
    }
}
