//! This node in its federation: what `GET /node` and `GET /peers` show, and whether the node
//! hosting a tool is alive.

use std::sync::Arc;

use gridnode_federation::{Federation, PeerView};
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
}

impl Cluster {
    pub fn new(federation: Arc<Federation>, listeners: Listeners) -> Cluster {
        let info = NodeInfo {
            node_id: federation.node_id().to_owned(),
            peer_id: federation.peer_id().to_string(),
            cluster: federation.cluster().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            listeners,
        };
        Cluster { federation, info: Arc::new(info) }
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
    /// heartbeats arrive. A record its node wrote itself, of a node never heard from, is not
    /// alive. A record registered for an outside node (over REST, by someone else) counts as
    /// alive: nothing gossips for it (contract section 6).
    pub fn is_alive(&self, node_id: &str, written_by: &str) -> bool {
        match self.federation.liveness(node_id) {
            Some(alive) => alive,
            None => written_by != node_id,
        }
    }

    pub fn federation(&self) -> &Federation {
        &self.federation
    }
}
