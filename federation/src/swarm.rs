//! The one task that owns the libp2p swarm. It does I/O only: it runs the admission handshake
//! with every peer that connects, publishes what it is told to, checks the shape of what
//! arrives (admitted sender, seal, size, encoding, signer) and hands it on, reports the
//! replicator's verdict on gossip back to gossipsub (nothing is forwarded before it is
//! checked), dials, and keeps the bootstrap peers connected. Everything that touches the store
//! happens elsewhere ([`crate::replicator`]), so a slow disk never stalls the network.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode,
};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identify, identity, kad, mdns,
    noise, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::admission::{self, Answer, Challenge, NONCE_BYTES};
use crate::liveness::Heartbeat;
use crate::rejections::{Reason, Rejection};
use crate::replicator::NOT_ADMITTED;
use crate::wire::{
    Codec, Gossip, MAX_ADMISSION_BYTES, MAX_GOSSIP_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
    SyncRequest, SyncResponse,
};
use crate::{Event, FederationConfig, Shared, Stats};

/// How long an anti-entropy request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait between two dials of a bootstrap peer that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a connected peer has to prove it holds the cluster key before it is disconnected.
const ADMISSION_GRACE: Duration = Duration::from_secs(10);
/// How long a peer that failed admission is not dialed, and is disconnected at once.
const REFUSAL_MEMORY: Duration = Duration::from_secs(60);
/// Most peers remembered as refused.
const MAX_REFUSED_PEERS: usize = 1024;
/// A connection with nothing to do is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connection limits: established in all, per peer (TCP and QUIC), and still handshaking.
const MAX_CONNECTIONS: u32 = 512;
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
const MAX_PENDING_INCOMING: u32 = 32;
/// Requests one peer may have in flight on one protocol (libp2p's default is 100): a peer that
/// is not admitted yet can make a node read this many requests at most before it is cut off.
const MAX_STREAMS_PER_PROTOCOL: usize = 8;
const MAX_PENDING_OUTGOING: u32 = 64;
/// Listen addresses kept per peer from identify while it is not admitted yet.
const MAX_STASHED_ADDRS: usize = 16;
/// Bounds on a heartbeat's fields.
const MAX_HEARTBEAT_ADDRS: usize = 16;
const MAX_HEARTBEAT_TEXT: usize = 2048;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    limits: connection_limits::Behaviour,
    admit: request_response::Behaviour<Codec<Challenge, Answer>>,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<Codec<SyncRequest, SyncResponse>>,
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
    /// The replicator's verdict on a gossip message: forwarded only if accepted.
    Validated {
        message: MessageId,
        via: PeerId,
        acceptance: MessageAcceptance,
    },
    Dial(Multiaddr),
    Shutdown,
}

/// What the swarm task hands to the replicator: from an admitted peer, checked for shape, not
/// yet for meaning.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Versions gossiped by someone, passed on by `via`; the verdict goes back as
    /// [`Command::Validated`].
    Versions {
        via: PeerId,
        message: MessageId,
        versions: Vec<crate::wire::Version>,
    },
    /// Versions too large to gossip, announced by `origin`.
    Announce {
        origin: PeerId,
        via: PeerId,
        message: MessageId,
        summaries: Vec<crate::wire::Summary>,
    },
    Request {
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    },
    /// A peer was admitted: anything older than what it gossips from now on it gets by
    /// anti-entropy.
    Admitted(PeerId),
}

/// Builds the swarm and starts listening; returns once every listener has an address.
pub(crate) async fn build(
    config: &FederationConfig,
    key: identity::Keypair,
    names: &Names,
    rejections: Arc<crate::rejections::Rejections>,
) -> crate::Result<(Swarm<Behaviour>, Vec<Multiaddr>)> {
    use crate::Error::Listen;
    let cluster = config.cluster.clone();
    let mdns_on = config.mdns;
    let identify_name = names.identify.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| Listen(format!("cannot set up tcp: {e}")))?
        .with_quic()
        .with_behaviour(|key| behaviour(key, &cluster, mdns_on, identify_name, rejections))
        .map_err(|e| Listen(format!("cannot set up the p2p protocols: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    for topic in [&names.changes, &names.heartbeats] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(topic)
            .map_err(|e| Listen(format!("cannot subscribe: {e}")))?;
    }
    let mut pending = HashSet::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| Listen(format!("cannot listen on {addr}: {e}")))?;
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
                SwarmEvent::ListenerError { error, .. } => return Err(Listen(format!("p2p listener failed: {error}"))),
                SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(Listen(format!("p2p listener closed: {error}")));
                }
                _ => {}
            },
            () = &mut deadline => return Err(Listen("p2p listeners did not come up within 10 s".into())),
        }
    }
    Ok((swarm, listening))
}

