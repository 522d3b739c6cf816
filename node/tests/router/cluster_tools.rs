//! Node-local tools: registration, resolve, execute.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::app;
use crate::message_of;

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
    let (_, outside) = app.get("/cluster-tools/outside-1").await;
    assert_eq!(outside, json!([]));
    let (_, all) = app.get("/cluster-tools").await;
    let nodes: Vec<&Value> = all.as_array().unwrap().iter().map(|t| &t["node_id"]).collect();
    assert_eq!(nodes, ["node-a"; 3], "only this node's built-ins are left: {all}");
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
