//! `gridnode-bench registry`: the registry's REST routes through a real node holding the seeded
//! corpus — `GET /tools/{id}`, `GET /tools/query/by-tag`, `POST /tools/query/generic` and
//! `POST /tools` from 32 concurrent writers — beside a bare axum handler that returns the same
//! bytes as a `GET /tools/{id}` (the limit of any axum route on this machine), in the same run.

use gridnode::{Node, NodeConfig};
use gridnode_store::{Store, StoreConfig};
use reqwest::Method;
use serde_json::json;

use crate::corpus::{self, TYPES};
use crate::load::{self, Measured};
use crate::out;
use crate::report::BenchResult;

/// GET throughput the registry must reach, as a share of the bare handler's.
const GET_TARGET: f64 = 0.8;
/// What a returned record may add to a query's answer, over the bare handler's cost.
const PER_RECORD_TARGET: std::time::Duration = std::time::Duration::from_micros(10);
/// Distinct tools read again and again (the popular tools of a registry).
const HOT: usize = 1000;

pub fn run(quick: bool) -> BenchResult {
    let n = if quick { 2_000 } else { 100_000 };
    let dir = tempfile::tempdir()?;
    Store::open(&StoreConfig::new(dir.path().join("store"), "bench"))?
        .import(&corpus::tools(n, 42))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = Node::start(NodeConfig {
            node_id: "bench".into(),
            ..NodeConfig::loopback(dir.path().to_path_buf())
        })
        .await?;
        let base = format!("http://{}", node.http_addr());
        let client = reqwest::Client::new();
        // The limit: the same bytes from a handler that does nothing else.
        let sample = client.get(format!("{base}/tools/{}", corpus::tool_id(7))).send().await?.bytes().await?;
        let bare = super::bare_router(sample.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bare_base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, bare).await });

        let scale = if quick { 20 } else { 1 };
        let reads = 40_000 / scale;
        out!("## registry scenario{}\n", if quick { " (quick)" } else { "" });
        out!(
            "A node holding {n} corpus tools (seed 42); {} B per `GET /tools/{{id}}` answer; one pooled \
             reqwest client in the same process (client and node share the 2 cores). Target: `GET` \
             ≥ {GET_TARGET} × the bare handler's throughput.\n",
            sample.len()
        );
        out!("| request | concurrent | calls | p50 | p99 | req/s | vs bare axum (throughput) |");
        out!("| --- | --- | --- | --- | --- | --- | --- |");
        let print = |name: &str, concurrency: usize, m: &Measured, ratio: String| {
            out!(
                "| {name} | {concurrency} | {} | {:.1?} | {:.1?} | {:.0} | {ratio} |",
                m.latency.count, m.latency.p50, m.latency.p99, m.per_second
            );
        };
        for concurrency in [1usize, 32] {
            let url = bare_base.clone();
            let limit = load::http(&client, concurrency, reads, move |i| {
                (Method::GET, format!("{url}/tools/{}", corpus::tool_id(i % 1000)), None)
            })
            .await?;
            let vs = |m: &Measured| m.per_second / limit.per_second;
            print("bare axum, same bytes (the limit)", concurrency, &limit, "1.00 ×".into());
            let url = base.clone();
            let floor = load::http(&client, concurrency, reads, move |_| (Method::GET, format!("{url}/healthz"), None))
                .await?;
            print("`GET /healthz` on the node (its router, no store)", concurrency, &floor, format!("{:.2} ×", vs(&floor)));
            let verdict = |m: &Measured| if m.per_second >= GET_TARGET * limit.per_second { "met" } else { "not met" };
            let url = base.clone();
            // Each id read once in this pass (a new stride per concurrency: nothing rendered yet).
            let stride = if concurrency == 1 { 7919 } else { 104_729 };
            let cold = load::http(&client, concurrency, reads, move |i| {
                (Method::GET, format!("{url}/tools/{}", corpus::tool_id((i * stride) % n)), None)
            })
            .await?;
            print("`GET /tools/{id}`, each id read once (cold)", concurrency, &cold, format!("{:.2} × {}", vs(&cold), verdict(&cold)));
            let url = base.clone();
            let hot = move |i: usize| (Method::GET, format!("{url}/tools/{}", corpus::tool_id((i % HOT) * 97 % n)), None);
            load::http(&client, concurrency, HOT, hot.clone()).await?;
            let get = load::http(&client, concurrency, reads, hot).await?;
            print(
                &format!("`GET /tools/{{id}}`, {HOT} popular ids read again and again"),
                concurrency,
                &get,
                format!("{:.2} × {}", vs(&get), verdict(&get)),
            );
            // Each answer's cost over the bare handler's, per record it returns: from throughput
            // (the machine's time per answer), not latency, which includes queueing at 32.
            let per_record = |m: &Measured, records: f64| {
                let extra = (1.0 / m.per_second - 1.0 / limit.per_second).max(0.0) / records.max(1.0);
                let extra = std::time::Duration::from_secs_f64(extra);
                let verdict = if extra <= PER_RECORD_TARGET { "met" } else { "not met" };
                format!("{:.2} ×; {records:.1} records an answer, {extra:.1?} a record over the bare handler ({verdict})", vs(m))
            };
            let url = base.clone();
            let by_tag_request = move |i: usize| {
                (Method::GET, format!("{url}/tools/query/by-tag?tag={}", corpus::tag((i * 31) % 10_000)), None)
            };
            let records = mean_records(&client, &by_tag_request).await?;
            let by_tag = load::http(&client, concurrency, reads / 4, by_tag_request).await?;
            print("`GET /tools/query/by-tag` (~20 hits at 100k)", concurrency, &by_tag, per_record(&by_tag, records));
            let url = base.clone();
            let generic_request = move |i: usize| {
                let filter = json!({
                    "tool_tags": corpus::tag((i * 31) % 10_000),
                    "tool_type": {"$in": TYPES},
                    "tool_metadata.cost": {"$lt": 50},
                });
                (Method::POST, format!("{url}/tools/query/generic?limit=10"), Some(filter.to_string().into_bytes()))
            };
            let records = mean_records(&client, &generic_request).await?;
            let generic = load::http(&client, concurrency, reads / 4, generic_request).await?;
            print(
                "`POST /tools/query/generic` (tag, type in a list, cost < 50; top 10)",
                concurrency,
                &generic,
                per_record(&generic, records),
            );
        }
        let writes = if quick { 320 } else { 6_400 };
        let url = base.clone();
        let fresh = corpus::tools(writes, 99);
        let bodies: Vec<Vec<u8>> = fresh
            .into_iter()
            .enumerate()
            .map(|(i, mut tool)| {
                tool.tool_id = format!("written-{i:06}");
                serde_json::to_vec(&tool).unwrap_or_default()
            })
            .collect();
        let bodies = std::sync::Arc::new(bodies);
        let write = load::http(&client, 32, writes, move |i| {
            (Method::POST, format!("{url}/tools"), Some(bodies[i].clone()))
        })
        .await?;
        print("`POST /tools` (each durable before its 201)", 32, &write, "no bare equivalent".into());
        out!(
            "\nWrites are acknowledged only once on disk: concurrent writers share one flush (group \
             commit), so write throughput is the flush rate times the batch size."
        );
        node.shutdown().await?;
        Ok(())
    })
}

/// The mean number of records in the answers to the first 200 of `requests`.
async fn mean_records(
    client: &reqwest::Client,
    requests: &impl Fn(usize) -> load::Request,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut total = 0usize;
    for i in 0..200 {
        let (method, url, body) = requests(i);
        let mut request = client.request(method, &url);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let answer: serde_json::Value = request.send().await?.json().await?;
        total += answer.as_array().map_or(0, Vec::len);
    }
    Ok(total as f64 / 200.0)
}
