//! The local gRPC tool runtime: a node started in-process with built-in and process tools,
//! called with a real tonic client (and, in `python_client.rs`, with the seed's Python client).

use std::path::Path;
use std::time::Duration;

use gridnode::Node;
use gridnode_proto::{CallFunctionRequest, CallFunctionResponse, ToolExecutorClient};
use gridnode_tests::api::{Api, ids};
use gridnode_tests::tool_dir::write_tool as tool;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::Channel;

fn tools_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.join("tools");
    tool(
        &dir,
        "upper",
        json!({"description": "uppercases", "metadata": {"version": "2.1", "tags": ["x"], "cost": 3}}),
        "tr a-z A-Z",
    );
    tool(
        &dir,
        "fail",
        json!({"name": "fail"}),
        "cat >/dev/null; echo 'something broke' >&2; exit 3",
    );
    tool(
        &dir,
        "slow",
        json!({"timeout_ms": 300}),
        "sleep 60 & echo $! > child.pid; echo $$ > self.pid; sleep 60",
    );
    tool(&dir, "big", json!({}), "head -c 100000000 /dev/zero");
    tool(&dir, "nostdin", json!({}), "echo done");
    tool(&dir, "env", json!({}), "env");
    tool(&dir, "busy", json!({}), "sleep 1; echo ok");
    tool(&dir, "daemon", json!({}), "sleep 30 & echo $! > child.pid; echo started");
    tool(&dir, "escape", json!({}), "setsid sleep 3 >/dev/null & echo failing >&2; exit 1");
    tool(
        &dir,
        "linger",
        json!({"timeout_ms": 60000}),
        "sleep 60 & echo $! > child.pid; echo $$ > self.pid; sleep 60",
    );
    tool(
        &dir,
        "schema",
        json!({"input_spec": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}),
        "cat",
    );
    tool(
        &dir,
        "short",
        json!({"input_spec": {"x": {"type": "number", "min": 0, "max": 10}}}),
        "cat",
    );
    // Broken folders: reported and skipped, the node still starts.
    std::fs::create_dir_all(dir.join("broken")).unwrap();
    std::fs::write(dir.join("broken/tool.json"), "{ not json").unwrap();
    std::fs::write(dir.join("broken/run"), "#!/bin/sh\necho\n").unwrap();
    std::fs::create_dir_all(dir.join("norun")).unwrap();
    std::fs::write(dir.join("norun/tool.json"), "{}").unwrap();
    dir
}

async fn start(root: &Path, tools: Option<std::path::PathBuf>) -> Node {
    let node = gridnode_tests::node(root, "node-rt")
        .config(|config| config.runtime.max_concurrent_per_tool = 2);
    let node = match tools {
        Some(tools) => node.tools(tools),
        None => node,
    };
    node.start().await.0
}

async fn client(node: &Node) -> ToolExecutorClient<Channel> {
    ToolExecutorClient::connect(format!("http://{}", node.grpc_addr()))
        .await
        .unwrap()
        .max_decoding_message_size(64 * 1024 * 1024)
}

async fn call(
    client: &mut ToolExecutorClient<Channel>,
    name: &str,
    input: &[u8],
) -> CallFunctionResponse {
    let request = CallFunctionRequest { tool_name: name.into(), input: input.to_vec() };
    client.call_function(request).await.expect("never a grpc-level error").into_inner()
}