fn behaviour(
    key: &identity::Keypair,
    cluster: &str,
    mdns_on: bool,
    identify_name: String,
    rejections: Arc<crate::rejections::Rejections>,
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
    let sync = protocol(
        format!("/gridnode/{cluster}/sync/1"),
        Codec::new(MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES).counting(rejections.clone()),
        REQUEST_TIMEOUT,
    )?;
    let admit = protocol(
        format!("/gridnode/{cluster}/admit/1"),
        Codec::new(MAX_ADMISSION_BYTES, MAX_ADMISSION_BYTES).counting(rejections),
        ADMISSION_GRACE,
    )?;
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(MAX_CONNECTIONS))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING)),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(identify_name, key.public())
            .with_agent_version(format!("gridnode/{}", env!("CARGO_PKG_VERSION"))),
    );
    let mut kad_config =
        kad::Config::new(StreamProtocol::try_from_owned(format!("/gridnode/{cluster}/kad/1"))?);
    // Peers come from bootstrap, mDNS and heartbeats; a lone node would only log failed walks.
    kad_config.set_periodic_bootstrap_interval(None);
    // Only admitted peers enter the routing table (the driver adds them).
    kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = if mdns_on {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?)
    } else {
        None
    };
    Ok(Behaviour { limits, admit, gossipsub, sync, identify, kad, mdns: Toggle::from(mdns) })
}

/// A request-response protocol of the cluster, with its codec's limits and a bound on the
/// requests a peer may have in flight.
fn protocol<Req, Resp>(
    name: String,
    codec: Codec<Req, Resp>,
    timeout: Duration,
) -> Result<request_response::Behaviour<Codec<Req, Resp>>, Box<dyn std::error::Error + Send + Sync>>
where
    Req: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    Ok(request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::try_from_owned(name)?, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(MAX_STREAMS_PER_PROTOCOL),
    ))
}

/// A bootstrap address and what is known of the peer behind it.
struct Bootstrap {
    addr: Multiaddr,
    peer: Option<PeerId>,
    next_try: Instant,
    backoff: Duration,
}

/// A connected peer that has not proved it holds the cluster key yet.
struct Candidate {
    since: Instant,
    nonce: [u8; NONCE_BYTES],
    /// Listen addresses it told identify, added to kademlia once it is admitted.
    addrs: Vec<Multiaddr>,
}

