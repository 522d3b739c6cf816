//! Federation: the registry replicated to every peer over libp2p, with each node's liveness and
//! load gossiped alongside.
//!
//! One task owns the swarm ([`swarm`]: QUIC and TCP+noise+yamux, gossipsub, identify, kademlia,
//! mDNS behind a toggle, request-response, connection limits); the rest talks to it through a
//! bounded command channel. A peer takes part only once [`admission`] admitted it (it proved
//! it holds the cluster key). The [`replicator`] follows the store's change feed and publishes
//! this node's own writes (signed by its [`identity`]), checks what peers send ([`authority`]:
//! limits, clock, signature of the author bound by its member record in [`members`]) before it
//! is merged or forwarded, merges it through `Store::merge_encoded` (last writer wins by hybrid
//! logical clock, ties by node id; tombstones), and runs anti-entropy ([`digest`],
//! [`versions`]) on admission and on a timer, so a node that was away converges without
//! replaying history. [`liveness`] keeps the heartbeat table of bound members. What is refused
//! is counted by reason ([`rejections`]).
//!
//! This crate never writes the store except through that merge (and this node's own member
//! record), never serves HTTP, and never decodes a peer's bytes but through the store's
//! bounded decoder.

#![forbid(unsafe_code)]

pub mod admission;
pub mod authority;
pub mod digest;
mod error;
pub mod identity;
pub mod liveness;
pub mod members;
pub mod rejections;
mod replicator;
mod swarm;
pub mod versions;
pub mod wire;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use gridnode_store::{Hlc, Store};
pub use libp2p::{Multiaddr, PeerId};

pub use crate::admission::{Admission, ClusterKey};
pub use crate::error::{Error, Result};
pub use crate::identity::Identity;
use crate::members::Bindings;
use crate::rejections::Rejections;
pub use crate::rejections::{Reason, Rejection};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::liveness::Peers;
pub use crate::liveness::{Heartbeat, Load, PeerView};
use crate::replicator::Client;
use crate::swarm::{Command, Names, Topic};
use crate::versions::VersionMap;
use crate::wire::{Gossip, Key};

/// How a federation is set up.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    pub node_id: String,
    /// Nodes only federate within one cluster name.
    pub cluster: String,
    /// libp2p listen addresses (port 0 picks a free one).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and to keep dialing while they are down.
    pub bootstrap: Vec<Multiaddr>,
    /// LAN discovery.
    pub mdns: bool,
    /// The node's key: its peer id, and the signer of its versions. The store the federation
    /// runs over must sign with the same one (`StoreConfig::signed_by`).
    pub identity: Identity,
    /// Whom to admit: peers holding the cluster key, or anyone (`--open-cluster`).
    pub admission: Admission,
    /// The gRPC endpoint peers are told to call (`host:port`).
    pub grpc: String,
    /// The base URL of this node's REST API.
    pub http: String,
    pub heartbeat_interval: Duration,
    pub anti_entropy_interval: Duration,
    /// How long a delete's tombstone is kept for nodes that were away; a node away for longer
    /// may bring a deleted record back.
    pub tombstone_ttl: Duration,
}

