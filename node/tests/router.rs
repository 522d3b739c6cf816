//! The REST API driven through `Router::oneshot`: no socket, a real store on disk. Every bad
//! input gets a clear 4xx, and the store keeps exactly what it had.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gridnode::config::{ExecuteSettings, Limits};
use gridnode::http::{AppState, router};
use gridnode::resolve::federation::FederationResolver;
use gridnode::resolve::static_table::StaticResolver;
use gridnode::resolve::{Chain, Resolver};
use gridnode::runtime::{Runtime, builtin};
use gridnode::service::cluster::{Cluster, Listeners};
use gridnode::service::cluster_tools::ClusterTools;
use gridnode::service::{Registry, Settings};
use gridnode_federation::{Admission, ClusterKey, Federation, FederationConfig, Identity, Load};
use gridnode_search::SearchIndex;
use gridnode_store::{Store, StoreConfig, ToolEntry};
use gridnode_tests::bundle::zip;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const BOUNDARY: &str = "gridnode-test-boundary";

struct App {
    router: Router,
    store: Store,
    search: Arc<SearchIndex>,
    /// The store's feed sequence once the node had started.
    start_seq: u64,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate();
    let store = Store::open(
        &StoreConfig::new(dir.path().join("store"), "node-a").signed_by(Arc::new(identity.clone())),
    )
    .unwrap();
    let limits = Limits {
        max_upload_bytes: 256 * 1024,
        max_unpacked_bytes: 1024 * 1024,
        max_json_body_bytes: 64 * 1024,
    };
    let search = Arc::new(SearchIndex::open(&dir.path().join("index"), store.clone()).unwrap());
    let registry = Registry::new(
        store.clone(),
        search.clone(),
        Settings { advertise_http: "http://node-a.test:8080".into(), limits },
    );
    let cluster = cluster(store.clone(), identity).await;
    let mut runtime = Runtime::new("node-a");
    for tool in builtin::all("node-a") {
        runtime.register(tool).unwrap();
    }
    let resolvers: Vec<Arc<dyn Resolver>> = vec![
        Arc::new(FederationResolver::new(cluster.federation_handle())),
        Arc::new(StaticResolver::new(BTreeMap::from([(
            "outside-1".to_owned(),
            "127.0.0.1:9".to_owned(),
        )]))),
    ];
    let cluster_tools = ClusterTools::new(
        registry.clone(),
        Arc::new(runtime),
        cluster.clone(),
        Chain::new(resolvers),
        ExecuteSettings::default(),
        1024 * 1024,
    );
    let mut config = gridnode::config::NodeConfig::loopback(dir.path());
    config.node_id = "node-a".into();
    config.limits = registry.settings().limits.clone();
    let metrics = gridnode::metrics::Metrics::new();
    let actions =
        gridnode::node::services(&config, &registry, &cluster, &cluster_tools, &metrics).unwrap();
    let ready = Arc::new(AtomicBool::new(true));
    let router = router(AppState::new(registry, cluster, cluster_tools, actions, metrics, ready));
    // The federation wrote this node's member record at start: nothing else from here on.
    let start_seq = store.last_seq();
    App { router, store, search, start_seq, _dir: dir }
}

/// A real federation of one, on loopback.
async fn cluster(store: Store, identity: Identity) -> Cluster {
    let admission = Admission::keyed(&ClusterKey::generate());
    let mut config = FederationConfig::new("node-a", "router-tests", identity, admission);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.mdns = false;
    let federation = Federation::start(config, store, Arc::new(Load::default)).await.unwrap();
    let listeners = Listeners {
        http: "127.0.0.1:8080".into(),
        grpc: "127.0.0.1:50051".into(),
        p2p: vec![],
        advertise_http: "http://node-a.test:8080".into(),
        advertise_grpc: "node-a.test:50051".into(),
    };
    Cluster::new(Arc::new(federation), listeners, Duration::from_secs(30))
}

impl App {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response =
            self.router.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
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
        self.search.catch_up().unwrap();
    }

    fn tool_count(&self) -> usize {
        self.store.count::<ToolEntry>().unwrap()
    }
}

