//! Access control (contract section 12) on real nodes: every route family refuses anonymous
//! and wrong-scope requests and changes nothing; each scope does what it allows over REST,
//! GraphQL and gRPC; org-bound tokens; tokens replicate and their revocation too; expiry;
//! audit entries name the token; the member hop is proven; foreign web origins are refused.

use std::time::Duration;

use gridnode_proto::{CallFunctionRequest, ToolExecutorClient};
use gridnode_tests::api::Api;
use gridnode_tests::wait::{EVENTUALLY, until};
use gridnode_tests::{node, unique_cluster};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "the-management-secret-of-this-test";

/// Every route family, with the scope it needs and a request that would change or read
/// something.
fn routes() -> Vec<(reqwest::Method, &'static str, Value, &'static str)> {
    use reqwest::Method as M;
    let tool = json!({"tool_id": "acl-new", "tool_type": "t"});
    let run = json!({"input": {"text": "ab"}});
    vec![
        (M::GET, "/tools", Value::Null, "read"),
        (M::GET, "/tools/acl-tool", Value::Null, "read"),
        (M::GET, "/tools/query/by-keyword?keyword=x", Value::Null, "read"),
        (M::POST, "/tools/query/generic", json!({"filter": {}}), "read"),
        (M::GET, "/functions", Value::Null, "read"),
        (M::GET, "/search?q=x", Value::Null, "read"),
        (M::POST, "/graphql", json!({"query": "{ tools { tool_id } }"}), "read"),
        (M::GET, "/node", Value::Null, "read"),
        (M::GET, "/peers", Value::Null, "read"),
        (M::GET, "/cluster/members", Value::Null, "read"),
        (M::GET, "/cluster-tools", Value::Null, "read"),
        (M::GET, "/actions", Value::Null, "read"),
        (M::GET, "/metrics", Value::Null, "read"),
        (M::POST, "/tools", tool.clone(), "write"),
        (M::PUT, "/tools/acl-tool", json!({"tool_type": "changed"}), "write"),
        (M::DELETE, "/tools/acl-tool", Value::Null, "write"),
        (M::POST, "/functions", json!({"func_id": "acl-f"}), "write"),
        (
            M::POST,
            "/cluster-tools",
            json!({"name": "x", "node_id": "outside", "description": "d"}),
            "write",
        ),
        (
            M::POST,
            "/actions",
            json!({"action_type": "a", "mapping_org_id": "acme", "selector": {}}),
            "write",
        ),
        (M::POST, "/tools/acl-tool/execute", run.clone(), "execute"),
        (M::POST, "/tools/select", json!({"selector": {}}), "execute"),
        (
            M::POST,
            "/cluster-tools/execute",
            json!({"tool_name": "reverse_text", "input": {"text": "ab"}}),
            "execute",
        ),
        (M::POST, "/cluster-tools/resolve", json!({"tool_name": "reverse_text"}), "execute"),
        (M::GET, "/audit", Value::Null, "admin"),
        (M::PUT, "/orgs/acme/allowed-tools", json!(["x"]), "admin"),
        (M::GET, "/orgs/acme/allowed-tools", Value::Null, "admin"),
        (M::GET, "/acl/tokens", Value::Null, "admin"),
        (M::POST, "/acl/tokens", json!({"scopes": ["admin"]}), "admin"),
        (M::DELETE, "/cluster/members/somebody", Value::Null, "admin"),
    ]
}

async fn ask(api: &Api, method: &reqwest::Method, path: &str, body: &Value) -> reqwest::Response {
    let mut request = api.client.request(method.clone(), api.url(path));
    if !body.is_null() {
        request = request.json(body);
    }
    request.send().await.expect("the node answers")
}

/// What a write could have changed.
async fn state(admin: &Api) -> Value {
    let mut out = json!({});
    for path in ["/tools", "/functions", "/cluster-tools", "/actions", "/acl/tokens"] {
        out[path] = admin.get(path).await.1;
    }
    out["allow"] = admin.get("/orgs/acme/allowed-tools").await.1;
    out
}