impl FederationConfig {
    /// A config with the defaults: heartbeat every second, anti-entropy every 5 s, tombstones
    /// kept 7 days, mDNS on.
    pub fn new(
        node_id: impl Into<String>,
        cluster: impl Into<String>,
        identity: Identity,
        admission: Admission,
    ) -> FederationConfig {
        FederationConfig {
            node_id: node_id.into(),
            cluster: cluster.into(),
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: true,
            identity,
            admission,
            grpc: String::new(),
            http: String::new(),
            heartbeat_interval: Duration::from_secs(1),
            anti_entropy_interval: Duration::from_secs(5),
            tombstone_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Checks a cluster name: it becomes part of protocol and topic names.
pub fn validate_cluster(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid cluster name '{}': use 1 to 64 of letters, digits, '-', '_' and '.'",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// Where this node's load comes from (sampled once per heartbeat, on the blocking pool).
pub type LoadSource = Arc<dyn Fn() -> Load + Send + Sync>;

/// What happened, for logs and tests.
#[derive(Debug, Clone)]
pub enum Event {
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// A peer's version was merged and changed the store.
    Merged {
        key: Key,
        from: PeerId,
    },
    /// A peer's message or version was dropped, and why.
    Rejected {
        from: PeerId,
        rejection: Rejection,
    },
    /// An anti-entropy session with `peer` merged `fetched` versions.
    Synced {
        peer: PeerId,
        fetched: usize,
    },
}

/// Counters, for benchmarks and metrics. Bytes are gossip payloads (before framing and
/// encryption); a forwarded message counts where it is received, not where it is forwarded.
#[derive(Debug, Default)]
pub struct Stats {
    changes_sent_bytes: AtomicU64,
    changes_received_bytes: AtomicU64,
    heartbeat_sent_bytes: AtomicU64,
    published_versions: AtomicU64,
    merged_versions: AtomicU64,
    sync_served_bytes: AtomicU64,
    followed_seq: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Payload bytes of this node's own changes it published.
    pub changes_sent_bytes: u64,
    /// Payload bytes of change messages received (first copies only).
    pub changes_received_bytes: u64,
    pub heartbeat_sent_bytes: u64,
    /// Versions of this node's own writes published.
    pub published_versions: u64,
    /// Versions from peers that changed the store.
    pub merged_versions: u64,
    /// Connections, messages and versions from peers refused (every reason of
    /// [`Federation::rejections`] summed).
    pub rejected: u64,
    /// Envelope bytes served to peers' anti-entropy fetches.
    pub sync_served_bytes: u64,
    /// The store's feed sequence number the federation has read up to (changes after it are
    /// not yet published: the replication backlog).
    pub followed_seq: u64,
}

impl Stats {
    pub(crate) fn followed(&self, seq: u64) {
        self.followed_seq.store(seq, Ordering::Relaxed);
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            changes_sent_bytes: get(&self.changes_sent_bytes),
            changes_received_bytes: get(&self.changes_received_bytes),
            heartbeat_sent_bytes: get(&self.heartbeat_sent_bytes),
            published_versions: get(&self.published_versions),
            merged_versions: get(&self.merged_versions),
            rejected: 0,
            sync_served_bytes: get(&self.sync_served_bytes),
            followed_seq: get(&self.followed_seq),
        }
    }
}

/// Most versions remembered as refused for good (then the memory starts again).
const MAX_REFUSED: usize = 16_384;

/// Versions refused for a reason that cannot change: not fetched again.
#[derive(Debug, Default)]
pub(crate) struct Refused(HashSet<(wire::Key, Hlc)>);

impl Refused {
    pub fn insert(&mut self, key: wire::Key, hlc: Hlc) {
        if self.0.len() >= MAX_REFUSED {
            self.0.clear();
        }
        self.0.insert((key, hlc));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn contains(&self, version: &(wire::Key, Hlc)) -> bool {
        self.0.contains(version)
    }
}

/// State the federation's tasks share.
pub(crate) struct Shared {
    store: Store,
    peer_id: PeerId,
    admission: Admission,
    peers: RwLock<Peers>,
    bindings: RwLock<Bindings>,
    refused: Mutex<Refused>,
    rejections: Arc<Rejections>,
    /// Slots for fetching announced versions.
    announce_fetches: Arc<tokio::sync::Semaphore>,
    versions: Mutex<VersionMap>,
    /// The peers connected and admitted.
    connected: Mutex<HashSet<PeerId>>,
    listening: RwLock<Vec<Multiaddr>>,
    events: broadcast::Sender<Event>,
    stats: Stats,
    /// Set once the version map has been built from the store.
    ready: watch::Sender<bool>,
    anti_entropy_interval: Duration,
    tombstone_ttl: Duration,
}

impl Shared {
    fn peers(&self) -> RwLockReadGuard<'_, Peers> {
        self.peers.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn peers_mut(&self) -> RwLockWriteGuard<'_, Peers> {
        self.peers.write().unwrap_or_else(PoisonError::into_inner)
    }
    fn versions(&self) -> MutexGuard<'_, VersionMap> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn bindings(&self) -> RwLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn bindings_mut(&self) -> RwLockWriteGuard<'_, Bindings> {
        self.bindings.write().unwrap_or_else(PoisonError::into_inner)
    }
    fn refused(&self) -> MutexGuard<'_, Refused> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn is_admitted(&self, peer: &PeerId) -> bool {
        self.connected.lock().unwrap_or_else(PoisonError::into_inner).contains(peer)
    }
    /// Counts and (rate-limited) logs a refusal, and tells subscribers.
    fn reject(&self, from: PeerId, rejection: Rejection) {
        self.rejections.record(&from, &rejection);
        let _ = self.events.send(Event::Rejected { from, rejection });
    }
    fn connected(&self, peer: PeerId, up: bool) {
        let mut connected = self.connected.lock().unwrap_or_else(PoisonError::into_inner);
        if up {
            connected.insert(peer);
        } else {
            connected.remove(&peer);
        }
    }
    fn connected_peers(&self) -> Vec<PeerId> {
        self.connected.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect()
    }
    fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listening.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A running federation: a handle on its tasks.
pub struct Federation {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    cluster: String,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").field("peer_id", &self.peer_id).finish_non_exhaustive()
    }
}

impl Federation {
    /// Starts the federation over `store`: listens, dials the bootstrap peers, and starts
    /// replicating. Returns once every listener is up.
    pub async fn start(
        config: FederationConfig,
        store: Store,
        load: LoadSource,
    ) -> Result<Federation> {
        validate_cluster(&config.cluster)?;
        // The store stamps this node's writes with its id; the heartbeat must carry the same.
        if config.node_id != store.node_id() {
            return Err(Error::Config(format!(
                "the federation's node id '{}' is not the store's '{}'",
                config.node_id,
                store.node_id()
            )));
        }
        let peer_id = config.identity.peer_id();
        let names = Names::new(&config.cluster);
        let rejections = Arc::new(Rejections::default());
        let (swarm, listening) =
            swarm::build(&config, config.identity.keypair(), &names, rejections.clone()).await?;
        if config.admission.is_open() {
            tracing::warn!(
                "open cluster: any host that reaches the p2p port can join and write the registry"
            );
        }
        let shared = Arc::new(Shared {
            store,
            peer_id,
            admission: config.admission.clone(),
            peers: RwLock::new(Peers::new(config.heartbeat_interval)),
            bindings: RwLock::default(),
            refused: Mutex::default(),
            rejections,
            announce_fetches: Arc::new(tokio::sync::Semaphore::new(replicator::ANNOUNCE_FETCHES)),
            versions: Mutex::new(VersionMap::default()),
            connected: Mutex::default(),
            listening: RwLock::new(listening),
            events: broadcast::channel(1024).0,
            stats: Stats::default(),
            ready: watch::channel(false).0,
            anti_entropy_interval: config.anti_entropy_interval,
            tombstone_ttl: config.tombstone_ttl,
        });
        let preparing = shared.clone();
        tokio::task::spawn_blocking(move || replicator::prepare(&preparing))
            .await
            .map_err(|e| Error::Stopped(format!("its start-up task failed: {e}")))??;
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let client = Client { commands: commands.clone() };
        let driver = swarm::Driver::new(swarm, names, shared.clone(), inbound, &config.bootstrap);
        let tasks = vec![
            tokio::spawn(driver.run(command_rx)),
            tokio::spawn(replicator::follow_feed(shared.clone(), client.clone())),
            tokio::spawn(replicator::serve(shared.clone(), client.clone(), inbound_rx)),
            tokio::spawn(heartbeats(shared.clone(), client, config.clone(), peer_id, load)),
        ];
        Ok(Federation {
            shared,
            commands,
            peer_id,
            cluster: config.cluster,
            tasks: Mutex::new(tasks),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn node_id(&self) -> &str {
        self.shared.store.node_id()
    }

    /// The addresses this node listens on, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let me = libp2p::multiaddr::Protocol::P2p(self.peer_id);
        self.shared.listen_addrs().into_iter().map(|a| a.with(me.clone())).collect()
    }

    /// Every node heard from (this one included), with its liveness and load.
    pub fn peers(&self) -> Vec<PeerView> {
        self.shared.peers().snapshot(Instant::now())
    }

    /// One node heard from (this one included), with its liveness, endpoints and load.
    pub fn peer(&self, node_id: &str) -> Option<PeerView> {
        self.shared.peers().view(node_id, Instant::now())
    }

    /// Whether `node_id` is alive: `None` when it is not a gridnode node this one has heard of.
    pub fn liveness(&self, node_id: &str) -> Option<bool> {
        let peers = self.shared.peers();
        peers.holder(node_id)?;
        Some(peers.is_alive(node_id, Instant::now()))
    }

    /// The peers connected and admitted right now.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.shared.connected_peers()
    }

    /// Events from here on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot { rejected: self.shared.rejections.total(), ..self.shared.stats.snapshot() }
    }

    /// What was refused from peers, `(reason, count)` for every reason.
    pub fn rejections(&self) -> Vec<(&'static str, u64)> {
        self.shared.rejections.counts()
    }

    /// The member bindings: `(node_id, peer_id)`, by node id.
    pub fn members(&self) -> Vec<(String, PeerId)> {
        let mut members = self.shared.bindings().list();
        members.sort();
        members
    }

    /// Whether anyone may join (no cluster key).
    pub fn is_open(&self) -> bool {
        self.shared.admission.is_open()
    }

    /// Releases `node_id`'s binding to its key (an admin's `gridnode cluster forget`): its
    /// member record is deleted, and the tombstone replicates, so a node that lost its key
    /// can rejoin under its old id. `Ok(false)` when the id is not bound. A live node that is
    /// forgotten binds itself again at once.
    pub async fn forget(&self, node_id: &str) -> Result<bool> {
        if node_id == self.node_id() {
            return Err(Error::Refused(format!(
                "'{node_id}' is this node: forget it from another member once it is gone"
            )));
        }
        if self.liveness(node_id) == Some(true) {
            return Err(Error::Refused(format!(
                "'{node_id}' is alive: only a member that is gone can be forgotten (stop it first)"
            )));
        }
        let store = self.shared.store.clone();
        let id = node_id.to_owned();
        match tokio::task::spawn_blocking(move || store.delete::<gridnode_store::Member>(&id)).await
        {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(gridnode_store::Error::NotFound { .. })) => Ok(false),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(Error::Stopped(format!("the forget task failed: {e}"))),
        }
    }

    /// Dials a peer.
    pub async fn dial(&self, addr: Multiaddr) {
        let _ = self.commands.send(Command::Dial(addr)).await;
    }

    /// Stops every task and closes the connections. Later calls do nothing.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = self.commands.send(Command::Shutdown).await;
        let mut tasks = tasks.into_iter();
        if let Some(driver) = tasks.next() {
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        }
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Commands queued for the swarm task.
const COMMAND_QUEUE: usize = 1024;
/// Messages from peers queued for the replicator's workers; past it they are dropped (and
/// counted): anti-entropy brings what was in them.
const INBOUND_QUEUE: usize = 256;

/// Publishes this node's heartbeat every interval, and records it in its own table.
async fn heartbeats(
    shared: Arc<Shared>,
    client: Client,
    config: FederationConfig,
    peer_id: PeerId,
    load: LoadSource,
) {
    let mut ticks = tokio::time::interval(config.heartbeat_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = libp2p::multiaddr::Protocol::P2p(peer_id);
    loop {
        ticks.tick().await;
        let sample = load.clone();
        let load = tokio::task::spawn_blocking(move || sample()).await.unwrap_or_default();
        let heartbeat = Heartbeat {
            node_id: config.node_id.clone(),
            peer_id: peer_id.to_string(),
            grpc: config.grpc.clone(),
            http: config.http.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            load,
            p2p: shared
                .listen_addrs()
                .into_iter()
                .map(|a| a.with(me.clone()).to_string())
                .collect(),
        };
        shared.peers_mut().observe(heartbeat.clone(), Instant::now());
        let data = shared.admission.seal(Gossip::Heartbeat(heartbeat).encode());
        if client.commands.send(Command::Publish { topic: Topic::Heartbeats, data }).await.is_err()
        {
            return;
        }
    }
}
