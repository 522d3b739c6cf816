//! Hostile peers against real nodes on 127.0.0.1: a raw libp2p peer (built here, not a gridnode
//! node) that speaks the cluster's identify string, topics and protocols, with or without the
//! cluster key, and sends what an attacker would. The nodes stay up, nothing forged or
//! malformed is merged, the peer table stays bounded, and the honest nodes keep replicating.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use gridnode_federation::admission::{Answer, Challenge};
use gridnode_federation::wire::{Codec, Gossip, Key, MAX_RESPONSE_BYTES, SyncResponse, Version};
use gridnode_federation::{Admission, Heartbeat, Load};
use gridnode_store::{Collection, Header, Hlc, Member, Record, ToolEntry, now_ms, signed_message};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, StreamProtocol, Swarm, identify, noise, tcp, yamux};
use support::*;

/// Writes a request's bytes as they are (garbage included); reads answers as a node's codec.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::other("the raw peer serves nothing"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<SyncResponse> {
        let mut bytes = Vec::new();
        io.take(MAX_RESPONSE_BYTES as u64).read_to_end(&mut bytes).await?;
        gridnode_federation::wire::decode_message(&bytes, MAX_RESPONSE_BYTES)
            .map_err(std::io::Error::other)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: SyncResponse,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(NetworkBehaviour)]
struct Raw {
    admit: request_response::Behaviour<Codec<Challenge, Answer>>,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
    identify: identify::Behaviour,
}

/// How the raw peer answers a node's challenge.
enum Answering {
    /// With the cluster key: it is admitted.
    WithKey(Admission),
    /// With a proof made up without the key.
    Forged,
    /// Not at all.
    Silent,
}

struct RawPeer {
    swarm: Swarm<Raw>,
    key: Keypair,
    answering: Answering,
    changes: IdentTopic,
    heartbeats: IdentTopic,
    responses: Vec<SyncResponse>,
    closed: HashSet<PeerId>,
}

impl RawPeer {
    fn new(cluster: &str, answering: Answering) -> RawPeer {
        let key = Keypair::generate_ed25519();
        let protocol = |name: &str| {
            StreamProtocol::try_from_owned(format!("/gridnode/{cluster}/{name}/1")).unwrap()
        };
        let swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| Raw {
                admit: request_response::Behaviour::with_codec(
                    Codec::new(256, 256),
                    [(protocol("admit"), ProtocolSupport::Full)],
                    request_response::Config::default(),
                ),
                gossipsub: gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    gossipsub::ConfigBuilder::default()
                        .max_transmit_size(16 << 20)
                        .build()
                        .unwrap(),
                )
                .unwrap(),
                sync: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(protocol("sync"), ProtocolSupport::Full)],
                    request_response::Config::default(),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    format!("/gridnode/{cluster}/1"),
                    key.public(),
                )),
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let mut peer = RawPeer {
            swarm,
            key,
            answering,
            changes: IdentTopic::new(format!("gridnode/{cluster}/changes/1")),
            heartbeats: IdentTopic::new(format!("gridnode/{cluster}/heartbeats/1")),
            responses: Vec::new(),
            closed: HashSet::new(),
        };
        let gossip = &mut peer.swarm.behaviour_mut().gossipsub;
        gossip.subscribe(&peer.changes).unwrap();
        gossip.subscribe(&peer.heartbeats).unwrap();
        peer
    }

    fn peer_id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// Runs the swarm (answering challenges as told) until `done` holds.
    async fn until(&mut self, what: &str, mut done: impl FnMut(&mut RawPeer) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(Instant::now() < deadline, "the raw peer timed out waiting for: {what}");
            let next =
                tokio::time::timeout(Duration::from_millis(20), self.swarm.select_next_some());
            if let Ok(event) = next.await {
                self.event(event);
            }
        }
    }

    /// Runs the swarm for `time`.
    async fn run_for(&mut self, time: Duration) {
        let end = Instant::now() + time;
        self.until("time to pass", |_| Instant::now() >= end).await;
    }

    fn event(&mut self, event: SwarmEvent<RawEvent>) {
        match event {
            SwarmEvent::Behaviour(RawEvent::Admit(request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            })) => {
                let me = self.peer_id();
                let answer = match &self.answering {
                    Answering::WithKey(admission) => admission.answer(&me, &peer, &request),
                    Answering::Forged => Answer::Proof(vec![7; 32]),
                    Answering::Silent => return,
                };
                let _ = self.swarm.behaviour_mut().admit.send_response(channel, answer);
            }
            SwarmEvent::Behaviour(RawEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => self.responses.push(response),
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.closed.insert(peer_id);
            }
            _ => {}
        }
    }

    /// Whether `node` told us it subscribes to the changes topic (so a publish reaches it).
    fn hears(&self, node: PeerId) -> bool {
        let topic = self.changes.hash();
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(p, topics)| *p == node && topics.contains(&&topic))
    }

    /// Publishes `payload` on a topic, sealed with the key when it has one.
    fn publish(&mut self, heartbeat: bool, payload: Vec<u8>) {
        let data = match &self.answering {
            Answering::WithKey(admission) => admission.seal(payload),
            _ => payload,
        };
        let topic = if heartbeat { self.heartbeats.clone() } else { self.changes.clone() };
        self.swarm.behaviour_mut().gossipsub.publish(topic, data).unwrap();
    }

    fn publish_versions(&mut self, versions: Vec<Version>) {
        self.publish(false, Gossip::Versions(versions).encode());
    }

    /// A version of `id` stamped by `author` at `wall_ms`, signed with this peer's key.
    fn version<R: Record>(
        &self,
        author: &str,
        id: &str,
        wall_ms: u64,
        record: Option<R>,
    ) -> Version {
        let header = Header {
            hlc: Hlc { wall_ms, counter: 0, node: author.into() },
            tombstone: record.is_none(),
        };
        let envelope = gridnode_store::encode(&(&header, &record)).unwrap();
        self.signed(R::COLLECTION, id, envelope)
    }

    fn signed(&self, collection: Collection, id: &str, envelope: Vec<u8>) -> Version {
        let signature = self.key.sign(&signed_message(collection, id, &envelope)).unwrap();
        Version { key: Key::new(collection, id), envelope, signature }
    }

    fn heartbeat(&self, node_id: &str) -> Vec<u8> {
        Gossip::Heartbeat(Heartbeat {
            node_id: node_id.into(),
            peer_id: self.peer_id().to_string(),
            grpc: "127.0.0.1:1".into(),
            http: "http://127.0.0.1:1".into(),
            version: "0.1.0".into(),
            load: Load::default(),
            p2p: vec![],
        })
        .encode()
    }
}

