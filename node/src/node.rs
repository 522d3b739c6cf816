//! A running node: opens the store and the search index, hosts its tools, starts the
//! federation, builds the services, binds the REST and gRPC listeners, serves, and shuts down
//! gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridnode_search::{Follower, SearchIndex};
use gridnode_store::{ClusterLocalTool, Record, Store, StoreConfig};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use gridnode_federation::{Admission, ClusterKey, Federation, FederationConfig, Identity, Load};

use crate::config::{NodeConfig, ResolverKind};
use crate::error::{Error, Result};
use crate::grpc::{Executor, MemberProof};
use crate::load::Sampler;
use crate::metrics::Metrics;
use crate::resolve::federation::FederationResolver;
use crate::resolve::kubernetes::KubernetesResolver;
use crate::resolve::static_table::StaticResolver;
use crate::resolve::{Chain, Resolver};
use crate::runtime::{Runtime, builtin, process};
use crate::service::Registry;
use crate::service::acl::AclSettings;
use crate::service::cluster::{Cluster, Listeners};
use crate::services::{Parts, Services, process_settings};

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A started node. Drop it only after [`Node::shutdown`], or the store is not flushed.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    services: Arc<Services>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    stop_grpc: oneshot::Sender<()>,
    grpc: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    follower: Follower,
    own_cluster_key: Option<PathBuf>,
    own_admin_token: Option<PathBuf>,
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
        // Two rustls crypto providers are in the tree (libp2p's QUIC brings ring): pick one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = crate::tls::Tls::load(&config.tls)?;
        let (cluster_key, own_cluster_key) = admission(&config)?;
        let admission = cluster_key.as_ref().map_or(Admission::Open, Admission::keyed);
        let member_proof = MemberProof::new(cluster_key.as_ref());
        // Credentials are sealed with the cluster key's derived key, else a key of this node's.
        let sealing_key = match &cluster_key {
            Some(key) => key.clone(),
            None => ClusterKey::load_or_create(&config.data_dir.join("credentials.key"))?.0,
        };
        let sealer = crate::service::secrets::Sealer::new(&sealing_key);
        let (acl, own_admin_token) = access(&config)?;
        let metrics = Metrics::new();
        let runtime = host_tools(&config, &metrics).await?;
        let (store, search) = open_store(&config, &identity, &runtime).await?;
        let follower = gridnode_search::follow(search.clone(), store.subscribe());
        let (http_listener, http_addr) = bind(config.http.listen, "http").await?;
        let (grpc_listener, grpc_addr) = bind(config.grpc, "grpc").await?;
        let listeners = listeners(&config, http_addr, grpc_addr);
        let advertise_http = listeners.advertise_http.clone();
        let cluster = start_federation(
            &config,
            (identity, admission),
            store.clone(),
            runtime.clone(),
            listeners,
        )
        .await?;
        let built = async {
            let chain = resolvers(&config, &cluster, kubernetes).await?;
            let parts = Parts {
                store,
                search,
                cluster: cluster.clone(),
                runtime,
                chain,
                metrics,
                advertise_http,
                acl,
                http_addr,
                member_proof,
                sealer,
                tls: tls.clone(),
            };
            Services::build(&config, parts)
        };
        let services = match built.await {
            Ok(services) => Arc::new(services),
            Err(error) => {
                cluster.federation().shutdown().await;
                return Err(error);
            }
        };
        let registry = &services.registry;
        let sealed = registry.seal_plaintext::<gridnode_store::ToolEntry>().await?
            + registry.seal_plaintext::<gridnode_store::FunctionEntry>().await?;
        if sealed > 0 {
            tracing::info!(records = sealed, "sealed credentials stored in plain text");
        }
        let (stop_grpc, grpc) = serve_grpc(grpc_listener, services.clone(), tls.as_ref())?;
        let header_timeout = Duration::from_millis(config.limits.header_timeout_ms);
        let acceptor = tls.as_ref().map(crate::tls::Tls::acceptor);
        let (stop, server) = serve_http(http_listener, services.clone(), header_timeout, acceptor);
        services.ready.store(true, Ordering::Release);
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
            services,
            stop,
            server,
            stop_grpc,
            grpc,
            follower,
            own_cluster_key,
            own_admin_token,
        })
    }

    /// The cluster key this node created in its data directory, when it uses that one (not a
    /// `--cluster-key` file, not an open cluster): the file the nodes that join need.
    pub fn own_cluster_key(&self) -> Option<&std::path::Path> {
        self.own_cluster_key.as_deref()
    }

    /// The management secret's file when this start made it (the binary prints its path).
    pub fn own_admin_token(&self) -> Option<&std::path::Path> {
        self.own_admin_token.as_deref()
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
        self.services.cluster.advertise_grpc()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Every service of this node, for in-process callers (benchmarks, tests).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// The registry service.
    pub fn registry(&self) -> &Registry {
        &self.services.registry
    }

    /// This node in its federation.
    pub fn cluster(&self) -> &Cluster {
        &self.services.cluster
    }

    /// The libp2p listen addresses, each ending in `/p2p/<peer id>`.
    pub fn p2p_addrs(&self) -> Vec<String> {
        self.services.cluster.node().listeners.p2p
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
        // Every audit entry in the log, and the writer's store handle released.
        self.services.audit.close().await;
        // No more replication: what peers send from now on, this node gets by anti-entropy at
        // its next start.
        self.services.cluster.federation().shutdown().await;
        // Stop indexing after the batch in hand, then release the index writer and its lock, so
        // the next start (in this process too) can take it. A restart catches up from the feed.
        self.follower.stop().await;
        let registry = self.services.registry.clone();
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
fn admission(config: &NodeConfig) -> Result<(Option<ClusterKey>, Option<PathBuf>)> {
    let Some(path) = config.cluster_key_file() else { return Ok((None, None)) };
    if config.federation.cluster_key_file.is_some() {
        let key = ClusterKey::load(&path).map_err(|e| {
            Error::Config(format!(
                "federation.cluster_key_file: {e} (make one with 'gridnode cluster keygen FILE')"
            ))
        })?;
        return Ok((Some(key), None));
    }
    let (key, _) = ClusterKey::load_or_create(&path)?;
    Ok((Some(key), Some(path)))
}

/// Access control's settings (contract section 12). When it is on, the management secret is
/// `GRIDNODE_ADMIN_TOKEN`'s, else the admin token file's (made, mode 0600, at the first start;
/// its path is returned then, for the binary to print). A node left open beyond loopback
/// (`--insecure`) says so every minute.
fn access(config: &NodeConfig) -> Result<(AclSettings, Option<PathBuf>)> {
    let enabled = config.acl_enabled();
    let mut settings =
        AclSettings { enabled, admin_secret: None, open_metrics: config.acl.open_metrics };
    if !enabled {
        if !config.all_loopback() {
            tokio::spawn(async {
                let mut every = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every.tick().await;
                    tracing::warn!(
                        "access control is off on a node reachable beyond loopback (--insecure): \
                         anyone who reaches its ports can change the registry and run tools"
                    );
                }
            });
        }
        return Ok((settings, None));
    }
    if let Some(secret) = &config.acl.admin_token {
        settings.admin_secret = Some(secret.0.clone());
        return Ok((settings, None));
    }
    let path = config.admin_token_file();
    let (secret, made) = crate::service::acl::admin_secret_file(&path)?;
    settings.admin_secret = Some(secret);
    Ok((settings, made.then_some(path)))
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
                    Arc::new(KubernetesResolver::connect(&settings).await?)
                }
            },
        });
    }
    Ok(Chain::new(chain))
}

