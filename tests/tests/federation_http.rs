//! Three real nodes in one process, federated over libp2p on 127.0.0.1, driven over HTTP: what
//! is written on one is readable (by id and by keyword) on the others, and `GET /node`,
//! `GET /peers` and `GET /cluster-tools` tell who is alive.

use gridnode_tests::api::ids;
use gridnode_tests::bundle::zip;
use gridnode_tests::node::NodeBuilder;
use gridnode_tests::walk::{eventually, eventually_ids};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Heartbeats every 200 ms: liveness changes show quickly.
fn node(dir: &std::path::Path, name: &str, cluster: &str) -> NodeBuilder {
    gridnode_tests::node(dir, name).in_cluster(cluster).brisk(200)
}

fn alive(body: &Value, node_id: &str) -> Option<bool> {
    body.as_array()?.iter().find(|p| p["node_id"] == node_id)?["alive"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tool_uploaded_on_one_node_is_found_and_kept_current_on_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = gridnode_tests::unique_cluster("http");
    let (a, api_a) = node(dir.path(), "fa", &cluster).start().await;
    let (b, api_b) = node(dir.path(), "fb", &cluster).bootstrap(&a).start().await;
    let (c, api_c) = node(dir.path(), "fc", &cluster).bootstrap(&b).start().await;

    let spec = json!({"tool_id": "ocr-7", "tool_type": "extractor", "tool_tags": ["image"],
        "tool_search_description": "optical character recognition for scanned invoices"});
    let bundle = zip(&[
        ("ocr-7/spec.json", serde_json::to_vec(&spec).unwrap().as_slice()),
        ("ocr-7/tool.zip", b"code"),
        ("ocr-7/tool.md", b"# ocr"),
    ]);
    assert_eq!(api_a.upload("/tools/upload", bundle).await.0, StatusCode::OK);
    let on_c = eventually(&api_c, "/tools/ocr-7", |t| t["tool_id"] == "ocr-7").await;
    assert_eq!(on_c["tool_man_page_doc"], "# ocr");
    // The code link names the node that holds the blob.
    assert!(on_c["tool_source_code_link"].as_str().unwrap().starts_with(&api_a.base));
    eventually_ids(&api_c, "/search?q=invoices&kind=tools", "id", &["ocr-7"]).await;
    eventually_ids(&api_c, "/tools/query/by-tag?tag=image", "tool_id", &["ocr-7"]).await;

    // An update on b and a delete on c reach everyone.
    let update = json!({"tool_search_description": "handwriting recognition"});
    assert_eq!(api_b.put("/tools/ocr-7", &update).await.0, StatusCode::OK);
    eventually_ids(&api_a, "/search?q=handwriting&kind=tools", "id", &["ocr-7"]).await;
    eventually_ids(&api_c, "/search?q=handwriting&kind=tools", "id", &["ocr-7"]).await;
    assert_eq!(api_c.delete("/tools/ocr-7").await.0, StatusCode::OK);
    for api in [&api_a, &api_b] {
        eventually(api, "/tools/ocr-7", |body| body["error"] == "tool 'ocr-7' not found").await;
        eventually_ids(api, "/search?q=handwriting&kind=tools", "id", &[]).await;
    }
    // Functions replicate too.
    let function = json!({"function_id": "fn-1", "function_type": "utility"});
    assert_eq!(api_b.post("/functions", &function).await.0, StatusCode::CREATED);
    eventually(&api_a, "/functions/fn-1", |f| f["function_id"] == "fn-1").await;

    // Who is who.
    let (status, node) = api_b.get("/node").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node["node_id"], "fb");
    assert_eq!(node["cluster"], cluster.as_str());
    assert_eq!(node["listeners"]["grpc"], b.grpc_addr().to_string());
    assert_eq!(node["listeners"]["advertise_grpc"], b.advertise_grpc());
    let peers = eventually(&api_a, "/peers", |p| {
        ["fa", "fb", "fc"].iter().all(|n| alive(p, n) == Some(true))
    })
    .await;
    let fb = peers.as_array().unwrap().iter().find(|p| p["node_id"] == "fb").unwrap();
    assert_eq!(fb["peer_id"], node["peer_id"]);
    assert_eq!(fb["grpc"], b.advertise_grpc());
    assert!(fb["load"]["memory_total_bytes"].as_u64().unwrap() > 0, "{fb}");
    assert!(fb["last_seen_ms"].as_u64().unwrap() < 2000);

    // Every node's built-in tools are listed everywhere, alive; when c stops, its are not.
    let everything = eventually(&api_a, "/cluster-tools", |records| {
        records.as_array().is_some_and(|r| r.len() == 9)
    })
    .await;
    assert!(everything.as_array().unwrap().iter().all(|r| r["alive"] == true), "{everything}");
    c.shutdown().await.unwrap();
    let records = eventually(&api_a, "/cluster-tools/fc", |records| {
        records.as_array().is_some_and(|r| r.len() == 3 && r.iter().all(|t| t["alive"] == false))
    })
    .await;
    assert_eq!(ids(&records, "name"), ["echo", "node_stats", "reverse_text"]);
    let (_, one) = api_a.get("/cluster-tools/fb/echo").await;
    assert_eq!(one["alive"], true);
    let peers = eventually(&api_a, "/peers", |p| alive(p, "fc") == Some(false)).await;
    assert_eq!(alive(&peers, "fb"), Some(true));

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