/// The swarm task's state.
pub(crate) struct Driver {
    pub swarm: Swarm<Behaviour>,
    pub names: Names,
    pub shared: Arc<Shared>,
    pub inbound: mpsc::Sender<Inbound>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, String>>>,
    bootstrap: Vec<Bootstrap>,
    candidates: HashMap<PeerId, Candidate>,
    /// Peers that failed admission, and when.
    refused: HashMap<PeerId, Instant>,
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
        Driver {
            swarm,
            names,
            shared,
            inbound,
            pending: HashMap::new(),
            bootstrap,
            candidates: HashMap::new(),
            refused: HashMap::new(),
        }
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
                _ = redial.tick() => {
                    self.redial();
                    self.expire_candidates();
                }
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
                if !self.shared.is_admitted(&peer) {
                    let _ = reply.send(Err(format!("peer {peer} is not an admitted member")));
                    return;
                }
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Command::Validated { message, via, acceptance } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message, &via, acceptance);
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
            SwarmEvent::Behaviour(BehaviourEvent::Admit(event)) => self.admission(event),
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
                let addrs = info.listen_addrs.into_iter().take(MAX_STASHED_ADDRS);
                if self.shared.is_admitted(&peer_id) {
                    for addr in addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                } else if let Some(candidate) = self.candidates.get_mut(&peer_id) {
                    candidate.addrs = addrs.collect();
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
                if self.refused.get(&peer_id).is_some_and(|at| at.elapsed() < REFUSAL_MEMORY) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let remote = endpoint.get_remote_address().clone();
                for entry in &mut self.bootstrap {
                    if entry.peer.is_none() && without_peer(&entry.addr) == without_peer(&remote) {
                        entry.peer = Some(peer_id);
                    }
                    if entry.peer == Some(peer_id) {
                        entry.backoff = Duration::from_millis(500);
                    }
                }
                if self.shared.is_admitted(&peer_id) {
                    if endpoint.is_dialer() {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, remote);
                    }
                } else if num_established.get() == 1 {
                    self.challenge(peer_id, endpoint.is_dialer().then_some(remote));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                if self.candidates.remove(&peer_id).is_some() {
                    let left = "the peer left before proving it holds the cluster key";
                    self.shared.reject(peer_id, Rejection::new(Reason::Admission, left));
                }
                if self.shared.is_admitted(&peer_id) {
                    info!("disconnected from peer {peer_id}");
                    self.shared.connected(peer_id, false);
                    let _ = self.shared.events.send(Event::PeerDisconnected(peer_id));
                }
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

    /// Asks a newly connected peer to prove it holds the cluster key.
    fn challenge(&mut self, peer: PeerId, dialed: Option<Multiaddr>) {
        let nonce = self.send_challenge(peer);
        let addrs = dialed.into_iter().collect();
        self.candidates.insert(peer, Candidate { since: Instant::now(), nonce, addrs });
    }

    /// Sends `peer` a challenge with a fresh nonce, and returns the nonce.
    fn send_challenge(&mut self, peer: PeerId) -> [u8; NONCE_BYTES] {
        let nonce = admission::nonce();
        self.swarm.behaviour_mut().admit.send_request(&peer, Challenge { nonce });
        nonce
    }

    /// Answers challenges (from anyone: the answer proves only that this node holds the key),
    /// and admits or refuses peers by their answers to ours.
    fn admission(&mut self, event: request_response::Event<Challenge, Answer>) {
        let me = *self.swarm.local_peer_id();
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let answer = self.shared.admission.answer(&me, &peer, &request);
                    let _ = self.swarm.behaviour_mut().admit.send_response(channel, answer);
                }
                request_response::Message::Response { response, .. } => {
                    let Some(candidate) = self.candidates.remove(&peer) else { return };
                    match self.shared.admission.admits(&peer, &me, &candidate.nonce, &response) {
                        Ok(()) => self.admit(peer, candidate.addrs),
                        Err(why) => self.refuse(peer, Reason::Admission, why),
                    }
                }
            },
            // The connection the challenge went out on closed (a simultaneous dial leaves one
            // of two): ask again on the one that is left. A peer that is gone is counted when
            // its last connection closes; one that never answers, at the end of the grace.
            request_response::Event::OutboundFailure { peer, error, .. }
                if self.candidates.contains_key(&peer) && self.swarm.is_connected(&peer) =>
            {
                debug!("challenge to {peer} failed ({error}); asking again");
                let nonce = self.send_challenge(peer);
                if let Some(candidate) = self.candidates.get_mut(&peer) {
                    candidate.nonce = nonce;
                }
            }
            _ => {}
        }
    }

    fn admit(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        info!("connected to peer {peer} (admitted)");
        for addr in addrs {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        self.shared.connected(peer, true);
        let _ = self.shared.events.send(Event::PeerConnected(peer));
        if self.inbound.try_send(Inbound::Admitted(peer)).is_err() {
            // The periodic anti-entropy round reaches it instead.
            debug!("replicator busy: the first sync with {peer} waits for the next round");
        }
    }

    fn refuse(&mut self, peer: PeerId, reason: Reason, why: &str) {
        self.shared.reject(peer, Rejection::new(reason, why));
        if self.refused.len() >= MAX_REFUSED_PEERS {
            self.refused.retain(|_, at| at.elapsed() < REFUSAL_MEMORY);
            if self.refused.len() >= MAX_REFUSED_PEERS {
                self.refused.clear();
            }
        }
        self.refused.insert(peer, Instant::now());
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Disconnects peers that did not prove themselves within the grace.
    fn expire_candidates(&mut self) {
        let late: Vec<PeerId> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.since.elapsed() > ADMISSION_GRACE)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in late {
            self.candidates.remove(&peer);
            self.refuse(peer, Reason::Admission, "no proof of the cluster key in time");
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || self.swarm.is_connected(&peer)
            || self.refused.get(&peer).is_some_and(|at| at.elapsed() < REFUSAL_MEMORY)
        {
            return;
        }
        // Kademlia hears of the peer once it is admitted, not before.
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!("cannot dial peer {peer}: {e}");
        }
    }

    fn gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source: via, message_id, message } = event
        else {
            return;
        };
        // Ok(true): handed to the replicator, which reports the verdict itself.
        let acceptance = match self.gossip_message(via, &message_id, message) {
            Ok(true) => return,
            Ok(false) => MessageAcceptance::Accept,
            Err(rejection) => {
                let acceptance = rejection.reason.acceptance();
                self.shared.reject(via, rejection);
                acceptance
            }
        };
        let _ = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
            &message_id,
            &via,
            acceptance,
        );
    }

    /// Checks one gossip message: a heartbeat is taken here (`Ok(false)`); versions and
    /// announcements go to the replicator, which checks every version before the message is
    /// accepted and forwarded (`Ok(true)`).
    fn gossip_message(
        &mut self,
        via: PeerId,
        id: &MessageId,
        message: gossipsub::Message,
    ) -> Result<bool, Rejection> {
        if !self.shared.is_admitted(&via) {
            return Err(Rejection::new(Reason::Unadmitted, "a gossip message"));
        }
        let source = message
            .source
            .ok_or_else(|| Rejection::new(Reason::Invalid, "an unsigned gossip message"))?;
        let bytes = self
            .shared
            .admission
            .open(&message.data)
            .map_err(|e| Rejection::new(Reason::Undecodable, e))?;
        let gossip = Gossip::decode(&bytes).map_err(|e| Rejection::new(Reason::Undecodable, e))?;
        let heartbeat_topic = message.topic == self.names.heartbeats.hash();
        let changes_topic = message.topic == self.names.changes.hash();
        let inbound = match gossip {
            Gossip::Heartbeat(heartbeat) if heartbeat_topic => {
                self.heartbeat(heartbeat, source)?;
                return Ok(false);
            }
            Gossip::Versions(versions) if changes_topic => {
                Stats::add(&self.shared.stats.changes_received_bytes, message.data.len());
                Inbound::Versions { via, message: id.clone(), versions }
            }
            Gossip::Announce(summaries) if changes_topic => {
                Inbound::Announce { origin: source, via, message: id.clone(), summaries }
            }
            _ => {
                return Err(Rejection::new(Reason::Invalid, "a gossip message on the wrong topic"));
            }
        };
        // Not lost when dropped: anti-entropy finds it.
        self.inbound
            .try_send(inbound)
            .map(|()| true)
            .map_err(|_| Rejection::new(Reason::Busy, "the replicator is busy: a gossip message"))
    }

    /// Takes a heartbeat from `source` if it is the bound member it claims to be.
    fn heartbeat(&mut self, heartbeat: Heartbeat, source: PeerId) -> Result<(), Rejection> {
        let too_long = [
            &heartbeat.node_id,
            &heartbeat.peer_id,
            &heartbeat.grpc,
            &heartbeat.http,
            &heartbeat.version,
        ]
        .iter()
        .any(|field| field.len() > MAX_HEARTBEAT_TEXT)
            || heartbeat.p2p.len() > MAX_HEARTBEAT_ADDRS
            || heartbeat.p2p.iter().any(|a| a.len() > MAX_HEARTBEAT_TEXT);
        if too_long {
            return Err(Rejection::new(
                Reason::Oversize,
                "a heartbeat with fields over their limits",
            ));
        }
        let bound = self.shared.bindings().get(&heartbeat.node_id).map(|b| b.peer);
        if bound != Some(source) {
            return Err(Rejection::new(
                Reason::Unbound,
                format!(
                    "a heartbeat for node id '{}' from peer {source}, which is not bound to it",
                    gridnode_store::validate_id("node", &heartbeat.node_id)
                        .map(|()| heartbeat.node_id.clone())
                        .unwrap_or_else(|_| "(invalid)".into())
                ),
            ));
        }
        let addrs: Vec<Multiaddr> = heartbeat.p2p.iter().filter_map(|a| a.parse().ok()).collect();
        self.shared
            .peers_mut()
            .admit(heartbeat, &source.to_string(), Instant::now())
            .map_err(|e| Rejection::new(Reason::Unbound, e))?;
        self.dial_peer(source, addrs);
        Ok(())
    }

    fn sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let refusal = if !self.shared.is_admitted(&peer) {
                        Some((Reason::Unadmitted, NOT_ADMITTED.to_string()))
                    } else {
                        request.check().err().map(|reason| (Reason::Oversize, reason))
                    };
                    if let Some((reason, why)) = refusal {
                        self.shared
                            .reject(peer, Rejection::new(reason, format!("a sync request: {why}")));
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, SyncResponse::Refused(why));
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
