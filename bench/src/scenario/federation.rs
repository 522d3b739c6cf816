//! `gridnode-bench replication` (also `federation`): replication over real libp2p on loopback.
//!
//! - write → readable on every node, N = 3, 10, 30 federations in this process (a sled store on
//!   disk and a swarm each), beside the target p99 ≤ 200 ms at N = 10;
//! - gossip payload bytes per replicated write, beside the record's own encoded size;
//! - catch-up of a new node from a peer holding 10 000 records, beside the target ≤ 5 s;
//! - idle CPU and memory of ten full nodes (store, search index, REST, gRPC, federation).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridnode::{Node, NodeConfig};
use gridnode_federation::{Federation, FederationConfig, Load, Multiaddr};
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
    let store = Store::open(&StoreConfig::new(dir.join(name), name))?;
    let mut config = FederationConfig::new(name, cluster);
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
        record_bytes +=
            writer.store.encoded_version(Collection::Tools, &id)?.map_or(0, |b| b.len());
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
        let config = NodeConfig {
            node_id: format!("idle-{i}"),
            cluster: cluster.clone(),
            bootstrap,
            ..NodeConfig::loopback(dir.path().join(format!("idle-{i}")))
        };
        nodes.push(Node::start(config).await?);
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
