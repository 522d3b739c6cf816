//! Execute by id, actions, selection, org allow-lists and the audit trail (contract section
//! 11), against real nodes on 127.0.0.1: bundle tools that travel between nodes, remote tools
//! and functions against an HTTP server started here, system tools through the cluster path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::{get, post};

/// Heartbeats every half second: peers and load show up quickly.
const HEARTBEAT_MS: u64 = 500;
use gridnode_store::sha256_hex;
use gridnode_tests::api::Api;
use gridnode_tests::bundle::zip;
use gridnode_tests::tool_dir::write_tool;
use gridnode_tests::walk::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A bundle whose `run` prints its input, its argument count and the credentials it was given.
fn bundle_upload(id: &str) -> (Vec<u8>, String) {
    let run = b"#!/bin/sh\nread input\nprintf '{\"input\": %s, \"args\": %s, \"credentials\": %s}' \"$input\" \"$#\" \"${GRIDNODE_CREDENTIALS:-null}\"\n";
    let code = zip(&[("code/run", run.as_slice()), ("code/README", b"a bundle tool")]);
    let sha = sha256_hex(&code);
    let spec = json!({
        "tool_id": id,
        "tool_search_description": "prints what it was given",
        "tool_type": "bundle-demo",
        "tool_api_spec": {"text": "string"},
        "default_tool_usage_credentials": {"token": "s3cret-token"},
    });
    (zip(&[("spec.json", spec.to_string().as_bytes()), ("tool.zip", &code)]), sha)
}

async fn exec_tool(api: &Api, id: &str, input: Value) -> (StatusCode, Value) {
    api.post(&format!("/tools/{id}/execute"), &json!({ "input": input })).await
}

