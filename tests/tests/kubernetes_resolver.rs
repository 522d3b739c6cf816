//! The Kubernetes node-label resolver (contract section 8) against a stand-in API server that
//! speaks the real nodes API: found, label missing, no InternalIP, IPv6, API server down, the
//! cache (counted at the server), concurrent misses sharing one request, eviction after a failed
//! call — directly, and through a node's `/cluster-tools/resolve` and `/execute`.

use std::time::Duration;

use gridnode::config::{KubernetesSettings, ResolverKind};
use gridnode::resolve::kubernetes::KubernetesResolver;
use gridnode::resolve::{ResolveError, Resolver};
use gridnode::{Node, NodeConfig};
use gridnode_tests::api::Api;
use gridnode_tests::kube::FakeKube;
use reqwest::StatusCode;
use serde_json::json;

fn settings(kubeconfig: std::path::PathBuf, ttl: Duration) -> KubernetesSettings {
    KubernetesSettings {
        grpc_port: 7001,
        cache_ttl: ttl,
        kubeconfig: Some(kubeconfig),
        ..KubernetesSettings::default()
    }
}

fn cluster_of_three(kube: &FakeKube) {
    // ExternalIP first: the resolver must pick the InternalIP.
    kube.add_node(
        "worker-1",
        ("nodeID", "k8s-node-1"),
        &[("Hostname", "worker-1"), ("ExternalIP", "203.0.113.9"), ("InternalIP", "10.42.0.12")],
    );
    kube.add_node("worker-6", ("nodeID", "v6-node"), &[("InternalIP", "fd00::6")]);
    kube.add_node("worker-x", ("nodeID", "no-ip"), &[("Hostname", "worker-x")]);
}

#[tokio::test]
async fn label_lookup_cache_and_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start().await;
    cluster_of_three(&kube);
    let resolver = KubernetesResolver::connect(&settings(
        kube.kubeconfig(dir.path()),
        Duration::from_secs(3600),
    ))
    .await
    .unwrap();
    assert_eq!(resolver.name(), "kubernetes");

    assert_eq!(resolver.resolve("k8s-node-1").await.unwrap(), "10.42.0.12:7001");
    assert_eq!(kube.requests(), 1);
    // Cached: the API server is not asked again within the TTL.
    for _ in 0..10 {
        assert_eq!(resolver.resolve("k8s-node-1").await.unwrap(), "10.42.0.12:7001");
    }
    assert_eq!(kube.requests(), 1);

    assert_eq!(resolver.resolve("v6-node").await.unwrap(), "[fd00::6]:7001");
    let missing = resolver.resolve("ghost").await.unwrap_err();
    assert!(
        matches!(&missing, ResolveError::Unknown(m) if m.contains("label nodeID=ghost")),
        "{missing:?}"
    );
    let no_ip = resolver.resolve("no-ip").await.unwrap_err();
    assert!(
        matches!(&no_ip, ResolveError::Misconfigured(m) if m.contains("'worker-x'") && m.contains("no InternalIP")),
        "{no_ip:?}"
    );
    assert_eq!(kube.requests(), 4);
    // Answers are cached, "not found" ones included.
    let _ = resolver.resolve("ghost").await;
    let _ = resolver.resolve("no-ip").await;
    assert_eq!(kube.requests(), 4);
    // A node id that cannot be a label value is refused without asking (no selector injection).
    let bad = resolver.resolve("a@b").await.unwrap_err();
    assert!(matches!(&bad, ResolveError::Unknown(m) if m.contains("label value")), "{bad:?}");
    assert_eq!(kube.requests(), 4);

    // A failed call evicts the endpoint it used (and only that one).
    resolver.evict("k8s-node-1", "10.9.9.9:7001");
    let _ = resolver.resolve("k8s-node-1").await;
    assert_eq!(kube.requests(), 4);
    resolver.evict("k8s-node-1", "10.42.0.12:7001");
    assert_eq!(resolver.resolve("k8s-node-1").await.unwrap(), "10.42.0.12:7001");
    assert_eq!(kube.requests(), 5);

    // Concurrent misses of one node share one request.
    kube.add_node("worker-2", ("nodeID", "k8s-node-2"), &[("InternalIP", "10.42.0.13")]);
    let resolver = std::sync::Arc::new(resolver);
    let lookups: Vec<_> = (0..16)
        .map(|_| {
            let resolver = resolver.clone();
            tokio::spawn(async move { resolver.resolve("k8s-node-2").await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap(), "10.42.0.13:7001");
    }
    assert_eq!(kube.requests(), 6);

    // The API server going away is a 500-kind failure, and is not cached.
    kube.stop();
    let down = resolver.resolve("k8s-node-3").await.unwrap_err();
    assert!(matches!(&down, ResolveError::Unavailable(m) if m.contains(&kube.url)), "{down:?}");
    // What was cached still answers.
    assert_eq!(resolver.resolve("k8s-node-1").await.unwrap(), "10.42.0.12:7001");
}

#[tokio::test]
async fn the_ttl_bounds_how_long_an_answer_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start().await;
    cluster_of_three(&kube);
    let ttl = Duration::from_millis(300);
    let resolver =
        KubernetesResolver::connect(&settings(kube.kubeconfig(dir.path()), ttl)).await.unwrap();
    resolver.resolve("k8s-node-1").await.unwrap();
    resolver.resolve("k8s-node-1").await.unwrap();
    assert_eq!(kube.requests(), 1);
    tokio::time::sleep(ttl * 2).await;
    resolver.resolve("k8s-node-1").await.unwrap();
    assert_eq!(kube.requests(), 2);
}

