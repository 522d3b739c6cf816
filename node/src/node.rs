//! A running node: opens the store and the search index, hosts its tools, binds the REST and
//! gRPC listeners, serves, and shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridnode_search::{Follower, SearchIndex};
use gridnode_store::{ClusterLocalTool, Record, Store, StoreConfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use gridnode_federation::{Admission, ClusterKey, Federation, FederationConfig, Identity, Load};

use crate::config::{NodeConfig, ResolverKind};
use crate::error::{Error, Result};
use crate::http::{self, AppState};
use crate::load::Sampler;
use crate::metrics::Metrics;
use crate::resolve::federation::FederationResolver;
use crate::resolve::kubernetes::KubernetesResolver;
use crate::resolve::static_table::StaticResolver;
use crate::resolve::{Chain, Resolver};
use crate::runtime::grpc::Executor;
use crate::runtime::process::{self, ProcessSettings};
use crate::runtime::{Runtime, builtin};
use crate::service::actions::Actions;
use crate::service::audit::Audit;
use crate::service::blobs::Blobs;
use crate::service::bundle_cache::BundleCache;
use crate::service::cluster::{Cluster, Listeners};
use crate::service::cluster_tools::ClusterTools;
use crate::service::execution::{Execution, Parts};
use crate::service::orgs::Orgs;
use crate::service::remote::Remote;
use crate::service::selection::Selection;
use crate::service::{Registry, Settings};

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A started node. Drop it only after [`Node::shutdown`], or the store is not flushed.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    registry: Registry,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    stop_grpc: oneshot::Sender<()>,
    grpc: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    follower: Follower,
    cluster: Cluster,
    cluster_tools: ClusterTools,
    actions: Actions,
    own_cluster_key: Option<PathBuf>,
}

