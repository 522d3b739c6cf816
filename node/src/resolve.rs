//! From a node id to the gRPC endpoint that reaches it (contract sections 6 and 8): a chain of
//! [`Resolver`]s asked in the configured order, the first that knows the node giving the answer.
//!
//! - [`federation`]: the endpoint a gridnode peer advertises in its heartbeat;
//! - [`static_table`]: a `node_id → host:port` table from the config;
//! - [`kubernetes`]: the `InternalIP` of the Kubernetes node labelled with the node id.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

pub mod federation;
pub mod kubernetes;
pub mod static_table;

/// What one resolver answers.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, ResolveError>> + Send + 'a>>;

/// One way to find a node's endpoint.
pub trait Resolver: Send + Sync + 'static {
    /// The name users put in `resolver.chain`.
    fn name(&self) -> &'static str;
    /// The `host:port` (`[v6]:port`) of `node_id`'s gRPC runtime.
    fn resolve<'a>(&'a self, node_id: &'a str) -> ResolveFuture<'a>;
    /// A call to `endpoint`, which this resolver gave for `node_id`, failed: forget it.
    fn evict(&self, _node_id: &str, _endpoint: &str) {}
}

/// Why a resolver has no endpoint for a node. Each kind maps to one status (contract section 8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The resolver does not know the node (404; the chain asks the next one).
    #[error("{0}")]
    Unknown(String),
    /// The resolver found the node but cannot make an endpoint of it (500).
    #[error("{0}")]
    Misconfigured(String),
    /// The resolver's own source cannot be reached (500).
    #[error("{0}")]
    Unavailable(String),
}

/// An endpoint and the resolver that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub endpoint: String,
    pub via: &'static str,
}

/// The configured resolvers, in order.
#[derive(Clone, Default)]
pub struct Chain {
    resolvers: Vec<Arc<dyn Resolver>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.resolvers.iter().map(|r| r.name())).finish()
    }
}

impl Chain {
    pub fn new(resolvers: Vec<Arc<dyn Resolver>>) -> Chain {
        Chain { resolvers }
    }

    /// The first endpoint a resolver knows. When none does, the first hard failure is the
    /// answer (a misconfigured node, an unreachable API server); otherwise every resolver's
    /// "unknown" is, in one message.
    pub async fn resolve(&self, node_id: &str) -> Result<Resolved, ResolveError> {
        let mut unknown = Vec::new();
        let mut failure = None;
        for resolver in &self.resolvers {
            match resolver.resolve(node_id).await {
                Ok(endpoint) => return Ok(Resolved { endpoint, via: resolver.name() }),
                Err(ResolveError::Unknown(why)) => {
                    unknown.push(format!("{}: {why}", resolver.name()))
                }
                Err(hard) => {
                    failure.get_or_insert(hard);
                }
            }
        }
        Err(failure.unwrap_or_else(|| {
            if unknown.is_empty() {
                ResolveError::Unknown("no resolver is configured (resolver.chain is empty)".into())
            } else {
                ResolveError::Unknown(format!(
                    "no resolver knows node '{node_id}' ({})",
                    unknown.join("; ")
                ))
            }
        }))
    }

    /// Tells every resolver that a call to `endpoint` for `node_id` failed.
    pub fn evict(&self, node_id: &str, endpoint: &str) {
        for resolver in &self.resolvers {
            resolver.evict(node_id, endpoint);
        }
    }
}

/// Checks a `host:port` endpoint: a port from 1 to 65535, a host name or IPv4 address, or an
/// IPv6 address in brackets.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("'{endpoint}' is not host:port ({why})"));
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return bad("no port");
    };
    if !matches!(port.parse::<u16>(), Ok(1..)) {
        return bad("the port must be from 1 to 65535");
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => bad("the bracketed host is not an IPv6 address"),
        };
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if host_ok { Ok(()) } else { bad("write IPv6 addresses as [addr]:port") }
}

/// `ip:port`, with an IPv6 address in brackets.
pub fn endpoint_of(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<String, ResolveError>);

    impl Resolver for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn resolve<'a>(&'a self, _node_id: &'a str) -> ResolveFuture<'a> {
            Box::pin(async move { self.1.clone() })
        }
    }

    fn chain(resolvers: Vec<Fixed>) -> Chain {
        Chain::new(resolvers.into_iter().map(|r| Arc::new(r) as Arc<dyn Resolver>).collect())
    }

    #[tokio::test]
    async fn the_first_resolver_that_knows_the_node_answers() {
        let unknown = || Err(ResolveError::Unknown("not here".into()));
        let found = chain(vec![
            Fixed("a", unknown()),
            Fixed("b", Ok("10.0.0.1:50051".into())),
            Fixed("c", Ok("10.0.0.2:50051".into())),
        ]);
        assert_eq!(
            found.resolve("n").await.unwrap(),
            Resolved { endpoint: "10.0.0.1:50051".into(), via: "b" }
        );

        let hard = chain(vec![
            Fixed("a", Err(ResolveError::Unavailable("api server down".into()))),
            Fixed("b", unknown()),
        ]);
        assert_eq!(
            hard.resolve("n").await.unwrap_err(),
            ResolveError::Unavailable("api server down".into())
        );
        // A hard failure does not hide a later resolver that knows the node.
        let rescued = chain(vec![
            Fixed("a", Err(ResolveError::Unavailable("down".into()))),
            Fixed("b", Ok("h:1".into())),
        ]);
        assert_eq!(rescued.resolve("n").await.unwrap().via, "b");

        let none = chain(vec![Fixed("a", unknown()), Fixed("b", unknown())]);
        let err = none.resolve("n").await.unwrap_err().to_string();
        assert!(err.contains("a: not here; b: not here"), "{err}");
        assert!(chain(vec![]).resolve("n").await.unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn endpoints() {
        for good in ["10.0.0.5:50051", "node-1.svc:1", "[::1]:50051", "[fe80::1]:8"] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
        for bad in ["10.0.0.5", "h:0", "h:70000", "::1:50051", "[nonsense]:1", ":1", "a b:1"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(endpoint_of("fd00::7".parse().unwrap(), 50051), "[fd00::7]:50051");
        assert_eq!(endpoint_of("10.1.2.3".parse().unwrap(), 50051), "10.1.2.3:50051");
    }
}
