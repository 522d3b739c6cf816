//! The `kubernetes` resolver (contract section 8): the node labelled `<label>=<node_id>`, its
//! first `InternalIP`, and the configured gRPC port.
//!
//! Answers from the API server are cached for `cache_ttl`, and concurrent lookups of one node
//! share one request, so the API server is asked at most once per node per TTL. A failure to
//! reach the API server is remembered for one second only. A failed call to a cached endpoint
//! evicts it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::{ResolveError, ResolveFuture, Resolver, endpoint_of};
use crate::config::KubernetesSettings;

/// How long connecting to the API server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one API request may take once connected.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an unreachable API server is remembered (not the full TTL: it may come back).
const UNAVAILABLE_FOR: Duration = Duration::from_secs(1);
/// Nodes cached before expired answers are swept out.
const MAX_CACHED: usize = 4096;

type Answer = Result<String, ResolveError>;

pub struct KubernetesResolver {
    nodes: Api<Node>,
    server: String,
    label: String,
    grpc_port: u16,
    ttl: Duration,
    cache: RwLock<HashMap<String, (Answer, Instant)>>,
    /// One lock per node being looked up, so concurrent misses make one request.
    lookups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for KubernetesResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesResolver")
            .field("server", &self.server)
            .field("label", &self.label)
            .field("grpc_port", &self.grpc_port)
            .finish_non_exhaustive()
    }
}

impl KubernetesResolver {
    /// A resolver with a client for the configured API server: the kubeconfig file when one is
    /// given, else the pod's service account, else `$KUBECONFIG` or `~/.kube/config`. Nothing
    /// is requested yet.
    pub async fn connect(settings: &KubernetesSettings) -> Result<KubernetesResolver, Error> {
        // libp2p's QUIC brings rustls with ring, kube with aws-lc-rs: pick one, once.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut config = match &settings.kubeconfig {
            Some(path) => from_file(path).await?,
            None => match Config::incluster() {
                Ok(config) => config,
                Err(in_cluster) => {
                    Config::from_kubeconfig(&KubeConfigOptions::default()).await.map_err(
                        |source| Error::NoConfig { in_cluster: in_cluster.to_string(), source },
                    )?
                }
            },
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(READ_TIMEOUT);
        // Retries would multiply requests to a struggling API server; the cache is our retry.
        config.default_retry = false;
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .map_err(|source| Error::Client { server: server.clone(), source })?;
        Ok(KubernetesResolver {
            nodes: Api::all(client),
            server,
            label: settings.label.clone(),
            grpc_port: settings.grpc_port,
            ttl: settings.cache_ttl,
            cache: RwLock::default(),
            lookups: Mutex::default(),
        })
    }

    /// The value of the resolver's label on the Kubernetes node named `node_name` (`None` when
    /// the node has no such label): how a node in a DaemonSet learns its node id.
    pub async fn label_of(&self, node_name: &str) -> Result<Option<String>, Error> {
        let node = self.nodes.get(node_name).await.map_err(|source| Error::Node {
            node: node_name.to_owned(),
            server: self.server.clone(),
            source,
        })?;
        Ok(node.metadata.labels.and_then(|mut labels| labels.remove(&self.label)))
    }

