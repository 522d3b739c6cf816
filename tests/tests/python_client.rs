//! The seed's own Python client (grpcio, stubs generated from the same proto) against a node: the
//! proto is byte-compatible with the original. The test installs grpcio and grpcio-tools with pip
//! when they are missing.

use std::process::Command;

use gridnode_tests::python::{ensure_grpcio, generate_stubs};
use serde_json::{Value, json};

/// The seed's `grpc_client_example.py`, made to print what it received as JSON.
const CLIENT: &str = r#"
import json, sys
import grpc
import rpc_service_pb2, rpc_service_pb2_grpc

def call_tool(tool_name, input_data, host="localhost", port=50051):
    channel = grpc.insecure_channel(f"{host}:{port}")
    stub = rpc_service_pb2_grpc.ToolExecutorStub(channel)
    input_bytes = json.dumps(input_data).encode("utf-8")
    request = rpc_service_pb2.CallFunctionRequest(tool_name=tool_name, input=input_bytes)
    response = stub.CallFunction(request)
    return {"success": response.success, "output": response.output.decode("utf-8", "replace"),
            "error": response.error, "metadata": dict(response.metadata)}

host, port = sys.argv[1], int(sys.argv[2])
print(json.dumps([
    call_tool("reverse_text", {"text": "hello world"}, host, port),
    call_tool("reverse_text", {"wrong": 1}, host, port),
    call_tool("missing_tool", {}, host, port),
]))
"#;

/// Runs `client.py` in `dir` with `args`; what it printed, as JSON.
async fn run_client(dir: &std::path::Path, args: Vec<String>) -> Value {
    let dir = dir.to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg("client.py").args(args).current_dir(dir).output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    assert!(output.status.success(), "client failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_seeds_python_client_calls_a_node() {
    ensure_grpcio();
    let dir = tempfile::tempdir().unwrap();
    generate_stubs(dir.path());
    std::fs::write(dir.path().join("client.py"), CLIENT).unwrap();
    let (node, _) = gridnode_tests::node(dir.path(), "node-py").start().await;
    let port = node.grpc_addr().port().to_string();
    let results = run_client(dir.path(), vec!["127.0.0.1".into(), port]).await;

    assert_eq!(results[0]["success"], true, "{results}");
    assert_eq!(
        serde_json::from_str::<Value>(results[0]["output"].as_str().unwrap()).unwrap(),
        json!({"result": "dlrow olleh"})
    );
    assert_eq!(results[0]["metadata"]["node_id"], "node-py");
    assert_eq!(results[1]["success"], false);
    assert!(results[1]["error"].as_str().unwrap().contains("field 'text' is required"));
    assert_eq!(results[2]["success"], false);
    assert!(results[2]["error"].as_str().unwrap().contains("not hosted"));
    node.shutdown().await.unwrap();
}

/// The seed's client with the token in the call's metadata, against a node with access control
/// on: no token is UNAUTHENTICATED, a read token PERMISSION_DENIED, an execute token runs.
const CLIENT_WITH_TOKEN: &str = r#"
import json, sys
import grpc
import rpc_service_pb2, rpc_service_pb2_grpc

host, port = sys.argv[1], int(sys.argv[2])
stub = rpc_service_pb2_grpc.ToolExecutorStub(grpc.insecure_channel(f"{host}:{port}"))
request = rpc_service_pb2.CallFunctionRequest(tool_name="reverse_text", input=b'{"text": "ab"}')
out = []
for token in ["", sys.argv[3], sys.argv[4]]:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    try:
        response = stub.CallFunction(request, metadata=metadata)
        out.append({"success": response.success, "output": response.output.decode()})
    except grpc.RpcError as error:
        out.append({"code": error.code().name, "details": error.details()})
print(json.dumps(out))
"#;

#[tokio::test]
async fn the_seeds_python_client_presents_a_token_in_its_metadata() {
    ensure_grpcio();
    let dir = tempfile::tempdir().unwrap();
    generate_stubs(dir.path());
    std::fs::write(dir.path().join("client.py"), CLIENT_WITH_TOKEN).unwrap();
    let admin = "python-test-management-secret";
    let (node, api) = gridnode_tests::node(dir.path(), "node-py-acl").acl(admin).start().await;
    let admin = api.with_token(admin);
    let read = admin.token(&["read"], None).await;
    let execute = admin.token(&["execute"], None).await;
    let port = node.grpc_addr().port().to_string();
    let results = run_client(dir.path(), vec!["127.0.0.1".into(), port, read, execute]).await;
    assert_eq!(results[0]["code"], "UNAUTHENTICATED", "{results}");
    assert_eq!(results[0]["details"], "missing or invalid token");
    assert_eq!(results[1]["code"], "PERMISSION_DENIED", "{results}");
    assert_eq!(results[2]["success"], true, "{results}");
    assert_eq!(results[2]["output"], r#"{"result":"ba"}"#);
    node.shutdown().await.unwrap();
}
