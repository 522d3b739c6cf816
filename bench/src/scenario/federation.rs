//! `gridnode-bench replication` (also `federation`): replication over real libp2p on loopback.
//!
//! - write → readable on every node, N = 3, 10, 30 federations in this process (a sled store on
//!   disk and a swarm each), beside the target p99 ≤ 200 ms at N = 10;
//! - gossip payload bytes per replicated write, beside the record's own encoded size;
//! - catch-up of a new node from a peer holding 10 000 records, beside the target ≤ 5 s;
//! - idle CPU and memory of ten full nodes (store, search index, REST, gRPC, federation);
//! - what signed versions and admission cost: signing a write, checking (and verifying) a
//!   received version beside the same check without the signature, merging with and without
//!   it, the admission proof, and connect → admitted over loopback, closed beside open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridnode::Node;
use gridnode_federation::{
    Admission, ClusterKey, Federation, FederationConfig, Identity, Load, Multiaddr,
};
use gridnode_store::{Collection, Store, StoreConfig, ToolEntry};

use crate::corpus;
use crate::report::{BenchResult, percentiles, row};

/// The p99 write → readable-everywhere target at N = 10.
const VISIBLE_P99_TARGET: Duration = Duration::from_millis(200);
/// The catch-up target for 10 000 missed writes.
const CATCH_UP_TARGET: Duration = Duration::from_secs(5);

struct Member {
    store: Store,
    fed: Federation,
}

async fn member(
    dir: &std::path::Path,
    name: &str,
    cluster: &str,
    bootstrap: Vec<Multiaddr>,
) -> Result<Member, Box<dyn std::error::Error>> {
    // Every member of a cluster in this directory holds the same key; every one signs.
    let (key, _) = ClusterKey::load_or_create(&dir.join(format!("{cluster}.key")))?;
    member_with(dir, name, cluster, bootstrap, Admission::keyed(&key)).await
}

async fn member_with(
    dir: &std::path::Path,
    name: &str,
    cluster: &str,
    bootstrap: Vec<Multiaddr>,
    admission: Admission,
) -> Result<Member, Box<dyn std::error::Error>> {
    let identity = Identity::generate();
    let store =
        Store::open(&StoreConfig::new(dir.join(name), name).signed_by(Arc::new(identity.clone())))?;
    let mut config = FederationConfig::new(name, cluster, identity, admission);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?, "/ip4/127.0.0.1/udp/0/quic-v1".parse()?];
    config.bootstrap = bootstrap;
    config.mdns = false;
    let fed = Federation::start(config, store.clone(), Arc::new(Load::default)).await?;
    Ok(Member { store, fed })
}

fn tcp_addr(fed: &Federation) -> Vec<Multiaddr> {
    fed.listen_addrs().into_iter().filter(|a| a.to_string().contains("/tcp/")).take(1).collect()
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(start.elapsed())
}

pub fn run(quick: bool) -> BenchResult {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        crate::out!("## replication scenario{}\n", if quick { " (quick)" } else { "" });
        crate::out!("| scenario | samples | p50 | p99 | note |");
        crate::out!("| --- | --- | --- | --- | --- |");
        let sizes: &[usize] = if quick { &[3, 10] } else { &[3, 10, 30] };
        for &n in sizes {
            visible(n, if quick { 30 } else { 200 }).await?;
        }
        catch_up(if quick { 2_000 } else { 10_000 }).await?;
        idle(if quick { 3 } else { 10 }).await?;
        signing(if quick { 500 } else { 5_000 })?;
        admission(if quick { 5 } else { 40 }).await?;
        Ok(())
    })
}

