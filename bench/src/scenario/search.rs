//! `gridnode-bench search`: keyword search through a real node.

use std::time::{Duration, Instant};

use gridnode::{Node, NodeConfig};
use gridnode_search::SearchRequest;
use gridnode_search::scan::KeywordQuery;
use gridnode_store::{Store, StoreConfig, ToolEntry};

use crate::corpus;
use crate::report::{BenchResult, percentiles, row};

/// Keyword search through a real node: start-up indexing of `n` tools; query latency in-process
/// beside a linear scan of the store; through REST (by-keyword and /search) beside a bare
/// `/healthz` round trip (the HTTP floor); and the time from an acknowledged write to the first
/// search that finds it.
pub fn run(n: usize, quick: bool) -> BenchResult {
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    {
        let store = Store::open(&StoreConfig::new(dir.path().join("store"), "bench"))?;
        for chunk in corpus::tools(n, 42).chunks(10_000) {
            store.import(chunk)?;
        }
    }
    runtime.block_on(async {
        let config = NodeConfig {
            node_id: "bench".into(),
            ..NodeConfig::loopback(dir.path().to_path_buf())
        };
        let started = Instant::now();
        let node = Node::start(config).await?;
        let start_up = started.elapsed();
        let base = format!("http://{}", node.http_addr());
        let client = reqwest::Client::new();
        let rounds = if quick { 100 } else { 2_000 };
        let queries = corpus::queries(rounds, 7);
        let queries = std::sync::Arc::new(queries);

        let mut floor = Vec::with_capacity(rounds);
        let mut keyword = Vec::with_capacity(rounds);
        let mut ranked = Vec::with_capacity(rounds);
        for query in queries.iter() {
            let t = Instant::now();
            client.get(format!("{base}/healthz")).send().await?.bytes().await?;
            floor.push(t.elapsed());
            let t = Instant::now();
            let response = client
                .get(format!("{base}/tools/query/by-keyword"))
                .query(&[("keyword", query.as_str()), ("limit", "10")])
                .send()
                .await?;
            assert!(response.status().is_success(), "by-keyword failed: {}", response.status());
            response.bytes().await?;
            keyword.push(t.elapsed());
            let t = Instant::now();
            let response =
                client.get(format!("{base}/search")).query(&[("q", query.as_str()), ("limit", "10")]).send().await?;
            assert!(response.status().is_success(), "/search failed: {}", response.status());
            response.bytes().await?;
            ranked.push(t.elapsed());
        }

        // The same queries in-process (no HTTP, no task hop), and through a linear scan of the
        // store: what the index replaces.
        let index = node.registry().search_index().clone();
        let store = node.registry().store().clone();
        let queries_in = queries.clone();
        let (in_process, scanned) = tokio::task::spawn_blocking(move || {
            let queries = queries_in;
            let mut in_process = Vec::with_capacity(queries.len());
            for query in queries.iter() {
                let t = Instant::now();
                let request = SearchRequest {
                    text: query,
                    kind: Some(gridnode_store::Collection::Tools),
                    page: gridnode_store::Page::new(0, 10),
                    snippets: false,
                };
                index.search(&request).expect("the corpus queries parse");
                in_process.push(t.elapsed());
            }
            let mut scanned = Vec::new();
            for query in queries.iter().take(if quick { 5 } else { 20 }) {
                let t = Instant::now();
                let keyword = KeywordQuery::parse(query).expect("the corpus queries have words");
                let mut hits = keyword.rank(store.live::<ToolEntry>()).expect("the store reads");
                hits.truncate(10);
                scanned.push(t.elapsed());
            }
            (in_process, scanned)
        })
        .await?;

        let writes = if quick { 20 } else { 200 };
        let mut visible = Vec::with_capacity(writes);
        for i in 0..writes {
            let word = format!("freshword{i}x");
            let tool = serde_json::json!({"tool_id": format!("fresh-{i}"), "tool_search_description": word});
            let t = Instant::now();
            let status = client.post(format!("{base}/tools")).json(&tool).send().await?.status();
            assert_eq!(status.as_u16(), 201);
            loop {
                let hits: serde_json::Value =
                    client.get(format!("{base}/search")).query(&[("q", word.as_str())]).send().await?.json().await?;
                if hits.as_array().is_some_and(|h| !h.is_empty()) {
                    break;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    return Err(format!("write {i} not searchable after 10 s").into());
                }
            }
            visible.push(t.elapsed());
        }
        node.shutdown().await?;

        println!("## search scenario: {n} tools{}\n", if quick { " (quick)" } else { "" });
        println!(
            "Start-up with an empty index (rebuild of {n} records): {start_up:.2?} ({:.0} records/s)\n",
            n as f64 / start_up.as_secs_f64()
        );
        println!("| path | samples | p50 | p99 | compared with |");
        println!("| --- | --- | --- | --- | --- |");
        let floor = percentiles(floor);
        row("GET /healthz (HTTP floor)", &floor, "the limit: a round trip that does no work");
        let keyword = percentiles(keyword);
        row("in-process SearchIndex::search, top 10", &percentiles(in_process), "target p50 ≤ 100 µs");
        row("in-process linear scan of the store, top 10", &percentiles(scanned), "what the index replaces");
        row("GET /tools/query/by-keyword, top 10", &keyword, "target p99 ≤ 2 ms");
        row("GET /search, top 10 with snippets", &percentiles(ranked), "");
        row("write → searchable (POST, then poll /search)", &percentiles(visible), "target p99 ≤ 100 ms");
        Ok(())
    })
}