impl Node {
    /// Starts a node. The config is validated first (see [`NodeConfig::validate`]).
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let (config, kubernetes) = node_id_from_label(config.validate()?).await?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::io(format!("cannot create data dir {}", config.data_dir.display()), e)
        })?;
        // The node's key signs every version its store writes, and is its peer id.
        let identity = Identity::load_or_create(&config.key_file())?;
        let (admission, own_cluster_key) = admission(&config)?;
        let store_config = StoreConfig {
            path: Some(config.store_dir()),
            cache_capacity: config.store.cache_mb * 1024 * 1024,
            node_id: config.node_id.clone(),
            signer: Some(Arc::new(identity.clone())),
        };
        let hosting = config.clone();
        let metrics = Metrics::new();
        let mut runtime = tokio::task::spawn_blocking(move || host_tools(&hosting))
            .await
            .map_err(|e| Error::Internal(format!("tool loading task failed: {e}")))?;
        runtime.set_metrics(metrics.clone());
        let runtime = Arc::new(runtime);
        let index_dir = config.index_dir();
        let records = runtime.records();
        let node_id = config.node_id.clone();
        // Opening the index catches it up with the store (or rebuilds it) before we serve.
        let (store, search) = tokio::task::spawn_blocking(move || -> Result<_> {
            let store = Store::open(&store_config)?;
            announce(&store, &node_id, &records)?;
            let search = SearchIndex::open(&index_dir, store.clone())?;
            Ok((store, Arc::new(search)))
        })
        .await
        .map_err(|e| Error::Internal(format!("store open task failed: {e}")))??;
        let follower = gridnode_search::follow(search.clone(), store.subscribe());

        let (listener, http_addr) = bind(config.http, "http").await?;
        let (grpc_listener, grpc_addr) = bind(config.grpc, "grpc").await?;
        let advertise_http = if config.advertise_http.is_empty() {
            format!("http://{http_addr}")
        } else {
            config.advertise_http.clone()
        };
        let advertise_grpc = if config.advertise_grpc.is_empty() {
            grpc_addr.to_string()
        } else {
            config.advertise_grpc.clone()
        };
        if crate::resolve::federation::is_unspecified(&advertise_grpc) {
            tracing::warn!(%advertise_grpc, "the gRPC endpoint told to peers is a wildcard: they cannot call this node's tools; set --advertise-grpc HOST:PORT");
        }
        let cluster = start_federation(
            &config,
            (identity, admission),
            store.clone(),
            runtime.clone(),
            Listeners {
                http: http_addr.to_string(),
                grpc: grpc_addr.to_string(),
                p2p: Vec::new(),
                advertise_http: advertise_http.clone(),
                advertise_grpc: advertise_grpc.clone(),
            },
        )
        .await?;
        let registry = Registry::new(
            store,
            search,
            Settings { advertise_http, limits: config.limits.clone() },
        );
        let chain = match resolvers(&config, &cluster, kubernetes).await {
            Ok(chain) => chain,
            Err(error) => {
                cluster.federation().shutdown().await;
                return Err(error);
            }
        };
        let cluster_tools = ClusterTools::new(
            registry.clone(),
            runtime.clone(),
            cluster.clone(),
            chain,
            config.execute.clone(),
            config.runtime.max_output_bytes as usize,
        );

        let actions = match services(&config, &registry, &cluster, &cluster_tools, &metrics) {
            Ok(actions) => actions,
            Err(error) => {
                cluster.federation().shutdown().await;
                return Err(error);
            }
        };

        // gRPC: TCP_NODELAY on every accepted connection (tonic does not set it on sockets it is
        // handed, and payloads over ~512 bytes would then wait for Nagle).
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
        let service = Executor::new(runtime.clone()).into_service();
        let grpc = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = grpc_stopped.await;
                })
                .await
        });

        let ready = Arc::new(AtomicBool::new(false));
        let app = http::router(AppState::new(
            registry.clone(),
            cluster.clone(),
            cluster_tools.clone(),
            actions.clone(),
            metrics,
            ready.clone(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        ready.store(true, Ordering::Release);
        tracing::info!(
            node_id = %config.node_id,
            peer_id = %cluster.node().peer_id,
            cluster = %config.cluster,
            %http_addr,
            %grpc_addr,
            "node started"
        );
        Ok(Node {
            config,
            http_addr,
            grpc_addr,
            registry,
            stop,
            server,
            stop_grpc,
            grpc,
            follower,
            cluster,
            cluster_tools,
            actions,
            own_cluster_key,
        })
    }

    /// The cluster key this node created in its data directory, when it uses that one (not a
    /// `--cluster-key` file, not an open cluster): the file the nodes that join need.
    pub fn own_cluster_key(&self) -> Option<&std::path::Path> {
        self.own_cluster_key.as_deref()
    }

    /// The bound REST address (the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound gRPC address (the real port when 0 was asked for).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The gRPC endpoint other nodes are told to call.
    pub fn advertise_grpc(&self) -> &str {
        self.cluster.advertise_grpc()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The service layer, for in-process callers and tests.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// This node in its federation.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Resolution and execution across the federation.
    pub fn cluster_tools(&self) -> &ClusterTools {
        &self.cluster_tools
    }

    /// Execute by id, allow-lists, the audit log and the bundle cache.
    pub fn execution(&self) -> &Execution {
        self.actions.execution()
    }

    /// Actions and selection.
    pub fn actions(&self) -> &Actions {
        &self.actions
    }

    /// The libp2p listen addresses, each ending in `/p2p/<peer id>`.
    pub fn p2p_addrs(&self) -> Vec<String> {
        self.cluster.node().listeners.p2p
    }

    /// Stops accepting requests, lets in-flight ones finish (for at most [`SHUTDOWN_GRACE`]),
    /// then makes every write durable, whatever happened to the servers.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.stop.send(());
        let _ = self.stop_grpc.send(());
        // Both servers drain at once, under one grace period.
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            tokio::join!(&mut self.server, &mut self.grpc)
        })
        .await;
        let served = match drained {
            Ok((http, grpc)) => {
                if let Ok(Err(error)) = grpc {
                    tracing::error!(%error, "grpc server failed");
                }
                match http {
                    Ok(result) => result.map_err(|e| Error::io("http server failed", e)),
                    Err(e) => Err(Error::Internal(format!("http server task failed: {e}"))),
                }
            }
            Err(_) => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running at shutdown; dropping them");
                self.server.abort();
                self.grpc.abort();
                Ok(())
            }
        };
        // No more replication: what peers send from now on, this node gets by anti-entropy at
        // its next start.
        self.cluster.federation().shutdown().await;
        // Stop indexing after the batch in hand, then release the index writer and its lock, so
        // the next start (in this process too) can take it. A restart catches up from the feed.
        self.follower.stop().await;
        let registry = self.registry;
        tokio::task::spawn_blocking(move || {
            registry.search_index().close();
            registry.store().sync()
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))??;
        tracing::info!("node stopped; store flushed");
        served
    }
}

