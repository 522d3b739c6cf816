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
            Some(peer) if is_unspecified(&peer.heartbeat.grpc) => {
                Err(ResolveError::Misconfigured(format!(
                    "node '{node_id}' advertises {}, which is no address to call: start it with \
                     --advertise-grpc HOST:PORT",
                    peer.heartbeat.grpc
                )))
            }
            Some(peer) => Ok(peer.heartbeat.grpc),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// `0.0.0.0:port` or `[::]:port`: a listener's wildcard, not an address.
pub fn is_unspecified(endpoint: &str) -> bool {
    endpoint.parse::<std::net::SocketAddr>().is_ok_and(|addr| addr.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::is_unspecified;

    #[test]
    fn wildcards_are_no_address() {
        assert!(is_unspecified("0.0.0.0:50051"));
        assert!(is_unspecified("[::]:50051"));
        assert!(!is_unspecified("127.0.0.1:50051"));
        assert!(!is_unspecified("node-1.svc:50051"));
    }
}
