//! A stand-in Kubernetes API server: it speaks the real nodes API (`GET /api/v1/nodes` with a
//! `labelSelector`, answering a `NodeList`; `GET /api/v1/nodes/{name}`, a `Node`), checks the bearer token of its kubeconfig, and
//! counts the requests it gets, so tests can see the resolver's cache at work.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The token the fake server expects, written into its kubeconfig.
const TOKEN: &str = "gridnode-test-token";

#[derive(Default)]
struct Shared {
    nodes: Mutex<Vec<Value>>,
    requests: AtomicUsize,
}

/// A running fake API server.
pub struct FakeKube {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    pub url: String,
}

impl FakeKube {
    /// Starts a server on 127.0.0.1 with no nodes.
    pub async fn start() -> FakeKube {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/api/v1/nodes", get(list_nodes))
            .route("/api/v1/nodes/{name}", get(get_node))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeKube { shared, server, url }
    }

    /// Adds a node named `name` with the label `label=value` and these `(type, address)`
    /// entries in `status.addresses`.
    pub fn add_node(&self, name: &str, label: (&str, &str), addresses: &[(&str, &str)]) {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|(kind, address)| json!({"type": kind, "address": address}))
            .collect();
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": format!("uid-{name}"),
                "resourceVersion": "1",
                "labels": {label.0: label.1, "kubernetes.io/hostname": name},
            },
            "spec": {},
            "status": {"addresses": addresses, "conditions": [{"type": "Ready", "status": "True"}]},
        });
        self.shared.nodes.lock().unwrap().push(node);
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Writes a kubeconfig pointing at this server and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n\
             current-context: fake\nusers:\n- name: tester\n  user:\n    token: {TOKEN}\n",
            self.url
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Stops serving: the next request finds nothing listening.
    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Counts the request; `Some` refusal when its bearer token is wrong.
fn refused(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    (!authorized).then(|| status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"))
}

/// `GET /api/v1/nodes/{name}`: one `Node`, or a 404 `Status`.
async fn get_node(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if let Some(refusal) = refused(&shared, &headers) {
        return refusal;
    }
    let node = shared
        .nodes
        .lock()
        .unwrap()
        .iter()
        .find(|n| n["metadata"]["name"] == name.as_str())
        .cloned();
    match node {
        Some(node) => axum::Json(node).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound", &format!("nodes \"{name}\" not found")),
    }
}

async fn list_nodes(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = refused(&shared, &headers) {
        return refusal;
    }
    // Equality selectors only (`k=v`, `k==v`, comma-separated), as the resolver sends.
    let mut wanted = Vec::new();
    for term in query.get("labelSelector").map(String::as_str).unwrap_or("").split(',') {
        if term.is_empty() {
            continue;
        }
        match term.split_once("==").or_else(|| term.split_once('=')) {
            Some((key, value)) if !key.ends_with('!') => {
                wanted.push((key.to_owned(), value.to_owned()))
            }
            _ => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("unable to parse requirement: {term}"),
                );
            }
        }
    }
    let items: Vec<Value> = shared
        .nodes
        .lock()
        .unwrap()
        .iter()
        .filter(|node| wanted.iter().all(|(k, v)| node["metadata"]["labels"][k] == v.as_str()))
        .cloned()
        .collect();
    let list = json!({
        "kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items
    });
    axum::Json(list).into_response()
}

/// A `Status` object, as the API server answers errors.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    (code, axum::Json(body)).into_response()
}