#[tokio::test]
async fn built_in_tools_over_grpc() {
    let root = tempfile::tempdir().unwrap();
    let node = start(root.path(), None).await;
    let mut client = client(&node).await;

    let response = call(&mut client, "reverse_text", br#"{"text":"hello world"}"#).await;
    assert!(response.success, "{}", response.error);
    assert_eq!(
        serde_json::from_slice::<Value>(&response.output).unwrap(),
        json!({"result": "dlrow olleh"})
    );
    assert_eq!(response.metadata["node_id"], "node-rt");
    assert!(response.metadata["duration_ms"].parse::<u64>().is_ok());
    assert_eq!(response.metadata["builtin"], "true", "non-string metadata is json-encoded");

    let bytes: Vec<u8> = (0..=255).collect();
    let response = call(&mut client, "echo", &bytes).await;
    assert!(response.success);
    assert_eq!(response.output, bytes);

    let response = call(&mut client, "node_stats", b"").await;
    assert!(response.success, "{}", response.error);
    let stats: Value = serde_json::from_slice(&response.output).unwrap();
    assert!(stats["cpus"].as_u64().unwrap() >= 1);
    assert!(stats["memory_total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["node_id"], "node-rt");

    let response = call(&mut client, "no-such-tool", b"{}").await;
    assert!(!response.success);
    assert!(response.error.contains("not hosted on node 'node-rt'"), "{}", response.error);
    assert_eq!(response.metadata["node_id"], "node-rt");

    for (input, needle) in [
        (&br#"{"txt":"x"}"#[..], "field 'text' is required"),
        (br#"{"text":5}"#, "field 'text' must be a string"),
        (b"not json", "not valid json"),
    ] {
        let response = call(&mut client, "reverse_text", input).await;
        assert!(!response.success);
        assert!(response.error.contains(needle), "{}", response.error);
    }

    // Hostile input: a huge name, an oversized request, raw garbage on the port.
    let response = call(&mut client, &"x".repeat(1 << 20), b"").await;
    assert!(!response.success && response.error.len() < 1024, "the echoed name is cut");
    let request = CallFunctionRequest { tool_name: "echo".into(), input: vec![0; 17 << 20] };
    let status = client.call_function(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::TcpStream::connect(node.grpc_addr()).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff garbage \x00").await.unwrap();
    }
    let response = call(&mut client, "echo", b"still here").await;
    assert_eq!(response.output, b"still here");

    // 200 concurrent calls over one channel.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let input = json!({"text": format!("call {i}")}).to_string();
            let response = call(&mut client, "reverse_text", input.as_bytes()).await;
            let expected: String = format!("call {i}").chars().rev().collect();
            response.success
                && serde_json::from_slice::<Value>(&response.output).unwrap()["result"] == expected
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap());
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn process_tools_run_sandboxed_and_bounded() {
    let root = tempfile::tempdir().unwrap();
    let tools = tools_dir(root.path());
    let node = start(root.path(), Some(tools)).await;
    let mut client = client(&node).await;

    let response = call(&mut client, "upper", b"hello").await;
    assert!(response.success, "{}", response.error);
    assert_eq!(response.output, b"HELLO");
    assert_eq!(response.metadata["version"], "2.1");
    assert_eq!(response.metadata["tags"], r#"["x"]"#);
    assert_eq!(response.metadata["cost"], "3");

    let response = call(&mut client, "fail", b"x").await;
    assert!(!response.success);
    assert_eq!(response.error, "something broke");

    let response = call(&mut client, "slow", b"").await;
    assert!(!response.success);
    assert!(response.error.contains("timed out after 300 ms"), "{}", response.error);
    let workdir = root.path().join("node-rt/work/slow");
    for file in ["self.pid", "child.pid"] {
        let pid = std::fs::read_to_string(workdir.join(file)).unwrap().trim().to_owned();
        assert!(gone(&pid).await, "process {pid} ({file}) outlived its timeout");
    }

    // A background child holding stdout does not keep a finished run going; it goes with it.
    let response = call(&mut client, "daemon", b"").await;
    assert!(response.success, "{}", response.error);
    assert_eq!(response.output, b"started\n");
    let pid = std::fs::read_to_string(root.path().join("node-rt/work/daemon/child.pid")).unwrap();
    assert!(gone(pid.trim()).await, "the background child was killed with its group");

    // A process that left the group holding stderr does not hold up a failed run's answer.
    let started = std::time::Instant::now();
    let response = call(&mut client, "escape", b"").await;
    assert!(!response.success);
    assert!(started.elapsed() < Duration::from_secs(2), "waited for the escaped process");

    // A caller that gives up (a gRPC deadline) takes the run down with it.
    let mut request =
        tonic::Request::new(CallFunctionRequest { tool_name: "linger".into(), input: vec![] });
    request.set_timeout(Duration::from_millis(300));
    let status = client.clone().call_function(request).await.unwrap_err();
    assert!(
        matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
        "{status}"
    );
    let workdir = root.path().join("node-rt/work/linger");
    for file in ["self.pid", "child.pid"] {
        let mut pid = String::new();
        for _ in 0..100 {
            pid = std::fs::read_to_string(workdir.join(file)).unwrap_or_default().trim().to_owned();
            if !pid.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(&pid).await, "process {pid} ({file}) outlived its cancelled call");
    }

    let response = call(&mut client, "big", b"").await;
    assert!(!response.success);
    assert!(response.error.contains("more than 16777216 bytes"), "{}", response.error);

    let response = call(&mut client, "nostdin", &vec![b'x'; 1 << 20]).await;
    assert!(response.success, "{}", response.error);
    assert_eq!(response.output, b"done\n");

    let response = call(&mut client, "env", b"").await;
    let env = String::from_utf8(response.output).unwrap();
    assert!(env.contains("GRIDNODE_TOOL=env"), "{env}");
    assert!(!env.contains("CARGO"), "the environment is cleared: {env}");
    assert!(env.contains("HOME=") && env.contains("work/env"), "{env}");

    let response = call(&mut client, "schema", br#"{"n": "three"}"#).await;
    assert!(!response.success);
    assert!(response.error.contains("field 'n'"), "{}", response.error);
    let response = call(&mut client, "schema", br#"{"n": 3}"#).await;
    assert!(response.success);
    let response = call(&mut client, "short", br#"{"x": 11}"#).await;
    assert!(response.error.contains("field 'x' must be at most 10"), "{}", response.error);

    // Two runs at once are allowed (config); the third is refused, clearly.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { call(&mut client, "busy", b"").await })
        })
        .collect();
    let mut refused = 0;
    for task in calls {
        let response = task.await.unwrap();
        if !response.success {
            assert!(response.error.contains("busy"), "{}", response.error);
            refused += 1;
        }
    }
    assert_eq!(refused, 1);

    // The records: built-ins and the usable process tools, each alive; the broken ones skipped.
    let api = Api::new(format!("http://{}", node.http_addr()));
    let (status, records) = api.get("/cluster-tools/node-rt").await;
    assert_eq!(status, StatusCode::OK);
    let names = ids(&records, "name");
    for name in ["reverse_text", "echo", "node_stats", "upper", "slow", "schema"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n == "broken" || n == "norun"));
    assert!(records.as_array().unwrap().iter().all(|r| r["alive"] == true));
    let (status, upper) = api.get("/cluster-tools/node-rt/upper").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upper["description"], "uppercases");
    assert_eq!(upper["metadata"]["cost"], 3);
    let (status, body) = api.get("/cluster-tools/node-rt/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["success"], false, "the seed's envelope: {body}");
    assert!(body["error"].as_str().unwrap().contains("nope"));
    let (status, body) = api.get("/cluster-tools?limit=zero").await;
    assert_eq!((status, &body["success"]), (StatusCode::BAD_REQUEST, &json!(false)));
    assert_eq!(api.get("/cluster-tools").await.1.as_array().unwrap().len(), names.len());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_replaces_the_nodes_own_records() {
    let root = tempfile::tempdir().unwrap();
    let tools = root.path().join("tools");
    tool(&tools, "first", json!({}), "cat");
    let node = start(root.path(), Some(tools.clone())).await;
    node.shutdown().await.unwrap();
    std::fs::remove_dir_all(tools.join("first")).unwrap();
    tool(&tools, "second", json!({}), "cat");
    let node = start(root.path(), Some(tools)).await;
    let api = Api::new(format!("http://{}", node.http_addr()));
    let (_, records) = api.get("/cluster-tools/node-rt").await;
    let names = ids(&records, "name");
    assert!(
        names.iter().any(|n| n == "second") && !names.iter().any(|n| n == "first"),
        "{names:?}"
    );
    node.shutdown().await.unwrap();
}

/// True once the process is gone (or a zombie waiting for a reaper), within a few seconds.
async fn gone(pid: &str) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    false
}

/// A call with `metadata` (name, value pairs).
async fn call_with(
    client: &mut ToolExecutorClient<Channel>,
    name: &str,
    input: &[u8],
    metadata: &[(&'static str, &str)],
) -> CallFunctionResponse {
    let mut request =
        tonic::Request::new(CallFunctionRequest { tool_name: name.into(), input: input.to_vec() });
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    client.call_function(request).await.expect("never a grpc-level error").into_inner()
}

/// gRPC from an outside client goes through the one execution door (allow-list, input check,
/// audit); a peer's member hop goes straight to the runtime, which still checks the input.
#[tokio::test]
async fn outside_grpc_calls_are_checked_and_audited_and_member_hops_are_not_audited_twice() {
    let root = tempfile::tempdir().unwrap();
    let (node, api) = gridnode_tests::node(root.path(), "node-rt").start().await;
    let mut client = client(&node).await;
    let (status, _) = api.put("/orgs/acme/allowed-tools", &json!(["echo"])).await;
    assert_eq!(status, StatusCode::OK);

    let acme = [("x-org-id", "acme")];
    let text = br#"{"text":"abc"}"#;
    let refused = call_with(&mut client, "reverse_text", text, &acme).await;
    assert!(!refused.success);
    assert_eq!(refused.error, "tool 'reverse_text' is not allowed for org 'acme'");
    assert_eq!(refused.metadata["error_code"], "PermissionDenied");
    let allowed = call_with(&mut client, "echo", b"raw bytes", &acme).await;
    assert!(allowed.success, "{}", allowed.error);
    assert_eq!(allowed.output, b"raw bytes");
    let invalid = call(&mut client, "reverse_text", br#"{"text": 5}"#).await;
    assert!(!invalid.success);
    assert!(invalid.error.starts_with("invalid input for 'reverse_text'"), "{}", invalid.error);
    assert_eq!(invalid.metadata["error_code"], "InvalidArgument");
    let unknown = call(&mut client, "no_such_tool", b"{}").await;
    assert!(unknown.error.contains("not hosted"), "{}", unknown.error);

    let (_, entries) = api.get("/audit").await;
    let seen: Vec<(&str, &str, u64)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["tool"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("no_such_tool", "cluster_tool", 500),
            ("reverse_text", "cluster_tool", 400),
            ("echo", "cluster_tool", 200),
            ("reverse_text", "cluster_tool", 403),
            // Registry writes are audited too (contract section 12).
            ("acme", "allow_list", 200),
        ],
        "{entries}"
    );

    // A member hop: the plan was made, checked and audited by the node it comes from, and
    // the call proves it comes from a member (the cluster key's proof over its content).
    let key = gridnode::ClusterKey::load(&root.path().join("node-rt/cluster.key")).unwrap();
    let members = gridnode::grpc::MemberProof::new(Some(&key));
    let proof = members.sign("node-b", "reverse_text", text).unwrap();
    let hop = [("x-gridnode-hop", "node-b"), ("x-gridnode-proof", proof.as_str())];
    let hopped = call_with(&mut client, "reverse_text", text, &hop).await;
    assert!(hopped.success, "{}", hopped.error);
    // A proof is bound to its call: another input under it is refused, as is a bare claim.
    for forged in [&hop[..], &hop[..1]] {
        let mut request = tonic::Request::new(CallFunctionRequest {
            tool_name: "reverse_text".into(),
            input: br#"{"text":"other"}"#.to_vec(),
        });
        for (name, value) in forged {
            request.metadata_mut().insert(*name, value.parse().unwrap());
        }
        let refused = client.call_function(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }
    let proof = members.sign("node-b", "reverse_text", b"[]").unwrap();
    let hop = [("x-gridnode-hop", "node-b"), ("x-gridnode-proof", proof.as_str())];
    let bad_hop = call_with(&mut client, "reverse_text", b"[]", &hop).await;
    assert!(!bad_hop.success, "the runtime still checks what crosses the network");
    let (_, after) = api.get("/audit").await;
    assert_eq!(after.as_array().unwrap().len(), seen.len(), "no second audit entry: {after}");
    node.shutdown().await.unwrap();
}
