//! A walk through every route of the Tools and Functions registries (contract sections 4–5),
//! with the seeds' own example requests, asserting each answer. [`every_route`] leaves a known
//! state that [`check_state`] verifies, for example after the node was killed and restarted.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api::{Api, ids};
use crate::bundle::zip;
use crate::wait::{EVENTUALLY, until};

/// The seed's sample tool (`tools-registry.txt`, GraphQL sample response).
pub fn seed_tool() -> Value {
    json!({
        "tool_id": "tool-nlp-01",
        "tool_type": "extractor",
        "tool_tags": ["nlp", "text"],
        "tool_search_description": "A tool for extracting named entities.",
        "tool_metadata": {"language": "en", "version": "v1.0"},
        "tool_execution_mode": "batch",
        "tool_policy_rule_uri": "policies://validate/compliance",
    })
}

/// Drives every registry route once and asserts every answer.
pub async fn every_route(api: &Api) {
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);
    tools(api).await;
    functions(api).await;
    check_state(api).await;
}

async fn tools(api: &Api) {
    let (status, body) = api.post("/tools", &seed_tool()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CREATED,
            json!({"message": "Tool created successfully", "tool_id": "tool-nlp-01"})
        )
    );
    let llm = json!({"tool_id": "tool-003", "tool_search_description": "This is a large language model tool.", "tool_type": "inference"});
    assert_eq!(api.post("/tools", &llm).await.0, StatusCode::CREATED);
    let (status, body) = api.post("/tools", &llm).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The seed's POST /tools/upload: spec.json + tool.zip + tool.md.
    let spec = json!({"tool_id": "tool-123", "tool_type": "extractor", "tool_tags": ["image"]});
    let bundle = zip(&[
        ("tool-123/spec.json", serde_json::to_vec(&spec).unwrap().as_slice()),
        ("tool-123/tool.zip", b"zip-of-code"),
        ("tool-123/tool.md", b"# tool 123"),
    ]);
    let (status, body) = api.upload("/tools/upload", bundle).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"message": "Tool uploaded successfully", "tool_id": "tool-123"}))
    );
    let (status, tool) = api.get("/tools/tool-123").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tool.as_object().unwrap().len(), 16, "{tool}");
    assert_eq!(tool["tool_man_page_doc"], "# tool 123");
    let link = tool["tool_source_code_link"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/blobs/", api.base)), "{link}");
    assert_eq!(api.bytes(link).await, (StatusCode::OK, b"zip-of-code".to_vec()));

    // The seed's query examples.
    let q = |path: &'static str| async move { ids(&api.get(path).await.1, "tool_id") };
    assert_eq!(q("/tools/query/by-type?type=extractor").await, ["tool-123", "tool-nlp-01"]);
    assert_eq!(q("/tools/query/by-tag?tag=nlp").await, ["tool-nlp-01"]);
    // Search follows the store within moments, not within the write: wait, boundedly.
    eventually_ids(api, "/tools/query/by-keyword?keyword=model", "tool_id", &["tool-003"]).await;
    let phrase = "/tools/query/by-keyword?keyword=large%20language%20model";
    assert_eq!(q(phrase).await, ["tool-003"]);
    let (status, hits) = api.get("/search?q=entities&kind=tools").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hits[0]["kind"], "tool");
    assert_eq!(hits[0]["id"], "tool-nlp-01");
    assert!(hits[0]["score"].as_f64().unwrap() > 0.0);
    assert!(hits[0]["snippet"].as_str().unwrap().contains("<b>entities</b>"), "{hits}");
    assert_eq!(q("/tools/query/by-execution-mode?mode=batch").await, ["tool-nlp-01"]);
    assert_eq!(
        q("/tools/query/by-policy-uri?uri=policies://validate/compliance").await,
        ["tool-nlp-01"]
    );
    assert_eq!(q("/tools?limit=2").await, ["tool-003", "tool-123"]);
    assert_eq!(q("/tools?offset=2").await, ["tool-nlp-01"]);
    let (status, body) = api
        .post("/tools/query/generic", &json!({"tool_type": "extractor", "tool_tags": "nlp"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body, "tool_id"), ["tool-nlp-01"]);
    let (status, body) = api.post("/tools/query/generic", &json!({"$where": "1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("$where"));

    // The seed's update example, then delete.
    let update = json!({"tool_type": "transformer", "tool_tags": ["ai", "image"]});
    let (status, body) = api.put("/tools/tool-123", &update).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Tool updated successfully"})));
    assert_eq!(q("/tools/query/by-tag?tag=ai").await, ["tool-123"]);
    assert_eq!(q("/tools/query/by-type?type=extractor").await, ["tool-nlp-01"]);
    let (status, body) = api.delete("/tools/tool-123").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Tool deleted successfully"})));
    assert!(q("/tools/query/by-tag?tag=ai").await.is_empty());
}

async fn functions(api: &Api) {
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
    let (status, body) = api.post("/functions", &f).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CREATED,
            json!({"message": "Function created successfully", "function_id": "predict_abc_v2"})
        )
    );
    let bundle = zip(&[
        ("spec.json", br#"{"function_id": "function_xyz", "function_type": "utility", "is_system_action": true}"#),
        ("function.zip", b"function-code"),
        ("function.md", b"# xyz"),
    ]);
    let (status, body) = api.upload("/functions/upload", bundle).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Function uploaded successfully", "function_id": "function_xyz"})
        )
    );

    let q = |path: &'static str| async move { ids(&api.get(path).await.1, "function_id") };
    assert_eq!(q("/functions").await, ["function_xyz", "predict_abc_v2"]);
    assert_eq!(q("/functions/query/by-type?type=utility").await, ["function_xyz"]);
    assert_eq!(q("/functions/query/by-tag?tag=analytics").await, ["predict_abc_v2"]);
    let keyword = "/functions/query/by-keyword?keyword=FORECAST";
    eventually_ids(api, keyword, "function_id", &["predict_abc_v2"]).await;
    assert_eq!(q("/functions/query/by-system-flag?is_system=true").await, ["function_xyz"]);
    assert_eq!(q("/functions/query/by-system-flag?is_system=false").await, ["predict_abc_v2"]);
    let filter = json!({"function_metadata.owner": "teamX", "function_type": "model"});
    let (_, body) = api.post("/functions/query/generic", &filter).await;
    assert_eq!(ids(&body, "function_id"), ["predict_abc_v2"]);

    let update =
        json!({"function_metadata": {"owner": "teamY"}, "function_tags": ["tag1", "tag2"]});
    let (status, body) = api.put("/functions/predict_abc_v2", &update).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"message": "Function updated successfully"}))
    );
    let (_, body) = api.get("/functions/predict_abc_v2").await;
    assert_eq!(body["function_metadata"], json!({"owner": "teamY"}));
    assert_eq!(body["function_api_spec"], json!({"horizon": "number"}), "fields not named stay");
    let (status, body) = api.delete("/functions/predict_abc_v2").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"message": "Function deleted successfully"}))
    );
}