fn rejected(node: &Node, reason: &str) -> u64 {
    node.fed.rejections().into_iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| n)
}

/// A string length prefix declaring 1 TiB (bincode varint: 0xfd, then a u64).
fn one_tib() -> Vec<u8> {
    let mut bytes = vec![0xfd];
    bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
    bytes
}

async fn two_honest_nodes(test: &str, dir: &std::path::Path) -> (String, Node, Node) {
    let cluster = cluster(test);
    let a = Node::start(dir, "a", &cluster, &[]).await;
    let b = Node::start(dir, "b", &cluster, &[a.addr()]).await;
    for i in 0..10 {
        a.store.create(&tool(&format!("t{i}"), "honest")).unwrap();
    }
    eventually("the tools on b", || b.store.count::<ToolEntry>().unwrap() == 10).await;
    eventually("a knows b", || a.fed.liveness("b") == Some(true)).await;
    (cluster, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_without_the_key_is_refused_disconnected_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, a, b) = two_honest_nodes("keyless", dir.path()).await;
    let before = state(&a.store);

    // Silent: it never answers the challenge, and sends everything it can meanwhile.
    let mut silent = RawPeer::new(&cluster, Answering::Silent);
    let a_peer = a.fed.peer_id();
    silent.swarm.dial(a.addr()).unwrap();
    silent.until("a's subscriptions", |p| p.hears(a_peer)).await;
    let forged = silent.version(
        "a",
        "evil",
        now_ms(),
        Some(ToolEntry { tool_id: "evil".into(), ..Default::default() }),
    );
    silent.publish_versions(vec![forged]);
    let claim = silent.heartbeat("a");
    silent.publish(true, claim);
    let request =
        gridnode_store::encode(&gridnode_federation::wire::SyncRequest::Summaries(vec![0, 1]))
            .unwrap();
    silent.swarm.behaviour_mut().sync.send_request(&a_peer, request);
    silent.until("a refuses the sync request", |p| !p.responses.is_empty()).await;
    assert!(
        matches!(&silent.responses[0], SyncResponse::Refused(why) if why == "not admitted"),
        "{:?}",
        silent.responses
    );
    silent.until("the gossip is dropped as unadmitted", |_| rejected(&a, "unadmitted") >= 3).await;
    // Past the grace, a disconnects it.
    silent.until("a disconnects the silent peer", |p| p.closed.contains(&a_peer)).await;
    assert!(rejected(&a, "admission") >= 1);

    // Forged: a proof made without the key is refused at once, and a redial is dropped.
    let mut forger = RawPeer::new(&cluster, Answering::Forged);
    forger.swarm.dial(a.addr()).unwrap();
    forger.until("a disconnects the forger", |p| p.closed.contains(&a_peer)).await;
    forger.closed.clear();
    forger.swarm.dial(a.addr()).unwrap();
    forger.until("a drops the redial", |p| p.closed.contains(&a_peer)).await;

    assert!(!a.fed.connected_peers().contains(&silent.peer_id()));
    assert!(!a.fed.connected_peers().contains(&forger.peer_id()));
    assert_eq!(a.fed.peers().len(), 2, "no claim reached the peer table");
    assert_eq!(a.fed.liveness("a"), Some(true));
    assert!(description(&a.store, "evil").is_none());
    // Nothing of theirs changed a; the honest pair still replicates.
    let now = state(&a.store);
    assert_eq!(now, before);
    a.store.create(&tool("after", "still fine")).unwrap();
    eventually("after on b", || description(&b.store, "after").is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admitted_peer_can_neither_crash_nor_forge_nor_grow_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, a, b) = two_honest_nodes("rogue", dir.path()).await;
    let key = cluster_key(dir.path(), &cluster);
    let mut rogue = RawPeer::new(&cluster, Answering::WithKey(Admission::keyed(&key)));
    let a_peer = a.fed.peer_id();
    rogue.swarm.dial(a.addr()).unwrap();
    rogue
        .until("admitted by a", |p| {
            p.hears(a_peer) && a.fed.connected_peers().contains(&p.peer_id())
        })
        .await;
    let now = now_ms();
    let evil = |id: &str| Some(ToolEntry { tool_id: id.into(), ..ToolEntry::default() });

    // Unbound: a version stamped by a node id no member record binds.
    let unbound = rogue.version("rogue", "evil-unbound", now, evil("evil-unbound"));
    rogue.publish_versions(vec![unbound]);
    eventually("refused as unbound", || rejected(&a, "unbound") >= 1).await;

    // It binds a node id of its own, as any member may.
    let member = Member { node_id: "rogue".into(), peer_id: rogue.peer_id().to_string() };
    let bind = rogue.version("rogue", "rogue", now, Some(member));
    rogue.publish_versions(vec![bind]);
    eventually("a binds rogue", || a.fed.members().iter().any(|(n, _)| n == "rogue")).await;

    // A member released and claimed in one message: b, alive, for a key of the rogue's; and a's
    // own id, sent to a.
    let thief = Keypair::generate_ed25519();
    let stolen = Member { node_id: "b".into(), peer_id: thief.public().to_peer_id().to_string() };
    let release = rogue.version::<Member>("rogue", "b", now + 1, None);
    let header =
        Header { hlc: Hlc { wall_ms: now + 2, counter: 0, node: "b".into() }, tombstone: false };
    let envelope = gridnode_store::encode(&(&header, &Some(stolen))).unwrap();
    let signature = thief.sign(&signed_message(Collection::Members, "b", &envelope)).unwrap();
    let claim = Version { key: Key::new(Collection::Members, "b"), envelope, signature };
    let release_a = rogue.version::<Member>("rogue", "a", now + 1, None);
    rogue.publish_versions(vec![release, claim, release_a]);
    rogue.run_for(Duration::from_millis(50)).await;

    // A gossip message whose first string declares 1 TiB.
    let mut huge = vec![0, 1, 1];
    huge.extend(one_tib());
    rogue.publish(false, huge);
    // A version whose envelope's header declares 1 TiB.
    let mut envelope = gridnode_store::encode(&(now, 0u32)).unwrap();
    envelope.extend(one_tib());
    let header_bomb = rogue.signed(Collection::Tools, "bomb", envelope);
    // A correctly signed record whose metadata nests 100 000 levels deep.
    let mut record = ToolEntry { tool_id: "deep".into(), ..ToolEntry::default() };
    record.tool_metadata.insert("zzmarker".into(), serde_json::Value::Null);
    let header =
        Header { hlc: Hlc { wall_ms: now, counter: 0, node: "rogue".into() }, tombstone: false };
    let plain = gridnode_store::encode(&(&header, &Some(record))).unwrap();
    let marker = b"\x08zzmarker\x00";
    let at = plain.windows(marker.len()).position(|w| w == marker).unwrap() + marker.len() - 1;
    let mut deep = plain[..at].to_vec();
    for _ in 0..100_000 {
        deep.extend_from_slice(&[6, 1]);
    }
    deep.push(0);
    deep.extend_from_slice(&plain[at + 1..]);
    let deep = rogue.signed(Collection::Tools, "deep", deep);
    // Truncated and random bytes.
    let whole = rogue.version("rogue", "cut", now, evil("cut"));
    let cut =
        rogue.signed(Collection::Tools, "cut", whole.envelope[..whole.envelope.len() / 2].to_vec());
    let random = rogue.signed(
        Collection::Tools,
        "random",
        (0..200u32).map(|i| (i * 151 % 251) as u8).collect(),
    );
    // Signed by it, stamped with a's id: a forgery.
    let forged = rogue.version("a", "t0", now, evil("t0"));
    // A tombstone for every key, each stamped as its author.
    let tombstones: Vec<Version> =
        (0..10).map(|i| rogue.version::<ToolEntry>("a", &format!("t{i}"), now + 1, None)).collect();
    // Ten minutes in the future.
    let future = rogue.version("rogue", "evil-future", now + 600_000, evil("evil-future"));
    for versions in
        [vec![header_bomb], vec![deep], vec![cut, random], vec![forged], tombstones, vec![future]]
    {
        rogue.publish_versions(versions);
        rogue.run_for(Duration::from_millis(50)).await;
    }
    // 10 000 distinct node ids claimed: member records signed by its one key, and heartbeats.
    for chunk in 0..10 {
        let claims: Vec<Version> = (0..1000)
            .map(|i| {
                let node = format!("claim-{chunk}-{i}");
                let member = Member { node_id: node.clone(), peer_id: rogue.peer_id().to_string() };
                rogue.version(&node, &node, now, Some(member))
            })
            .collect();
        rogue.publish_versions(claims);
        rogue.run_for(Duration::from_millis(50)).await;
    }
    for i in 0..200 {
        let beat = rogue.heartbeat(&format!("claim-beat-{i}"));
        rogue.publish(true, beat);
    }
    // Sync requests out of shape, and bytes that are no request at all.
    for request in [vec![0, 3, 1, 2, 3], vec![1, 1, 0xfb, 0x0f, 0x27], vec![0xff; 64], one_tib()] {
        rogue.swarm.behaviour_mut().sync.send_request(&a_peer, request);
    }
    // The raw peer's swarm must run for its messages to go out.
    rogue
        .until("every attack counted", |_| {
            rejected(&a, "authority") >= 2
                && rejected(&a, "undecodable") >= 5
                && rejected(&a, "invalid") >= 2
                && rejected(&a, "oversize") >= 2
                && rejected(&a, "signature") >= 11
                && rejected(&a, "clock") >= 1
                && rejected(&a, "unbound") >= 10_000
        })
        .await;
    // Up, intact, bounded.
    for node in [&a, &b] {
        assert_eq!(node.store.count::<ToolEntry>().unwrap(), 10, "{}", node.name);
        for i in 0..10 {
            assert_eq!(description(&node.store, &format!("t{i}")).as_deref(), Some("honest"));
        }
        for id in ["evil-unbound", "bomb", "deep", "cut", "random", "evil-future"] {
            assert!(
                node.store.try_get::<ToolEntry>(id).unwrap().is_none(),
                "{id} on {}",
                node.name
            );
        }
        assert!(node.fed.peers().len() <= 3, "the peer table grew: {}", node.fed.peers().len());
        assert!(node.fed.members().len() <= 3, "bindings grew: {:?}", node.fed.members().len());
        for honest in [&a, &b] {
            let bound = (honest.name.clone(), honest.fed.peer_id());
            assert!(node.fed.members().contains(&bound), "{} lost {}", node.name, honest.name);
        }
    }
    a.store.create(&tool("after", "still fine")).unwrap();
    eventually("after on b", || description(&b.store, "after").is_some()).await;
    b.store.create(&tool("after-b", "both ways")).unwrap();
    eventually("after-b on a", || description(&a.store, "after-b").is_some()).await;
}
