//! `gridnode-bench grpc`: `CallFunction` through a real node's gRPC runtime, beside a bare tonic
//! server of the same proto that returns its input (the limit), in the same run; and a process
//! tool's overhead beside spawning `/bin/cat` directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridnode::{Node, NodeConfig};
use gridnode_proto::{
    CallFunctionRequest, CallFunctionResponse, ToolExecutor, ToolExecutorClient, ToolExecutorServer,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::load::Measured;
use crate::report::{BenchResult, percentiles, row};

/// The limit: a ToolExecutor that does nothing but return its input.
#[derive(Debug, Clone, Copy)]
struct Bare;

#[tonic::async_trait]
impl ToolExecutor for Bare {
    async fn call_function(
        &self,
        request: tonic::Request<CallFunctionRequest>,
    ) -> Result<tonic::Response<CallFunctionResponse>, tonic::Status> {
        let input = request.into_inner().input;
        Ok(tonic::Response::new(CallFunctionResponse {
            success: true,
            output: input,
            error: String::new(),
            metadata: Default::default(),
        }))
    }
}

/// `calls` calls of `tool` with `input`, `concurrency` at a time over one channel.
pub(crate) async fn load(
    client: &ToolExecutorClient<Channel>,
    tool: &str,
    input: &[u8],
    concurrency: usize,
    calls: usize,
) -> Result<Measured, Box<dyn std::error::Error>> {
    load_as(client, tool, input, concurrency, calls, None).await
}

/// The same, every call made as a member hop when `hop` is given: `x-gridnode-hop` and a member
/// proof signed for that call (what a node's pool does for each hop).
async fn load_as(
    client: &ToolExecutorClient<Channel>,
    tool: &str,
    input: &[u8],
    concurrency: usize,
    calls: usize,
    hop: Option<&gridnode::grpc::MemberProof>,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let input = Arc::new(input.to_vec());
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (mut client, input, tool) = (client.clone(), input.clone(), tool.to_owned());
        let hop = hop.cloned();
        let share = calls / concurrency;
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(share);
            for _ in 0..share {
                let mut request = tonic::Request::new(CallFunctionRequest {
                    tool_name: tool.clone(),
                    input: input.to_vec(),
                });
                let t = Instant::now();
                if let Some(proof) =
                    hop.as_ref().and_then(|hop| hop.sign("bench-peer", &tool, &input))
                {
                    let metadata = request.metadata_mut();
                    metadata.insert(
                        gridnode::grpc::HOP,
                        tonic::metadata::MetadataValue::from_static("bench-peer"),
                    );
                    metadata.insert(gridnode::grpc::PROOF, proof.parse()?);
                }
                let response = client.call_function(request).await?.into_inner();
                samples.push(t.elapsed());
                if !response.success {
                    return Err(format!("{tool} failed: {}", response.error).into());
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(samples)
        }));
    }
    let mut samples = Vec::with_capacity(calls);
    for worker in workers {
        samples.extend(worker.await?.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed();
    let count = samples.len();
    Ok(Measured { latency: percentiles(samples), per_second: count as f64 / elapsed.as_secs_f64() })
}

/// A `reverse_text` input of about `size` bytes.
pub(crate) fn text_input(size: usize) -> Vec<u8> {
    let text = "a".repeat(size.saturating_sub(12));
    serde_json::json!({ "text": text }).to_string().into_bytes()
}

/// The seed's Python ToolExecutor (`bench/python/grpc_server.py`) on loopback, when python3 has
/// grpcio and grpcio-tools; its process (killed on drop) and port.
async fn python_server(dir: &std::path::Path) -> Option<(tokio::process::Child, u16)> {
    if !gridnode_tests::python::python_has_grpc() {
        return None;
    }
    let stubs = dir.join("python-stubs");
    std::fs::create_dir_all(&stubs).ok()?;
    gridnode_tests::python::generate_stubs(&stubs);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/grpc_server.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&stubs)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.ok()?.ok()??;
    let port = line.strip_prefix("port ")?.trim().parse().ok()?;
    Some((child, port))
}

