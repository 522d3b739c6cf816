//! Set-up shared by the federation's multi-node test files: real federations on 127.0.0.1,
//! each node a sled store on disk signed by its own key, each test its own cluster name and
//! cluster key, mDNS off.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gridnode_federation::{
    Admission, ClusterKey, Federation, FederationConfig, Identity, Load, Multiaddr,
};
use gridnode_store::{Store, StoreConfig, ToolEntry};

pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub store: Store,
    pub fed: Federation,
}

/// The key of `cluster` in this test's directory, made on first use.
pub fn cluster_key(dir: &Path, cluster: &str) -> ClusterKey {
    ClusterKey::load_or_create(&dir.join(format!("{cluster}.key"))).unwrap().0
}

impl Node {
    /// A node of `cluster` holding its key.
    pub async fn start(dir: &Path, name: &str, cluster: &str, bootstrap: &[Multiaddr]) -> Node {
        let admission = Admission::keyed(&cluster_key(dir, cluster));
        Node::start_with(dir, name, cluster, bootstrap, admission).await
    }

    /// A node admitting peers as `admission` says.
    pub async fn start_with(
        dir: &Path,
        name: &str,
        cluster: &str,
        bootstrap: &[Multiaddr],
        admission: Admission,
    ) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = dir.join(name);
        let identity = Identity::load_or_create(&dir.join("p2p.key")).unwrap();
        let store = Store::open(
            &StoreConfig::new(dir.join("store"), name).signed_by(Arc::new(identity.clone())),
        )
        .unwrap();
        let mut config = FederationConfig::new(name, cluster, identity, admission);
        config.listen = vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        ];
        config.bootstrap = bootstrap.to_vec();
        config.mdns = false;
        config.grpc = format!("127.0.0.1:1{name}");
        config.heartbeat_interval = Duration::from_millis(250);
        config.anti_entropy_interval = Duration::from_millis(500);
        let fed = Federation::start(config, store.clone(), Arc::new(Load::default)).await.unwrap();
        Node { name: name.into(), dir, store, fed }
    }

    /// The TCP address to bootstrap from, with the peer id.
    pub fn addr(&self) -> Multiaddr {
        self.fed.listen_addrs().into_iter().find(|a| a.to_string().contains("/tcp/")).unwrap()
    }

    pub async fn stop(self) -> PathBuf {
        self.fed.shutdown().await;
        self.store.sync().unwrap();
        drop(self.store);
        self.dir
    }
}

/// A cluster name no other test uses.
pub fn cluster(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{test}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn tool(id: &str, description: &str) -> ToolEntry {
    ToolEntry {
        tool_id: id.into(),
        tool_search_description: description.into(),
        tool_tags: vec!["fed".into()],
        ..ToolEntry::default()
    }
}

/// Waits (at most [`PATIENCE`]) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    gridnode_tests::until(what, PATIENCE, async || check().then_some(()).ok_or("not yet")).await
}

pub fn description(store: &Store, id: &str) -> Option<String> {
    store.try_get::<ToolEntry>(id).unwrap().map(|t| t.tool_search_description)
}

/// The `(id, version)` of everything a store holds, tombstones included.
pub fn state(store: &Store) -> Vec<String> {
    store
        .all_versions()
        .unwrap()
        .into_iter()
        .map(|(c, id, h)| format!("{c:?}/{id}@{:?}", h.hlc))
        .collect()
}
