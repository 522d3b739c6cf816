//! Real federations on 127.0.0.1: each node a sled store on disk and a libp2p swarm (TCP and
//! QUIC), each test its own cluster name, mDNS off.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gridnode_federation::{Event, Federation, FederationConfig, Load, Multiaddr};
use gridnode_store::{ClusterLocalTool, Store, StoreConfig, ToolEntry};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{StreamProtocol, noise, tcp, yamux};

const PATIENCE: Duration = Duration::from_secs(20);

struct Node {
    name: String,
    dir: PathBuf,
    store: Store,
    fed: Federation,
}

impl Node {
    async fn start(dir: &Path, name: &str, cluster: &str, bootstrap: &[Multiaddr]) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = dir.join(name);
        let store = Store::open(&StoreConfig::new(dir.join("store"), name)).unwrap();
        let mut config = FederationConfig::new(name, cluster);
        config.listen = vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        ];
        config.bootstrap = bootstrap.to_vec();
        config.mdns = false;
        config.key_file = Some(dir.join("p2p.key"));
        config.grpc = format!("127.0.0.1:1{name}");
        config.heartbeat_interval = Duration::from_millis(250);
        config.anti_entropy_interval = Duration::from_millis(500);
        let fed = Federation::start(config, store.clone(), Arc::new(Load::default)).await.unwrap();
        Node { name: name.into(), dir, store, fed }
    }

    /// The TCP address to bootstrap from, with the peer id.
    fn addr(&self) -> Multiaddr {
        self.fed.listen_addrs().into_iter().find(|a| a.to_string().contains("/tcp/")).unwrap()
    }

    async fn stop(self) -> PathBuf {
        self.fed.shutdown().await;
        self.store.sync().unwrap();
        drop(self.store);
        self.dir
    }
}