fn multipart(part_name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{part_name}\"; filename=\"b.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The error message of a response; every one starts in lowercase (contract section 3).
fn error_of(body: &Value) -> &str {
    let message = body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(message.starts_with(|c: char| !c.is_uppercase()), "not lowercase: {message}");
    message
}

#[tokio::test]
async fn crud_shapes_and_status_codes() {
    let app = app().await;
    let (status, body) =
        app.json("POST", "/tools", &json!({"tool_id": "tool-123", "tool_type": "extractor"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, json!({"message": "Tool created successfully", "tool_id": "tool-123"}));

    let (status, body) = app.get("/tools/tool-123").await;
    assert_eq!(status, StatusCode::OK);
    let fields = body.as_object().unwrap();
    assert_eq!(fields.len(), 16, "all 16 ToolEntry fields, always: {body}");
    assert_eq!(body["tool_metadata"], json!({}));
    assert_eq!(body["tool_tags"], json!([]));
    assert_eq!(body["tool_service_url"], json!(""));

    let (status, body) = app
        .json(
            "PUT",
            "/tools/tool-123",
            &json!({"tool_type": "transformer", "tool_tags": ["ai", "image"]}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Tool updated successfully"})));
    let (_, body) = app.get("/tools/tool-123").await;
    assert_eq!(body["tool_type"], "transformer");
    assert_eq!(body["tool_tags"], json!(["ai", "image"]));

    // The id may be repeated in a PUT as long as it does not change.
    let (status, _) = app
        .json(
            "PUT",
            "/tools/tool-123",
            &json!({"tool_id": "tool-123", "tool_validation_mode": "strict"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app.call("DELETE", "/tools/tool-123", None, vec![]).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Tool deleted successfully"})));
    let (status, body) = app.get("/tools/tool-123").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "tool 'tool-123' not found"}))
    );
    let (status, _) = app.call("DELETE", "/tools/tool-123", None, vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.json("PUT", "/tools/tool-123", &json!({"tool_type": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = app
        .json("POST", "/functions", &json!({"function_id": "f1", "is_system_action": true}))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CREATED,
            json!({"message": "Function created successfully", "function_id": "f1"})
        )
    );
    let (_, body) = app.get("/functions/f1").await;
    assert_eq!(body.as_object().unwrap().len(), 13, "{body}");
    let (status, body) = app.get("/functions/nope").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "function 'nope' not found"}))
    );
}

#[tokio::test]
async fn list_and_query_routes_page_and_filter() {
    let app = app().await;
    for i in 0..5 {
        let tool = json!({
            "tool_id": format!("t{i}"),
            "tool_type": if i % 2 == 0 { "extractor" } else { "monitor" },
            "tool_tags": ["nlp", format!("n{i}")],
            "tool_execution_mode": "batch",
            "tool_policy_rule_uri": "policies://validate/compliance",
            "tool_search_description": if i == 3 { "This is a large language model tool." } else { "other" },
            "tool_man_page_doc": if i == 1 { "mentions a model" } else { "" },
            "tool_metadata": {"version": i},
        });
        assert_eq!(app.json("POST", "/tools", &tool).await.0, StatusCode::CREATED);
    }
    let ids = |body: &Value| {
        body.as_array()
            .unwrap()
            .iter()
            .map(|t| t["tool_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&app.get("/tools").await.1), ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(ids(&app.get("/tools?limit=2&offset=1").await.1), ["t1", "t2"]);
    assert_eq!(ids(&app.get("/tools/query/by-type?type=extractor").await.1), ["t0", "t2", "t4"]);
    assert_eq!(ids(&app.get("/tools/query/by-tag?tag=n3").await.1), ["t3"]);
    assert_eq!(ids(&app.get("/tools/query/by-tag?tag=nlp&limit=1&offset=4").await.1), ["t4"]);
    assert_eq!(ids(&app.get("/tools/query/by-execution-mode?mode=batch").await.1).len(), 5);
    assert_eq!(
        ids(&app.get("/tools/query/by-policy-uri?uri=policies://validate/compliance").await.1)
            .len(),
        5
    );
    app.indexed();
    assert_eq!(ids(&app.get("/tools/query/by-keyword?keyword=MODEL").await.1), ["t3", "t1"]);
    let (_, body) = app
        .json(
            "POST",
            "/tools/query/generic",
            &json!({"tool_type": "extractor", "tool_tags": "nlp"}),
        )
        .await;
    assert_eq!(ids(&body), ["t0", "t2", "t4"]);
    let (_, body) = app
        .json("POST", "/tools/query/generic?limit=1", &json!({"tool_metadata.version": {"$gt": 2}}))
        .await;
    assert_eq!(ids(&body), ["t3"]);

    app.json("POST", "/functions", &json!({"function_id": "s", "is_system_action": true, "function_type": "model", "function_metadata": {"owner": "teamX"}})).await;
    app.json("POST", "/functions", &json!({"function_id": "u", "function_tags": ["analytics"]}))
        .await;
    let fids = |body: &Value| {
        body.as_array()
            .unwrap()
            .iter()
            .map(|t| t["function_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(fids(&app.get("/functions/query/by-system-flag?is_system=true").await.1), ["s"]);
    assert_eq!(fids(&app.get("/functions/query/by-system-flag?is_system=false").await.1), ["u"]);
    assert_eq!(fids(&app.get("/functions/query/by-tag?tag=analytics").await.1), ["u"]);
    assert_eq!(fids(&app.get("/functions/query/by-type?type=model").await.1), ["s"]);
    let (_, body) = app
        .json(
            "POST",
            "/functions/query/generic",
            &json!({"function_metadata.owner": "teamX", "function_type": "model"}),
        )
        .await;
    assert_eq!(fids(&body), ["s"]);
}

#[tokio::test]
async fn malformed_and_hostile_json_is_refused_and_nothing_changes() {
    let app = app().await;
    app.json("POST", "/tools", &json!({"tool_id": "keep", "tool_type": "a"})).await;
    let before = app.get("/tools/keep").await.1;

    let cases: Vec<(&str, &str, &str, StatusCode, &str)> = vec![
        ("POST", "/tools", "{\"tool_id\": ", StatusCode::BAD_REQUEST, "malformed json"),
        ("POST", "/tools", "[1,2]", StatusCode::BAD_REQUEST, "invalid request body"),
        ("POST", "/tools", r#"["x"]"#, StatusCode::BAD_REQUEST, "expected a json object"),
        ("POST", "/tools", "null", StatusCode::BAD_REQUEST, "expected a json object"),
        (
            "POST",
            "/tools",
            r#"{"tool_id": "x", "tool_tags": "nlp"}"#,
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            "POST",
            "/tools",
            r#"{"tool_id": "x", "tool_metadata": [1]}"#,
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            "POST",
            "/tools",
            r#"{"tool_id": "x", "surprise": 1}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `surprise`",
        ),
        (
            "POST",
            "/tools",
            r#"{"tool_id": "../etc/passwd"}"#,
            StatusCode::BAD_REQUEST,
            "invalid tool id",
        ),
        ("POST", "/tools", r#"{"tool_id": ""}"#, StatusCode::BAD_REQUEST, "tool id is missing"),
        (
            "POST",
            "/tools",
            r#"{"tool_type": "no id"}"#,
            StatusCode::BAD_REQUEST,
            "tool id is missing",
        ),
        ("POST", "/tools", r#"{"tool_id": "upload"}"#, StatusCode::BAD_REQUEST, "names a route"),
        ("POST", "/tools", r#"{"tool_id": "keep"}"#, StatusCode::CONFLICT, "already exists"),
        ("PUT", "/tools/keep", r#"{"tool_id": "other"}"#, StatusCode::BAD_REQUEST, "immutable"),
        ("PUT", "/tools/keep", r#"{"nope": 1}"#, StatusCode::BAD_REQUEST, "unknown field `nope`"),
        ("PUT", "/tools/keep", r#"{"tool_tags": 5}"#, StatusCode::BAD_REQUEST, "invalid type"),
        ("PUT", "/tools/keep", r#""just a string""#, StatusCode::BAD_REQUEST, "json object"),
        ("PUT", "/tools/keep", "{", StatusCode::BAD_REQUEST, "malformed json"),
        (
            "POST",
            "/functions",
            r#"{"function_id": "f", "is_system_action": "yes"}"#,
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            "POST",
            "/tools/query/generic",
            r#"{"$where": "sleep(1000)"}"#,
            StatusCode::BAD_REQUEST,
            "$where",
        ),
        (
            "POST",
            "/tools/query/generic",
            r#"{"$expr": {"$eq": [1, 1]}}"#,
            StatusCode::BAD_REQUEST,
            "$expr",
        ),
        (
            "POST",
            "/tools/query/generic",
            r#"{"tool_type": {"$bogus": 1}}"#,
            StatusCode::BAD_REQUEST,
            "$bogus",
        ),
        ("POST", "/tools/query/generic", r#"[]"#, StatusCode::BAD_REQUEST, "object"),
        (
            "POST",
            "/functions/query/generic",
            r#"{"function_type": {"$where": "x"}}"#,
            StatusCode::BAD_REQUEST,
            "$where",
        ),
    ];
    for (method, uri, body, status, needle) in cases {
        let (got, response) = app.raw_json(method, uri, body).await;
        assert_eq!(got, status, "{method} {uri} {body}: {response}");
        let message = error_of(&response);
        assert!(message.contains(needle), "{method} {uri} {body}: '{message}' lacks '{needle}'");
    }
    assert_eq!(app.tool_count(), 1);
    assert_eq!(app.get("/tools/keep").await.1, before);
}

#[tokio::test]
async fn deep_nesting_and_evil_regexes_do_not_hurt() {
    let app = app().await;
    app.json(
        "POST",
        "/tools",
        &json!({"tool_id": "aaaa", "tool_search_description": "a".repeat(5000)}),
    )
    .await;
    // Nested past serde_json's own recursion limit and past ours.
    let mut deep = String::from("{\"tool_id\":1}");
    for _ in 0..100 {
        deep = format!("{{\"$and\":[{deep}]}}");
    }
    let (status, body) = app.raw_json("POST", "/tools/query/generic", &deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let deeper = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let (status, _) = app.raw_json("POST", "/tools/query/generic", &deeper).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let evil = json!({"tool_search_description": {"$regex": "(a+)+$b"}});
    let (status, body) = app.json("POST", "/tools/query/generic", &evil).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    let ci = json!({"tool_id": {"$regex": "^AAA", "$options": "i"}});
    let (_, body) = app.json("POST", "/tools/query/generic", &ci).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    let huge = json!({"tool_id": {"$regex": "a{1000}{1000}{1000}"}});
    let (status, _) = app.json("POST", "/tools/query/generic", &huge).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .json("POST", "/tools/query/generic", &json!({"tool_id": {"$regex": "(", "$options": "i"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Many regexes in one filter: refused before any is compiled past the cap.
    let many: Vec<Value> =
        (0..17).map(|i| json!({"tool_id": {"$regex": format!("a{{{i}00}}")}})).collect();
    let (status, body) = app.json("POST", "/tools/query/generic", &json!({"$and": many})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("$regex"), "{body}");
}

#[tokio::test]
async fn query_parameters_are_checked() {
    let app = app().await;
    for uri in [
        "/tools/query/by-type",
        "/tools/query/by-type?type=",
        "/tools/query/by-tag",
        "/tools/query/by-keyword",
        "/tools/query/by-execution-mode",
        "/tools/query/by-policy-uri",
        "/functions/query/by-system-flag",
        "/functions/query/by-system-flag?is_system=maybe",
        "/tools?limit=abc",
        "/tools?limit=0",
        "/tools?limit=1001",
        "/tools?offset=-1",
        "/tools/query/by-type?type=x&limit=99999999999999999999999",
        "/tools/query/by-keyword?keyword=%22(",
        "/tools/query/by-keyword?keyword=AND",
        "/tools/query/by-keyword?keyword=nofield:x",
        "/search",
        "/search?q=%22unclosed",
        "/search?q=x&kind=everything",
        "/search?q=x&limit=0",
        "/search?q=x&offset=1000000000000",
        "/search?q=description:*",
        "/tools/query/by-keyword?keyword=id:*",
    ] {
        let (status, body) = app.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(!error_of(&body).is_empty());
    }
    let (status, body) = app.get("/tools/query/by-type?type=x&limit=1000").await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn content_types_sizes_and_unknown_routes() {
    let app = app().await;
    let body = br#"{"tool_id": "x"}"#.to_vec();
    let (status, _) = app.call("POST", "/tools", Some("text/plain"), body.clone()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = app.call("POST", "/tools", None, body.clone()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) =
        app.call("POST", "/tools", Some("application/json; charset=utf-8"), body).await;
    assert_eq!(status, StatusCode::CREATED);

    let big = json!({"tool_id": "big", "tool_man_page_doc": "x".repeat(100 * 1024)});
    let (status, body) = app.json("POST", "/tools", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let (status, body) = app.get("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("no route"));
    let (status, body) = app.call("PATCH", "/tools/x", None, vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error_of(&body).contains("PATCH"));
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    assert_eq!(app.tool_count(), 1);
}

#[tokio::test]
async fn upload_stores_spec_doc_and_blob_together() {
    let app = app().await;
    let spec = json!({"tool_id": "nlp-01", "tool_type": "extractor", "tool_tags": ["nlp"]});
    let bundle = zip(&[
        ("nlp-01/spec.json", serde_json::to_vec(&spec).unwrap().as_slice()),
        ("nlp-01/tool.md", b"# NER\nfinds names"),
        ("nlp-01/tool.zip", b"PK-pretend-code"),
    ]);
    let (status, body) = app.upload("/tools/upload", "file", &bundle).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"message": "Tool uploaded successfully", "tool_id": "nlp-01"}))
    );
    let (_, tool) = app.get("/tools/nlp-01").await;
    assert_eq!(tool["tool_man_page_doc"], "# NER\nfinds names");
    let sha = gridnode_store::sha256_hex(b"PK-pretend-code");
    assert_eq!(tool["tool_source_code_link"], format!("http://node-a.test:8080/blobs/{sha}"));
    let response = app
        .router
        .clone()
        .oneshot(Request::get(format!("/blobs/{sha}")).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.into_body().collect().await.unwrap().to_bytes()[..], b"PK-pretend-code");
    assert_eq!(app.get(&format!("/blobs/{}", "0".repeat(64))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/blobs/not-a-sha").await.0, StatusCode::BAD_REQUEST);

    let (status, _) = app.upload("/tools/upload", "file", &bundle).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let fspec = json!({"function_id": "fn-1", "function_type": "model"});
    let fbundle = zip(&[
        ("spec.json", serde_json::to_vec(&fspec).unwrap().as_slice()),
        ("function.zip", b"fcode"),
        ("function.md", b"fdoc"),
    ]);
    let (status, body) = app.upload("/functions/upload", "file", &fbundle).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Function uploaded successfully", "function_id": "fn-1"})
        )
    );
    let (_, f) = app.get("/functions/fn-1").await;
    assert_eq!(f["function_man_page_doc"], "fdoc");
    assert!(
        f["function_source_code_link"]
            .as_str()
            .unwrap()
            .ends_with(&gridnode_store::sha256_hex(b"fcode"))
    );
}

#[tokio::test]
async fn bad_uploads_store_nothing() {
    let app = app().await;
    let spec = br#"{"tool_id": "u1"}"#;
    let code = b"some code that must not be stored".to_vec();
    let zeros = vec![0u8; 2 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "other",
            zip(&[("spec.json", spec)]),
            StatusCode::BAD_REQUEST,
            "missing multipart part 'file'",
        ),
        ("file", b"this is not a zip".to_vec(), StatusCode::BAD_REQUEST, "not a readable zip"),
        (
            "file",
            zip(&[("readme.txt", b"hi"), ("tool.zip", &code)]),
            StatusCode::BAD_REQUEST,
            "no spec.json",
        ),
        (
            "file",
            zip(&[("spec.json", b"{\"tool_id\": 5}"), ("tool.zip", &code)]),
            StatusCode::BAD_REQUEST,
            "spec.json is not a valid tool",
        ),
        (
            "file",
            zip(&[("spec.json", b"{\"tool_id\": \"u1\", \"extra\": 1}"), ("tool.zip", &code)]),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "file",
            zip(&[("spec.json", b"not json")]),
            StatusCode::BAD_REQUEST,
            "spec.json is not valid json",
        ),
        (
            "file",
            zip(&[("spec.json", b"[\"u1\"]"), ("tool.zip", &code)]),
            StatusCode::BAD_REQUEST,
            "expected a json object",
        ),
        (
            "file",
            zip(&[("spec.json", spec), ("../x", b"x"), ("tool.zip", &code)]),
            StatusCode::BAD_REQUEST,
            "'..'",
        ),
        (
            "file",
            zip(&[("spec.json", spec), ("/etc/x", b"x")]),
            StatusCode::BAD_REQUEST,
            "absolute path",
        ),
        (
            "file",
            zip(&[("spec.json", spec), ("tool.zip", &zeros)]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "unpacks to more than",
        ),
        (
            "file",
            zip(&[("spec.json", spec), ("tool.md", &[0xff, 0xfe, 0x00])]),
            StatusCode::BAD_REQUEST,
            "utf-8",
        ),
        ("file", vec![7u8; 300 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "size limit"),
    ];
    for (part, body, status, needle) in cases {
        let (got, response) = app.upload("/tools/upload", part, &body).await;
        assert_eq!(got, status, "{needle}: {response}");
        assert!(error_of(&response).contains(needle), "'{}' lacks '{needle}'", error_of(&response));
    }
    let (status, _) =
        app.call("POST", "/tools/upload", Some("application/json"), b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = app
        .call("POST", "/tools/upload", Some("multipart/form-data; boundary=x"), b"garbage".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.tool_count(), 0);
    assert!(app.store.get_blob(&gridnode_store::sha256_hex(&code)).unwrap().is_none());
    assert_eq!(app.store.last_seq(), app.start_seq, "nothing was written at all");
}

#[tokio::test]
async fn cluster_tool_writes_resolve_and_execute_refuse_bad_input() {
    let app = app().await;
    let record = json!({
        "name": "py_upper", "node_id": "outside-1", "description": "uppercases",
        "input_spec": {"text": "string"}, "metadata": {"version": "1.0.0"}
    });
    let (status, body) = app.json("POST", "/cluster-tools", &record).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"message": "Tool created"}));
    let (status, body) = app.json("POST", "/cluster-tools/tools", &record).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["success"], false);
    let (status, one) = app.get("/cluster-tools/outside-1/py_upper").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["alive"], true, "an outside node counts as alive until a call fails");
    assert_eq!(one["metadata"]["version"], "1.0.0");

    let with = |field: &str, value: Value| {
        let mut changed = record.clone();
        changed[field] = value;
        changed
    };
    let without = |field: &str| {
        let mut changed = record.clone();
        changed.as_object_mut().unwrap().remove(field);
        changed
    };
    let refused = [
        (without("description"), StatusCode::BAD_REQUEST, "missing field 'description'"),
        (without("node_id"), StatusCode::BAD_REQUEST, "missing field 'node_id'"),
        (with("extra", json!(1)), StatusCode::BAD_REQUEST, "unknown field"),
        (json!(["py_upper"]), StatusCode::BAD_REQUEST, "json object"),
        (with("name", json!("a/b")), StatusCode::BAD_REQUEST, "invalid tool name"),
        (with("name", json!("x".repeat(5000))), StatusCode::BAD_REQUEST, "invalid tool name"),
        (with("node_id", json!("node-a")), StatusCode::FORBIDDEN, "this gridnode node"),
        (with("node_id", json!("resolve")), StatusCode::BAD_REQUEST, "names a route"),
        (with("input_spec", json!({"x": {"type": "nope"}})), StatusCode::BAD_REQUEST, "input_spec"),
        (with("input_spec", json!("text")), StatusCode::BAD_REQUEST, "invalid tool record"),
    ];
    for (body, status, needle) in refused {
        app.refused("POST", "/cluster-tools", &body, status, needle).await;
    }
    for (raw, status) in [
        ("{\"name\": ", StatusCode::BAD_REQUEST),
        ("", StatusCode::BAD_REQUEST),
        ("\u{0}\u{1}", StatusCode::BAD_REQUEST),
    ] {
        let (got, response) = app.raw_json("POST", "/cluster-tools", raw).await;
        assert_eq!(got, status, "{raw:?}: {response}");
        assert_eq!(response["success"], false);
    }
    let (status, _) = app.call("POST", "/cluster-tools", Some("text/plain"), b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024));
    assert_eq!(
        app.raw_json("POST", "/cluster-tools", &huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Partial update: only what is given changes; the key fields are immutable.
    let (status, body) = app
        .json("PUT", "/cluster-tools/outside-1/py_upper", &json!({"description": "SHOUTS"}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Tool updated"})));
    let (_, one) = app.get("/cluster-tools/outside-1/py_upper").await;
    assert_eq!(
        (one["description"].clone(), one["metadata"]["version"].clone()),
        (json!("SHOUTS"), json!("1.0.0"))
    );
    for (uri, patch, status, needle) in [
        (
            "/cluster-tools/outside-1/py_upper",
            json!({"name": "other"}),
            StatusCode::BAD_REQUEST,
            "immutable",
        ),
        (
            "/cluster-tools/outside-1/py_upper",
            json!({"colour": 1}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "/cluster-tools/outside-1/py_upper",
            json!({"input_spec": 7}),
            StatusCode::BAD_REQUEST,
            "json object",
        ),
        (
            "/cluster-tools/outside-1/nope",
            json!({"description": "x"}),
            StatusCode::NOT_FOUND,
            "not registered",
        ),
    ] {
        app.refused("PUT", uri, &patch, status, needle).await;
    }

    // Resolve: the static table knows outside-1.
    let (status, body) =
        app.json("POST", "/cluster-tools/resolve", &json!({"tool_name": "py_upper"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"success": true, "endpoint": "127.0.0.1:9", "node_id": "outside-1"}));
    for (request, status, needle) in [
        (json!({"tool_name": "nope"}), StatusCode::NOT_FOUND, "Tool 'nope' not found in database"),
        (
            json!({"tool_name": "py_upper", "node_id": "elsewhere"}),
            StatusCode::NOT_FOUND,
            "not found in database for node 'elsewhere'",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "tool_name"),
        (json!({"tool_name": ""}), StatusCode::BAD_REQUEST, "tool_name"),
        (json!({"tool_name": 5}), StatusCode::BAD_REQUEST, "invalid type"),
        (json!({"tool_name": "py_upper", "x": 1}), StatusCode::BAD_REQUEST, "unknown field"),
        (json!({"tool_name": "../../etc"}), StatusCode::BAD_REQUEST, "invalid tool_name"),
        (json!({"tool_name": "x".repeat(1 << 15)}), StatusCode::BAD_REQUEST, "invalid tool_name"),
        (
            json!({"tool_name": "py_upper", "node_id": "a b"}),
            StatusCode::BAD_REQUEST,
            "invalid node_id",
        ),
    ] {
        app.refused("POST", "/cluster-tools/resolve", &request, status, needle).await;
    }

    // Execute: refused before any hop, in the seed's full shape.
    let (status, body) = app
        .json("POST", "/cluster-tools/execute", &json!({"tool_name": "nope", "input": {}}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"success": false, "output": null, "error": "Tool 'nope' not found on any node", "metadata": {}})
    );
    for (request, status, needle) in [
        (
            json!({"tool_name": "py_upper", "input": {"text": 5}}),
            StatusCode::BAD_REQUEST,
            "field 'text'",
        ),
        (
            json!({"tool_name": "py_upper", "input": "plain"}),
            StatusCode::BAD_REQUEST,
            "json object",
        ),
        (json!({"tool_name": "py_upper"}), StatusCode::BAD_REQUEST, "input"),
        (json!({"tool_name": ["x"], "input": {}}), StatusCode::BAD_REQUEST, "invalid type"),
        (
            json!({"tool_name": "ünïcödé", "input": {}}),
            StatusCode::BAD_REQUEST,
            "invalid tool_name",
        ),
    ] {
        let (got, response) = app.json("POST", "/cluster-tools/execute", &request).await;
        assert_eq!(got, status, "{needle}: {response}");
        assert_eq!(
            (response["output"].clone(), response["metadata"].clone()),
            (Value::Null, json!({}))
        );
        assert!(
            message_of(&response).contains(needle),
            "'{}' lacks '{needle}'",
            message_of(&response)
        );
    }
    // Nothing listens on 127.0.0.1:9: 502, and the outside node is not alive for a while.
    let request = json!({"tool_name": "py_upper", "input": {"text": "hi"}});
    let (status, body) = app.json("POST", "/cluster-tools/execute", &request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(message_of(&body).contains("outside-1 at 127.0.0.1:9"), "{body}");
    let (_, one) = app.get("/cluster-tools/outside-1/py_upper").await;
    assert_eq!(one["alive"], false);
    let (status, body) =
        app.json("POST", "/cluster-tools/resolve", &json!({"tool_name": "py_upper"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = app.json("POST", "/cluster-tools/execute", &request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(message_of(&body).contains("no live node"), "{body}");

    // The seed SDK's delete spelling, then the record is gone.
    let (status, body) =
        app.call("DELETE", "/cluster-tools/tools/py_upper/outside-1", None, vec![]).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Tool deleted"})));
    let (status, _) = app.call("DELETE", "/cluster-tools/outside-1/py_upper", None, vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, all) = app.get("/cluster-tools").await;
    assert_eq!(all, json!([]));
    // Lookups see every write at once (the hosts cache follows the store).
    let (status, _) =
        app.json("POST", "/cluster-tools/resolve", &json!({"tool_name": "py_upper"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let again = json!({"name": "py_upper", "node_id": "outside-2", "description": "x"});
    assert_eq!(app.json("POST", "/cluster-tools", &again).await.0, StatusCode::CREATED);
    let (status, body) =
        app.json("POST", "/cluster-tools/resolve", &json!({"tool_name": "py_upper"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "outside-2 has no endpoint anywhere: {body}");
    assert!(message_of(&body).contains("no resolver knows node 'outside-2'"), "{body}");
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
fn message_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"))
}

#[tokio::test]
async fn execute_select_action_org_and_audit_routes_refuse_bad_input() {
    let app = app().await;
    // The node announces its built-ins at start; this router has no node around it.
    let hosted = gridnode_store::ClusterLocalTool {
        name: "reverse_text".into(),
        node_id: "node-a".into(),
        ..Default::default()
    };
    app.store.put(&hosted).unwrap();
    let tool = json!({"tool_id": "rev", "tool_system_function_rpc_id": "reverse_text", "tool_api_spec": {"text": "string"}});
    assert_eq!(app.json("POST", "/tools", &tool).await.0, StatusCode::CREATED);
    let action = json!({"action_type": "a1", "mapping_org_id": "org1", "tool_ids": ["rev"]});
    assert_eq!(app.json("POST", "/actions", &action).await.0, StatusCode::CREATED);
    let (status, body) =
        app.json("POST", "/tools/rev/execute", &json!({"input": {"text": "ab"}})).await;
    assert_eq!((status, &body["output"]), (StatusCode::OK, &json!({"result": "ba"})), "{body}");
    let huge = "x".repeat(70 * 1024);
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));

    // Execute by id: bad JSON, unknown and missing fields, wrong types, bad ids, bad orgs.
    for (uri, body, expected) in [
        ("/tools/rev/execute", "{", StatusCode::BAD_REQUEST),
        ("/tools/rev/execute", "{}", StatusCode::BAD_REQUEST),
        ("/tools/rev/execute", r#"{"input": {}, "extra": 1}"#, StatusCode::BAD_REQUEST),
        ("/tools/rev/execute", r#"{"input": {"text": 1}}"#, StatusCode::BAD_REQUEST),
        ("/tools/rev/execute", r#"{"input": {"text": "a"}, "org_id": 7}"#, StatusCode::BAD_REQUEST),
        (
            "/tools/rev/execute",
            r#"{"input": {"text": "a"}, "org_id": "../x"}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/tools/rev/execute", &format!(r#"{{"input": "{huge}"}}"#), StatusCode::PAYLOAD_TOO_LARGE),
        ("/tools/rev/execute", &format!(r#"{{"input": {deep}}}"#), StatusCode::BAD_REQUEST),
        ("/tools/..%2Fetc/execute", r#"{"input": {}}"#, StatusCode::BAD_REQUEST),
        ("/tools/nope/execute", r#"{"input": {}}"#, StatusCode::NOT_FOUND),
        ("/functions/nope/execute", r#"{"input": {}}"#, StatusCode::NOT_FOUND),
        ("/tools/select", r#"{"selector": {"filter": {"$where": "1"}}}"#, StatusCode::BAD_REQUEST),
        (
            "/tools/select",
            r#"{"selector": {"filter": {"a": {"$regex": "(a+)+$"}}}}"#,
            StatusCode::NOT_FOUND,
        ),
        ("/tools/select", r#"{"selector": {"rank": [{"field": ""}]}}"#, StatusCode::BAD_REQUEST),
        (
            "/tools/select",
            r#"{"selector": {"rank": [{"text": "((((((((((((((((((a"}]}}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/tools/select", r#"{"selector": {"limit": 1e9}}"#, StatusCode::BAD_REQUEST),
        ("/tools/select", r#"{"selector": "everything"}"#, StatusCode::BAD_REQUEST),
        ("/tools/select", r#"{"search_parameters": [], "selector": {}}"#, StatusCode::BAD_REQUEST),
        ("/actions", r#"{"action_type": "a2"}"#, StatusCode::BAD_REQUEST),
        (
            "/actions",
            r#"{"action_type": "a2", "mapping_org_id": "org1", "tool_ids": []}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/actions",
            r#"{"action_type": "a 2", "mapping_org_id": "org1", "tool_ids": ["rev"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/actions",
            r#"{"action_type": "a2", "mapping_org_id": "org1", "tool_ids": "rev"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/actions",
            r#"{"action_type": "a2", "mapping_org_id": "org1", "tool_ids": ["rev"], "bogus": 1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/actions",
            r#"{"action_type": "a2", "mapping_org_id": "org1", "tool_ids": ["rev"], "action_dsl": {"sort": 1}}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/actions/org1/a1/select", r#"{"search_parameters": 5}"#, StatusCode::BAD_REQUEST),
        ("/actions/org1/nope/select", r#"{}"#, StatusCode::NOT_FOUND),
        ("/actions/org1/a1/execute", r#"{"search_parameters": {}}"#, StatusCode::BAD_REQUEST),
        (
            "/cluster-tools/execute",
            r#"{"tool_name": "echo", "input": 1, "org_id": ""}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/cluster-tools/execute",
            &format!(r#"{{"tool_name": "{}", "input": 1}}"#, "n".repeat(9000)),
            StatusCode::BAD_REQUEST,
        ),
        (
            &format!("/tools/{}/execute", "t".repeat(9000)),
            r#"{"input": 1}"#,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, reply) = app.raw_json("POST", uri, body).await;
        assert_eq!(status, expected, "{uri} {}: {reply}", &body[..body.len().min(80)]);
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()), "{uri}: {reply}");
    }
    for (method, uri, body, expected) in [
        ("PUT", "/orgs/org1/allowed-tools", r#"{"rev": true}"#, StatusCode::BAD_REQUEST),
        ("PUT", "/orgs/org1/allowed-tools", r#"["ok", "not ok"]"#, StatusCode::BAD_REQUEST),
        ("PUT", "/orgs/org%201/allowed-tools", r#"["rev"]"#, StatusCode::BAD_REQUEST),
        ("GET", "/orgs/org1/allowed-tools", "", StatusCode::NOT_FOUND),
        ("DELETE", "/orgs/org1/allowed-tools", "", StatusCode::NOT_FOUND),
        ("GET", "/audit?limit=0", "", StatusCode::BAD_REQUEST),
        ("GET", "/audit?limit=x", "", StatusCode::BAD_REQUEST),
        ("GET", "/audit?offset=3", "", StatusCode::BAD_REQUEST),
        ("GET", "/actions?org=a%20b", "", StatusCode::BAD_REQUEST),
        ("GET", "/actions/org1/nope", "", StatusCode::NOT_FOUND),
        ("DELETE", "/actions/org1/nope", "", StatusCode::NOT_FOUND),
    ] {
        let (status, reply) = app.raw_json(method, uri, body).await;
        assert_eq!(status, expected, "{method} {uri}: {reply}");
        error_of(&reply);
    }
    // A bad X-Org-Id header is a 400, never a crash.
    let request = Request::builder()
        .method("POST")
        .uri("/tools/rev/execute")
        .header("content-type", "application/json")
        .header("x-org-id", "not an org")
        .body(Body::from(r#"{"input": {"text": "a"}}"#))
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Nothing changed: the tool, the action, no allow-list; the audit log holds the executions.
    assert_eq!(app.tool_count(), 1);
    let (_, actions) = app.get("/actions").await;
    assert_eq!(actions.as_array().map(Vec::len), Some(1));
    let (_, audit) = app.get("/audit?limit=1000").await;
    let entries = audit.as_array().unwrap();
    assert!(entries.iter().any(|e| e["tool"] == "rev" && e["success"] == true));
    assert!(entries.iter().all(|e| e.get("input").is_none()));
    // Hostile names are cut before they reach the log.
    assert!(
        entries
            .iter()
            .any(|e| e["status"] == 400 && e["tool"].as_str().unwrap().starts_with("nnn")),
        "{audit}"
    );
    assert!(entries.iter().all(|e| e["tool"].as_str().unwrap().len() <= 128), "{audit}");
    let (status, _) =
        app.json("POST", "/tools/rev/execute", &json!({"input": {"text": "ok"}})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_request_ids_are_echoed() {
    let app = app().await;
    for id in ["a", "b", "a"] {
        app.json("POST", "/tools", &json!({"tool_id": id})).await;
    }
    app.get("/tools/a").await;
    app.get("/tools/zzz").await;
    app.get("/no/such/route").await;
    let (status, text) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_owned();
    for line in [
        r#"gridnode_http_requests_total{route="/tools",method="POST",status="201"} 2"#,
        r#"gridnode_http_requests_total{route="/tools",method="POST",status="409"} 1"#,
        r#"gridnode_http_requests_total{route="/tools/{id}",method="GET",status="200"} 1"#,
        r#"gridnode_http_requests_total{route="/tools/{id}",method="GET",status="404"} 1"#,
        r#"gridnode_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"gridnode_http_request_duration_seconds_count{route="/tools",method="POST"} 3"#,
        "# TYPE gridnode_peers gauge",
        &format!("gridnode_store_last_seq {}", app.start_seq + 2),
        r#"gridnode_peer_rejected_total{reason="admission"} 0"#,
        r#"gridnode_peer_rejected_total{reason="signature"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // A sane caller id is echoed; a hostile one is replaced; none gets a fresh one.
    let ask = |id: Option<&str>| {
        let mut request = Request::builder().uri("/healthz");
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        app.router.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let echoed = ask(Some("trace-42")).await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");
    let replaced = ask(Some("bad id\twith tabs")).await.unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id\twith tabs");
    let (first, second) = (ask(None).await.unwrap(), ask(None).await.unwrap());
    assert_ne!(first.headers()["x-request-id"], second.headers()["x-request-id"]);
}

#[tokio::test]
async fn provenance_and_members_answer_and_refuse_bad_input() {
    let app = app().await;
    assert_eq!(app.json("POST", "/tools", &json!({"tool_id": "p1"})).await.0, StatusCode::CREATED);
    let (status, plain) = app.get("/tools/p1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(plain.get("provenance").is_none(), "only when asked");
    let (status, body) = app.get("/tools/p1?provenance=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tool_id"], "p1");
    let provenance = &body["provenance"];
    assert_eq!(provenance["author"], "node-a");
    assert_eq!(provenance["signed"], true);
    let at = provenance["at"].as_str().unwrap();
    assert!(at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
    for bad in ["maybe", "1", "", "true%00"] {
        let (status, body) = app.get(&format!("/tools/p1?provenance={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(error_of(&body).contains("provenance must be true or false"));
    }
    assert_eq!(app.get("/tools/nope?provenance=true").await.0, StatusCode::NOT_FOUND);
    // The other record kinds.
    let action = json!({"action_type": "pa", "mapping_org_id": "org1", "tool_ids": ["p1"]});
    assert_eq!(app.json("POST", "/actions", &action).await.0, StatusCode::CREATED);
    let (status, body) = app.get("/actions/org1/pa?provenance=true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["provenance"]["author"], "node-a");
    assert_eq!(app.json("PUT", "/orgs/org1/allowed-tools", &json!(["p1"])).await.0, StatusCode::OK);
    let (_, body) = app.get("/orgs/org1/allowed-tools?provenance=true").await;
    assert_eq!(body["allowed_tools"], json!(["p1"]));
    assert_eq!(body["provenance"]["signed"], true);
    assert_eq!(app.get("/orgs/org1/allowed-tools").await.1, json!(["p1"]), "unchanged shape");
    let hosted = gridnode_store::ClusterLocalTool {
        name: "echo".into(),
        node_id: "node-a".into(),
        ..Default::default()
    };
    app.store.put(&hosted).unwrap();
    let (_, body) = app.get("/cluster-tools/node-a/echo?provenance=true").await;
    assert_eq!(body["provenance"]["author"], "node-a", "{body}");

    // Members: this node is bound to its own key.
    let (status, members) = app.get("/cluster/members").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(members[0]["node_id"], "node-a");
    assert!(members[0]["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    for (uri, expected) in [
        ("/cluster/members/node-a", StatusCode::BAD_REQUEST),
        ("/cluster/members/nobody", StatusCode::NOT_FOUND),
        ("/cluster/members/..%2F..%2Fetc", StatusCode::BAD_REQUEST),
        ("/cluster/members/%00", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = app.call("DELETE", uri, None, Vec::new()).await;
        assert_eq!(status, expected, "{uri}: {body}");
        assert!(!error_of(&body).is_empty());
    }
    let long = "x".repeat(5000);
    let (status, _) =
        app.call("DELETE", &format!("/cluster/members/{long}"), None, Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/cluster/members").await.1.as_array().unwrap().len(), 1, "still bound");
}
