//! A node outside the federation: a Kubernetes node running the seed's Python tools SDK (a real
//! grpcio ToolExecutor server from the same proto) syncs its tools into gridnode at start-up
//! (`DELETE <registry>/tools/{name}/{node_id}`, then `POST <registry>/tools`), and gridnode
//! nodes resolve it — one through the kubernetes resolver, one through the static table — and
//! run its tools over gRPC.

use std::process::Stdio;

use gridnode::config::{KubernetesSettings, ResolverKind};
use gridnode_tests::api::ids;
use gridnode_tests::kube::FakeKube;
use gridnode_tests::python::{ensure_grpcio, generate_stubs};
use gridnode_tests::walk::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The seed's SDK in small: `@register_tool`, a grpcio ToolExecutor server, and the start-up
/// sync (the registry URL, the seed's `ORG_SYSTEM_TOOLS_REGISTRY_URL`, arrives on stdin once
/// gridnode is up; each line syncs again, end of input stops the server).
const SDK_SERVER: &str = r#"
import json, sys, urllib.error, urllib.request
from concurrent import futures
import grpc
import rpc_service_pb2, rpc_service_pb2_grpc

NODE_ID = sys.argv[1]
TOOLS = {}

def register_tool(name, input_spec=None, description="", metadata=None):
    def wrap(func):
        TOOLS[name] = {"func": func, "input_spec": input_spec or {},
                       "description": description, "metadata": metadata or {}}
        return func
    return wrap

@register_tool(name="py_reverse", input_spec={"text": "string"},
               description="Reverses the input string",
               metadata={"version": "1.0.0", "language": "python"})
def reverse_tool(input_bytes):
    data = json.loads(input_bytes.decode())
    return json.dumps({"result": data["text"][::-1]}).encode()

@register_tool(name="py_fail", description="Always fails", metadata={"version": "0.1"})
def fail_tool(input_bytes):
    raise RuntimeError("the python tool broke")

class Executor(rpc_service_pb2_grpc.ToolExecutorServicer):
    def CallFunction(self, request, context):
        metadata = {"node_id": NODE_ID}
        tool = TOOLS.get(request.tool_name)
        if tool is None:
            return rpc_service_pb2.CallFunctionResponse(
                success=False, error=f"tool '{request.tool_name}' not found", metadata=metadata)
        metadata.update({k: str(v) for k, v in tool["metadata"].items()})
        try:
            output = tool["func"](request.input)
            return rpc_service_pb2.CallFunctionResponse(success=True, output=output, metadata=metadata)
        except Exception as e:
            return rpc_service_pb2.CallFunctionResponse(success=False, error=str(e), metadata=metadata)

def sync(registry):
    for name, tool in TOOLS.items():
        delete = urllib.request.Request(f"{registry}/tools/{name}/{NODE_ID}", method="DELETE")
        try:
            urllib.request.urlopen(delete)
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
        record = {"name": name, "node_id": NODE_ID, "input_spec": tool["input_spec"],
                  "metadata": tool["metadata"], "description": tool["description"]}
        insert = urllib.request.Request(f"{registry}/tools", data=json.dumps(record).encode(),
                                        method="POST", headers={"content-type": "application/json"})
        urllib.request.urlopen(insert)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
