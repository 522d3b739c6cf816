//! `gridnode-bench search`: keyword search through a real node.

use std::time::{Duration, Instant};

use gridnode::{Node, NodeConfig};
use gridnode_search::SearchRequest;
use gridnode_search::scan::KeywordQuery;
use gridnode_store::{Store, StoreConfig, ToolEntry};

use crate::corpus;
use crate::report::{BenchResult, Percentiles, percentiles, row};

/// Keyword search through a real node: start-up indexing of `n` tools; query latency in-process
/// beside a linear scan of the store; through REST (by-keyword and /search) beside a bare
/// `/healthz` round trip (the HTTP floor); and the time from an acknowledged write to the first
/// search that finds it.
pub fn run(n: usize, quick: bool) -> BenchResult {
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    // The same corpus goes into the node's store and, later, into SQLite.
    let tools = std::sync::Arc::new(corpus::tools(n, 42));
    Store::open(&StoreConfig::new(dir.path().join("store"), "bench"))?.import(&tools)?;
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

        // On a runtime worker, as a server's client task would be (the thread that blocks on the
        // scenario would add a cross-thread wake-up to every round trip).
        let (client_in, base_in, queries_in) = (client.clone(), base.clone(), queries.clone());
        let (floor, keyword, ranked) = tokio::spawn(async move {
            let (client, base, queries) = (client_in, base_in, queries_in);
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
            Ok::<_, reqwest::Error>((floor, keyword, ranked))
        })
        .await??;

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

        // The alternative stack: SQLite's FTS5 over the same corpus, on disk, ranked by bm25.
        let sqlite_path = dir.path().join("fts5.sqlite");
        let (queries_in, corpus) = (queries.clone(), tools.clone());
        let (fts_build, fts) =
            tokio::task::spawn_blocking(move || fts5(&sqlite_path, &corpus, &queries_in)).await??;

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

        crate::out!("## search scenario: {n} tools{}\n", if quick { " (quick)" } else { "" });
        crate::out!(
            "Start-up with an empty index (rebuild of {n} records): {start_up:.2?} ({:.0} records/s)\n",
            n as f64 / start_up.as_secs_f64()
        );
        crate::out!("| path | samples | p50 | p99 | compared with |");
        crate::out!("| --- | --- | --- | --- | --- |");
        let floor = percentiles(floor);
        row("GET /healthz (HTTP floor)", &floor, "the limit: a round trip that does no work");
        let keyword = percentiles(keyword);
        let in_process = percentiles(in_process);
        row("in-process SearchIndex::search, top 10", &in_process, "target p50 ≤ 100 µs");
        let scanned = percentiles(scanned);
        let fts = percentiles(fts);
        let times = |a: &Percentiles, b: &Percentiles| b.p50.as_secs_f64() / a.p50.as_secs_f64();
        row(
            "in-process linear scan of the store, top 10",
            &scanned,
            &format!("what the index replaces: the index is {:.0} × faster at p50", times(&in_process, &scanned)),
        );
        row(
            "SQLite FTS5 (bundled, on disk), top 10 by bm25",
            &fts,
            &format!(
                "the alternative: built in {fts_build:.2?}; the index answers {:.1} × faster at p50",
                times(&in_process, &fts)
            ),
        );
        let verdict = if keyword.p99 <= Duration::from_millis(2) { "met" } else { "not met" };
        row(
            "GET /tools/query/by-keyword, top 10",
            &keyword,
            &format!("target p99 ≤ 2 ms: {verdict}; {:.0} × faster than the scan at p50", times(&keyword, &scanned)),
        );
        row("GET /search, top 10 with snippets", &percentiles(ranked), "");
        row("write → searchable (POST, then poll /search)", &percentiles(visible), "target p99 ≤ 100 ms");
        Ok(())
    })
}

/// Builds an FTS5 table of the corpus in a SQLite file and runs `queries` against it (each word
/// a term, OR-ed, as the index's parser does), top 10 by bm25. Returns the build time and the
/// per-query latencies.
fn fts5(
    path: &std::path::Path,
    tools: &[ToolEntry],
    queries: &[String],
) -> Result<(Duration, Vec<Duration>), String> {
    let started = Instant::now();
    let mut db = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE VIRTUAL TABLE tools USING fts5(id UNINDEXED, description, tags, kind, man_page);",
    )
    .map_err(|e| e.to_string())?;
    let tx = db.transaction().map_err(|e| e.to_string())?;
    {
        let mut insert = tx
            .prepare("INSERT INTO tools (id, description, tags, kind, man_page) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(|e| e.to_string())?;
        for tool in tools {
            insert
                .execute((
                    &tool.tool_id,
                    &tool.tool_search_description,
                    tool.tool_tags.join(" "),
                    &tool.tool_type,
                    &tool.tool_man_page_doc,
                ))
                .map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    let build = started.elapsed();
    let mut select = db
        .prepare("SELECT id FROM tools WHERE tools MATCH ?1 ORDER BY bm25(tools, 0.0, 3.0, 2.0, 1.5, 1.0) LIMIT 10")
        .map_err(|e| e.to_string())?;
    let mut samples = Vec::with_capacity(queries.len());
    for query in queries {
        let text =
            query.split_whitespace().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" OR ");
        let t = Instant::now();
        let ids: Vec<String> = select
            .query_map([text], |row| row.get(0))
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        samples.push(t.elapsed());
        std::hint::black_box(ids);
    }
    Ok((build, samples))
}
