//! `gridnode-bench grpc`: `CallFunction` through a real node's gRPC runtime, beside a bare tonic
//! server of the same proto that returns its input (the limit), in the same run; and a process
//! tool's overhead beside spawning `/bin/cat` directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridnode::{Node, NodeConfig};
use gridnode_proto::{
    CallFunctionRequest, CallFunctionResponse, ToolExecutor, ToolExecutorClient, ToolExecutorServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::report::{BenchResult, Percentiles, percentiles, row};

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

/// One measured configuration.
pub(crate) struct Load {
    pub latency: Percentiles,
    pub per_second: f64,
}

/// `calls` calls of `tool` with `input`, `concurrency` at a time over one channel.
pub(crate) async fn load(
    client: &ToolExecutorClient<Channel>,
    tool: &str,
    input: &[u8],
    concurrency: usize,
    calls: usize,
) -> Result<Load, Box<dyn std::error::Error>> {
    let input = Arc::new(input.to_vec());
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (mut client, input, tool) = (client.clone(), input.clone(), tool.to_owned());
        let share = calls / concurrency;
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(share);
            for _ in 0..share {
                let request =
                    CallFunctionRequest { tool_name: tool.clone(), input: input.to_vec() };
                let t = Instant::now();
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
    Ok(Load { latency: percentiles(samples), per_second: count as f64 / elapsed.as_secs_f64() })
}

/// A `reverse_text` input of about `size` bytes.
pub(crate) fn text_input(size: usize) -> Vec<u8> {
    let text = "a".repeat(size.saturating_sub(12));
    serde_json::json!({ "text": text }).to_string().into_bytes()
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

        println!("## grpc scenario{}\n", if quick { " (quick)" } else { "" });
        println!("| call | payload | concurrent | p50 | p99 | calls/s | vs bare tonic (throughput, p50) |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for size in [64usize, 4096] {
            for concurrency in [1usize, 64] {
                let calls = if concurrency == 1 { 5_000 / scale } else { 40_000 / scale };
                let bytes = vec![b'x'; size];
                let base = load(&limit, "echo", &bytes, concurrency, calls).await?;
                let line = |name: &str, measured: &Load| {
                    println!(
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
            }
        }

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
        println!("\n| process tool, 64 B, one at a time | samples | p50 | p99 | note |");
        println!("| --- | --- | --- | --- | --- |");
        row("/bin/cat spawned directly (the limit)", &percentiles(direct), "");
        row("gridnode process tool `cat` over gRPC", &through_node.latency, "sandbox + gRPC round trip");

        bare.abort();
        node.shutdown().await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    })
}
