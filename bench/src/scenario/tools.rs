//! `gridnode-bench tools`: execute by id, selection and the audit log (contract section 11).
//!
//! - A bundle tool's first call on a node that has never seen it (fetch the blob from the peer
//!   that has it, check its sha256, unpack, run) and on the node it was uploaded to (unpack,
//!   run), beside its warm calls and beside spawning the unpacked `run` directly (the limit of
//!   any process tool).
//! - Selection over a 10k-tool registry with a filter and two rank keys, in-process and through
//!   REST, beside the same filter answered from the store (the index-narrowed sled query the
//!   selection catalog replaces). Target p50 ≤ 5 ms.
//! - The audit log's append, per call, beside the local execute-by-id call it is part of.

use std::process::Stdio;
use std::time::{Duration, Instant};

use gridnode::service::selection::Scope;
use gridnode_store::query::Filter;
use gridnode_store::{AuditEntry, AuditKind, JsonMap, Page, ToolEntry, sha256_hex};
use gridnode_tests::bundle::zip;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::corpus::{self, TYPES};
use crate::report::{BenchResult, Percentiles, percentiles, row};

/// The most one selection may take at p50.
const SELECT_TARGET: Duration = Duration::from_millis(5);

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<Duration, String> {
    let started = Instant::now();
    let response = client.post(url).json(body).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {text}"));
    }
    Ok(started.elapsed())
}

/// An upload bundle whose `run` echoes its input, and the sha256 of its code archive; `salt`
/// makes each archive (and sha) distinct.
fn bundle(id: &str, salt: usize) -> (Vec<u8>, String) {
    let run = format!("#!/bin/sh\n# build {salt}\ncat\n");
    let code = zip(&[("run", run.as_bytes())]);
    let spec = json!({"tool_id": id, "tool_api_spec": {"text": "string"}, "tool_search_description": "echoes"});
    (zip(&[("spec.json", spec.to_string().as_bytes()), ("tool.zip", &code)]), sha256_hex(&code))
}

