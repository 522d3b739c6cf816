//! Every service of a node, side by side, built in one place. Transports (REST, GraphQL, gRPC,
//! the CLI through REST) hold an `Arc<Services>` and call the one service a request is about;
//! no service is reached through another.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use gridnode_search::SearchIndex;
use gridnode_store::Store;

use crate::config::NodeConfig;
use crate::error::Result;
use crate::grpc::MemberProof;
use crate::http::bounds::Bounds;
use crate::http::origin::Origins;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::resolve::Chain;
use crate::runtime::Runtime;
use crate::runtime::process::ProcessSettings;
use crate::service::acl::{Acl, AclSettings};
use crate::service::actions::Actions;
use crate::service::audit::Audit;
use crate::service::blobs::Blobs;
use crate::service::bundle_cache::BundleCache;
use crate::service::cluster::Cluster;
use crate::service::cluster_tools::ClusterTools;
use crate::service::execution::{self, Execution};
use crate::service::orgs::Orgs;
use crate::service::remote::Remote;
use crate::service::selection::Selection;
use crate::service::{Registry, Settings};

/// The services of one node.
#[derive(Debug)]
pub struct Services {
    /// Tools and functions: records, queries, search, uploads.
    pub registry: Registry,
    /// This node in its federation: peers, members, liveness.
    pub cluster: Cluster,
    /// The tools this node hosts, and the only place anything runs here.
    pub runtime: Arc<Runtime>,
    /// Node-local tool records, resolution, and the calls to peers.
    pub cluster_tools: ClusterTools,
    /// The one door through which anything runs.
    pub execution: Execution,
    pub selection: Selection,
    pub actions: Actions,
    /// Org allow-lists.
    pub orgs: Orgs,
    pub audit: Audit,
    pub blobs: Blobs,
    /// Unpacked bundles.
    pub bundles: BundleCache,
    pub metrics: Metrics,
    /// Who may do what (tokens and scopes).
    pub acl: Acl,
    /// Proves this node's gRPC calls to peers, and checks theirs.
    pub member_proof: MemberProof,
    /// The REST door's bounds.
    pub bounds: Bounds,
    /// The gRPC door's bound on requests in flight.
    pub grpc_limiter: Limiter,
    /// The limits of `[limits]`, as configured.
    pub limits: crate::config::Limits,
    /// The web origins whose pages may send requests.
    pub origins: Origins,
    /// True once the store is open and every listener is bound.
    pub ready: AtomicBool,
}

/// What the services are built over: the parts a node starts first.
#[derive(Debug)]
pub struct Parts {
    pub store: Store,
    pub search: Arc<SearchIndex>,
    pub cluster: Cluster,
    /// The node's hosted tools, counting their calls in `metrics`.
    pub runtime: Arc<Runtime>,
    /// The resolvers, in the configured order.
    pub chain: Chain,
    pub metrics: Metrics,
    /// The base of links this node hands out (`http://host:port`, no trailing slash).
    pub advertise_http: String,
    /// Access control's settings.
    pub acl: AclSettings,
    /// The bound REST address (one of the node's own web origins).
    pub http_addr: std::net::SocketAddr,
    /// Signs this node's calls to peers' gRPC doors and checks theirs.
    pub member_proof: MemberProof,
    /// Seals credentials (with the cluster key's derived key).
    pub sealer: crate::service::secrets::Sealer,
    /// The node's TLS, when it serves TLS (and so calls its peers over TLS).
    pub tls: Option<crate::tls::Tls>,
}

impl Services {
    /// Builds every service from the configuration and the started parts.
    pub fn build(config: &NodeConfig, parts: Parts) -> Result<Services> {
        let Parts {
            store,
            search,
            cluster,
            runtime,
            chain,
            metrics,
            advertise_http,
            acl,
            http_addr,
            member_proof,
            sealer,
            tls,
        } = parts;
        let origins = Origins::new(&advertise_http, http_addr, &config.http.allowed_origins);
        let acl = Acl::new(store.clone(), acl);
        let egress = config.egress_rules()?;
        let settings = Settings {
            advertise_http,
            limits: config.limits.clone(),
            egress,
            sealer: sealer.clone(),
            upload_dir: config.work_dir().join("uploads"),
        };
        let registry = Registry::new(store.clone(), search, settings.clone());
        let cluster_tools = ClusterTools::new(
            registry.clone(),
            cluster.clone(),
            chain,
            config.execute.clone(),
            config.runtime.max_output_bytes as usize,
            member_proof.clone(),
            tls.as_ref(),
        );
        let remote = Remote::new(
            Duration::from_millis(config.execute.call_timeout_ms),
            Duration::from_millis(config.execute.connect_timeout_ms),
            config.runtime.max_output_bytes as usize,
            settings.egress.clone(),
            tls.as_ref(),
        )?;
        let blobs = Blobs::new(
            store.clone(),
            cluster.clone(),
            remote.clone(),
            Duration::from_millis(config.bundles.fetch_timeout_ms),
            &settings,
            member_proof.clone(),
        );
        let orgs = Orgs::new(store.clone());
        let audit = Audit::new(store.clone(), config.audit.max_entries, metrics.clone());
        let bundles = BundleCache::new(
            config.bundle_dir(),
            config.bundles.cache_max_bytes,
            config.limits.max_unpacked_bytes,
        );
        let selection =
            Selection::new(registry.clone(), cluster_tools.clone(), cluster.clone(), orgs.clone());
        let actions = Actions::new(store.clone(), selection.clone(), orgs.clone());
        let execution = Execution::new(execution::Parts {
            store,
            runtime: runtime.clone(),
            cluster_tools: cluster_tools.clone(),
            actions: actions.clone(),
            orgs: orgs.clone(),
            audit: audit.clone(),
            blobs: blobs.clone(),
            bundles: bundles.clone(),
            remote,
            sealer,
            process: process_settings(config, config.work_dir().join("bundles")),
            metrics: metrics.clone(),
        });
        Ok(Services {
            registry,
            cluster,
            runtime,
            cluster_tools,
            execution,
            selection,
            actions,
            orgs,
            audit,
            blobs,
            bundles,
            metrics,
            acl,
            origins,
            member_proof,
            bounds: Bounds {
                limiter: Limiter::new(
                    config.limits.max_concurrent_requests,
                    config.limits.max_requests_per_client,
                ),
                request_timeout: Duration::from_millis(config.limits.request_timeout_ms),
            },
            grpc_limiter: Limiter::new(
                config.limits.max_concurrent_requests,
                config.limits.max_requests_per_client,
            ),
            limits: config.limits.clone(),
            ready: AtomicBool::new(false),
        })
    }
}

/// The limits process tools run under; their working directories go under `work_root`.
pub fn process_settings(config: &NodeConfig, work_root: std::path::PathBuf) -> ProcessSettings {
    ProcessSettings {
        default_timeout: Duration::from_millis(config.runtime.default_timeout_ms),
        max_output_bytes: config.runtime.max_output_bytes as usize,
        max_concurrent: config.runtime.max_concurrent_per_tool,
        work_root,
    }
}