/// Writes on each node in turn; times each until every node holds it.
async fn visible(n: usize, writes: usize) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let cluster = format!("bench-{n}-{}", std::process::id());
    let mut nodes: Vec<Member> = Vec::new();
    for i in 0..n {
        // Each node knows only the first: the rest of the mesh comes from gossip.
        let bootstrap = nodes.first().map(|m| tcp_addr(&m.fed)).unwrap_or_default();
        nodes.push(member(dir.path(), &format!("n{i}"), &cluster, bootstrap).await?);
    }
    wait_until("a full mesh", Duration::from_secs(60), || {
        nodes.iter().all(|m| m.fed.peers().iter().filter(|p| p.alive).count() == n)
    })
    .await?;
    // One write everywhere first, so every gossip mesh has formed.
    nodes[0].store.put(&ToolEntry { tool_id: "warm-up".into(), ..ToolEntry::default() })?;
    wait_until("the warm-up write", Duration::from_secs(30), || {
        nodes.iter().all(|m| m.store.header::<ToolEntry>("warm-up").ok().flatten().is_some())
    })
    .await?;
    let before: Vec<_> = nodes.iter().map(|m| m.fed.stats()).collect();
    let records = corpus::tools(writes, 11);
    let mut samples = Vec::with_capacity(writes);
    let mut record_bytes = 0;
    for (i, record) in records.into_iter().enumerate() {
        let writer = &nodes[i % n];
        writer.store.put(&record)?;
        let id = record.tool_id.clone();
        record_bytes += writer
            .store
            .signed_version(Collection::Tools, &id)?
            .map_or(0, |v| v.envelope.len() + v.signature.len());
        samples.push(
            wait_until(&id, Duration::from_secs(30), || {
                nodes.iter().all(|m| m.store.header::<ToolEntry>(&id).ok().flatten().is_some())
            })
            .await?,
        );
    }
    let after: Vec<_> = nodes.iter().map(|m| m.fed.stats()).collect();
    let sent: u64 =
        after.iter().zip(&before).map(|(a, b)| a.changes_sent_bytes - b.changes_sent_bytes).sum();
    let received: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.changes_received_bytes - b.changes_received_bytes)
        .sum();
    let p = percentiles(samples);
    let verdict = if n == 10 {
        format!(
            "target p99 ≤ {VISIBLE_P99_TARGET:?}: {}",
            if p.p99 <= VISIBLE_P99_TARGET { "met" } else { "NOT met" }
        )
    } else {
        String::new()
    };
    row(&format!("write → readable on all {n} nodes"), &p, &verdict);
    let writes = writes as u64;
    crate::out!(
        "| bytes per replicated write, N = {n} | {writes} | | | record {} B encoded; published {} B by the writer; received {} B summed over the other {} nodes ({:.2}× the record per receiver) |",
        record_bytes as u64 / writes,
        sent / writes,
        received / writes,
        n - 1,
        received as f64 / writes as f64 / (n - 1) as f64 / (record_bytes as f64 / writes as f64),
    );
    for m in &nodes {
        m.fed.shutdown().await;
    }
    Ok(())
}

/// A new node joins a peer that holds `records` records it has never seen.
async fn catch_up(records: usize) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let cluster = format!("bench-catch-up-{}", std::process::id());
    let store = Store::open(&StoreConfig::new(dir.path().join("full"), "full"))?;
    store.import(&corpus::tools(records, 5))?;
    drop(store);
    let full = member(dir.path(), "full", &cluster, vec![]).await?;
    let started = Instant::now();
    let fresh = member(dir.path(), "fresh", &cluster, tcp_addr(&full.fed)).await?;
    wait_until("the catch-up", Duration::from_secs(120), || {
        fresh.store.count::<ToolEntry>().is_ok_and(|c| c == records)
    })
    .await?;
    let took = started.elapsed();
    let served = full.fed.stats().sync_served_bytes;
    let verdict = if records == 10_000 {
        format!(
            "target ≤ {CATCH_UP_TARGET:?}: {}",
            if took <= CATCH_UP_TARGET { "met" } else { "NOT met" }
        )
    } else {
        "(quick run: fewer records than the target's 10 000)".into()
    };
    crate::out!(
        "| catch-up of a new node, {records} records | 1 | {took:.1?} | | {verdict}; {:.1} MB served ({} B a record) |",
        served as f64 / 1e6,
        served / records as u64
    );
    full.fed.shutdown().await;
    fresh.fed.shutdown().await;
    Ok(())
}