#[tokio::test]
async fn anonymous_and_wrong_scope_requests_are_refused_on_every_route_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, anonymous) = node(dir.path(), "acl-walk").acl(ADMIN).start().await;
    let admin = anonymous.with_token(ADMIN);
    let made = admin.post("/tools", &json!({"tool_id": "acl-tool", "tool_type": "t"})).await;
    assert_eq!(made.0, StatusCode::CREATED, "{}", made.1);

    // Open doors stay open.
    for path in ["/healthz", "/readyz", "/graphql"] {
        assert_eq!(anonymous.get(path).await.0, StatusCode::OK, "{path}");
    }

    let all = ["read", "write", "execute", "admin"];
    let before = state(&admin).await;
    for (method, path, body, scope) in routes() {
        let response = ask(&anonymous, &method, path, &body).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{method} {path}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer, json!({"error": "missing or invalid token"}), "{method} {path}");

        let bogus = anonymous.with_token("gnt_not-a-real-token");
        let response = ask(&bogus, &method, path, &body).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");

        // Every scope but the one needed (admin holds them all, so it is never among them).
        let others: Vec<&str> =
            all.iter().copied().filter(|s| *s != scope && *s != "admin").collect();
        let lacking = anonymous.with_token(&admin.token(&others, None).await);
        let response = ask(&lacking, &method, path, &body).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let answer: Value = response.json().await.unwrap();
        let expected = format!("this token lacks the '{scope}' scope");
        assert_eq!(answer, json!({ "error": expected }), "{method} {path}");
    }
    let mut after = state(&admin).await;
    // The tokens made for the walk are the only change.
    let made: Vec<Value> = after["/acl/tokens"].as_array().unwrap().clone();
    assert_eq!(made.len(), routes().len());
    after["/acl/tokens"] = before["/acl/tokens"].clone();
    assert_eq!(before, after, "a refused request changed something");

    // With the scope, the same requests get through the guard.
    for (method, path, body, scope) in routes() {
        let holder = anonymous.with_token(&admin.token(&[scope], None).await);
        let response = ask(&holder, &method, path, &body).await;
        let status = response.status();
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{method} {path} with '{scope}': {status} {}",
            response.text().await.unwrap()
        );
    }
}

