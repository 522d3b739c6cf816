//! Real federations on 127.0.0.1: each node a sled store on disk and a libp2p swarm (TCP and
//! QUIC), each test its own cluster name and key, mDNS off.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gridnode_federation::{
    Admission, Event, Federation, FederationConfig, Identity, Load, Multiaddr, Reason,
};
use gridnode_store::{ClusterLocalTool, Store, StoreConfig, ToolEntry};
use support::*;

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
    let identity = Identity::load_or_create(&a_dir.join("p2p.key")).unwrap();
    let store = Store::open(
        &StoreConfig::new(a_dir.join("store"), "a").signed_by(Arc::new(identity.clone())),
    )
    .unwrap();
    let admission = Admission::keyed(&cluster_key(dir.path(), &cluster));
    let mut config = FederationConfig::new("a", &cluster, identity, admission);
    config.listen =
        vec![a_addr.iter().filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_))).collect()];
    config.mdns = false;
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
    eventually("b's tool on c", || {
        c.store.try_get::<ClusterLocalTool>("b/real").unwrap().is_some()
    })
    .await;
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
    // Whichever of a and b hears c's versions first refuses both, and forwards neither.
    let authority = |n: &Node| {
        n.fed.rejections().into_iter().find(|(r, _)| *r == "authority").map_or(0, |(_, n)| n)
    };
    eventually("c's versions of b's tools refused", || authority(&a) + authority(&b) >= 2).await;
    for node in [&a, &b] {
        assert!(node.store.try_get::<ClusterLocalTool>("b/fake").unwrap().is_none());
        assert_eq!(node.store.get::<ClusterLocalTool>("b/real").unwrap().description, "");
    }
}