/// Ten full nodes, converged and idle: CPU over `seconds`, and this process's memory.
async fn idle(seconds: u64) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let rss_before = crate::report::rss("self").unwrap_or(0);
    let cluster = format!("bench-idle-{}", std::process::id());
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..10 {
        let bootstrap: Vec<String> =
            nodes.first().map(|n| n.p2p_addrs().into_iter().take(1).collect()).unwrap_or_default();
        let node = gridnode_tests::node(dir.path(), &format!("idle-{i}"))
            .in_cluster(&cluster)
            .config(|config| {
                config.bootstrap = bootstrap;
                config.tools_dir = None;
            });
        nodes.push(node.start().await.0);
    }
    wait_until("ten live nodes", Duration::from_secs(60), || {
        nodes.iter().all(|n| n.cluster().peers().iter().filter(|p| p.alive).count() == 10)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_before, wall) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_time().saturating_sub(cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();
    let rss = crate::report::rss("self").unwrap_or(0);
    crate::out!(
        "| idle, 10 full nodes in one process | {seconds} s | | | {:.1} % of one core ({:.2} % a node); {:.0} MiB resident ({:.0} MiB a node, heartbeat 1 s) |",
        cpu * 100.0,
        cpu * 10.0,
        rss.saturating_sub(rss_before) as f64 / (1 << 20) as f64,
        rss.saturating_sub(rss_before) as f64 / (1 << 20) as f64 / 10.0,
    );
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}

/// The per-version target for signature checks on the receiving side (CPU).
const VERIFY_TARGET: Duration = Duration::from_micros(60);

/// Times `op` over `n` runs: the mean, per run.
fn per_op(n: usize, mut op: impl FnMut(usize)) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        op(i);
    }
    started.elapsed() / n as u32
}

/// Signing and checking versions, each beside the same work without the signature, in one run.
fn signing(n: usize) -> BenchResult {
    use gridnode_federation::authority;
    use gridnode_federation::members::Bindings;
    use gridnode_federation::wire::{Key, Version};
    use gridnode_store::{Member, SignedVersion, Signer, decode_header, signed_message};

    crate::out!("\n### signed versions, per version ({n} versions of the corpus)\n");
    crate::out!("| step | signed | unsigned | added | note |");
    crate::out!("| --- | --- | --- | --- | --- |");
    let dir = tempfile::tempdir()?;
    let identity = Identity::generate();
    let records = corpus::tools(n, 17);
    // Writing: a store that signs every version beside one that does not.
    let signed_store = Store::open(
        &StoreConfig::new(dir.path().join("signed"), "w").signed_by(Arc::new(identity.clone())),
    )?;
    let plain_store = Store::open(&StoreConfig::new(dir.path().join("plain"), "w"))?;
    // Each store writes every record twice, the two stores taking turns; the second round is
    // the figure (the first warms sled's trees).
    let write = |store: &Store| per_op(n, |i| drop(store.put_unsynced(&records[i])));
    let _ = (write(&plain_store), write(&signed_store));
    let (plain_write, signed_write) = (write(&plain_store), write(&signed_store));
    crate::out!(
        "| write (put, unflushed) | {signed_write:.1?} | {plain_write:.1?} | {:.1?} | the ed25519 signature inside the transaction |",
        signed_write.saturating_sub(plain_write)
    );
    // Receiving: the versions as a peer would get them.
    let versions: Vec<Version> = records
        .iter()
        .map(|r| {
            let SignedVersion { envelope, signature } = signed_store
                .signed_version(Collection::Tools, &r.tool_id)
                .ok()
                .flatten()
                .unwrap_or(SignedVersion { envelope: Vec::new(), signature: Vec::new() });
            Version { key: Key::new(Collection::Tools, r.tool_id.clone()), envelope, signature }
        })
        .collect();
    let mut bindings = Bindings::default();
    bindings
        .set("w", Some(&Member { node_id: "w".into(), peer_id: identity.peer_id().to_string() }));
    let checked = per_op(n, |i| assert!(authority::check(&versions[i], "me", &bindings).is_ok()));
    let unsigned_check = per_op(n, |i| {
        let v = &versions[i];
        // What the receiving side did before: the header, the clock, the writer rule.
        let _ = decode_header(Collection::Tools, &v.envelope).map(|h| h.hlc.wall_ms);
        let _ = signed_message(Collection::Tools, &v.key.id, &v.envelope);
    });
    let verdict = if checked <= VERIFY_TARGET { "met" } else { "NOT met" };
    crate::out!(
        "| check a received version | {checked:.1?} | {unsigned_check:.1?} | {:.1?} | target ≤ {VERIFY_TARGET:?} of CPU a version: {verdict} |",
        checked.saturating_sub(unsigned_check)
    );
    let receiver = |name: &str| Store::open(&StoreConfig::new(dir.path().join(name), "r"));
    let (with, without) = (receiver("with")?, receiver("without")?);
    let merged = per_op(n, |i| {
        let v = &versions[i];
        if authority::check(v, "me", &bindings).is_ok() {
            let signed =
                SignedVersion { envelope: v.envelope.clone(), signature: v.signature.clone() };
            let _ = with.merge_encoded(Collection::Tools, &v.key.id, &signed);
        }
    });
    let unchecked = per_op(n, |i| {
        let v = &versions[i];
        let plain = SignedVersion { envelope: v.envelope.clone(), signature: Vec::new() };
        let _ = without.merge_encoded(Collection::Tools, &v.key.id, &plain);
    });
    crate::out!(
        "| check + merge (unflushed) | {merged:.1?} | {unchecked:.1?} | {:.1?} | the receiving side's whole per-version CPU |",
        merged.saturating_sub(unchecked)
    );
    let sign = per_op(n, |i| {
        drop(identity.sign(&signed_message(
            Collection::Tools,
            &versions[i].key.id,
            &versions[i].envelope,
        )))
    });
    crate::out!("| ed25519 sign alone | {sign:.1?} | | | |");
    Ok(())
}

