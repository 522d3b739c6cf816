//! A real node started in-process on 127.0.0.1:0, driven by a real HTTP client through every
//! registry route of contract sections 4 and 5, with the seeds' own example requests.

use std::io::Write;

use gridnode::{Node, NodeConfig};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

struct TestNode {
    node: Node,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        node_id: "node-a".into(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..NodeConfig::default()
    }
    .validate()
    .unwrap();
    let node = Node::start(config).await.unwrap();
    let base = format!("http://{}", node.http_addr());
    TestNode {
        node,
        base,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl TestNode {
    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.client.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.delete(format!("{}{path}", self.base)))
            .await
    }

    async fn upload(&self, path: &str, zip: Vec<u8>) -> (StatusCode, Value) {
        let form = Form::new().part("file", Part::bytes(zip).file_name("bundle.zip"));
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .multipart(form),
        )
        .await
    }
}

fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn ids(body: &Value, field: &str) -> Vec<String> {
    body.as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"))
        .iter()
        .map(|r| r[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tools_registry_end_to_end() {
    let n = start().await;
    assert_eq!(n.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(n.get("/readyz").await.0, StatusCode::OK);

    // The seed's sample tool, registered as JSON.
    let nlp = json!({
        "tool_id": "tool-nlp-01",
        "tool_type": "extractor",
        "tool_tags": ["nlp", "text"],
        "tool_search_description": "A tool for extracting named entities.",
        "tool_metadata": {"language": "en", "version": "v1.0"},
        "tool_execution_mode": "batch",
        "tool_policy_rule_uri": "policies://validate/compliance",
    });
    let (status, body) = n.post("/tools", &nlp).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CREATED,
            json!({"message": "Tool created successfully", "tool_id": "tool-nlp-01"})
        )
    );
    let llm = json!({"tool_id": "tool-003", "tool_search_description": "This is a large language model tool.", "tool_type": "inference"});
    assert_eq!(n.post("/tools", &llm).await.0, StatusCode::CREATED);
    assert_eq!(n.post("/tools", &llm).await.0, StatusCode::CONFLICT);

    // Upload a bundle (the seed's POST /tools/upload).
    let spec = json!({"tool_id": "tool-123", "tool_type": "extractor", "tool_tags": ["image"]});
    let bundle = zip(&[
        ("spec.json", serde_json::to_vec(&spec).unwrap().as_slice()),
        ("tool.zip", b"zip-of-code"),
        ("tool.md", b"# tool 123"),
    ]);
    let (status, body) = n.upload("/tools/upload", bundle).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Tool uploaded successfully", "tool_id": "tool-123"})
        )
    );
    let (status, tool) = n.get("/tools/tool-123").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tool["tool_man_page_doc"], "# tool 123");
    let link = tool["tool_source_code_link"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&format!("{}/blobs/", n.base)), "{link}");
    let blob = n.client.get(&link).send().await.unwrap();
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(&blob.bytes().await.unwrap()[..], b"zip-of-code");

    // The seed's query examples.
    assert_eq!(
        ids(
            &n.get("/tools/query/by-type?type=extractor").await.1,
            "tool_id"
        ),
        ["tool-123", "tool-nlp-01"]
    );
    assert_eq!(
        ids(&n.get("/tools/query/by-tag?tag=nlp").await.1, "tool_id"),
        ["tool-nlp-01"]
    );
    assert_eq!(
        ids(
            &n.get("/tools/query/by-keyword?keyword=model").await.1,
            "tool_id"
        ),
        ["tool-003"]
    );
    assert_eq!(
        ids(
            &n.get("/tools/query/by-keyword?keyword=large%20language%20model")
                .await
                .1,
            "tool_id"
        ),
        ["tool-003"]
    );
    assert_eq!(
        ids(
            &n.get("/tools/query/by-execution-mode?mode=batch").await.1,
            "tool_id"
        ),
        ["tool-nlp-01"]
    );
    assert_eq!(
        ids(
            &n.get("/tools/query/by-policy-uri?uri=policies://validate/compliance")
                .await
                .1,
            "tool_id"
        ),
        ["tool-nlp-01"]
    );
    let (status, body) = n
        .post(
            "/tools/query/generic",
            &json!({"tool_type": "extractor", "tool_tags": "nlp"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body, "tool_id"), ["tool-nlp-01"]);
    let (status, body) = n
        .post("/tools/query/generic", &json!({"$where": "1"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("$where"));
    assert_eq!(
        ids(&n.get("/tools?limit=2").await.1, "tool_id"),
        ["tool-003", "tool-123"]
    );
    assert_eq!(
        ids(&n.get("/tools?offset=2").await.1, "tool_id"),
        ["tool-nlp-01"]
    );

    // The seed's update example, then delete.
    let (status, body) = n
        .put(
            "/tools/tool-123",
            &json!({"tool_type": "transformer", "tool_tags": ["ai", "image"]}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Tool updated successfully"})
        )
    );
    assert_eq!(
        ids(&n.get("/tools/query/by-tag?tag=ai").await.1, "tool_id"),
        ["tool-123"]
    );
    assert!(
        ids(
            &n.get("/tools/query/by-type?type=extractor").await.1,
            "tool_id"
        )
        .iter()
        .all(|id| id != "tool-123")
    );
    let (status, body) = n.delete("/tools/tool-123").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Tool deleted successfully"})
        )
    );
    let (status, body) = n.get("/tools/tool-123").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "tool 'tool-123' not found"})
        )
    );
    assert!(ids(&n.get("/tools/query/by-tag?tag=ai").await.1, "tool_id").is_empty());

    n.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn functions_registry_end_to_end() {
    let n = start().await;
    let f = json!({
        "function_id": "predict_abc_v2",
        "function_type": "model",
        "function_tags": ["analytics", "forecast"],
        "function_search_description": "forecast demand from history",
        "function_metadata": {"owner": "teamX"},
        "function_api_spec": {"horizon": "number"},
        "api_parameters_to_cost_relation_data": {"per_call": 0.1},
        "is_system_action": false,
    });
    let (status, body) = n.post("/functions", &f).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CREATED,
            json!({"message": "Function created successfully", "function_id": "predict_abc_v2"})
        )
    );
    let bundle = zip(&[
        ("fn/spec.json", br#"{"function_id": "function_xyz", "function_type": "utility", "is_system_action": true}"#),
        ("fn/function.zip", b"function-code"),
        ("fn/function.md", b"# xyz"),
    ]);
    let (status, body) = n.upload("/functions/upload", bundle).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Function uploaded successfully", "function_id": "function_xyz"})
        )
    );
    let (_, xyz) = n.get("/functions/function_xyz").await;
    assert_eq!(xyz["function_man_page_doc"], "# xyz");
    let link = xyz["function_source_code_link"].as_str().unwrap();
    assert_eq!(
        &n.client
            .get(link)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()[..],
        b"function-code"
    );

    assert_eq!(
        ids(&n.get("/functions").await.1, "function_id"),
        ["function_xyz", "predict_abc_v2"]
    );
    assert_eq!(
        ids(
            &n.get("/functions/query/by-type?type=utility").await.1,
            "function_id"
        ),
        ["function_xyz"]
    );
    assert_eq!(
        ids(
            &n.get("/functions/query/by-tag?tag=analytics").await.1,
            "function_id"
        ),
        ["predict_abc_v2"]
    );
    assert_eq!(
        ids(
            &n.get("/functions/query/by-keyword?keyword=FORECAST")
                .await
                .1,
            "function_id"
        ),
        ["predict_abc_v2"]
    );
    assert_eq!(
        ids(
            &n.get("/functions/query/by-system-flag?is_system=true")
                .await
                .1,
            "function_id"
        ),
        ["function_xyz"]
    );
    assert_eq!(
        ids(
            &n.get("/functions/query/by-system-flag?is_system=false")
                .await
                .1,
            "function_id"
        ),
        ["predict_abc_v2"]
    );
    let (_, body) = n
        .post(
            "/functions/query/generic",
            &json!({"function_metadata.owner": "teamX", "function_type": "model"}),
        )
        .await;
    assert_eq!(ids(&body, "function_id"), ["predict_abc_v2"]);

    let (status, body) = n
        .put(
            "/functions/predict_abc_v2",
            &json!({"function_metadata": {"owner": "teamY"}, "function_tags": ["tag1", "tag2"]}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Function updated successfully"})
        )
    );
    let (_, body) = n.get("/functions/predict_abc_v2").await;
    assert_eq!(body["function_metadata"], json!({"owner": "teamY"}));
    assert_eq!(
        body["function_api_spec"],
        json!({"horizon": "number"}),
        "fields not named stay"
    );
    let (status, _) = n.delete("/functions/predict_abc_v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        n.get("/functions/predict_abc_v2").await.0,
        StatusCode::NOT_FOUND
    );

    n.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn hostile_requests_leave_the_node_serving() {
    let n = start().await;
    assert_eq!(
        n.post("/tools", &json!({"tool_id": "keep"})).await.0,
        StatusCode::CREATED
    );
    let url = format!("{}/tools", n.base);
    // Raw garbage with a JSON content type, a giant body, and a flood of concurrent bad requests.
    let (status, _) = n
        .send(
            n.client
                .post(&url)
                .header("content-type", "application/json")
                .body("\u{0}\u{1}garbage"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = n
        .send(
            n.client
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![b'['; 3 * 1024 * 1024]),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = n.client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let body = if i % 2 == 0 {
                "{".to_string()
            } else {
                format!("{{\"tool_id\": \"bad id {i}\"}}")
            };
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::BAD_REQUEST);
    }
    let (status, body) = n.get("/tools").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body, "tool_id"), ["keep"]);
    n.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_graceful_shutdown_keeps_everything_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        node_id: "node-r".into(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..NodeConfig::default()
    }
    .validate()
    .unwrap();
    let node = Node::start(config.clone()).await.unwrap();
    let client = reqwest::Client::new();
    for i in 0..20 {
        let status = client
            .post(format!("http://{}/tools", node.http_addr()))
            .json(&json!({"tool_id": format!("t{i}"), "tool_tags": ["x"]}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
    node.shutdown().await.unwrap();
    let node = Node::start(config).await.unwrap();
    let body: Value = client
        .get(format!(
            "http://{}/tools/query/by-tag?tag=x",
            node.http_addr()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body.as_array().unwrap().len(), 20);
    node.shutdown().await.unwrap();
}
