//! The one task that owns the libp2p swarm. It does I/O only: it publishes what it is told to,
//! checks the shape of what arrives (size, encoding, signer) and hands it on, dials, and keeps
//! the bootstrap peers connected. Everything that touches the store happens elsewhere
//! ([`crate::replicator`]), so a slow disk never stalls the network.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, identify, identity, kad, mdns, noise, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::wire::{
    Gossip, MAX_GOSSIP_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, SyncRequest, SyncResponse,
};
use crate::{Event, FederationConfig, Shared, Stats};

/// How long an anti-entropy request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait between two dials of a bootstrap peer that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The cluster's topics and protocol names: every one carries the cluster name, so two clusters
/// on one network never exchange a message.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub changes: IdentTopic,
    pub heartbeats: IdentTopic,
    pub identify: String,
}

impl Names {
    pub fn new(cluster: &str) -> Names {
        Names {
            changes: IdentTopic::new(format!("gridnode/{cluster}/changes/1")),
            heartbeats: IdentTopic::new(format!("gridnode/{cluster}/heartbeats/1")),
            identify: format!("/gridnode/{cluster}/1"),
        }
    }
}

/// Which topic to publish on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Topic {
    Changes,
    Heartbeats,
}

/// What the rest of the federation asks of the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, String>>,
    },
    Respond {
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    Dial(Multiaddr),
    Shutdown,
}

/// What the swarm task hands to the replicator: checked for shape, not yet for meaning.
#[derive(Debug)]
pub(crate) enum Inbound {
    Gossip {
        source: PeerId,
        gossip: Gossip,
    },
    Request {
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    },
    /// A peer now hears our changes: anything older it must get by anti-entropy.
    Subscribed(PeerId),
}

/// Builds the swarm and starts listening; returns once every listener has an address.
pub(crate) async fn build(
    config: &FederationConfig,
    key: identity::Keypair,
    names: &Names,
) -> Result<(Swarm<Behaviour>, Vec<Multiaddr>), String> {
    let cluster = config.cluster.clone();
    let mdns_on = config.mdns;
    let identify_name = names.identify.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| format!("cannot set up tcp: {e}"))?
        .with_quic()
        .with_behaviour(|key| behaviour(key, &cluster, mdns_on, identify_name))
        .map_err(|e| format!("cannot set up the p2p protocols: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for topic in [&names.changes, &names.heartbeats] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(topic)
            .map_err(|e| format!("cannot subscribe: {e}"))?;
    }
    let mut pending = HashSet::new();
    for addr in &config.listen {
        let id =
            swarm.listen_on(addr.clone()).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        pending.insert(id);
    }
    let mut listening = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while !pending.is_empty() {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    pending.remove(&listener_id);
                    listening.push(address);
                }
                SwarmEvent::ListenerError { error, .. } => return Err(format!("p2p listener failed: {error}")),
                SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(format!("p2p listener closed: {error}"));
                }
                _ => {}
            },
            () = &mut deadline => return Err("p2p listeners did not come up within 10 s".into()),
        }
    }
    Ok((swarm, listening))
}

fn behaviour(
    key: &identity::Keypair,
    cluster: &str,
    mdns_on: bool,
    identify_name: String,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let peer_id = key.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_BYTES + 64 * 1024)
        .heartbeat_interval(Duration::from_millis(500))
        .flood_publish(true)
        .build()?;
    let gossipsub =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)?;
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_REQUEST_BYTES)
        .set_response_size_maximum(MAX_RESPONSE_BYTES);
    let sync = request_response::Behaviour::with_codec(
        codec,
        [(
            StreamProtocol::try_from_owned(format!("/gridnode/{cluster}/sync/1"))?,
            ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(identify_name, key.public())
            .with_agent_version(format!("gridnode/{}", env!("CARGO_PKG_VERSION"))),
    );
    let mut kad_config =
        kad::Config::new(StreamProtocol::try_from_owned(format!("/gridnode/{cluster}/kad/1"))?);
    // Peers come from bootstrap, mDNS and heartbeats; a lone node would only log failed walks.
    kad_config.set_periodic_bootstrap_interval(None);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = if mdns_on {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?)
    } else {
        None
    };
    Ok(Behaviour { gossipsub, sync, identify, kad, mdns: Toggle::from(mdns) })
}

