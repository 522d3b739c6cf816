//! `gridnode-bench execute`: `POST /cluster-tools/execute` of `reverse_text` through a real
//! node, run in-process on that node and on a federated peer, each beside a direct gRPC call to
//! the node that runs it (the limit) in the same run; and the resolver chain's lookup cost with
//! a warm cache (federation, static, and kubernetes against a stand-in API server).

use std::time::{Duration, Instant};

use gridnode::config::KubernetesSettings;
use gridnode::resolve::Resolver;
use gridnode::resolve::federation::FederationResolver;
use gridnode::resolve::kubernetes::KubernetesResolver;
use gridnode_proto::ToolExecutorClient;
use gridnode_tests::kube::FakeKube;
use serde_json::json;

use crate::load;
use crate::report::{BenchResult, Percentiles, percentiles, row};
use crate::scenario::grpc::{self, text_input};

/// The most the REST hop may add to a direct gRPC call, at p50.
const HOP_TARGET: Duration = Duration::from_micros(150);
/// The most a warm resolver lookup may cost.
const LOOKUP_TARGET: Duration = Duration::from_micros(5);

/// Per-lookup latency of `n` warm lookups (one untimed lookup first warms the cache).
async fn lookups<F, Fut>(n: usize, lookup: F) -> Result<Percentiles, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    lookup().await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let endpoint = lookup().await;
        samples.push(t.elapsed());
        endpoint?;
    }
    Ok(percentiles(samples))
}

pub fn run(quick: bool) -> BenchResult {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let cluster = format!("bench-exec-{}", std::process::id());
        let kube = FakeKube::start().await;
        kube.add_node("worker-1", ("nodeID", "k8s-node-1"), &[("InternalIP", "10.42.0.12")]);
        let (a, b) = super::pair(dir.path(), &cluster, |config| {
            config.resolver.static_table.insert("outside".into(), "10.0.0.9:50051".into());
        })
        .await?;
        // Wait until a can run tools on b.
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.cluster().federation().liveness("b") != Some(true)
            || a.registry().cluster_tool("b".into(), "reverse_text".into()).await.is_err()
        {
            if Instant::now() > deadline {
                return Err("b never joined a".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let client = reqwest::Client::new();
        let url = format!("http://{}/cluster-tools/execute", a.http_addr());
        let direct_a = ToolExecutorClient::connect(format!("http://{}", a.grpc_addr())).await?;
        let direct_b = ToolExecutorClient::connect(format!("http://{}", b.grpc_addr())).await?;
        let input = text_input(64);
        let text: serde_json::Value = serde_json::from_slice(&input)?;
        let scale = if quick { 10 } else { 1 };

        crate::out!("## execute scenario{}\n", if quick { " (quick)" } else { "" });
        crate::out!(
            "REST `POST /cluster-tools/execute` of `reverse_text` (64 B) on node a, beside a direct \
             gRPC call to the node that runs it. Target: the REST hop adds ≤ {HOP_TARGET:?} at p50.\n"
        );
        crate::out!("| runs on | concurrent | call | p50 | p99 | calls/s | REST hop at p50 |");
        crate::out!("| --- | --- | --- | --- | --- | --- | --- |");
        for (place, pin, direct) in [("a (local)", None, &direct_a), ("b (remote)", Some("b"), &direct_b)] {
            for concurrency in [1usize, 64] {
                let calls = if concurrency == 1 { 3_000 / scale } else { 20_000 / scale };
                let limit = grpc::load(direct, "reverse_text", &input, concurrency, calls).await?;
                let mut body = json!({"tool_name": "reverse_text", "input": text});
                if let Some(node) = pin {
                    body["node_id"] = json!(node);
                }
                let (url, body) = (url.clone(), serde_json::to_vec(&body)?);
                let measured = load::http(&client, concurrency, calls, move |_| {
                    (reqwest::Method::POST, url.clone(), Some(body.clone()))
                })
                .await?;
                let hop_us = (measured.latency.p50.as_secs_f64() - limit.latency.p50.as_secs_f64()) * 1e6;
                let verdict = if concurrency > 1 {
                    "(queueing: see throughput)"
                } else if hop_us <= HOP_TARGET.as_secs_f64() * 1e6 {
                    "met"
                } else {
                    "not met"
                };
                crate::out!(
                    "| {place} | {concurrency} | direct gRPC (the limit) | {:.1?} | {:.1?} | {:.0} | |",
                    limit.latency.p50, limit.latency.p99, limit.per_second
                );
                crate::out!(
                    "| {place} | {concurrency} | REST execute | {:.1?} | {:.1?} | {:.0} | {hop_us:+.1}µs {verdict} |",
                    measured.latency.p50, measured.latency.p99, measured.per_second
                );
            }
        }

        let n = if quick { 10_000 } else { 200_000 };
        let kubernetes = KubernetesResolver::connect(&KubernetesSettings {
            kubeconfig: Some(kube.kubeconfig(dir.path())),
            ..KubernetesSettings::default()
        })
        .await?;
        let chain = a.services().cluster_tools.chain();
        crate::out!("\n| warm resolver lookup | samples | p50 | p99 | vs target ≤ {LOOKUP_TARGET:?} |");
        crate::out!("| --- | --- | --- | --- | --- |");
        let verdict = |p: &Percentiles| if p.p50 <= LOOKUP_TARGET { "met" } else { "not met" };
        let federation = FederationResolver::new(a.cluster().federation_handle());
        let direct = lookups(n, || async { federation.resolve("b").await.map_err(|e| e.to_string()) });
        let direct = direct.await?;
        row("federation (b's heartbeat)", &direct, verdict(&direct));
        let chained = lookups(n, || async {
            chain.resolve("outside").await.map(|r| r.endpoint).map_err(|e| e.to_string())
        })
        .await?;
        row("chain federation → static (outside node)", &chained, verdict(&chained));
        let warm = lookups(n, || async {
            kubernetes.resolve("k8s-node-1").await.map_err(|e| e.to_string())
        })
        .await?;
        row(
            &format!("kubernetes, cached ({} API request in all)", kube.requests()),
            &warm,
            verdict(&warm),
        );

        b.shutdown().await?;
        a.shutdown().await?;
        Ok(())
    })
}