#[tokio::test]
async fn tokens_do_what_their_scopes_allow_and_bound_orgs_cannot_be_left() {
    let dir = tempfile::tempdir().unwrap();
    let (node, anonymous) = node(dir.path(), "acl-scopes").acl(ADMIN).start().await;
    let admin = anonymous.with_token(ADMIN);

    let (status, me) = admin.get("/acl/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["token_id"], "admin");

    let writer = anonymous.with_token(&admin.token(&["write"], None).await);
    let reader = anonymous.with_token(&admin.token(&["read"], None).await);
    let runner = anonymous.with_token(&admin.token(&["execute"], Some("acme")).await);

    let (status, _) = writer.post("/tools", &json!({"tool_id": "w1", "tool_type": "t"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(reader.get("/tools/w1").await.0, StatusCode::OK);
    assert_eq!(writer.get("/tools/w1").await.0, StatusCode::FORBIDDEN, "write is not read");
    let query = json!({"query": "{ tool(id: \"w1\") { tool_id } }"});
    let (status, answer) = reader.post("/graphql", &query).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["data"]["tool"]["tool_id"], "w1", "{answer}");

    // The execute token is bound to acme: it acts as acme, and cannot name another org.
    let run = json!({"tool_name": "reverse_text", "input": {"text": "ab"}});
    let (status, answer) = runner.post("/cluster-tools/execute", &run).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let other = runner
        .send(
            runner
                .client
                .post(runner.url("/cluster-tools/execute"))
                .header("x-org-id", "other")
                .json(&run),
        )
        .await;
    assert_eq!(other.0, StatusCode::FORBIDDEN, "{}", other.1);
    let mut in_body = run.clone();
    in_body["org_id"] = "other".into();
    assert_eq!(runner.post("/cluster-tools/execute", &in_body).await.0, StatusCode::FORBIDDEN);
    // acme's allow-list applies to it, whatever the request says.
    let (status, _) = admin.put("/orgs/acme/allowed-tools", &json!(["echo"])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = runner.post("/cluster-tools/execute", &run).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // A member binding is the cluster's: an admin bound to an org cannot release one.
    let bound_admin = anonymous.with_token(&admin.token(&["admin"], Some("acme")).await);
    let (status, body) = bound_admin.delete("/cluster/members/acl-scopes").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The audit log names the tokens: executions and registry writes alike; never a secret.
    let (_, entries) = admin.get("/audit?limit=100").await;
    let entries = entries.as_array().unwrap().clone();
    let runner_id = runner.get("/acl/whoami").await.1["token_id"].as_str().unwrap().to_owned();
    assert!(
        entries.iter().any(|e| e["token"] == runner_id.as_str()
            && e["operation"] == "execute"
            && e["org"] == "acme"),
        "{entries:?}"
    );
    assert!(
        entries.iter().any(|e| e["operation"] == "create"
            && e["kind"] == "tool"
            && e["tool"] == "w1"
            && e["token"].as_str().is_some_and(|t| t.starts_with("tok-"))),
        "{entries:?}"
    );
    assert!(entries.iter().any(|e| e["kind"] == "allow_list" && e["token"] == "admin"));
    assert!(!serde_json::to_string(&entries).unwrap().contains("gnt_"));

    // gRPC: the token in the metadata; none is Unauthenticated, a read token PermissionDenied.
    let mut client =
        ToolExecutorClient::connect(format!("http://{}", node.grpc_addr())).await.unwrap();
    let call = |secret: Option<&str>, hop: Option<&str>| {
        let mut request = tonic::Request::new(CallFunctionRequest {
            tool_name: "reverse_text".into(),
            input: br#"{"text":"ab"}"#.to_vec(),
        });
        if let Some(secret) = secret {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {secret}").parse().unwrap());
        }
        if let Some(hop) = hop {
            request.metadata_mut().insert("x-gridnode-hop", hop.parse().unwrap());
        }
        request
    };
    let refused = client.call_function(call(None, None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let read_secret = admin.token(&["read"], None).await;
    let refused = client.call_function(call(Some(&read_secret), None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("'execute' scope"), "{}", refused.message());
    // A hop claim without the member proof is refused, not taken on its word.
    let forged = client.call_function(call(None, Some("acl-scopes"))).await.unwrap_err();
    assert_eq!(forged.code(), tonic::Code::PermissionDenied);
    let run_secret = admin.token(&["execute"], None).await;
    let answer = client.call_function(call(Some(&run_secret), None)).await.unwrap().into_inner();
    assert!(answer.success, "{}", answer.error);

    // Expiry.
    let (status, made) =
        admin.post("/acl/tokens", &json!({"scopes": ["read"], "expires_in": 1})).await;
    assert_eq!(status, StatusCode::CREATED);
    let short = anonymous.with_token(made["secret"].as_str().unwrap());
    assert_eq!(short.get("/node").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(short.get("/node").await.0, StatusCode::UNAUTHORIZED);
    // The secret is shown once: reads never carry it.
    let (_, listed) = admin.get("/acl/tokens").await;
    assert!(!listed.to_string().contains("gnt_") && !listed.to_string().contains("secret"));
}

#[tokio::test]
async fn a_token_made_on_one_node_works_on_another_until_it_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = unique_cluster("acl");
    let (a, api_a) =
        node(dir.path(), "acl-a").in_cluster(&cluster).brisk(200).acl(ADMIN).start().await;
    let (b, api_b) = node(dir.path(), "acl-b")
        .in_cluster(&cluster)
        .brisk(200)
        .bootstrap(&a)
        .acl("another-management-secret-on-b")
        .start()
        .await;
    let admin_a = api_a.with_token(ADMIN);
    let (status, made) = admin_a.post("/acl/tokens", &json!({"scopes": ["read", "execute"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let on_b = api_b.with_token(made["secret"].as_str().unwrap());
    until("the token replicates to b", EVENTUALLY, async || match on_b.get("/node").await.0 {
        StatusCode::OK => Ok(()),
        other => Err(other),
    })
    .await;
    // The management secret is each node's own.
    assert_eq!(api_b.with_token(ADMIN).get("/node").await.0, StatusCode::UNAUTHORIZED);

    // A call made on b for a tool pinned to a goes through b's checks, then as a proven
    // member hop to a.
    until("b runs a tool on a", EVENTUALLY, async || {
        let run = json!({"tool_name": "reverse_text", "node_id": "acl-a", "input": {"text": "ab"}});
        let (status, answer) = on_b.post("/cluster-tools/execute", &run).await;
        match (status, answer["metadata"]["node_id"].as_str()) {
            (StatusCode::OK, Some("acl-a")) => Ok(()),
            _ => Err((status, answer)),
        }
    })
    .await;

    // A bundle uploaded on a runs on b: b fetches its code from a, which lets the fetch
    // through on b's member proof (no token of a's is involved).
    let run = b"#!/bin/sh\nread input\nprintf '{\"got\": %s}' \"$input\"\n";
    let code = gridnode_tests::bundle::zip(&[("code/run", run.as_slice())]);
    let spec = json!({"tool_id": "acl-bundle", "tool_api_spec": {"text": "string"}});
    let upload = gridnode_tests::bundle::zip(&[
        ("spec.json", spec.to_string().as_bytes()),
        ("tool.zip", &code),
    ]);
    let (status, body) = admin_a.upload("/tools/upload", upload).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until("the bundle to run on b", EVENTUALLY, async || {
        let input = json!({"input": {"text": "hi"}});
        let (status, answer) = on_b.post("/tools/acl-bundle/execute", &input).await;
        match (status, &answer["output"]) {
            (StatusCode::OK, output) if *output == json!({"got": {"text": "hi"}}) => Ok(()),
            _ => Err((status, answer)),
        }
    })
    .await;
    // Without the proof, a's blobs need a token like any read.
    let sha = gridnode_store::sha256_hex(&code);
    let (status, _) = api_a.get(&format!("/blobs/{sha}?local=true")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let id = made["token_id"].as_str().unwrap();
    assert_eq!(admin_a.delete(&format!("/acl/tokens/{id}")).await.0, StatusCode::OK);
    until("the revocation replicates to b", EVENTUALLY, async || match on_b.get("/node").await.0 {
        StatusCode::UNAUTHORIZED => Ok(()),
        other => Err(other),
    })
    .await;
    drop(b);
}

#[tokio::test]
async fn pages_of_other_origins_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = node(dir.path(), "acl-origin").start().await;
    let tool = json!({"tool_id": "from-a-page", "tool_type": "t"});
    let post = |origin: &str| {
        api.client.post(api.url("/tools")).header("origin", origin.to_owned()).json(&tool)
    };
    let (status, answer) = api.send(post("http://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("allowed_origins"), "{answer}");
    assert_eq!(api.get("/tools/from-a-page").await.0, StatusCode::NOT_FOUND);
    // GraphQL queries from a foreign page are refused too; reads without Origin are not.
    let graphql = api
        .client
        .post(api.url("/graphql"))
        .header("origin", "http://evil.example")
        .json(&json!({"query": "{ tools { tool_id } }"}));
    assert_eq!(api.send(graphql).await.0, StatusCode::FORBIDDEN);
    // The node's own origin (GraphiQL served from it) may.
    let own = format!("http://{}", node.http_addr());
    assert_eq!(api.send(post(&own)).await.0, StatusCode::CREATED);
}

#[test]
fn a_node_beyond_loopback_refuses_to_start_open_unless_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = node(dir.path(), "acl-cfg").into_config();
    assert!(!config.acl_enabled(), "all loopback: off");
    config.http.listen = "0.0.0.0:0".parse().unwrap();
    assert!(config.acl_enabled(), "beyond loopback: on by default");
    config.acl.enabled = Some(false);
    let error = config.clone().validate().unwrap_err().to_string();
    assert!(error.contains("--insecure") && error.contains("--acl"), "{error}");
    config.acl.insecure = true;
    assert!(config.validate().is_ok());
}