/// A bootstrap address and what is known of the peer behind it.
struct Bootstrap {
    addr: Multiaddr,
    peer: Option<PeerId>,
    next_try: Instant,
    backoff: Duration,
}

/// The swarm task's state.
pub(crate) struct Driver {
    pub swarm: Swarm<Behaviour>,
    pub names: Names,
    pub shared: Arc<Shared>,
    pub inbound: mpsc::Sender<Inbound>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, String>>>,
    bootstrap: Vec<Bootstrap>,
}

impl Driver {
    pub fn new(
        swarm: Swarm<Behaviour>,
        names: Names,
        shared: Arc<Shared>,
        inbound: mpsc::Sender<Inbound>,
        bootstrap: &[Multiaddr],
    ) -> Driver {
        let now = Instant::now();
        let bootstrap = bootstrap
            .iter()
            .map(|addr| Bootstrap {
                addr: addr.clone(),
                peer: peer_of(addr),
                next_try: now,
                backoff: Duration::from_millis(500),
            })
            .collect();
        Driver { swarm, names, shared, inbound, pending: HashMap::new(), bootstrap }
    }

    /// Runs until told to shut down (or every sender is gone).
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut redial = tokio::time::interval(Duration::from_millis(250));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.command(command),
                },
                event = self.swarm.select_next_some() => self.event(event),
                _ = redial.tick() => self.redial(),
            }
        }
        for reply in self.pending.into_values() {
            let _ = reply.send(Err("the node is shutting down".into()));
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data } => {
                let stats = &self.shared.stats;
                let (name, counter) = match topic {
                    Topic::Changes => (self.names.changes.clone(), &stats.changes_sent_bytes),
                    Topic::Heartbeats => {
                        (self.names.heartbeats.clone(), &stats.heartbeat_sent_bytes)
                    }
                };
                let bytes = data.len();
                match self.swarm.behaviour_mut().gossipsub.publish(name, data) {
                    Ok(_) => Stats::add(counter, bytes),
                    // Nobody to tell yet: anti-entropy brings peers up to date when they come.
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(gossipsub::PublishError::Duplicate) => {}
                    Err(e) => warn!("cannot publish a {bytes}-byte gossip message: {e}"),
                }
            }
            Command::Request { peer, request, reply } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Command::Respond { channel, response } => {
                if self.swarm.behaviour_mut().sync.send_response(channel, response).is_err() {
                    debug!("a sync response found its requester gone");
                }
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!("cannot dial {addr}: {e}");
                }
            }
            Command::Shutdown => {}
        }
    }

    /// Dials every bootstrap peer that is not connected, backing off while it stays down.
    fn redial(&mut self) {
        let now = Instant::now();
        for i in 0..self.bootstrap.len() {
            let entry = &self.bootstrap[i];
            let connected = entry.peer.is_some_and(|p| self.swarm.is_connected(&p));
            if connected || now < entry.next_try {
                continue;
            }
            let addr = entry.addr.clone();
            let opts = match entry.peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            if let Err(e) = self.swarm.dial(opts) {
                debug!("cannot dial bootstrap peer {addr}: {e}");
            }
            let entry = &mut self.bootstrap[i];
            entry.next_try = now + entry.backoff;
            entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != self.names.identify {
                    debug!(
                        "peer {peer_id} is in another cluster ({}); disconnecting",
                        info.protocol_version
                    );
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.dial_peer(peer, vec![addr]);
                }
            }
            // Kademlia found a cluster member: connect, so it hears our changes.
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, ..
            })) => self.dial_peer(peer, Vec::new()),
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                let remote = endpoint.get_remote_address().clone();
                for entry in &mut self.bootstrap {
                    if entry.peer.is_none() && without_peer(&entry.addr) == without_peer(&remote) {
                        entry.peer = Some(peer_id);
                    }
                    if entry.peer == Some(peer_id) {
                        entry.backoff = Duration::from_millis(500);
                    }
                }
                if endpoint.is_dialer() {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, remote);
                }
                if num_established.get() == 1 {
                    info!("connected to peer {peer_id}");
                    self.shared.connected(peer_id, true);
                    let _ = self.shared.events.send(Event::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                info!("disconnected from peer {peer_id}");
                self.shared.connected(peer_id, false);
                let _ = self.shared.events.send(Event::PeerDisconnected(peer_id));
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                let mut listening = self
                    .shared
                    .listening
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !listening.contains(&address) {
                    listening.push(address);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!("dial of {peer_id:?} failed: {error}");
            }
            _ => {}
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        for addr in &addrs {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!("cannot dial peer {peer}: {e}");
        }
    }

    fn gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                let verdict = self.gossip_message(message);
                let acceptance = match verdict {
                    Ok(()) => MessageAcceptance::Accept,
                    Err(reason) => {
                        warn!("dropped a gossip message from peer {propagation_source}: {reason}");
                        Stats::add(&self.shared.stats.rejected, 1);
                        let _ = self
                            .shared
                            .events
                            .send(Event::Rejected { from: propagation_source, reason });
                        MessageAcceptance::Reject
                    }
                };
                let _ = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    acceptance,
                );
            }
            // When busy, the periodic anti-entropy round reaches the peer instead.
            gossipsub::Event::Subscribed { peer_id, topic }
                if topic == self.names.changes.hash()
                    && self.inbound.try_send(Inbound::Subscribed(peer_id)).is_err() => {}
            _ => {}
        }
    }

    /// Checks one gossip message and passes it on.
    fn gossip_message(&mut self, message: gossipsub::Message) -> Result<(), String> {
        let source = message.source.ok_or("an unsigned gossip message")?;
        let gossip = Gossip::decode(&message.data)?;
        let heartbeat_topic = message.topic == self.names.heartbeats.hash();
        match gossip {
            Gossip::Heartbeat(heartbeat) if heartbeat_topic => {
                let addrs: Vec<Multiaddr> =
                    heartbeat.p2p.iter().filter_map(|a| a.parse().ok()).collect();
                self.shared.peers_mut().admit(heartbeat, &source.to_string(), Instant::now())?;
                self.dial_peer(source, addrs);
                Ok(())
            }
            gossip @ (Gossip::Versions(_) | Gossip::Announce(_))
                if message.topic == self.names.changes.hash() =>
            {
                Stats::add(&self.shared.stats.changes_received_bytes, message.data.len());
                if self.inbound.try_send(Inbound::Gossip { source, gossip }).is_err() {
                    // Not lost: anti-entropy finds what was dropped here.
                    warn!("replicator busy: dropped a gossip message from {source}");
                }
                Ok(())
            }
            _ => Err("a gossip message on the wrong topic".into()),
        }
    }

    fn sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    if let Err(reason) = request.check() {
                        warn!("refused a sync request from peer {peer}: {reason}");
                        let _ = self
                            .shared
                            .events
                            .send(Event::Rejected { from: peer, reason: reason.clone() });
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, SyncResponse::Refused(reason));
                        return;
                    }
                    if let Err(mpsc::error::TrySendError::Full(Inbound::Request {
                        channel, ..
                    })) = self.inbound.try_send(Inbound::Request { peer, request, channel })
                    {
                        let busy = SyncResponse::Refused("busy: try again later".into());
                        let _ = self.swarm.behaviour_mut().sync.send_response(channel, busy);
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(format!("sync request to {peer} failed: {error}")));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!("sync request from {peer} failed: {error}");
            }
            _ => {}
        }
    }
}

/// The peer id at the end of a multiaddr, if it has one.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()
}
