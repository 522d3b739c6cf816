//! Search micro-benchmarks at 10k and 100k tools, each beside what it replaces (same run):
//!
//! - `query_{n}/index`: a two-word keyword query through the tantivy index, top 10 (what
//!   by-keyword pays); `index_with_snippets` adds a snippet per hit (what /search pays);
//! - `query_{n}/linear_scan`: the same query by scanning and scoring every record in the store
//!   (the original's approach, and this project's stand-in before the index);
//! - `indexing/rebuild_{n}`: bulk indexing of every record (throughput in records/s).
//!
//! `GRIDNODE_BENCH_SIZES` sets the corpus sizes (default "10000,100000").

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gridnode_bench::corpus;
use gridnode_search::scan::KeywordQuery;
use gridnode_search::{SearchIndex, SearchRequest};
use gridnode_store::{Collection, Page, Store, StoreConfig, ToolEntry};

fn sizes() -> Vec<usize> {
    std::env::var("GRIDNODE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

fn search_benches(c: &mut Criterion) {
    for n in sizes() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path().join("store"), "bench");
        config.cache_capacity = 1 << 30;
        let store = Store::open(&config).unwrap();
        store.import(&corpus::tools(n, 42)).unwrap();
        let index = SearchIndex::open(&dir.path().join("index"), store.clone()).unwrap();
        let queries = corpus::queries(1000, 7);

        let mut group = c.benchmark_group(format!("query_{n}"));
        let mut i = 0;
        let mut next = || {
            i = (i + 1) % queries.len();
            queries[i].clone()
        };
        for (name, snippets) in [("index", false), ("index_with_snippets", true)] {
            group.bench_function(name, |b| {
                b.iter_batched(
                    &mut next,
                    |text| {
                        let request = SearchRequest {
                            text: &text,
                            kind: Some(Collection::Tools),
                            page: Page::new(0, 10),
                            snippets,
                        };
                        index.search(&request).unwrap()
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        group.sample_size(10);
        group.bench_function("linear_scan", |b| {
            b.iter_batched(
                &mut next,
                |text| {
                    let query = KeywordQuery::parse(&text).unwrap();
                    let mut hits = query.rank(store.live::<ToolEntry>()).unwrap();
                    hits.truncate(10);
                    hits
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();

        let mut group = c.benchmark_group("indexing");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(20))
            .throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("rebuild_{n}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    index.rebuild().unwrap();
                }
                start.elapsed()
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = search_benches
}
criterion_main!(benches);
