//! This node in its federation: what `GET /node` and `GET /peers` show, and whether the node
//! hosting a tool is alive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gridnode_federation::{Federation, Load, PeerView};
use serde::Serialize;

/// What `GET /node` shows.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub peer_id: String,
    pub cluster: String,
    pub version: String,
    pub listeners: Listeners,
}

/// A member of the cluster, as `GET /cluster/members` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub node_id: String,
    pub peer_id: String,
}

/// Where this node listens, and what it tells peers to call.
#[derive(Debug, Clone, Serialize)]
pub struct Listeners {
    /// The bound REST address.
    pub http: String,
    /// The bound gRPC address.
    pub grpc: String,
    /// libp2p listen addresses, each with `/p2p/<peer id>`.
    pub p2p: Vec<String>,
    pub advertise_http: String,
    pub advertise_grpc: String,
}

/// A cheap, cloneable view of the federation for handlers.
#[derive(Debug, Clone)]
pub struct Cluster {
    federation: Arc<Federation>,
    info: Arc<NodeInfo>,
    /// Nodes a call could not reach, and when.
    unreachable: Arc<Mutex<HashMap<String, Instant>>>,
    unreachable_for: Duration,
}

/// Whether a node hosting a tool can take a call now, and how busy it says it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub alive: bool,
    /// The load from the node's latest heartbeat; `None` for a node outside the federation.
    pub load: Option<Load>,
}

impl Cluster {
    /// `unreachable_for`: how long a node outside the federation counts as not alive after a
    /// call to it failed.
    pub fn new(
        federation: Arc<Federation>,
        listeners: Listeners,
        unreachable_for: Duration,
    ) -> Cluster {
        let info = NodeInfo {
            node_id: federation.node_id().to_owned(),
            peer_id: federation.peer_id().to_string(),
            cluster: federation.cluster().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            listeners,
        };
        Cluster { federation, info: Arc::new(info), unreachable: Arc::default(), unreachable_for }
    }

    /// The cluster's members: each node id with the peer id (key) bound to it.
    pub fn members(&self) -> Vec<Member> {
        self.federation
            .members()
            .into_iter()
            .map(|(node_id, peer)| Member { node_id, peer_id: peer.to_string() })
            .collect()
    }

    /// Releases `node_id`'s binding to its key (contract section 13, `cluster forget`).
    pub async fn forget(&self, node_id: &str) -> crate::Result<()> {
        gridnode_store::validate_id("node", node_id)?;
        match self.federation.forget(node_id).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(crate::Error::NotFound(format!("node '{node_id}' is not a bound member")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// What was refused from peers, `(reason, count)` for every reason.
    pub fn rejections(&self) -> Vec<(&'static str, u64)> {
        self.federation.rejections()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.info.node_id
    }

    /// The gRPC endpoint this node tells others to call.
    pub fn advertise_grpc(&self) -> &str {
        &self.info.listeners.advertise_grpc
    }

    /// This node, with the p2p addresses known now (a listener on 0.0.0.0 reports each interface
    /// as it comes up).
    pub fn node(&self) -> NodeInfo {
        let mut info = (*self.info).clone();
        info.listeners.p2p =
            self.federation.listen_addrs().iter().map(ToString::to_string).collect();
        info
    }

    /// Every node heard from, this one included, by node id.
    pub fn peers(&self) -> Vec<PeerView> {
        self.federation.peers()
    }

    /// Whether the node hosting a tool record is alive. A gridnode node is alive while its
    /// heartbeats arrive, and not from a failed call until its next heartbeat. A record its
    /// node wrote itself, of a node never heard from, is not alive. A record registered for an
    /// outside node (over REST, by someone else) counts as alive — nothing gossips for it —
    /// unless a call to it failed in the last `unreachable_for` (contract section 6).
    pub fn is_alive(&self, node_id: &str, written_by: &str) -> bool {
        self.standing(node_id, written_by).alive
    }

    /// Liveness and load of the node hosting a tool record (see [`Cluster::is_alive`]).
    pub fn standing(&self, node_id: &str, written_by: &str) -> Standing {
        let failed = self.unreachable().get(node_id).map(Instant::elapsed);
        match self.federation.peer(node_id) {
            Some(peer) => {
                let heard_since_failure =
                    failed.is_none_or(|ago| u128::from(peer.last_seen_ms) < ago.as_millis());
                Standing {
                    alive: peer.alive && heard_since_failure,
                    load: Some(peer.heartbeat.load),
                }
            }
            None => Standing {
                alive: written_by != node_id
                    && failed.is_none_or(|ago| ago >= self.unreachable_for),
                load: None,
            },
        }
    }

    /// A call could not reach `node_id`.
    pub fn mark_unreachable(&self, node_id: &str) {
        let mut unreachable = self.unreachable();
        if unreachable.len() >= 65_536 {
            unreachable.retain(|_, at| at.elapsed() < self.unreachable_for);
        }
        unreachable.insert(node_id.to_owned(), Instant::now());
    }

    /// A call reached `node_id`.
    pub fn mark_reachable(&self, node_id: &str) {
        self.unreachable().remove(node_id);
    }

    fn unreachable(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.unreachable.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn federation(&self) -> &Federation {
        &self.federation
    }

    /// A shared handle on the federation (for the `federation` resolver).
    pub fn federation_handle(&self) -> Arc<Federation> {
        self.federation.clone()
    }
}