    /// The cached answer for `node_id`, if it is younger than the TTL (an unreachable API
    /// server is remembered for at most [`UNAVAILABLE_FOR`], so waiting callers do not queue
    /// one slow request each behind it).
    fn cached(&self, node_id: &str) -> Option<Answer> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(node_id)
            .filter(|(answer, at)| {
                let kept = match answer {
                    Err(ResolveError::Unavailable(_)) => self.ttl.min(UNAVAILABLE_FOR),
                    _ => self.ttl,
                };
                at.elapsed() < kept
            })
            .map(|(answer, _)| answer.clone())
    }

    async fn lookup(&self, node_id: &str) -> Answer {
        if let Some(answer) = self.cached(node_id) {
            return answer;
        }
        let slot = {
            let mut lookups = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
            lookups.entry(node_id.to_owned()).or_default().clone()
        };
        let answer = {
            let _turn = slot.lock().await;
            // Whoever held the lock before us may have filled the cache.
            match self.cached(node_id) {
                Some(answer) => answer,
                None => {
                    let answer = self.ask(node_id).await;
                    let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
                    if cache.len() >= MAX_CACHED {
                        cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
                    }
                    cache.insert(node_id.to_owned(), (answer.clone(), Instant::now()));
                    answer
                }
            }
        };
        let mut lookups = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(&slot) <= 2 {
            lookups.remove(node_id);
        }
        answer
    }

    /// One label-selector LIST against the API server.
    async fn ask(&self, node_id: &str) -> Answer {
        let selector = format!("{}={node_id}", self.label);
        let list =
            self.nodes.list(&ListParams::default().labels(&selector)).await.map_err(|e| {
                ResolveError::Unavailable(format!(
                    "cannot list nodes with label {selector} from the kubernetes API server at {}: \
                 {e} (check the server address and that this node's account may list nodes)",
                    self.server
                ))
            })?;
        let Some(node) = list.items.first() else {
            return Err(ResolveError::Unknown(format!(
                "no kubernetes node has the label {selector}: label the node that runs \
                 '{node_id}' (kubectl label node <name> {selector})"
            )));
        };
        if list.items.len() > 1 {
            tracing::warn!(%selector, nodes = list.items.len(), "several kubernetes nodes carry one node id; using the first");
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        let address = node
            .status
            .as_ref()
            .and_then(|status| status.addresses.as_ref())
            .and_then(|addresses| addresses.iter().find(|a| a.type_ == "InternalIP"))
            .ok_or_else(|| {
                ResolveError::Misconfigured(format!(
                    "kubernetes node '{name}' (label {selector}) has no InternalIP in \
                     status.addresses: check the kubelet's --node-ip"
                ))
            })?;
        let ip: IpAddr = address.address.trim().parse().map_err(|_| {
            ResolveError::Misconfigured(format!(
                "kubernetes node '{name}' has an InternalIP that is not an IP address: '{}'",
                address.address.chars().take(64).collect::<String>()
            ))
        })?;
        Ok(endpoint_of(ip, self.grpc_port))
    }
}

impl Resolver for KubernetesResolver {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn resolve<'a>(&'a self, node_id: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            if !is_label_value(node_id) {
                return Err(ResolveError::Unknown(format!(
                    "node id '{node_id}' cannot be a kubernetes label value (up to 63 letters, \
                     digits, '-', '_' or '.', starting and ending with a letter or digit)"
                )));
            }
            self.lookup(node_id).await
        })
    }

    fn evict(&self, node_id: &str, endpoint: &str) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if matches!(cache.get(node_id), Some((Ok(cached), _)) if cached == endpoint) {
            cache.remove(node_id);
        }
    }
}

async fn from_file(path: &Path) -> Result<Config, Error> {
    let bad = |source| Error::Kubeconfig { path: path.to_owned(), source };
    let kubeconfig = Kubeconfig::read_from(path).map_err(bad)?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(bad)
}

/// Why the resolver cannot reach or read the API server at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "kubernetes resolver: not in a pod ({in_cluster}) and no usable kubeconfig ({source}); \
         give one with --kubeconfig FILE"
    )]
    NoConfig {
        in_cluster: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubernetes resolver: cannot build a client for {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Kubernetes node '{node}' from {server}: {source}")]
    Node {
        node: String,
        server: String,
        #[source]
        source: kube::Error,
    },
}

/// A valid Kubernetes label value (and so safe inside a label selector).
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A valid Kubernetes label key: an optional DNS prefix and `/`, then a name like a value.
pub fn is_label_key(key: &str) -> bool {
    match key.rsplit_once('/') {
        None => is_label_value(key),
        Some((prefix, name)) => {
            is_label_value(name)
                && !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    !part.is_empty()
                        && part.len() <= 63
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in ["node-1", "a", "k8s.node_2", "A1"] {
            assert!(is_label_value(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a:b", "a@b", "a,b", "a=b", &"x".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
        assert!(is_label_key("nodeID"));
        assert!(is_label_key("example.com/node-id"));
        assert!(!is_label_key("Example.com/node-id"));
        assert!(!is_label_key("/node"));
        assert!(!is_label_key("a,b"));
    }
}