pub fn run(quick: bool) -> BenchResult {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let tools = dir.path().join("tools/cat");
        std::fs::create_dir_all(&tools)?;
        std::fs::write(tools.join("tool.json"), r#"{"description": "cat"}"#)?;
        std::fs::write(tools.join("run"), "#!/bin/sh\nexec cat\n")?;
        let node = Node::start(NodeConfig {
            node_id: "bench".into(),
            tools_dir: Some(dir.path().join("tools")),
            ..NodeConfig::loopback(dir.path().join("data"))
        })
        .await?;
        // The node made its cluster key in its data dir: a member's hops are proven with it.
        let key = gridnode::ClusterKey::load(&dir.path().join("data/cluster.key"))?;
        let members = gridnode::grpc::MemberProof::new(Some(&key));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bare_addr = listener.local_addr()?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let bare = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ToolExecutorServer::new(Bare))
                .serve_with_incoming(incoming),
        );

        let connect = |addr: std::net::SocketAddr| ToolExecutorClient::connect(format!("http://{addr}"));
        let gridnode = connect(node.grpc_addr()).await?;
        let limit = connect(bare_addr).await?;
        let scale = if quick { 10 } else { 1 };
        let python = python_server(dir.path()).await;
        let python_client = match &python {
            Some((_, port)) => Some(ToolExecutorClient::connect(format!("http://127.0.0.1:{port}")).await?),
            None => None,
        };
        let mut versus_python = Vec::new();

        crate::out!("## grpc scenario{}\n", if quick { " (quick)" } else { "" });
        crate::out!("| call | payload | concurrent | p50 | p99 | calls/s | vs bare tonic (throughput, p50) |");
        crate::out!("| --- | --- | --- | --- | --- | --- | --- |");
        for size in [64usize, 4096] {
            for concurrency in [1usize, 64] {
                let calls = if concurrency == 1 { 5_000 / scale } else { 40_000 / scale };
                let bytes = vec![b'x'; size];
                let base = load(&limit, "echo", &bytes, concurrency, calls).await?;
                let line = |name: &str, measured: &Measured| {
                    crate::out!(
                        "| {name} | {size} B | {concurrency} | {:.1?} | {:.1?} | {:.0} | {:.2} ×, {:.2} × |",
                        measured.latency.p50,
                        measured.latency.p99,
                        measured.per_second,
                        measured.per_second / base.per_second,
                        measured.latency.p50.as_secs_f64() / base.latency.p50.as_secs_f64(),
                    );
                };
                line("bare tonic (the limit)", &base);
                let echo = load(&gridnode, "echo", &bytes, concurrency, calls).await?;
                line("gridnode echo", &echo);
                let reverse = load(&gridnode, "reverse_text", &text_input(size), concurrency, calls).await?;
                line("gridnode reverse_text", &reverse);
                // The same call as a peer's member hop: straight to the runtime, so the gap to the
                // row above is the execution door's (allow-list, plan, audit entry).
                let hopped = load_as(&gridnode, "reverse_text", &text_input(size), concurrency, calls, Some(&members)).await?;
                line("gridnode reverse_text, as a member hop (no door)", &hopped);
                if let Some(client) = &python_client {
                    // Fewer calls: the Python server is much slower, and the figure is its rate.
                    let calls = (calls / 10).max(concurrency * 4);
                    let py_echo = load(client, "echo", &bytes, concurrency, calls).await?;
                    line("Python grpcio, seed SDK, 10 workers: echo", &py_echo);
                    let py_reverse = load(client, "reverse_text", &text_input(size), concurrency, calls).await?;
                    line("Python grpcio, seed SDK, 10 workers: reverse_text", &py_reverse);
                    versus_python.push((
                        size,
                        concurrency,
                        echo.per_second / py_echo.per_second,
                        reverse.per_second / py_reverse.per_second,
                    ));
                }
            }
        }

        if versus_python.is_empty() {
            crate::out!("\nNo python3 with grpcio here: the Python grpcio comparison was skipped.");
        } else {
            crate::out!(
                "\n| gridnode ÷ Python grpcio throughput | payload | concurrent | echo | reverse_text | target ≥ 10 × |"
            );
            crate::out!("| --- | --- | --- | --- | --- | --- |");
            for (size, concurrency, echo, reverse) in &versus_python {
                let verdict = if echo.min(*reverse) >= 10.0 { "met" } else { "not met" };
                crate::out!("| | {size} B | {concurrency} | {echo:.1} × | {reverse:.1} × | {verdict} |");
            }
        }
        drop(python);

        // A process tool, spawn to exit, against spawning /bin/cat directly.
        let runs = if quick { 20 } else { 300 };
        let input = vec![b'x'; 64];
        let through_node = load(&gridnode, "cat", &input, 1, runs).await?;
        let mut direct = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let mut child = tokio::process::Command::new("/bin/cat")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            stdin.write_all(&input).await?;
            drop(stdin);
            let mut output = Vec::new();
            child.stdout.take().ok_or("no stdout")?.read_to_end(&mut output).await?;
            child.wait().await?;
            direct.push(t.elapsed());
        }
        crate::out!("\n| process tool, 64 B, one at a time | samples | p50 | p99 | note |");
        crate::out!("| --- | --- | --- | --- | --- |");
        row("/bin/cat spawned directly (the limit)", &percentiles(direct), "");
        row("gridnode process tool `cat` over gRPC", &through_node.latency, "sandbox + gRPC round trip");

        bare.abort();
        node.shutdown().await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    })
}
