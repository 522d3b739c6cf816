//! Resolution and execution across a federation (contract section 6): three real nodes on
//! 127.0.0.1, process tools on some of them, `POST /cluster-tools/resolve` and `/execute` from
//! the others — local first, least loaded next, failover when a node goes away, 502 when none
//! is left.

use std::time::{Duration, Instant};

use gridnode_tests::EVENTUALLY;
use gridnode_tests::api::Api;
use gridnode_tests::tool_dir::write_tool;
use gridnode_tests::walk::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Heartbeats every 1.5 s: a stopped node still looks alive for a few seconds, long enough to
/// see a call to it fail over.
const HEARTBEAT_MS: u64 = 1500;

fn peer<'a>(peers: &'a Value, node_id: &str) -> Option<&'a Value> {
    peers.as_array()?.iter().find(|p| p["node_id"] == node_id)
}

async fn execute(api: &Api, tool: &str, input: Value) -> (StatusCode, Value) {
    api.post("/cluster-tools/execute", &json!({"tool_name": tool, "input": input})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_tool_from_any_node_with_load_and_failover() {
    let dir = tempfile::tempdir().unwrap();
    // `whoami` only on b; `shout` on b and c; `hold` (busy for a while) on c.
    let tools_b = dir.path().join("tools-b");
    let tools_c = dir.path().join("tools-c");
    let echo = json!({"description": "echoes", "input_spec": {"x": "number"}});
    write_tool(&tools_b, "whoami", echo, "cat");
    for tools in [&tools_b, &tools_c] {
        write_tool(tools, "shout", json!({"description": "uppercases"}), "tr a-z A-Z");
    }
    write_tool(
        &tools_c,
        "hold",
        json!({"description": "busy"}),
        "cat >/dev/null; sleep 6; echo '{}'",
    );

    let [(a, api_a), (b, _api_b), (c, api_c)] =
        gridnode_tests::node::trio(dir.path(), "exec", HEARTBEAT_MS, &tools_b, &tools_c).await;
    for api in [&api_a, &api_c] {
        eventually(api, "/cluster-tools", |records| {
            records
                .as_array()
                .is_some_and(|r| r.iter().filter(|t| t["alive"] == true).count() == 13)
        })
        .await;
    }

    // A tool only b has: resolved and run from a and from c, on b.
    for api in [&api_a, &api_c] {
        let (status, body) =
            api.post("/cluster-tools/resolve", &json!({"tool_name": "whoami"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"success": true, "endpoint": b.advertise_grpc(), "node_id": "b"}));
        let (status, body) = execute(api, "whoami", json!({"x": 7})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], true);
        assert_eq!(body["output"], json!({"x": 7}));
        assert_eq!(body["error"], "");
        assert_eq!(body["metadata"]["node_id"], "b");
        // Checked against b's spec before any hop.
        let (status, body) = execute(api, "whoami", json!({"x": "seven"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains("field 'x'"), "{body}");
    }
    let remote_calls = a.services().cluster_tools.stats().remote_calls;
    assert_eq!(remote_calls, 1, "invalid input never left the node");

    // A tool every node has runs where it is asked, in-process.
    let (status, body) = execute(&api_a, "reverse_text", json!({"text": "hello world"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"result": "dlrow olleh"}));
    assert_eq!(body["metadata"]["node_id"], "a");
    assert_eq!(a.services().cluster_tools.stats().local_calls, 1);
    assert_eq!(a.services().cluster_tools.stats().remote_calls, remote_calls);
    // Pinned to a node.
    let pinned = json!({"tool_name": "reverse_text", "input": {"text": "ab"}, "node_id": "c"});
    let (_, body) = api_a.post("/cluster-tools/execute", &pinned).await;
    assert_eq!(
        (body["output"].clone(), body["metadata"]["node_id"].clone()),
        (json!({"result": "ba"}), json!("c"))
    );

    // Make c busy: three calls of `hold` in flight there, seen by a in c's heartbeats.
    let holds: Vec<_> = (0..3)
        .map(|_| {
            let api_c = api_c.clone();
            tokio::spawn(async move { execute(&api_c, "hold", json!({})).await })
        })
        .collect();
    eventually(&api_a, "/peers", |peers| {
        peer(peers, "c").is_some_and(|c| c["load"]["in_flight_calls"].as_u64() >= Some(3))
    })
    .await;
    for _ in 0..4 {
        let (status, body) = execute(&api_a, "shout", json!({"text": "hi"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["output"], json!({"TEXT": "HI"}));
        assert_eq!(body["metadata"]["node_id"], "b", "the least loaded node runs it");
    }

    // b goes away. a still has its recent heartbeat, tries b first, cannot reach it, and
    // fails over to c: the caller sees a plain success.
    b.shutdown().await.unwrap();
    let failovers = a.services().cluster_tools.stats().failovers;
    let (status, body) = execute(&api_a, "shout", json!({"text": "still here"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"TEXT": "STILL HERE"}));
    assert_eq!(body["metadata"]["node_id"], "c");
    assert_eq!(
        a.services().cluster_tools.stats().failovers,
        failovers + 1,
        "b was tried and failed"
    );
    // b now counts as down until it is heard from again: no second failover.
    let (_, body) = execute(&api_a, "shout", json!({})).await;
    assert_eq!(body["metadata"]["node_id"], "c");
    assert_eq!(a.services().cluster_tools.stats().failovers, failovers + 1);
    let (_, whoami) = execute(&api_a, "whoami", json!({"x": 1})).await;
    assert_eq!(whoami["success"], false);

    for hold in holds {
        let (status, body) = hold.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // c goes away too: nothing left to run `shout`, a clear 502.
    c.shutdown().await.unwrap();
    let (status, body) = execute(&api_a, "shout", json!({"text": "anyone?"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["output"], Value::Null);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("'shout'"), "{error}");
    // An unknown tool is the seed's 404.
    let (status, body) = execute(&api_a, "nope", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "Tool 'nope' not found on any node");
    // Once their heartbeats stop, resolve says no live node has it.
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let (status, body) =
            api_a.post("/cluster-tools/resolve", &json!({"tool_name": "shout"})).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(body["error"].as_str().unwrap().contains("no live node"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "resolve never said 503: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.shutdown().await.unwrap();
}