/// Starts the federation over the store; the heartbeat carries the advertised endpoints and the
/// machine's load with the runtime's calls in flight.
async fn start_federation(
    config: &NodeConfig,
    (identity, admission): (Identity, Admission),
    store: Store,
    runtime: Arc<Runtime>,
    listeners: Listeners,
) -> Result<Cluster> {
    let (listen, bootstrap) = config.multiaddrs();
    let mut settings =
        FederationConfig::new(config.node_id.clone(), config.cluster.clone(), identity, admission);
    settings.listen = listen;
    settings.bootstrap = bootstrap;
    settings.mdns = config.mdns;
    settings.grpc = listeners.advertise_grpc.clone();
    settings.http = listeners.advertise_http.clone();
    settings.heartbeat_interval = Duration::from_millis(config.federation.heartbeat_ms);
    settings.anti_entropy_interval = Duration::from_millis(config.federation.anti_entropy_ms);
    settings.tombstone_ttl = Duration::from_secs(config.federation.tombstone_ttl_secs);
    let sampler = Sampler::default();
    let load = Arc::new(move || {
        let sample = sampler.sample();
        Load {
            cpu_percent: sample.map_or(0.0, |s| s.cpu_percent),
            memory_used_bytes: sample.map_or(0, |s| s.memory_used_bytes),
            memory_total_bytes: sample.map_or(0, |s| s.memory_total_bytes),
            in_flight_calls: runtime.in_flight(),
        }
    });
    let federation = Federation::start(settings, store, load).await?;
    let unreachable_for = Duration::from_millis(config.execute.unreachable_for_ms);
    Ok(Cluster::new(Arc::new(federation), listeners, unreachable_for))
}

/// Whom the federation admits (contract section 13): peers holding the cluster key — the
/// configured file (which must exist), else `<data_dir>/cluster.key`, created at the first
/// start and announced on stdout — or anyone with `open_cluster`.
/// Returns the data-dir key's path when that is the one used (the binary prints it).
fn admission(config: &NodeConfig) -> Result<(Admission, Option<PathBuf>)> {
    let Some(path) = config.cluster_key_file() else { return Ok((Admission::Open, None)) };
    if config.federation.cluster_key_file.is_some() {
        let key = ClusterKey::load(&path).map_err(|e| {
            Error::Config(format!(
                "federation.cluster_key_file: {e} (make one with 'gridnode cluster keygen FILE')"
            ))
        })?;
        return Ok((Admission::keyed(&key), None));
    }
    let (key, _) = ClusterKey::load_or_create(&path)?;
    Ok((Admission::keyed(&key), Some(path)))
}

/// The resolver chain in its configured order.
/// `kubernetes` is the resolver start-up connected already, if it did.
async fn resolvers(
    config: &NodeConfig,
    cluster: &Cluster,
    mut kubernetes: Option<Arc<KubernetesResolver>>,
) -> Result<Chain> {
    let mut chain: Vec<Arc<dyn Resolver>> = Vec::new();
    for kind in config.resolver.effective_chain() {
        chain.push(match kind {
            ResolverKind::Federation => {
                Arc::new(FederationResolver::new(cluster.federation_handle()))
            }
            ResolverKind::Static => {
                Arc::new(StaticResolver::new(config.resolver.static_table.clone()))
            }
            ResolverKind::Kubernetes => match kubernetes.take() {
                Some(connected) => connected,
                None => {
                    let settings = config.resolver.kubernetes.clone().unwrap_or_default();
                    Arc::new(KubernetesResolver::connect(&settings).await.map_err(Error::Config)?)
                }
            },
        });
    }
    Ok(Chain::new(chain))
}

/// Binds a listener; port 0 picks a free port, so the bound address is returned with it.
async fn bind(addr: SocketAddr, what: &str) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("cannot listen for {what} on {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io(format!("cannot read the {what} listener's address"), e))?;
    Ok((listener, bound))
}