// ---- admission and identity -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_with_other_keys_or_none_never_exchange_a_record_and_the_key_admits() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("keys");
    let x = Node::start(dir.path(), "x", &cluster, &[]).await;
    // Same cluster name, another key; and one open node: both told to dial x.
    let other = Admission::keyed(&gridnode_federation::ClusterKey::generate());
    let y = Node::start_with(dir.path(), "y", &cluster, &[x.addr()], other).await;
    let o = Node::start_with(dir.path(), "o", &cluster, &[x.addr()], Admission::Open).await;
    x.store.create(&tool("x-tool", "x")).unwrap();
    y.store.create(&tool("y-tool", "y")).unwrap();
    o.store.create(&tool("o-tool", "o")).unwrap();
    // A node with the key joins with it alone.
    let z = Node::start(dir.path(), "z", &cluster, &[x.addr()]).await;
    eventually("x's tool on z", || description(&z.store, "x-tool").is_some()).await;
    eventually("x refused y and o", || {
        x.fed.rejections().iter().any(|(reason, n)| *reason == "admission" && *n >= 2)
    })
    .await;
    for (node, foreign) in [(&x, ["y-tool", "o-tool"]), (&z, ["y-tool", "o-tool"])] {
        for id in foreign {
            assert!(description(&node.store, id).is_none(), "{id} reached {}", node.name);
        }
    }
    assert!(description(&y.store, "x-tool").is_none());
    assert!(description(&o.store, "x-tool").is_none());
    assert!(x.fed.connected_peers().iter().all(|p| *p == z.fed.peer_id()));
    let names: Vec<_> = x.fed.members().into_iter().map(|(node, _)| node).collect();
    assert_eq!(names, ["x", "z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bound_node_id_cannot_be_taken_by_a_new_key_until_it_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("bound");
    let a = Node::start(dir.path(), "a", &cluster, &[]).await;
    let b = Node::start(dir.path(), "b", &cluster, &[a.addr()]).await;
    eventually("a knows b", || a.fed.liveness("b") == Some(true)).await;
    let live = a.fed.forget("b").await.unwrap_err();
    assert!(
        matches!(&live, gridnode_federation::Error::Refused(why) if why.contains("alive")),
        "a live member cannot be forgotten: {live}"
    );
    let old_peer = b.fed.peer_id();
    let b_dir = b.stop().await;
    let mut events = a.fed.subscribe();
    // b's disk is replaced: a new key claims the id "b".
    std::fs::remove_dir_all(&b_dir).unwrap();
    let impostor = Node::start(dir.path(), "b", &cluster, &[a.addr()]).await;
    assert_ne!(impostor.fed.peer_id(), old_peer);
    impostor.store.create(&tool("from-new-b", "not yet")).unwrap();
    // a refuses the new key's claim on "b", naming the key the id is bound to.
    let claim_refused = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Event::Rejected { rejection, .. }) = events.recv().await
                && rejection.reason == Reason::Unbound
                && rejection.detail.contains(&format!("node id 'b' is bound to peer {old_peer}"))
            {
                return;
            }
        }
    });
    claim_refused.await.expect("a refuses the new key's member record");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(description(&a.store, "from-new-b").is_none());
    assert_eq!(a.fed.liveness("b"), Some(false), "the holder stopped; nobody speaks for b");
    assert!(a.fed.members().contains(&("b".to_string(), old_peer)));
    // The admin releases the id: the new key binds it and its writes flow.
    assert!(a.fed.forget("b").await.unwrap());
    eventually("the new b's tool on a", || description(&a.store, "from-new-b").is_some()).await;
    eventually("a binds b to the new key", || {
        a.fed.members().contains(&("b".to_string(), impostor.fed.peer_id()))
    })
    .await;
    eventually("b alive again", || a.fed.liveness("b") == Some(true)).await;
    assert!(a.fed.forget("a").await.is_err(), "a node does not forget itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_dir_written_by_the_release_before_signatures_opens_re_signs_and_replicates() {
    use gridnode_store::{Collection, FunctionEntry};
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("upgrade");
    // A copy of what that release wrote (see tests/fixtures/README.md): its store and p2p key.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-signing-data-dir");
    copy_dir(&fixture, &dir.path().join("old-a"));
    let before = {
        let old = Store::open(&StoreConfig::new(dir.path().join("old-a/store"), "old-a")).unwrap();
        let held = old.provenance(Collection::Tools, "kept-from-b").unwrap().unwrap();
        assert!(!held.signed && held.author == "old-b", "the fixture is unsigned: {held:?}");
        held
    };
    let a = Node::start(dir.path(), "old-a", &cluster, &[]).await;
    let fresh = Node::start(dir.path(), "fresh", &cluster, &[a.addr()]).await;
    // Its own versions signed in place; old-b's written again as old-a's, at the same time.
    let own = a.store.provenance(Collection::Tools, "written-on-a").unwrap().unwrap();
    assert_eq!((own.author.as_str(), own.signed), ("old-a", true));
    let adopted = a.store.provenance(Collection::Tools, "kept-from-b").unwrap().unwrap();
    assert_eq!(
        (adopted.author.as_str(), adopted.signed, adopted.at_ms),
        ("old-a", true, before.at_ms)
    );
    assert!(
        a.store.try_get::<ClusterLocalTool>("old-b/echo").unwrap().is_none(),
        "old-b announces its own"
    );
    assert!(a.store.try_get::<ClusterLocalTool>("old-a/echo").unwrap().is_some());
    // Everything it held reaches a node that never saw the old release, the delete included.
    eventually("the old records on the fresh node", || {
        description(&fresh.store, "written-on-a").is_some()
            && description(&fresh.store, "kept-from-b").as_deref() == Some("kept")
            && fresh.store.try_get::<FunctionEntry>("fn-on-b").unwrap().is_some()
            && fresh.store.try_get::<gridnode_store::AllowList>("acme").unwrap().is_some()
            && fresh
                .store
                .envelope::<ToolEntry>("written-on-b")
                .unwrap()
                .is_some_and(|e| e.header.tombstone)
    })
    .await;
    let fetched = fresh.store.provenance(Collection::Tools, "kept-from-b").unwrap().unwrap();
    assert_eq!((fetched.author.as_str(), fetched.signed), ("old-a", true));
    eventually("both converge", || state(&a.store) == state(&fresh.store)).await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_works_over_quic_too() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster("quic");
    let a = Node::start(dir.path(), "a", &cluster, &[]).await;
    let quic = a
        .fed
        .listen_addrs()
        .into_iter()
        .find(|addr| addr.to_string().contains("/quic-v1"))
        .unwrap();
    // A node with the key over QUIC only: admitted, and records flow.
    let b = Node::start(dir.path(), "b", &cluster, std::slice::from_ref(&quic)).await;
    a.store.create(&tool("over-quic", "q")).unwrap();
    eventually("the record over QUIC", || description(&b.store, "over-quic").is_some()).await;
    assert!(a.fed.connected_peers().contains(&b.fed.peer_id()));
    // One with another key, over QUIC: refused, and nothing crosses.
    let other = Admission::keyed(&gridnode_federation::ClusterKey::generate());
    let c = Node::start_with(dir.path(), "c", &cluster, std::slice::from_ref(&quic), other).await;
    c.store.create(&tool("from-c", "c")).unwrap();
    eventually("a refuses c over QUIC", || {
        a.fed.rejections().iter().any(|(reason, n)| *reason == "admission" && *n >= 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(description(&a.store, "from-c").is_none());
    assert!(description(&c.store, "over-quic").is_none());
    assert!(!a.fed.connected_peers().contains(&c.fed.peer_id()));
}