/// Polls `path` until its records' `field`s are `expected` (at most [`EVENTUALLY`]).
pub async fn eventually_ids(api: &Api, path: &str, field: &str, expected: &[&str]) {
    until(path, EVENTUALLY, async || {
        let found = ids(&api.get(path).await.1, field);
        if found == expected { Ok(()) } else { Err(found) }
    })
    .await
}

/// Polls `path` until `check` holds of its body (at most [`EVENTUALLY`]) and returns the body.
pub async fn eventually(
    api: &Api,
    path: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    until(path, EVENTUALLY, async || {
        let (_, body) = api.get(path).await;
        if check(&body) { Ok(body) } else { Err(body) }
    })
    .await
}

/// The state [`every_route`] leaves, checked record by record and through the indexes.
pub async fn check_state(api: &Api) {
    let (status, tool) = api.get("/tools/tool-nlp-01").await;
    assert_eq!(status, StatusCode::OK);
    for (field, value) in seed_tool().as_object().unwrap() {
        assert_eq!(&tool[field], value, "{field}");
    }
    let (status, body) = api.get("/tools/tool-123").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "tool 'tool-123' not found"}))
    );
    let walked = json!({"tool_id": {"$regex": "^tool-"}});
    let (_, body) = api.post("/tools/query/generic", &walked).await;
    assert_eq!(ids(&body, "tool_id"), ["tool-003", "tool-nlp-01"]);
    assert_eq!(ids(&api.get("/tools/query/by-tag?tag=nlp").await.1, "tool_id"), ["tool-nlp-01"]);
    assert!(ids(&api.get("/tools/query/by-tag?tag=image").await.1, "tool_id").is_empty());

    // The search index agrees with the store (it caught up, or was rebuilt, after a restart).
    eventually_ids(api, "/tools/query/by-keyword?keyword=entities", "tool_id", &["tool-nlp-01"])
        .await;
    let (status, hits) = api.get("/search?q=tool&kind=all&limit=10").await;
    assert_eq!(status, StatusCode::OK);
    let found = ids(&hits, "id");
    assert!(
        found.iter().any(|id| id == "tool-003") && found.iter().any(|id| id == "tool-nlp-01"),
        "{hits}"
    );
    assert!(!found.iter().any(|id| id == "tool-123"), "a deleted tool is not found: {hits}");

    let (status, xyz) = api.get("/functions/function_xyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(xyz.as_object().unwrap().len(), 13, "{xyz}");
    assert_eq!(xyz["function_man_page_doc"], "# xyz");
    let link = xyz["function_source_code_link"].as_str().unwrap();
    let sha = link.rsplit('/').next().unwrap();
    assert_eq!(
        api.bytes(&api.url(&format!("/blobs/{sha}"))).await,
        (StatusCode::OK, b"function-code".to_vec())
    );
    assert_eq!(api.get("/functions/predict_abc_v2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(ids(&api.get("/functions").await.1, "function_id"), ["function_xyz"]);
}