/// Requests an org makes, with its `X-Org-Id` header.
async fn as_org(api: &Api, org: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    api.send(api.client.post(api.url(path)).header("X-Org-Id", org).json(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bundles_travel_selection_weighs_load_and_allow_lists_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let tools_b = dir.path().join("tools-b");
    let tools_c = dir.path().join("tools-c");
    write_tool(&tools_b, "work_b", json!({"description": "works on b"}), "cat");
    write_tool(&tools_c, "work_c", json!({"description": "works on c"}), "cat");
    write_tool(
        &tools_c,
        "hold",
        json!({"description": "busy"}),
        "cat >/dev/null; sleep 5; echo '{}'",
    );
    let [(a, api_a), (b, api_b), (c, api_c)] =
        gridnode_tests::node::trio(dir.path(), "byid", HEARTBEAT_MS, &tools_b, &tools_c).await;

    // A bundle uploaded on a runs by id on b: fetched from a, checked, unpacked once, run.
    let (upload, sha) = bundle_upload("printer");
    let (status, body) = api_a.upload("/tools/upload", upload).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(&api_b, "/tools/printer", |t| t["tool_id"] == "printer").await;
    // The credentials replicate sealed, read redacted, and open on b for the run below.
    let (_, printer) = api_b.get("/tools/printer").await;
    assert_eq!(printer["default_tool_usage_credentials"], json!({"token": "<redacted>"}));
    let stored = b.registry().store().get::<gridnode_store::ToolEntry>("printer").unwrap();
    let sealed = stored.default_tool_usage_credentials["token"].as_str().unwrap().to_owned();
    assert!(sealed.starts_with("gnsealed:1:") && !sealed.contains("s3cret"), "{sealed}");
    let (status, _) = api_b.get(&format!("/blobs/{sha}?local=true")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "blobs are fetched on demand, not replicated");
    let calls = (0..6).map(|i| {
        let api = api_b.clone();
        async move { exec_tool(&api, "printer", json!({"text": format!("hello {i}")})).await }
    });
    for (status, body) in futures_join(calls).await {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["metadata"]["node_id"], "b");
        assert_eq!(body["metadata"]["runtime"], "bundle");
        assert_eq!(body["output"]["args"], 0, "credentials never on the command line");
        assert_eq!(body["output"]["credentials"], json!({"token": "s3cret-token"}));
    }
    assert_eq!(b.services().bundles.stats().unpacks, 1, "six concurrent first calls unpack once");
    let (status, body) = exec_tool(&api_b, "printer", json!({"text": "again"})).await;
    assert_eq!((status, &body["output"]["input"]), (StatusCode::OK, &json!({"text": "again"})));
    assert_eq!(b.services().bundles.stats().unpacks, 1, "warm calls reuse the unpacked bundle");
    let (status, _) = api_b.get(&format!("/blobs/{sha}?local=true")).await;
    assert_eq!(status, StatusCode::OK, "the fetched blob is kept");
    // GET /blobs on a node without the blob fetches it from a peer, checks it, and keeps it.
    eventually(&api_c, "/peers", |peers| {
        peers.as_array().is_some_and(|p| p.iter().filter(|n| n["alive"] == true).count() == 3)
    })
    .await;
    let (status, bytes) = api_c.bytes(&api_c.url(&format!("/blobs/{sha}"))).await;
    assert_eq!((status, sha256_hex(&bytes)), (StatusCode::OK, sha.clone()));
    assert_eq!(api_c.get(&format!("/blobs/{sha}?local=true")).await.0, StatusCode::OK);
    let (status, _) = api_c.get(&format!("/blobs/{}", "0".repeat(64))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a blob no one has");
    // Invalid input is refused before anything runs.
    let (status, body) = exec_tool(&api_b, "printer", json!({"text": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("text"), "{body}");

    // Selection: cheapest by tool_metadata.cost, then the least loaded node on a tie.
    for (id, rpc, cost) in
        [("fast-b", "work_b", 1), ("fast-c", "work_c", 1), ("pricey", "reverse_text", 9)]
    {
        let tool = json!({
            "tool_id": id, "tool_type": "worker", "tool_system_function_rpc_id": rpc,
            "tool_metadata": {"cost": cost}, "tool_search_description": format!("worker {id}"),
        });
        assert_eq!(api_a.post("/tools", &tool).await.0, StatusCode::CREATED);
    }
    let action = json!({
        "action_type": "work", "mapping_org_id": "acme",
        "tool_ids": ["fast-b", "fast-c", "pricey"],
        "action_dsl": {
            "filter": {"tool_type": "$param.kind"},
            "rank": [{"field": "tool_metadata.cost", "order": "asc"}, {"load": "asc"}],
        },
    });
    let (status, body) = api_a.post("/actions", &action).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eventually(&api_a, "/cluster-tools", |records| {
        records.as_array().is_some_and(|r| r.iter().filter(|t| t["alive"] == true).count() >= 12)
    })
    .await;
    // Three calls in flight on c, seen in its heartbeat.
    let holds: Vec<_> = (0..3)
        .map(|_| {
            let api = api_a.clone();
            tokio::spawn(async move {
                api.post("/cluster-tools/execute", &json!({"tool_name": "hold", "input": {}})).await
            })
        })
        .collect();
    eventually(&api_a, "/peers", |peers| {
        peers.as_array().is_some_and(|p| {
            p.iter()
                .any(|n| n["node_id"] == "c" && n["load"]["in_flight_calls"].as_u64() >= Some(1))
        })
    })
    .await;
    let (status, body) = api_a
        .post("/actions/acme/work/select", &json!({"search_parameters": {"kind": "worker"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tool_id"], "fast-b", "{body}");
    let candidates = body["explanation"]["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 3, "{body}");
    assert_eq!(candidates[0]["keys"][0], 1);
    assert_eq!(candidates[0]["keys"][1]["node_id"], "b");
    assert_eq!(candidates[1]["tool_id"], "fast-c");
    assert_eq!(candidates[2]["tool_id"], "pricey");
    let (status, body) = api_a
        .post(
            "/actions/acme/work/execute",
            &json!({"input": {"n": 1}, "search_parameters": {"kind": "worker"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["tool_id"], &body["metadata"]["node_id"], &body["output"]),
        (&json!("fast-b"), &json!("b"), &json!({"n": 1}))
    );
    // `$param` decides the filter: nothing of that type → 404.
    let (status, body) = api_a
        .post("/actions/acme/work/select", &json!({"search_parameters": {"kind": "none"}}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for hold in holds {
        let _ = hold.await;
    }

    // An allow-list set on a is enforced on b once replicated.
    let (status, body) = api_a.put("/orgs/acme/allowed-tools", &json!(["fast-c"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(&api_b, "/orgs/acme/allowed-tools", |list| *list == json!(["fast-c"])).await;
    let (status, body) =
        as_org(&api_b, "acme", "/tools/printer/execute", &json!({"input": {"text": "x"}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "tool 'printer' is not allowed for org 'acme'");
    let (status, _) =
        as_org(&api_b, "acme", "/tools/fast-c/execute", &json!({"input": {"n": 2}})).await;
    assert_eq!(status, StatusCode::OK);

    // b's audit log: one entry per execution asked of b, no input, no credentials.
    let (status, audit) = api_b.get("/audit?limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    let text = audit.to_string();
    assert!(!text.contains("hello") && !text.contains("s3cret"), "{text}");
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 10, "{audit}");
    assert_eq!(entries[0]["tool"], "fast-c");
    assert_eq!(entries[0]["org"], "acme");
    assert_eq!(entries[0]["node"], "c");
    assert_eq!(entries[1]["status"], 403);
    assert_eq!(entries[2]["status"], 400);
    let (_, mine) = api_b.get("/audit?org=acme").await;
    assert_eq!(mine.as_array().unwrap().len(), 2);
    let (_, printer) = api_b.get("/audit?tool=printer&limit=3").await;
    assert_eq!(printer.as_array().unwrap().len(), 3);
    assert!(
        printer
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tool"] == "printer" && e["input_bytes"].as_u64() > Some(0))
    );

    for node in [c, b, a] {
        node.shutdown().await.unwrap();
    }
}

/// Joins futures (the test crate has no `futures` dependency).
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// An HTTP server standing in for remote tools, functions, and a peer serving a tampered blob.
async fn remote_server(hits: Arc<AtomicUsize>) -> String {
    let counted = hits.clone();
    let app = Router::new()
        .route(
            "/echo",
            post(move |body: String| {
                let hits = counted.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    format!("{{\"got\": {body}}}")
                }
            }),
        )
        .route("/fail", post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }))
        .route("/big", post(|| async { "x".repeat(4096) }))
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/api/sum",
            post(|body: axum::Json<Value>| async move {
                axum::Json(json!({"sum": body["a"].as_i64().unwrap_or(0) + body["b"].as_i64().unwrap_or(0)}))
            }),
        )
        .route("/blobs/{sha}", get(|| async { b"not the bundle you asked for".to_vec() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_runs_checks_input_and_is_refused_outside_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let server = remote_server(hits.clone()).await;
    let (node, api) = gridnode_tests::node(dir.path(), "solo")
        .config(|config| {
            config.runtime.max_output_bytes = 1024;
            config.execute.call_timeout_ms = 500;
        })
        .start()
        .await;

    let tools = [
        json!({"tool_id": "remote-echo", "tool_service_url": format!("{server}/echo"), "tool_api_spec": {"msg": "string"}, "tool_metadata": {"cost": 2}, "tool_search_description": "echo a message back"}),
        json!({"tool_id": "remote-fail", "tool_service_url": format!("{server}/fail")}),
        json!({"tool_id": "remote-big", "tool_service_url": format!("{server}/big")}),
        json!({"tool_id": "remote-gone", "tool_service_url": "http://127.0.0.1:9/nothing"}),
        json!({"tool_id": "remote-slow", "tool_service_url": format!("{server}/slow")}),
        json!({"tool_id": "sys-reverse", "tool_system_function_rpc_id": "reverse_text", "tool_api_spec": {"text": "string"}, "tool_metadata": {"cost": 1}, "tool_search_description": "reverse a text"}),
        json!({"tool_id": "tampered", "tool_source_code_link": format!("{server}/blobs/{}", sha256_hex(b"the real bundle"))}),
        json!({"tool_id": "no-way", "tool_type": "x"}),
        json!({"tool_id": "odd-runtime", "tool_metadata": {"runtime": "quantum"}}),
    ];
    for tool in &tools {
        assert_eq!(api.post("/tools", tool).await.0, StatusCode::CREATED, "{tool}");
    }
    let function = json!({
        "function_id": "sum", "function_api_spec": {"a": "integer", "b": "integer"},
        "open_api_spec": {"servers": [{"url": server}], "paths": {"/api/sum": {"post": {}}}},
    });
    assert_eq!(api.post("/functions", &function).await.0, StatusCode::CREATED);

    // Remote: the input POSTed as JSON; failures are the tool's (500); no answer is 502.
    let (status, body) = exec_tool(&api, "remote-echo", json!({"msg": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"got": {"msg": "hi"}}));
    assert_eq!(body["metadata"]["runtime"], "remote");
    let (status, body) = exec_tool(&api, "remote-echo", json!({"msg": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "invalid input never leaves the node");
    let (status, body) = exec_tool(&api, "remote-fail", json!({})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"].as_str().unwrap().contains("500: boom"), "{body}");
    let (status, body) = exec_tool(&api, "remote-big", json!({})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    let (status, body) = exec_tool(&api, "remote-slow", json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("within 500 ms"), "{body}");
    // A caller that goes away mid-call still leaves an audit entry (499, cancelled).
    let impatient =
        reqwest::Client::builder().timeout(std::time::Duration::from_millis(100)).build().unwrap();
    let gave_up = impatient
        .post(api.url("/tools/remote-slow/execute"))
        .json(&json!({"input": {}}))
        .send()
        .await;
    assert!(gave_up.is_err());
    eventually(&api, "/audit?tool=remote-slow", |entries| {
        entries
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["status"] == 499 && e["success"] == false))
    })
    .await;
    let (status, body) = exec_tool(&api, "remote-gone", json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!((body["success"].clone(), body["output"].clone()), (json!(false), Value::Null));
    // A function: the spec's server and its one POST path.
    let (status, body) =
        api.post("/functions/sum/execute", &json!({"input": {"a": 2, "b": 3}})).await;
    assert_eq!((status, &body["output"]), (StatusCode::OK, &json!({"sum": 5})), "{body}");
    let (status, _) = api.post("/functions/sum/execute", &json!({"input": {"a": "2"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // System: the cluster tool of that name.
    let (status, body) = exec_tool(&api, "sys-reverse", json!({"text": "abc"})).await;
    assert_eq!((status, &body["output"]), (StatusCode::OK, &json!({"result": "cba"})), "{body}");
    assert_eq!(body["metadata"]["node_id"], "solo");
    // A tampered bundle is refused and never unpacked.
    let (status, body) = exec_tool(&api, "tampered", json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("refused"), "{body}");
    assert_eq!(node.services().bundles.stats().unpacks, 0);
    // Records that cannot run say why; unknown ids are 404.
    for (id, expected) in [("no-way", "cannot run"), ("odd-runtime", "quantum")] {
        let (status, body) = exec_tool(&api, id, json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    }
    assert_eq!(exec_tool(&api, "ghost", json!({})).await.0, StatusCode::NOT_FOUND);

    // Selection over every tool: the filter, a field and text relevance.
    let selector = json!({"filter": {"tool_metadata.cost": {"$lte": "$param.budget"}}, "rank": [{"text": "$param.task"}, {"field": "tool_metadata.cost"}]});
    let (status, body) = api
        .post(
            "/tools/select",
            &json!({"selector": selector, "search_parameters": {"budget": 5, "task": "reverse"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tool_id"], "sys-reverse", "{body}");
    assert_eq!(body["explanation"]["matched"], 2);
    let (status, body) = api
        .post(
            "/tools/select",
            &json!({"selector": selector, "search_parameters": {"budget": 0, "task": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["success"], false);
    let (status, _) =
        api.post("/tools/select", &json!({"selector": selector, "search_parameters": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // An org may only use its allow-list, on every path, checked before anything runs.
    assert_eq!(
        api.put("/orgs/tiny/allowed-tools", &json!(["remote-echo"])).await.0,
        StatusCode::OK
    );
    let before = hits.load(Ordering::SeqCst);
    let refusals = [
        as_org(&api, "tiny", "/tools/sys-reverse/execute", &json!({"input": {"text": "a"}})).await,
        api.post("/tools/sys-reverse/execute", &json!({"input": {"text": "a"}, "org_id": "tiny"}))
            .await,
        as_org(&api, "tiny", "/functions/sum/execute", &json!({"input": {"a": 1, "b": 1}})).await,
        as_org(&api, "tiny", "/cluster-tools/execute", &json!({"tool_name": "echo", "input": {}}))
            .await,
        as_org(
            &api,
            "tiny",
            "/tools/select",
            &json!({"selector": {"filter": {"tool_id": "sys-reverse"}}}),
        )
        .await,
    ];
    for (status, body) in &refusals {
        assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["success"], false);
        assert!(
            body["error"].as_str().unwrap().ends_with("is not allowed for org 'tiny'"),
            "{body}"
        );
    }
    // Selection for the org picks among its allowed tools only.
    let (status, body) = as_org(
        &api,
        "tiny",
        "/tools/select",
        &json!({"selector": {"rank": [{"field": "tool_metadata.cost"}]}}),
    )
    .await;
    assert_eq!((status, &body["tool_id"]), (StatusCode::OK, &json!("remote-echo")), "{body}");
    let (status, _) =
        as_org(&api, "tiny", "/tools/remote-echo/execute", &json!({"input": {"msg": "ok"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hits.load(Ordering::SeqCst), before + 1);
    // Actions of the org: its tools must be allowed; select and execute refuse the rest.
    let action =
        json!({"action_type": "rev", "mapping_org_id": "tiny", "tool_ids": ["sys-reverse"]});
    let (status, body) = api.post("/actions", &action).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(api.delete("/orgs/tiny/allowed-tools").await.0, StatusCode::OK);
    assert_eq!(api.post("/actions", &action).await.0, StatusCode::CREATED);
    assert_eq!(api.post("/actions", &action).await.0, StatusCode::CONFLICT);
    let missing = json!({"action_type": "bad", "mapping_org_id": "tiny", "tool_ids": ["sys-reverse", "ghost"]});
    let (status, body) = api.post("/actions", &missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("'ghost'"), "{body}");
    assert_eq!(
        api.put("/orgs/tiny/allowed-tools", &json!(["remote-echo"])).await.0,
        StatusCode::OK
    );
    for (path, body) in [
        ("/actions/tiny/rev/select", json!({"search_parameters": {}})),
        ("/actions/tiny/rev/execute", json!({"input": {"text": "a"}})),
    ] {
        let (status, body) = api.post(path, &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"], "tool 'sys-reverse' is not allowed for org 'tiny'");
    }
    let (status, body) = as_org(&api, "other", "/actions/tiny/rev/select", &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, actions) = api.get("/actions?org=tiny").await;
    assert_eq!((status, actions.as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    assert_eq!(api.delete("/actions/tiny/rev").await.0, StatusCode::OK);
    assert_eq!(api.get("/actions/tiny/rev").await.0, StatusCode::NOT_FOUND);

    // The audit log: refusals are there too, filtered by org and tool.
    let (_, tiny) = api.get("/audit?org=tiny").await;
    let tiny = tiny.as_array().unwrap();
    assert!(tiny.iter().filter(|e| e["status"] == 403).count() >= 5, "{tiny:?}");
    assert!(tiny.iter().all(|e| e["org"] == "tiny"));
    // Metrics count the tool calls this node ran and the executions it was asked for.
    let metrics = api.client.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"gridnode_tool_calls_total{tool="reverse_text",result="success"}"#,
        r#"gridnode_tool_calls_total{tool="remote-fail",result="failure"}"#,
        r#"gridnode_executions_total{kind="tool",status="403"}"#,
        r#"gridnode_executions_total{kind="cluster_tool",status="403"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    let (_, gone) = api.get("/audit?tool=remote-gone").await;
    assert_eq!(gone[0]["status"], 502);
    assert_eq!(gone[0]["success"], false);
    node.shutdown().await.unwrap();
}
