//! Execute by id, selection, actions, allow-lists, audit.

use axum::http::StatusCode;
use serde_json::json;

use crate::{app, error_of};

#[tokio::test]
async fn execute_select_action_org_and_audit_routes_refuse_bad_input() {
    let app = app().await;
    // The node announces its built-ins at start; this router has no node around it.
    let hosted = gridnode_store::ClusterLocalTool {
        name: "reverse_text".into(),
        node_id: "node-a".into(),
        ..Default::default()
    };
    app.store().put(&hosted).unwrap();
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
    let request =
        app.api.client.post(app.api.url("/tools/rev/execute")).header("x-org-id", "not an org");
    let (status, _) = app.api.send(request.json(&json!({"input": {"text": "a"}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

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