/// With no node id but a Kubernetes node name, the node id is that node's label (else its name).
/// The resolver connected to read it is handed on to the resolver chain.
async fn node_id_from_label(
    mut config: NodeConfig,
) -> Result<(NodeConfig, Option<Arc<KubernetesResolver>>)> {
    let kube = config.resolver.kubernetes.clone();
    let Some((settings, node_name)) = kube
        .and_then(|k| k.node_name.clone().map(|name| (k, name)))
        .filter(|_| config.node_id.is_empty())
    else {
        return Ok((config, None));
    };
    let resolver = Arc::new(KubernetesResolver::connect(&settings).await.map_err(Error::Config)?);
    let label = resolver.label_of(&node_name).await.map_err(Error::Config)?;
    config.node_id = match label {
        Some(id) => id,
        None => {
            tracing::warn!(%node_name, label = %settings.label, "the Kubernetes node has no such label: its name is the node id");
            node_name
        }
    };
    tracing::info!(node_id = %config.node_id, "node id read from the Kubernetes node");
    Ok((config.validate()?, Some(resolver)))
}

/// The services of contract section 11 (execute by id, selection, actions, allow-lists, audit),
/// over the registry, cluster and cluster tools of a node (public for in-process tests).
pub fn services(
    config: &NodeConfig,
    registry: &Registry,
    cluster: &Cluster,
    cluster_tools: &ClusterTools,
    metrics: &Metrics,
) -> Result<Actions> {
    let remote = Remote::new(
        Duration::from_millis(config.execute.call_timeout_ms),
        Duration::from_millis(config.execute.connect_timeout_ms),
        config.runtime.max_output_bytes as usize,
    )?;
    let blobs = Blobs::new(
        registry.clone(),
        cluster.clone(),
        remote.clone(),
        Duration::from_millis(config.bundles.fetch_timeout_ms),
    );
    let orgs = Orgs::new(registry.clone());
    let execution = Execution::new(Parts {
        registry: registry.clone(),
        cluster_tools: cluster_tools.clone(),
        orgs: orgs.clone(),
        audit: Audit::new(registry.clone(), config.audit.max_entries, metrics.clone()),
        blobs,
        bundles: BundleCache::new(
            config.bundle_dir(),
            config.bundles.cache_max_bytes,
            config.limits.max_unpacked_bytes,
        ),
        remote,
        process: process_settings(config, config.work_dir().join("bundles")),
        metrics: metrics.clone(),
    });
    let selection = Selection::new(registry.clone(), cluster_tools.clone(), cluster.clone(), orgs);
    Ok(Actions::new(registry.clone(), selection, execution))
}

fn process_settings(config: &NodeConfig, work_root: PathBuf) -> ProcessSettings {
    ProcessSettings {
        default_timeout: Duration::from_millis(config.runtime.default_timeout_ms),
        max_output_bytes: config.runtime.max_output_bytes as usize,
        max_concurrent: config.runtime.max_concurrent_per_tool,
        work_root,
    }
}

/// The built-in tools and the process tools of the tools dir. A tool folder that cannot be used
/// is logged and skipped: the node still starts.
fn host_tools(config: &NodeConfig) -> Runtime {
    let mut runtime = Runtime::new(config.node_id.clone());
    for tool in builtin::all(&config.node_id) {
        if let Err(problem) = runtime.register(tool) {
            tracing::error!(%problem, "built-in tool not hosted");
        }
    }
    let settings = process_settings(config, config.work_dir());
    let (tools, problems) = process::load_dir(&config.tools_dir(), &settings);
    for problem in problems {
        tracing::warn!(%problem, "process tool skipped");
    }
    for tool in tools {
        if let Err(problem) = runtime.register(Arc::new(tool)) {
            tracing::warn!(%problem, "process tool skipped");
        }
    }
    runtime
}

/// Replaces this node's `ClusterLocalTools` records with the tools it hosts now, as the seed's
/// SDK does at start: records of tools it no longer hosts are deleted, the current ones written
/// again (a new version each, so peers learn the node's tools afresh), under one flush.
fn announce(store: &Store, node_id: &str, records: &[ClusterLocalTool]) -> Result<()> {
    let hosted: std::collections::HashSet<String> =
        records.iter().map(|record| record.id().into_owned()).collect();
    for id in store.ids_where::<ClusterLocalTool>("node_id", &Value::from(node_id))? {
        if !hosted.contains(&id) {
            store.delete::<ClusterLocalTool>(&id)?;
        }
    }
    store.import(records)?;
    Ok(())
}
