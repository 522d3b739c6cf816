//! Egress rules (contract section 14) on real nodes: a node that listens beyond loopback may not
//! be made to call loopback or metadata addresses — refused at registration when the URL names
//! the address, and on the address actually connected to when a name resolves to it — unless
//! `[egress] allow` lists the destination.

use axum::Router;
use axum::routing::post;
use gridnode_tests::api::Api;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A tool server on 127.0.0.1; its port.
async fn tool_server() -> u16 {
    let app = Router::new().route("/echo", post(|body: String| async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A node whose REST listener is on every interface (so not a laptop's all-loopback node, and
/// so with access control on: the client presents the management secret).
async fn exposed(dir: &std::path::Path, name: &str, allow: Vec<String>) -> (gridnode::Node, Api) {
    let (node, _) = gridnode_tests::node(dir, name)
        .acl("egress-test-management-secret")
        .config(|config| {
            config.http.listen = "0.0.0.0:0".parse().unwrap();
            config.egress.allow = allow;
        })
        .start()
        .await;
    let api = Api::new(format!("http://127.0.0.1:{}", node.http_addr().port()));
    (node, api.with_token("egress-test-management-secret"))
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_node_calls_no_loopback_or_metadata_address_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let port = tool_server().await;
    let (node, api) = exposed(dir.path(), "edge", Vec::new()).await;

    // A literal address is refused when the record names it.
    for (url, refused) in [
        (
            format!("http://127.0.0.1:{port}/echo"),
            format!("egress to 127.0.0.1:{port} is not allowed"),
        ),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "egress to 169.254.169.254:80 is not allowed".to_owned(),
        ),
        (
            "http://[fd00:ec2::254]/latest".to_owned(),
            "egress to [fd00:ec2::254]:80 is not allowed".to_owned(),
        ),
    ] {
        let (status, body) =
            api.post("/tools", &json!({"tool_id": "lit", "tool_service_url": url})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert!(error(&body).starts_with(&refused), "{url}: {body}");
    }
    let function = json!({"function_id": "f", "open_api_spec": {"servers": [{"url": format!("http://127.0.0.1:{port}")}]}});
    assert_eq!(api.post("/functions", &function).await.0, StatusCode::BAD_REQUEST);
    let (status, _) = api.post("/tools", &json!({"tool_id": "ok"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api
        .put("/tools/ok", &json!({"tool_service_url": format!("http://127.0.0.1:{port}/echo")}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an update is checked too: {body}");

    // A name is checked on the address it resolves to, at the call (no DNS rebinding).
    let named =
        json!({"tool_id": "named", "tool_service_url": format!("http://localhost:{port}/echo")});
    assert_eq!(api.post("/tools", &named).await.0, StatusCode::CREATED);
    let (status, body) = api.post("/tools/named/execute", &json!({"input": {"x": 1}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        error(&body).starts_with("egress to ") && error(&body).ends_with(" is not allowed"),
        "{body}"
    );
    assert_eq!(body["success"], false);
    node.shutdown().await.unwrap();

    // Listed destinations go through: a network, and a name with its port.
    let allow = vec!["127.0.0.0/8".to_owned(), format!("localhost:{port}")];
    let (node, api) = exposed(dir.path(), "allowing", allow).await;
    for (id, url) in [
        ("lit", format!("http://127.0.0.1:{port}/echo")),
        ("named", format!("http://localhost:{port}/echo")),
    ] {
        let tool = json!({"tool_id": id, "tool_service_url": url});
        assert_eq!(api.post("/tools", &tool).await.0, StatusCode::CREATED, "{id}");
        let (status, body) =
            api.post(&format!("/tools/{id}/execute"), &json!({"input": {"x": 1}})).await;
        assert_eq!((status, &body["output"]), (StatusCode::OK, &json!({"x": 1})), "{id}: {body}");
    }
    let (status, body) = api
        .post("/tools", &json!({"tool_id": "meta", "tool_service_url": "http://169.254.169.254/"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "only what is listed: {body}");
    node.shutdown().await.unwrap();

    // A bad entry stops the node at start, naming the key.
    let config = gridnode_tests::node(dir.path(), "bad")
        .config(|config| config.egress.allow = vec!["not a cidr".into()])
        .into_config();
    let refused = gridnode::Node::start(config).await.unwrap_err().to_string();
    assert!(refused.contains("egress.allow"), "{refused}");
}
