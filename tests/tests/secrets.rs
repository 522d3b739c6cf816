//! Write-only credentials (contract section 14) on a real node: no read shows them (REST, lists,
//! queries, search, GraphQL, the audit log), filters and selectors on them are refused, a record
//! read and written back whole keeps them, the store holds them sealed, and plain values from
//! an older build are sealed at start.

use gridnode_store::{RegistryEntry, Store, StoreConfig, ToolEntry};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "hunter2-api-key";

#[tokio::test]
async fn credentials_are_write_only_and_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = gridnode_tests::node(dir.path(), "sealer").start().await;
    let tool = json!({
        "tool_id": "with-creds",
        "tool_type": "remote",
        "tool_search_description": "a tool with a key",
        "default_tool_usage_credentials": {"api_key": SECRET, "region": "eu"},
    });
    assert_eq!(api.post("/tools", &tool).await.0, StatusCode::CREATED);
    let function =
        json!({"function_id": "f-creds", "default_func_usage_credentials": {"k": SECRET}});
    assert_eq!(api.post("/functions", &function).await.0, StatusCode::CREATED);

    let redacted = json!({"api_key": "<redacted>", "region": "<redacted>"});
    let (_, one) = api.get("/tools/with-creds").await;
    assert_eq!(one["default_tool_usage_credentials"], redacted);
    let mut reads: Vec<Value> = Vec::new();
    for path in [
        "/tools",
        "/tools/with-creds?provenance=true",
        "/tools/query/by-keyword?keyword=key",
        "/functions",
        "/functions/f-creds",
        "/search?q=key",
        "/audit",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        reads.push(body);
    }
    let (_, queried) = api.post("/tools/query/generic", &json!({"filter": {}})).await;
    reads.push(queried);
    let query = "{ tools(query: {}) { tool_id default_tool_usage_credentials } \
                 functions(query: {}) { function_id default_func_usage_credentials } }";
    let (_, graphql) = api.post("/graphql", &json!({ "query": query })).await;
    assert_eq!(graphql["data"]["tools"][0]["default_tool_usage_credentials"], redacted);
    reads.push(graphql);
    for read in &reads {
        assert!(!read.to_string().contains(SECRET), "{read}");
        assert!(!read.to_string().contains("gnsealed"), "{read}");
    }

    // They cannot be guessed through filters or selectors.
    for filter in [
        json!({"default_tool_usage_credentials.api_key": {"$regex": "^h"}}),
        json!({"$or": [{"default_tool_usage_credentials.api_key": SECRET}]}),
    ] {
        let (status, body) = api.post("/tools/query/generic", &json!({ "filter": filter })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains("write-only"), "{body}");
    }
    let selector =
        json!({"selector": {"filter": {"default_tool_usage_credentials.api_key": SECRET}}});
    let (status, body) = api.post("/tools/select", &selector).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Read, edited and written back whole: the credentials are kept, not replaced by the mask.
    let stored = |node: &gridnode::Node| {
        node.registry().store().get::<ToolEntry>("with-creds").unwrap().credentials().clone()
    };
    let before = stored(&node);
    assert!(before.values().all(|v| v.as_str().unwrap().starts_with("gnsealed:1:")));
    let mut edited = one.clone();
    edited["tool_search_description"] = "edited".into();
    let (status, body) = api.put("/tools/with-creds", &edited).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stored(&node), before);
    let masked_new_key = json!({"default_tool_usage_credentials": {"other": "<redacted>"}});
    let (status, body) = api.put("/tools/with-creds", &masked_new_key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(stored(&node), before, "a refused update changed nothing");
    // Credentials go only to the code they were given with: pointing the tool elsewhere needs
    // them sent again (masked values do not carry over).
    let elsewhere = json!({"tool_service_url": "http://tools.example/other"});
    let (status, body) = api.put("/tools/with-creds", &elsewhere).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("send default_tool_usage_credentials again"));
    let mut masked = elsewhere.clone();
    masked["default_tool_usage_credentials"] = json!({"api_key": "<redacted>"});
    assert_eq!(api.put("/tools/with-creds", &masked).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(stored(&node), before, "refused updates changed nothing");
    node.shutdown().await.unwrap();

    // A value stored in plain text (by an older build) is sealed when the node first starts
    // with this one.
    let old = gridnode_tests::node(dir.path(), "upgraded").into_config();
    {
        let store = Store::open(&StoreConfig::new(old.store_dir(), "upgraded")).unwrap();
        let mut tool: ToolEntry = serde_json::from_value(json!({"tool_id": "legacy"})).unwrap();
        tool.default_tool_usage_credentials.insert("legacy".into(), SECRET.into());
        store.put(&tool).unwrap();
        store.sync().unwrap();
    }
    let (node, api) = gridnode_tests::node(dir.path(), "upgraded").start().await;
    let sealed = node.registry().store().get::<ToolEntry>("legacy").unwrap().credentials().clone();
    assert!(sealed["legacy"].as_str().unwrap().starts_with("gnsealed:1:"), "{sealed:?}");
    let (_, one) = api.get("/tools/legacy").await;
    assert_eq!(one["default_tool_usage_credentials"]["legacy"], "<redacted>");
    node.shutdown().await.unwrap();
}