pub fn run(quick: bool) -> BenchResult {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let cluster = format!("bench-tools-{}", std::process::id());
        let (a, b) = super::pair(dir.path(), &cluster, |_| {}).await?;
        let client = reqwest::Client::new();
        let (http_a, http_b) = (format!("http://{}", a.http_addr()), format!("http://{}", b.http_addr()));
        crate::out!("## tools scenario{}\n", if quick { " (quick)" } else { "" });

        // ---- bundle tools ------------------------------------------------------------------
        let bundles = if quick { 4 } else { 30 };
        // The sha of bundle-0's code: the warm calls below run it, and its unpacked `run` is the limit.
        let mut first_sha = String::new();
        for i in 0..bundles * 2 {
            let (upload, sha) = bundle(&format!("bundle-{i}"), i);
            if i == 0 {
                first_sha = sha;
            }
            let form = reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(upload).file_name("b.zip"));
            let response = client.post(format!("{http_a}/tools/upload")).multipart(form).send().await?;
            if !response.status().is_success() {
                return Err(format!("upload: {}", response.text().await?).into());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.registry().get::<ToolEntry>(format!("bundle-{}", bundles * 2 - 1)).await.is_err() {
            if Instant::now() > deadline {
                return Err("the bundles never reached b".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let input = json!({"input": {"text": "hello"}});
        let mut fetched = Vec::new();
        let mut local = Vec::new();
        for i in 0..bundles {
            fetched.push(post(&client, &format!("{http_b}/tools/bundle-{i}/execute"), &input).await?);
            local.push(post(&client, &format!("{http_a}/tools/bundle-{}/execute", bundles + i), &input).await?);
        }
        let warm_n = if quick { 50 } else { 500 };
        let mut warm = Vec::new();
        for _ in 0..warm_n {
            warm.push(post(&client, &format!("{http_b}/tools/bundle-0/execute"), &input).await?);
        }
        let run_path = dir.path().join("b").join("bundles").join(&first_sha).join("run");
        let mut spawn = Vec::new();
        for _ in 0..warm_n {
            let started = Instant::now();
            let mut child = tokio::process::Command::new(&run_path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(br#"{"text":"hello"}"#).await?;
            }
            child.wait_with_output().await?;
            spawn.push(started.elapsed());
        }
        crate::out!("Bundle tool `run` = `cat`, `POST /tools/{{id}}/execute` one call at a time.\n");
        crate::out!("| call | samples | p50 | p99 | note |");
        crate::out!("| --- | --- | --- | --- | --- |");
        let spawn = percentiles(spawn);
        row("spawn the unpacked `run` directly (the limit)", &spawn, "");
        let warm = percentiles(warm);
        row("warm call (unpacked, loaded)", &warm, &format!("{:+.0?} over the limit", warm.p50.saturating_sub(spawn.p50)));
        row("first call, blob local (unpack + run)", &percentiles(local), "");
        row("first call on a peer (fetch + sha256 + unpack + run)", &percentiles(fetched), "");
        let stats = b.services().bundles.stats();
        crate::out!("\nb unpacked {} bundles ({} bytes cached).\n", stats.unpacks, stats.cached_bytes);

        // ---- selection -----------------------------------------------------------------------
        let n = if quick { 2_000 } else { 10_000 };
        let tools = corpus::tools(n, 42);
        let store = a.registry().store().clone();
        tokio::task::spawn_blocking(move || store.import(&tools)).await??;
        let deadline = Instant::now() + Duration::from_secs(120);
        while a.registry().search_index().applied() < a.registry().store().last_seq() {
            if Instant::now() > deadline {
                return Err("the index never caught up".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let queries = corpus::queries(64, 7);
        let selection = &a.services().selection;
        let cases = [
            ("indexed filter (tool_type, 1/8 of tools) + cost + text", json!({"tool_type": TYPES[0]})),
            ("scanning filter (cost < 50, 1/2 of tools) + cost + text", json!({"tool_metadata.cost": {"$lt": 50}})),
        ];
        let started = Instant::now();
        let first = selection.select(Scope::All, &json!({"filter": cases[0].1}), &JsonMap::new(), None).await?;
        let build = started.elapsed();
        crate::out!(
            "Selection over {n} tools (`rank`: `tool_metadata.cost` asc, then text relevance of a two-word query). \
             Target p50 ≤ {SELECT_TARGET:?}. The first selection built the catalog in {build:.1?} (chose {}).\n",
            first.tool_ids[0]
        );
        crate::out!("| selection | samples | p50 | p99 | note |");
        crate::out!("| --- | --- | --- | --- | --- |");
        let samples = if quick { 50 } else { 300 };
        for (name, filter) in &cases {
            let mut timings = Vec::with_capacity(samples);
            let mut matched = 0;
            for i in 0..samples {
                let selector = json!({
                    "filter": filter,
                    "rank": [{"field": "tool_metadata.cost", "order": "asc"}, {"text": queries[i % queries.len()]}],
                });
                let started = Instant::now();
                let choice = selection.select(Scope::All, &selector, &JsonMap::new(), None).await?;
                timings.push(started.elapsed());
                matched = choice.explanation["matched"].as_u64().unwrap_or(0);
            }
            let measured = percentiles(timings);
            let verdict = if measured.p50 <= SELECT_TARGET { "met" } else { "not met" };
            row(&format!("in-process: {name}, {matched} matched"), &measured, verdict);
            let mut rest = Vec::with_capacity(samples);
            for i in 0..samples {
                let body = json!({"selector": {
                    "filter": filter,
                    "rank": [{"field": "tool_metadata.cost", "order": "asc"}, {"text": queries[i % queries.len()]}],
                }});
                rest.push(post(&client, &format!("{http_a}/tools/select"), &body).await?);
            }
            row(&format!("REST `POST /tools/select`: {name}"), &percentiles(rest), "");
            let store = a.registry().store().clone();
            let filter = Filter::parse(filter)?;
            let scan = tokio::task::spawn_blocking(move || -> Result<Percentiles, String> {
                let mut timings = Vec::new();
                for _ in 0..samples.min(50) {
                    let started = Instant::now();
                    let found = store.query::<ToolEntry>(&filter, Page::new(0, usize::MAX)).map_err(|e| e.to_string())?;
                    std::hint::black_box(found.len());
                    timings.push(started.elapsed());
                }
                Ok(percentiles(timings))
            })
            .await??;
            row(&format!("the filter alone from the store (no catalog): {name}"), &scan, "what the catalog avoids");
        }

        // ---- audit ---------------------------------------------------------------------------
        let sys = json!({"tool_id": "rev", "tool_system_function_rpc_id": "reverse_text", "tool_api_spec": {"text": "string"}});
        post(&client, &format!("{http_a}/tools"), &sys).await?;
        let calls = if quick { 300 } else { 3_000 };
        let mut execute = Vec::with_capacity(calls);
        for _ in 0..calls {
            execute.push(post(&client, &format!("{http_a}/tools/rev/execute"), &input).await?);
        }
        let store = a.registry().store().clone();
        let appends = tokio::task::spawn_blocking(move || -> Result<Percentiles, String> {
            let entry = AuditEntry {
                seq: 0,
                time_ms: 0,
                org: "acme".into(),
                kind: AuditKind::Tool,
                tool: "rev".into(),
                action: String::new(),
                node: "a".into(),
                success: true,
                status: 200,
                duration_ms: 1,
                input_bytes: 20,
                operation: "execute".into(),
                token: String::new(),
            };
            let mut timings = Vec::new();
            for _ in 0..calls * 10 {
                let started = Instant::now();
                store.append_audit(&entry, 100_000).map_err(|e| e.to_string())?;
                timings.push(started.elapsed());
            }
            Ok(percentiles(timings))
        })
        .await??;
        let execute = percentiles(execute);
        crate::out!("\n| audit | samples | p50 | p99 | note |");
        crate::out!("| --- | --- | --- | --- | --- |");
        row("`POST /tools/rev/execute` (system tool, local), audit included", &execute, "");
        row(
            "one audit append",
            &appends,
            &format!("{:.1}% of the call at p50", appends.p50.as_secs_f64() / execute.p50.as_secs_f64() * 100.0),
        );

        b.shutdown().await?;
        a.shutdown().await?;
        Ok(())
    })
}