/// A cluster name no other test uses.
fn cluster(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{test}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn tool(id: &str, description: &str) -> ToolEntry {
    ToolEntry {
        tool_id: id.into(),
        tool_search_description: description.into(),
        tool_tags: vec!["fed".into()],
        ..ToolEntry::default()
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn description(store: &Store, id: &str) -> Option<String> {
    store.try_get::<ToolEntry>(id).unwrap().map(|t| t.tool_search_description)
}

/// The `(id, version)` of everything a store holds, tombstones included.
fn state(store: &Store) -> Vec<String> {
    store
        .all_versions()
        .unwrap()
        .into_iter()
        .map(|(c, id, h)| format!("{c:?}/{id}@{:?}", h.hlc))
        .collect()
}

async fn three(test: &str, dir: &Path) -> (Node, Node, Node) {
    let cluster = cluster(test);
    let a = Node::start(dir, "a", &cluster, &[]).await;
    let b = Node::start(dir, "b", &cluster, &[a.addr()]).await;
    let c = Node::start(dir, "c", &cluster, &[b.addr()]).await;
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_updates_and_deletes_reach_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = three("crud", dir.path()).await;
    a.store.create(&tool("t1", "first")).unwrap();
    eventually("t1 on c", || description(&c.store, "t1").as_deref() == Some("first")).await;
    b.store
        .update::<ToolEntry>("t1", |mut t| {
            Ok({
                t.tool_search_description = "second".into();
                t
            })
        })
        .unwrap();
    eventually("the update on a and c", || {
        [&a, &c].iter().all(|n| description(&n.store, "t1").as_deref() == Some("second"))
    })
    .await;
    c.store.delete::<ToolEntry>("t1").unwrap();
    eventually("the delete on a and b", || {
        [&a, &b]
            .iter()
            .all(|n| n.store.envelope::<ToolEntry>("t1").unwrap().unwrap().header.tombstone)
    })
    .await;
    // Node-local tool records travel too, and everyone knows everyone's heartbeat.
    a.store
        .create(&ClusterLocalTool { name: "x".into(), node_id: "a".into(), ..Default::default() })
        .unwrap();
    eventually("a's tool on c", || c.store.try_get::<ClusterLocalTool>("a/x").unwrap().is_some())
        .await;
    eventually("three live peers everywhere", || {
        [&a, &b, &c].iter().all(|n| n.fed.peers().iter().filter(|p| p.alive).count() == 3)
    })
    .await;
    assert_eq!(c.fed.liveness("a"), Some(true));
    assert_eq!(c.fed.liveness("k8s-node"), None);
    let view = c.fed.peers().into_iter().find(|p| p.heartbeat.node_id == "a").unwrap();
    assert_eq!(view.heartbeat.peer_id, a.fed.peer_id().to_string());
    assert_eq!(view.heartbeat.grpc, "127.0.0.1:1a");
    assert!(a.fed.stats().published_versions >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_writes_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = three("conflict", dir.path()).await;
    eventually("a mesh", || a.fed.connected_peers().len() == 2).await;
    for round in 0..20 {
        let (sa, sb) = (a.store.clone(), b.store.clone());
        let one = std::thread::spawn(move || sa.put(&tool("hot", &format!("a{round}"))).unwrap());
        let two = std::thread::spawn(move || sb.put(&tool("hot", &format!("b{round}"))).unwrap());
        one.join().unwrap();
        two.join().unwrap();
    }
    eventually("one value everywhere", || {
        let states = [state(&a.store), state(&b.store), state(&c.store)];
        states[0] == states[1] && states[1] == states[2]
    })
    .await;
    let winner = description(&a.store, "hot").unwrap();
    assert!(winner == "a19" || winner == "b19", "the last writes win, got {winner}");
    assert_eq!(description(&c.store, "hot").unwrap(), winner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_was_away_catches_up_and_a_late_node_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("partition");
    let a = Node::start(dir.path(), "a", &cluster, &[]).await;
    let b = Node::start(dir.path(), "b", &cluster, &[a.addr()]).await;
    a.store.create(&tool("before", "seen by both")).unwrap();
    eventually("before on b", || description(&b.store, "before").is_some()).await;
    let b_peer = b.fed.peer_id();
    b.stop().await;

    // Written while b is down: creates, an update of what b has, a delete.
    for i in 0..50 {
        a.store.create(&tool(&format!("away-{i}"), "written while b was down")).unwrap();
    }
    a.store
        .update::<ToolEntry>("before", |mut t| {
            Ok({
                t.tool_search_description = "changed".into();
                t
            })
        })
        .unwrap();
    a.store.delete::<ToolEntry>("away-0").unwrap();

    // b restarts from its data dir, with the same identity, and catches up.
    let b = Node::start(dir.path(), "b", &cluster, &[a.addr()]).await;
    assert_eq!(b.fed.peer_id(), b_peer, "a restarted node keeps its peer id");
    assert_eq!(
        description(&b.store, "before").as_deref(),
        Some("seen by both"),
        "kept across restart"
    );
    eventually("b converges with a", || state(&a.store) == state(&b.store)).await;
    assert_eq!(description(&b.store, "before").as_deref(), Some("changed"));
    assert!(b.store.try_get::<ToolEntry>("away-0").unwrap().is_none());

    // A brand-new node that bootstraps from b (without its peer id) gets everything.
    let without_peer: Multiaddr =
        b.addr().iter().filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_))).collect();
    let d = Node::start(dir.path(), "d", &cluster, &[without_peer]).await;
    eventually("d converges", || state(&d.store) == state(&a.store)).await;
    assert_eq!(d.store.count::<ToolEntry>().unwrap(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bootstrap_peer_that_is_down_at_start_is_dialed_again() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("backoff");
    let a = Node::start(dir.path(), "a", &cluster, &[]).await;
    let a_addr = a.addr();
    let a_dir = a.stop().await;
    let b = Node::start(dir.path(), "b", &cluster, std::slice::from_ref(&a_addr)).await;
    b.store.create(&tool("from-b", "written before a came back")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // a comes back on the same port (same identity): b reconnects by itself.
    let store = Store::open(&StoreConfig::new(a_dir.join("store"), "a")).unwrap();
    let mut config = FederationConfig::new("a", &cluster);
    config.listen =
        vec![a_addr.iter().filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_))).collect()];
    config.mdns = false;
    config.key_file = Some(a_dir.join("p2p.key"));
    config.anti_entropy_interval = Duration::from_millis(500);
    let fed = Federation::start(config, store.clone(), Arc::new(Load::default)).await.unwrap();
    eventually("b's write on a", || description(&store, "from-b").is_some()).await;
    fed.shutdown().await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_nodes_converge() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("ten");
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..10 {
        // Each node knows only the one before it.
        let bootstrap: Vec<Multiaddr> = nodes.last().map(|n| vec![n.addr()]).unwrap_or_default();
        nodes.push(Node::start(dir.path(), &format!("n{i}"), &cluster, &bootstrap).await);
    }
    for node in &nodes {
        node.store.create(&tool(&format!("from-{}", node.name), "one per node")).unwrap();
    }
    eventually("every node has every tool", || {
        nodes.iter().all(|n| n.store.count::<ToolEntry>().unwrap() == 10)
    })
    .await;
    eventually("every node sees ten live nodes", || {
        nodes.iter().all(|n| n.fed.peers().iter().filter(|p| p.alive).count() == 10)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clusters_on_one_machine_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let x = Node::start(dir.path(), "x", &cluster("red"), &[]).await;
    // y is in another cluster but is told to dial x.
    let y = Node::start(dir.path(), "y", &cluster("blue"), &[x.addr()]).await;
    x.store.create(&tool("red-tool", "red")).unwrap();
    y.store.create(&tool("blue-tool", "blue")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(description(&y.store, "red-tool").is_none());
    assert!(description(&x.store, "blue-tool").is_none());
    assert_eq!(x.fed.peers().len(), 1, "x hears no heartbeat from another cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cannot_write_another_nodes_tools() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = three("authority", dir.path()).await;
    b.store
        .create(&ClusterLocalTool {
            name: "real".into(),
            node_id: "b".into(),
            ..Default::default()
        })
        .unwrap();
    eventually("b's tool on a", || {
        a.store.try_get::<ClusterLocalTool>("b/real").unwrap().is_some()
    })
    .await;
    eventually("a knows b", || a.fed.liveness("b") == Some(true)).await;
    let mut rejected = a.fed.subscribe();
    // c claims a tool hosted by b, and overwrites b's record.
    c.store
        .create(&ClusterLocalTool {
            name: "fake".into(),
            node_id: "b".into(),
            ..Default::default()
        })
        .unwrap();
    c.store
        .update::<ClusterLocalTool>("b/real", |mut t| {
            Ok({
                t.description = "hijacked".into();
                t
            })
        })
        .unwrap();
    // And registers a tool for a node that is not a gridnode peer, which is allowed.
    c.store
        .create(&ClusterLocalTool {
            name: "k".into(),
            node_id: "k8s-1".into(),
            ..Default::default()
        })
        .unwrap();
    eventually("the external record on a", || {
        a.store.try_get::<ClusterLocalTool>("k8s-1/k").unwrap().is_some()
    })
    .await;
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        match tokio::time::timeout(PATIENCE, rejected.recv()).await.unwrap().unwrap() {
            Event::Rejected { reason, .. } => reasons.push(reason),
            _ => continue,
        }
    }
    assert!(reasons.iter().all(|r| r.contains("belongs to node 'b'")), "{reasons:?}");
    assert!(a.store.try_get::<ClusterLocalTool>("b/fake").unwrap().is_none());
    assert_eq!(a.store.get::<ClusterLocalTool>("b/real").unwrap().description, "");
}

// ---- a hostile peer ------------------------------------------------------------------------

#[derive(NetworkBehaviour)]
struct Hostile {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<
        request_response::cbor::codec::Codec<serde_json::Value, serde_json::Value>,
    >,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_sending_garbage_disturbs_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("garbage");
    let a = Node::start(dir.path(), "a", &cluster, &[]).await;
    let b = Node::start(dir.path(), "b", &cluster, &[a.addr()]).await;
    let mut events = a.fed.subscribe();

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| Hostile {
            gossipsub: gossipsub::Behaviour::new(
                MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default().max_transmit_size(64 << 20).build().unwrap(),
            )
            .unwrap(),
            sync: request_response::Behaviour::new(
                [(
                    StreamProtocol::try_from_owned(format!("/gridnode/{cluster}/sync/1")).unwrap(),
                    ProtocolSupport::Full,
                )],
                request_response::Config::default(),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let changes = IdentTopic::new(format!("gridnode/{cluster}/changes/1"));
    let heartbeats = IdentTopic::new(format!("gridnode/{cluster}/heartbeats/1"));
    swarm.behaviour_mut().gossipsub.subscribe(&changes).unwrap();
    swarm.behaviour_mut().gossipsub.subscribe(&heartbeats).unwrap();
    swarm.dial(a.addr()).unwrap();
    let a_peer = a.fed.peer_id();
    let deadline = Instant::now() + PATIENCE;
    let mut sent = false;
    let mut answers = 0;
    while answers < 3 {
        assert!(Instant::now() < deadline, "the hostile peer got no answers");
        let event =
            tokio::time::timeout(Duration::from_millis(200), swarm.select_next_some()).await;
        if let Ok(SwarmEvent::Behaviour(HostileEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        }))) = &event
        {
            assert!(response.get("Refused").is_some(), "a bad request is refused: {response}");
            answers += 1;
        }
        if !sent && swarm.behaviour().gossipsub.mesh_peers(&changes.hash()).any(|p| *p == a_peer) {
            sent = true;
            let gossip = &mut swarm.behaviour_mut().gossipsub;
            for garbage in [vec![0xff; 100], vec![], b"\x00\x01\x02".to_vec()] {
                let _ = gossip.publish(changes.clone(), garbage.clone());
                let _ = gossip.publish(heartbeats.clone(), garbage);
            }
            let sync = &mut swarm.behaviour_mut().sync;
            sync.send_request(&a_peer, serde_json::json!({"Digest": [1, 2, 3]}));
            sync.send_request(&a_peer, serde_json::json!({"Summaries": [9999]}));
            sync.send_request(&a_peer, serde_json::json!({"Fetch": vec![serde_json::json!({"collection": 1, "id": "x"}); 600]}));
            // Not even a request: undecodable.
            sync.send_request(&a_peer, serde_json::json!("hello"));
        }
    }
    let mut rejections = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, Event::Rejected { .. }) {
            rejections += 1;
        }
    }
    assert!(rejections >= 3, "garbage is logged as rejected ({rejections})");
    // The honest nodes still replicate.
    a.store.create(&tool("after", "still fine")).unwrap();
    eventually("after on b", || description(&b.store, "after").is_some()).await;
}
