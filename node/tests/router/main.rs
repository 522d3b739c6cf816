//! The REST API of a real node (a real store on disk, a real federation of one on loopback)
//! driven through the test support's HTTP client: every bad input gets a clear 4xx, and the
//! store keeps exactly what it had. One file per route family.

use axum::http::StatusCode;
use gridnode::Node;
use gridnode::config::{Limits, ResolverKind};
use gridnode_store::ToolEntry;
use gridnode_tests::api::Api;
use serde_json::Value;

mod cluster;
mod cluster_tools;
mod execution;
mod observe;
mod registry;

const BOUNDARY: &str = "gridnode-test-boundary";

struct App {
    api: Api,
    node: Node,
    /// The store's feed sequence once the node had started.
    start_seq: u64,
    _dir: tempfile::TempDir,
}

/// A node `node-a` with small limits, links handed out as `http://node-a.test:8080`, and a
/// static resolver that knows an outside node `outside-1` (at a port nothing listens on).
async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = gridnode_tests::node(dir.path(), "node-a")
        .config(|config| {
            config.limits = Limits {
                max_upload_bytes: 256 * 1024,
                max_unpacked_bytes: 1024 * 1024,
                max_json_body_bytes: 64 * 1024,
                ..Limits::default()
            };
            config.advertise_http = "http://node-a.test:8080".into();
            config.advertise_grpc = "node-a.test:50051".into();
            config.resolver.chain = vec![ResolverKind::Federation, ResolverKind::Static];
            config.resolver.static_table.insert("outside-1".into(), "127.0.0.1:9".into());
        })
        .start()
        .await;
    // The node wrote its member record and its tools at start: nothing else from here on.
    let start_seq = node.registry().store().last_seq();
    App { api, node, start_seq, _dir: dir }
}

impl App {
    fn store(&self) -> &gridnode_store::Store {
        self.node.registry().store()
    }
}

impl App {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.api.client.request(method, self.api.url(uri)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("the node answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("the body arrives");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, None, Vec::new()).await
    }

    async fn json(&self, method: &str, uri: &str, body: &Value) -> (StatusCode, Value) {
        self.call(method, uri, Some("application/json"), serde_json::to_vec(body).unwrap()).await
    }

    async fn raw_json(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        self.call(method, uri, Some("application/json"), body.as_bytes().to_vec()).await
    }

    async fn upload(&self, uri: &str, part_name: &str, bytes: &[u8]) -> (StatusCode, Value) {
        self.call(
            "POST",
            uri,
            Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
            multipart(part_name, bytes),
        )
        .await
    }

    /// Brings the search index up to date (a node does this in its follower task).
    fn indexed(&self) {
        self.node.registry().search_index().catch_up().unwrap();
    }

    fn tool_count(&self) -> usize {
        self.store().count::<ToolEntry>().unwrap()
    }
}

pub(crate) fn multipart(part_name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{part_name}\"; filename=\"b.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The error message of a response; every one starts in lowercase (contract section 3).
pub(crate) fn error_of(body: &Value) -> &str {
    let message = body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(message.starts_with(|c: char| !c.is_uppercase()), "not lowercase: {message}");
    message
}

impl App {
    /// Sends `body`; asserts the status and a cluster-tools error envelope naming `needle`.
    async fn refused(
        &self,
        method: &str,
        uri: &str,
        body: &Value,
        status: StatusCode,
        needle: &str,
    ) -> Value {
        let (got, response) = self.json(method, uri, body).await;
        assert_eq!(got, status, "{needle}: {response}");
        assert_eq!(response["success"], false);
        let message = message_of(&response);
        assert!(message.contains(needle), "'{message}' lacks '{needle}'");
        response
    }
}

/// The error of a cluster-tools envelope (some keep the seed's capitalised messages).
pub(crate) fn message_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"))
}
