//! A real node started in-process on 127.0.0.1:0, driven by a real HTTP client through every
//! registry route of contract sections 4 and 5, with the seeds' own example requests.

use gridnode::Node;
use gridnode_tests::api::{Api, ids};
use gridnode_tests::walk;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(dir: &tempfile::TempDir) -> (Node, Api) {
    gridnode_tests::node(dir.path(), "node-a").start().await
}

#[tokio::test]
async fn every_registry_route_over_real_http() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = start(&dir).await;
    walk::every_route(&api).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_graceful_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = start(&dir).await;
    walk::every_route(&api).await;
    node.shutdown().await.unwrap();
    let (node, api) = start(&dir).await;
    walk::check_state(&api).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_deleted_search_index_is_rebuilt_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = start(&dir).await;
    walk::every_route(&api).await;
    node.shutdown().await.unwrap();
    std::fs::remove_dir_all(dir.path().join("node-a/index")).unwrap();
    let (node, api) = start(&dir).await;
    walk::check_state(&api).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn hostile_requests_leave_the_node_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = gridnode_tests::node(dir.path(), "node-a")
        .config(|config| config.limits.max_upload_bytes = 1024 * 1024)
        .start()
        .await;
    assert_eq!(api.post("/tools", &json!({"tool_id": "keep"})).await.0, StatusCode::CREATED);
    let url = api.url("/tools");
    let json_post =
        |body: Vec<u8>| api.client.post(&url).header("content-type", "application/json").body(body);
    assert_eq!(api.send(json_post(b"\0\x01garbage".to_vec())).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.send(json_post(vec![b'['; 3 * 1024 * 1024])).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let upload = api
        .client
        .post(api.url("/tools/upload"))
        .header("content-type", "multipart/form-data; boundary=zz");
    assert_eq!(
        api.send(upload.body(vec![b'z'; 2 * 1024 * 1024])).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // A flood of concurrent bad requests.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let body: Value = if i % 2 == 0 {
                json!("not an object")
            } else {
                json!({"tool_id": format!("bad id {i}")})
            };
            api.post("/tools", &body).await.0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::BAD_REQUEST);
    }
    let (status, body) = api.get("/tools").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body, "tool_id"), ["keep"]);
    node.shutdown().await.unwrap();
}