#[tokio::test]
async fn a_missing_kubeconfig_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = KubernetesResolver::connect(&settings(dir.path().join("nope.yaml"), Duration::ZERO))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope.yaml"), "{err}");
    let mut config = NodeConfig::loopback(dir.path().join("n"));
    config.resolver.kubernetes = Some(settings(dir.path().join("nope.yaml"), Duration::ZERO));
    let err = Node::start(config).await.unwrap_err().to_string();
    assert!(err.contains("nope.yaml"), "{err}");
}

/// A node whose only resolver is kubernetes: the statuses of section 8 over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resolves_outside_tools_through_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start().await;
    // Nothing listens on the port the label points at: calls there fail.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    kube.add_node("worker-1", ("nodeID", "k8s-node-1"), &[("InternalIP", "127.0.0.1")]);
    kube.add_node("worker-6", ("nodeID", "v6-node"), &[("InternalIP", "::1")]);
    kube.add_node("worker-x", ("nodeID", "no-ip"), &[("Hostname", "worker-x")]);
    let mut config = NodeConfig {
        node_id: "gw".into(),
        cluster: format!("kube-{}", std::process::id()),
        ..NodeConfig::loopback(dir.path().join("gw"))
    };
    config.resolver.chain = vec![ResolverKind::Kubernetes];
    config.execute.unreachable_for_ms = 300;
    config.resolver.kubernetes = Some(KubernetesSettings {
        grpc_port: port,
        ..settings(kube.kubeconfig(dir.path()), Duration::from_secs(3600))
    });
    let node = Node::start(config).await.unwrap();
    let api = Api::new(format!("http://{}", node.http_addr()));
    for (name, node_id) in
        [("upper", "k8s-node-1"), ("upper6", "v6-node"), ("lost", "ghost"), ("bare", "no-ip")]
    {
        let record = json!({"name": name, "node_id": node_id, "description": "python tool"});
        assert_eq!(api.post("/cluster-tools", &record).await.0, StatusCode::CREATED);
    }
    let resolve = |tool: &str| {
        let api = api.clone();
        let body = json!({"tool_name": tool});
        async move { api.post("/cluster-tools/resolve", &body).await }
    };
    let (status, body) = resolve("upper").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "endpoint": format!("127.0.0.1:{port}"), "node_id": "k8s-node-1"})
    );
    let (status, body) = resolve("upper6").await;
    assert_eq!(
        (status, body["endpoint"].clone()),
        (StatusCode::OK, json!(format!("[::1]:{port}")))
    );
    let (status, body) = resolve("lost").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nodeID=ghost"), "{body}");
    let (status, body) = resolve("bare").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no InternalIP"), "{body}");
    let asked = kube.requests();
    resolve("upper").await;
    assert_eq!(kube.requests(), asked, "the second resolve is served from the cache");

    // The call fails (nothing listens there): 502, and the cached endpoint is evicted...
    let request = json!({"tool_name": "upper", "input": {"text": "hi"}});
    let (status, body) = api.post("/cluster-tools/execute", &request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["success"], false);
    assert!(body["error"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{body}");
    // ...the node counts as down for `unreachable_for_ms`...
    let (status, _) = resolve("upper").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = resolve("upper6").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kube.requests(), asked, "upper6 is still cached");
    // ...then the next lookup asks the API server again: the failed endpoint was evicted.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = resolve("upper").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kube.requests(), asked + 1);

    // The API server goes away: an uncached node is a 500 saying so; the node stays up.
    kube.stop();
    let record = json!({"name": "late", "node_id": "k8s-node-9", "description": "x"});
    assert_eq!(api.post("/cluster-tools", &record).await.0, StatusCode::CREATED);
    let (status, body) = resolve("late").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"].as_str().unwrap().contains("kubernetes API server"), "{body}");
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_node_takes_its_id_from_its_kubernetes_node_label() {
    let kube = FakeKube::start().await;
    kube.add_node("worker-1", ("nodeID", "edge-7"), &[("InternalIP", "10.0.0.7")]);
    kube.add_node("worker-2", ("zone", "a"), &[("InternalIP", "10.0.0.8")]);
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let mut config = NodeConfig::loopback(dir.path().join(name));
        config.resolver.kubernetes = Some(KubernetesSettings {
            node_name: Some(name.into()),
            ..settings(kube.kubeconfig(dir.path()), Duration::from_secs(60))
        });
        Node::start(config)
    };
    let labelled = start("worker-1").await.unwrap();
    assert_eq!(labelled.config().node_id, "edge-7");
    let unlabelled = start("worker-2").await.unwrap();
    assert_eq!(unlabelled.config().node_id, "worker-2", "no label: the node's name");
    let missing = start("worker-9").await.unwrap_err().to_string();
    assert!(missing.contains("worker-9"), "{missing}");
    labelled.shutdown().await.unwrap();
    unlabelled.shutdown().await.unwrap();
}
