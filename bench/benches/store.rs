//! Store micro-benchmarks at 100k records, each beside the limit it chases (same run):
//!
//! - `get`: `Store::get` (envelope + record decoded) vs a raw sled get of bytes of the same size;
//! - `by_tag`: an indexed tag lookup vs the same answer found by scanning every record;
//! - `generic`: a filter the index can narrow vs one that must scan all records;
//! - `insert`: durable creates from 1 and 32 writers (group commit) vs writes with no flush.
//!
//! `GRIDNODE_BENCH_N` sets the corpus size (default 100000), `GRIDNODE_BENCH_CACHE_MB` sled's
//! page cache (default 1024).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gridnode_bench::corpus;
use gridnode_store::query::Filter;
use gridnode_store::{Envelope, Page, Store, StoreConfig, ToolEntry};
use serde_json::json;

/// sled's page cache for both the store and the raw comparator, in MiB (`GRIDNODE_BENCH_CACHE_MB`,
/// default 1024, sled's own default, which holds the 100k working set).
fn cache_bytes() -> u64 {
    let mb = std::env::var("GRIDNODE_BENCH_CACHE_MB")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024u64);
    mb * 1024 * 1024
}

fn corpus_size() -> usize {
    std::env::var("GRIDNODE_BENCH_N").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000)
}

struct Fixture {
    store: Store,
    raw: sled::Tree,
    n: usize,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let n = corpus_size();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().join("store"), "bench");
    config.cache_capacity = cache_bytes();
    let store = Store::open(&config).unwrap();
    let tools = corpus::tools(n, 42);
    for chunk in tools.chunks(10_000) {
        store.import(chunk).unwrap();
    }
    // The floor for a get: sled returning bytes of the same size, nothing decoded.
    let raw_db = sled::Config::new().path(dir.path().join("raw")).open().unwrap();
    let raw = raw_db.open_tree("raw").unwrap();
    for tool in &tools {
        let bytes = bincode::serde::encode_to_vec(tool, bincode::config::standard()).unwrap();
        raw.insert(tool.tool_id.as_bytes(), bytes).unwrap();
    }
    raw.flush().unwrap();
    Fixture { store, raw, n, _dir: dir }
}

fn get(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("get");
    let mut i = 0usize;
    let mut next_id = move || {
        i = (i + 7919) % f.n;
        corpus::tool_id(i)
    };
    group.bench_function("store_get", |b| {
        b.iter_batched(
            &mut next_id,
            |id| f.store.get::<ToolEntry>(&id).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("store_header_only", |b| {
        b.iter_batched(
            &mut next_id,
            |id| f.store.header::<ToolEntry>(&id).unwrap().unwrap(),
            BatchSize::SmallInput,
        )
    });
    // What decoding costs on its own: an envelope already in memory.
    let hlc = gridnode_store::Hlc { wall_ms: 1, counter: 0, node: "bench".into() };
    let bytes = Envelope::live(hlc, corpus::tools(1, 42).remove(0)).encode().unwrap();
    group.bench_function("decode_only", |b| {
        b.iter(|| Envelope::<ToolEntry>::decode(std::hint::black_box(&bytes)).unwrap())
    });
    group.bench_function("raw_sled_get_limit", |b| {
        b.iter_batched(
            &mut next_id,
            |id| f.raw.get(id.as_bytes()).unwrap().unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn by_tag(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("by_tag");
    let mut t = 0usize;
    let mut next_tag = move || {
        t = (t + 31) % corpus::TAG_VOCABULARY;
        json!(corpus::tag(t))
    };
    group.bench_function("indexed", |b| {
        b.iter_batched(
            &mut next_tag,
            |tag| f.store.find::<ToolEntry>("tool_tags", &tag, Page::ALL).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.sample_size(10);
    // `$or` hides the equality from the planner: the same answer by scanning every record.
    let scan = Filter::parse(&json!({"$or": [{"tool_tags": corpus::tag(7)}]})).unwrap();
    group.bench_function("full_scan", |b| {
        b.iter(|| f.store.query::<ToolEntry>(&scan, Page::ALL).unwrap())
    });
    group.finish();
}

fn generic(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("generic");
    let narrowed =
        Filter::parse(&json!({"tool_tags": corpus::tag(7), "tool_metadata.cost": {"$gte": 10}}))
            .unwrap();
    group.bench_function("index_narrowed", |b| {
        b.iter(|| f.store.query::<ToolEntry>(&narrowed, Page::ALL).unwrap())
    });
    group.sample_size(10);
    let scan = Filter::parse(&json!({"tool_metadata.cost": {"$gte": 98}, "tool_metadata.owner": {"$in": ["team-1", "team-2"]}})).unwrap();
    group.bench_function("full_scan", |b| {
        b.iter(|| f.store.query::<ToolEntry>(&scan, Page::ALL).unwrap())
    });
    group.finish();
}

fn insert(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("insert");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    let next = Arc::new(AtomicUsize::new(f.n + 1));
    let template = corpus::tools(1, 7).pop().unwrap();
    let make = {
        let next = next.clone();
        move || {
            let mut tool = template.clone();
            tool.tool_id = corpus::tool_id(next.fetch_add(1, Ordering::Relaxed));
            tool
        }
    };
    for writers in [1usize, 32] {
        let make = make.clone();
        group.bench_function(format!("durable_{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let per_writer = (iters as usize).div_ceil(writers);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..writers {
                        let make = make.clone();
                        s.spawn(move || {
                            for _ in 0..per_writer {
                                f.store.create(&make()).unwrap();
                            }
                        });
                    }
                });
                start.elapsed().mul_f64(iters as f64 / (per_writer * writers) as f64)
            })
        });
    }
    // The limit: the same transaction with no flush (what a write costs before durability).
    group.bench_function("unflushed_limit", |b| {
        b.iter_batched(&make, |tool| f.store.put_unsynced(&tool).unwrap(), BatchSize::SmallInput)
    });
    group.finish();
}

fn store_benches(c: &mut Criterion) {
    let f = fixture();
    get(c, &f);
    by_tag(c, &f);
    generic(c, &f);
    insert(c, &f);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = store_benches
}
criterion_main!(benches);