/// Binds a listener; port 0 picks a free port, so the bound address is returned with it.
async fn bind(addr: SocketAddr, what: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
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
    let resolver = Arc::new(KubernetesResolver::connect(&settings).await?);
    let label = resolver.label_of(&node_name).await?;
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

/// The built-in tools and the process tools of the tools dir, their calls counted in `metrics`.
/// A tool folder that cannot be used is logged and skipped: the node still starts.
async fn host_tools(config: &NodeConfig, metrics: &Metrics) -> Result<Arc<Runtime>> {
    let config = config.clone();
    let mut runtime = tokio::task::spawn_blocking(move || hosted(&config))
        .await
        .map_err(|e| Error::Internal(format!("tool loading task failed: {e}")))?;
    runtime.set_metrics(metrics.clone());
    Ok(Arc::new(runtime))
}

fn hosted(config: &NodeConfig) -> Runtime {
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

/// Opens the store (this node's key signing its writes), announces the hosted tools, and opens
/// the search index, which catches up with the store (or is rebuilt) before anything is served.
async fn open_store(
    config: &NodeConfig,
    identity: &Identity,
    runtime: &Runtime,
) -> Result<(Store, Arc<SearchIndex>)> {
    let store_config = StoreConfig {
        path: Some(config.store_dir()),
        cache_capacity: config.store.cache_mb * 1024 * 1024,
        node_id: config.node_id.clone(),
        signer: Some(Arc::new(identity.clone())),
    };
    let (index_dir, node_id, records) =
        (config.index_dir(), config.node_id.clone(), runtime.records());
    tokio::task::spawn_blocking(move || -> Result<_> {
        let store = Store::open(&store_config)?;
        announce(&store, &node_id, &records)?;
        let search = SearchIndex::open(&index_dir, store.clone())?;
        Ok((store, Arc::new(search)))
    })
    .await
    .map_err(|e| Error::Internal(format!("store open task failed: {e}")))?
}

/// The bound addresses, and the endpoints peers are told (the bound ones unless configured).
fn listeners(config: &NodeConfig, http: SocketAddr, grpc: SocketAddr) -> Listeners {
    let or_bound =
        |given: &str, bound: String| if given.is_empty() { bound } else { given.to_owned() };
    let scheme = if config.tls.enabled() { "https" } else { "http" };
    let advertise_http = or_bound(&config.advertise_http, format!("{scheme}://{http}"));
    let advertise_grpc = or_bound(&config.advertise_grpc, grpc.to_string());
    if crate::resolve::federation::is_unspecified(&advertise_grpc) {
        tracing::warn!(%advertise_grpc, "the gRPC endpoint told to peers is a wildcard: they cannot call this node's tools; set --advertise-grpc HOST:PORT");
    }
    Listeners {
        http: http.to_string(),
        grpc: grpc.to_string(),
        p2p: Vec::new(),
        advertise_http,
        advertise_grpc,
    }
}

type Serving<E> = (oneshot::Sender<()>, JoinHandle<std::result::Result<(), E>>);

/// Serves the ToolExecutor until told to stop. TCP_NODELAY on every accepted connection (tonic
/// does not set it on sockets it is handed, and payloads over ~512 bytes would wait for Nagle).
fn serve_grpc(
    listener: TcpListener,
    services: Arc<Services>,
    tls: Option<&crate::tls::Tls>,
) -> Result<Serving<tonic::transport::Error>> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = services.limits.clone();
    let service = Executor::new(services).into_service();
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls.grpc_server())
            .map_err(|e| Error::Config(format!("tls: the gRPC door cannot use it: {e}")))?;
    }
    let task = tokio::spawn(async move {
        server
            .max_concurrent_streams(limits.grpc_max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
    });
    Ok((stop, task))
}

/// Serves the REST API until told to stop.
fn serve_http(
    listener: TcpListener,
    services: Arc<Services>,
    header_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Serving<std::io::Error> {
    let app = crate::http::router(services);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        crate::http::serve::serve(listener, app, header_timeout, tls, stopped).await
    });
    (stop, task)
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