rpc_service_pb2_grpc.add_ToolExecutorServicer_to_server(Executor(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(f"port {port}", flush=True)
for line in sys.stdin:
    if not line.strip():
        break
    sync(line.strip())
    print("synced", flush=True)
server.stop(0)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_sdk_node_registers_and_runs_its_tools_through_gridnode() {
    ensure_grpcio();
    let dir = tempfile::tempdir().unwrap();
    generate_stubs(dir.path());
    std::fs::write(dir.path().join("sdk_server.py"), SDK_SERVER).unwrap();
    let mut python = tokio::process::Command::new("python3")
        .arg("sdk_server.py")
        .arg("py-node")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = python.stdin.take().unwrap();
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("the sdk server prints its port");
    let port: u16 = first.strip_prefix("port ").unwrap().parse().unwrap();

    // The Kubernetes node the SDK server runs on, as the API server describes it.
    let kube = FakeKube::start().await;
    kube.add_node("worker-7", ("nodeID", "py-node"), &[("InternalIP", "127.0.0.1")]);
    let cluster = gridnode_tests::unique_cluster("py");
    let kubeconfig = kube.kubeconfig(dir.path());
    let (a, api_a) = gridnode_tests::node(dir.path(), "gw-a")
        .in_cluster(&cluster)
        .brisk(1000)
        .config(|config| {
            config.resolver.chain = vec![ResolverKind::Federation, ResolverKind::Kubernetes];
            config.resolver.kubernetes = Some(KubernetesSettings {
                grpc_port: port,
                kubeconfig: Some(kubeconfig),
                ..KubernetesSettings::default()
            });
        })
        .start()
        .await;
    let (b, api_b) = gridnode_tests::node(dir.path(), "gw-b")
        .in_cluster(&cluster)
        .brisk(1000)
        .bootstrap(&a)
        .config(|config| {
            config.resolver.static_table.insert("py-node".into(), format!("127.0.0.1:{port}"));
        })
        .start()
        .await;

    // The SDK's start-up sync, pointed at gridnode; run twice, as a restarted SDK node would.
    for _ in 0..2 {
        let registry = format!("{}/cluster-tools\n", api_a.base);
        stdin.write_all(registry.as_bytes()).await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("synced"));
    }
    let (status, records) = api_a.get("/cluster-tools/py-node").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&records, "name"), ["py_fail", "py_reverse"]);
    assert!(records.as_array().unwrap().iter().all(|r| r["alive"] == true));

    // Resolved through the kubernetes resolver, run over gRPC by the Python server.
    let request = json!({"tool_name": "py_reverse", "input": {"text": "hello world"}});
    let (status, body) = api_a.post("/cluster-tools/execute", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"result": "dlrow olleh"}));
    assert_eq!(body["metadata"]["node_id"], "py-node");
    assert_eq!(body["metadata"]["version"], "1.0.0");
    assert_eq!(kube.requests(), 1);
    let (_, resolved) =
        api_a.post("/cluster-tools/resolve", &json!({"tool_name": "py_reverse"})).await;
    assert_eq!(resolved["endpoint"], format!("127.0.0.1:{port}"));
    assert_eq!(kube.requests(), 1, "cached");
    // The SDK's input_spec is checked here, before the hop.
    let bad = json!({"tool_name": "py_reverse", "input": {"text": 5}});
    let (status, body) = api_a.post("/cluster-tools/execute", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The Python tool's own failure is a 500 with its message, not retried.
    let failing = json!({"tool_name": "py_fail", "input": {}});
    let (status, body) = api_a.post("/cluster-tools/execute", &failing).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["success"], false);
    assert!(body["error"].as_str().unwrap().contains("the python tool broke"), "{body}");
    assert_eq!(a.services().cluster_tools.stats().failovers, 0);

    // The records replicated to b, which reaches the SDK node through its static table.
    eventually(&api_b, "/cluster-tools/py-node", |r| r.as_array().is_some_and(|r| r.len() == 2))
        .await;
    let (status, body) = api_b.post("/cluster-tools/execute", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metadata"]["node_id"], "py-node");
    // A peer's records stay the peer's: b cannot delete a's built-ins over REST.
    let (status, body) = api_b.delete("/cluster-tools/gw-a/echo").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The SDK node stops: its tools are unreachable, a clear 502.
    drop(stdin);
    python.wait().await.unwrap();
    let (status, body) = api_a.post("/cluster-tools/execute", &request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("py-node"), "{body}");
    let (_, record) = api_a.get("/cluster-tools/py-node/py_reverse").await;
    assert_eq!(record["alive"], Value::Bool(false));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