/// The admission handshake: the proof's CPU, and connect → admitted on loopback for a closed
/// cluster beside an open one (where the same exchange carries no proof).
async fn admission(samples: usize) -> BenchResult {
    use gridnode_federation::admission::{Challenge, nonce};

    crate::out!("\n### admission\n");
    crate::out!("| step | samples | p50 | p99 | note |");
    crate::out!("| --- | --- | --- | --- | --- |");
    let key = ClusterKey::generate();
    let keyed = Admission::keyed(&key);
    let (a, b) = (Identity::generate().peer_id(), Identity::generate().peer_id());
    let n = 10_000;
    let proof = per_op(n, |_| {
        let challenge = Challenge { nonce: nonce() };
        let answer = keyed.answer(&b, &a, &challenge);
        assert!(keyed.admits(&b, &a, &challenge.nonce, &answer).is_ok());
    });
    crate::out!(
        "| proof made and checked (HMAC-SHA256, fresh nonce) | {n} | {proof:.1?} | | CPU per side per connection |"
    );
    for (name, admission) in [("closed (cluster key)", keyed), ("open", Admission::Open)] {
        let dir = tempfile::tempdir()?;
        let cluster = format!("bench-admit-{}", std::process::id());
        let listener = member_with(dir.path(), "l", &cluster, vec![], admission.clone()).await?;
        let mut events = listener.fed.subscribe();
        let mut times = Vec::with_capacity(samples);
        for i in 0..samples {
            let started = Instant::now();
            let dialer = member_with(
                dir.path(),
                &format!("d{i}"),
                &cluster,
                tcp_addr(&listener.fed),
                admission.clone(),
            )
            .await?;
            let peer = dialer.fed.peer_id();
            loop {
                match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                    Ok(Ok(gridnode_federation::Event::PeerConnected(p))) if p == peer => break,
                    Ok(_) => continue,
                    Err(_) => return Err("no admission within 10 s".into()),
                }
            }
            times.push(started.elapsed());
            dialer.fed.shutdown().await;
        }
        row(
            &format!("start a node → admitted by its bootstrap peer, {name}"),
            &percentiles(times),
            "includes the dialer's start (listeners, store) and the TCP+noise+yamux handshake",
        );
        listener.fed.shutdown().await;
    }
    Ok(())
}

/// This process's user + system CPU time, from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the command name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
