//! GraphQL through a real HTTP client against a node started in-process: the seeds' example
//! queries verbatim, search, and hostile queries refused cleanly.

use gridnode::Node;
use gridnode_tests::EVENTUALLY;
use gridnode_tests::api::Api;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(dir: &tempfile::TempDir) -> (Node, Api) {
    gridnode_tests::node(dir.path(), "node-g").start().await
}

async fn graphql(api: &Api, path: &str, query: &str, variables: Value) -> Value {
    let (status, body) = api.post(path, &json!({"query": query, "variables": variables})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn errors(body: &Value) -> String {
    body["errors"].as_array().map(|e| format!("{e:?}")).unwrap_or_default()
}

async fn seed_records(api: &Api) {
    for tool in [
        json!({"tool_id": "tool-nlp-01", "tool_type": "extractor", "tool_tags": ["nlp", "text"],
               "tool_search_description": "A tool for extracting named entities.",
               "tool_metadata": {"language": "en", "version": "v1.0"},
               "tool_source_code_link": "http://ceph.local:9000/tools-assets/tool-nlp-01/tool.zip"}),
        json!({"tool_id": "tool-img", "tool_type": "extractor", "tool_tags": ["image"]}),
    ] {
        assert_eq!(api.post("/tools", &tool).await.0, StatusCode::CREATED);
    }
    for function in [
        json!({"function_id": "predict_abc_v2", "function_type": "model",
               "function_tags": ["analytics", "forecast"], "function_api_spec": {"horizon": "number"},
               "api_parameters_to_cost_relation_data": {"per_call": 0.1},
               "function_search_description": "forecast demand"}),
        json!({"function_id": "util-1", "function_type": "utility", "function_tags": ["text"],
               "function_metadata": {"owner": "teamX"}}),
    ] {
        assert_eq!(api.post("/functions", &function).await.0, StatusCode::CREATED);
    }
}

#[tokio::test]
async fn the_seeds_example_queries_work_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = start(&dir).await;
    seed_records(&api).await;

    let tools = r#"query {
  tools(query: { tool_type: "extractor", tool_tags: "nlp" }) {
    tool_id
    tool_type
    tool_tags
    tool_search_description
    tool_metadata
    tool_source_code_link
  }
}"#;
    let body = graphql(&api, "/graphql", tools, Value::Null).await;
    assert_eq!(
        body,
        json!({"data": {"tools": [{
            "tool_id": "tool-nlp-01",
            "tool_type": "extractor",
            "tool_tags": ["nlp", "text"],
            "tool_search_description": "A tool for extracting named entities.",
            "tool_metadata": {"language": "en", "version": "v1.0"},
            "tool_source_code_link": "http://ceph.local:9000/tools-assets/tool-nlp-01/tool.zip"
        }]}})
    );

    let utility = r#"query { functions(query: { function_type: "utility" }) { function_id function_tags function_metadata } }"#;
    let body = graphql(&api, "/functions/graphql", utility, Value::Null).await;
    assert_eq!(
        body["data"]["functions"],
        json!([{"function_id": "util-1", "function_tags": ["text"], "function_metadata": {"owner": "teamX"}}])
    );
    let analytics = r#"query { functions(query: { function_tags: "analytics" }) { function_id function_type function_search_description } }"#;
    let body = graphql(&api, "/functions/graphql", analytics, Value::Null).await;
    assert_eq!(body["data"]["functions"][0]["function_id"], "predict_abc_v2");
    let by_id = r#"query { functions(query: { function_id: "predict_abc_v2" }) { function_id function_api_spec api_parameters_to_cost_relation_data } }"#;
    let body = graphql(&api, "/functions/graphql", by_id, Value::Null).await;
    assert_eq!(
        body["data"]["functions"],
        json!([{"function_id": "predict_abc_v2", "function_api_spec": {"horizon": "number"},
                "api_parameters_to_cost_relation_data": {"per_call": 0.1}}])
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn single_records_search_variables_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = start(&dir).await;
    seed_records(&api).await;

    let one = r#"{ tool(id: "tool-img") { tool_id tool_tags default_tool_usage_credentials } missing: tool(id: "nope") { tool_id } function(id: "util-1") { is_system_action } }"#;
    let body = graphql(&api, "/graphql", one, Value::Null).await;
    assert_eq!(
        body["data"],
        json!({"tool": {"tool_id": "tool-img", "tool_tags": ["image"], "default_tool_usage_credentials": {}},
               "missing": null, "function": {"is_system_action": false}})
    );

    // A filter through variables, with an operator; and the refused ones.
    let q = "query($q: JSON!) { tools(query: $q, limit: 1) { tool_id } }";
    let body =
        graphql(&api, "/graphql", q, json!({"q": {"tool_id": {"$in": ["tool-img", "x"]}}})).await;
    assert_eq!(body["data"]["tools"], json!([{"tool_id": "tool-img"}]));
    for (filter, needle) in [
        (json!({"$where": "sleep(1)"}), "$where"),
        (json!({"tool_id": {"$expr": 1}}), "$expr"),
        (json!(["not", "an", "object"]), "object"),
    ] {
        let body = graphql(&api, "/graphql", q, json!({ "q": filter })).await;
        assert!(errors(&body).contains(needle), "{filter}: {body}");
    }
    let body =
        graphql(&api, "/graphql", "{ tools(query: {}, limit: 5000) { tool_id } }", Value::Null)
            .await;
    assert!(errors(&body).contains("limit"), "{body}");

    // Search follows the store; wait for it, boundedly.
    let search =
        r#"{ search(text: "entities", kind: "tools", limit: 5) { kind id score snippet } }"#;
    let deadline = std::time::Instant::now() + EVENTUALLY;
    let hits = loop {
        let body = graphql(&api, "/graphql", search, Value::Null).await;
        let hits = body["data"]["search"].clone();
        if hits.as_array().is_some_and(|h| !h.is_empty()) || std::time::Instant::now() > deadline {
            break hits;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(hits[0]["kind"], "tool");
    assert_eq!(hits[0]["id"], "tool-nlp-01");
    assert!(hits[0]["snippet"].as_str().unwrap().contains("<b>entities</b>"));
    let bad = graphql(&api, "/graphql", r#"{ search(text: "\"open") { id } }"#, Value::Null).await;
    assert!(errors(&bad).contains("invalid search query"), "{bad}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn hostile_queries_are_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = start(&dir).await;
    seed_records(&api).await;

    // GraphiQL's own introspection depth is allowed.
    let introspection = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } }";
    let body = graphql(&api, "/graphql", introspection, Value::Null).await;
    assert!(body["errors"].is_null(), "{body}");

    let nested = |levels: usize| {
        let mut deep = String::from("name");
        for _ in 0..levels {
            deep = format!("ofType {{ {deep} }}");
        }
        format!("{{ __schema {{ types {{ {deep} }} }} }}")
    };
    let body = graphql(&api, "/graphql", &nested(20), Value::Null).await;
    assert!(errors(&body).contains("nested too deep"), "{body}");
    // Deeper still, the parser's own limits stop it before anything else looks at it.
    for levels in [40, 5000] {
        let body = graphql(&api, "/graphql", &nested(levels), Value::Null).await;
        assert!(body["data"].is_null() && !errors(&body).is_empty(), "{levels} levels not refused");
    }

    let aliases: String =
        (0..2000).map(|i| format!("a{i}: tools(query: {{}}) {{ tool_id }} ")).collect();
    let body = graphql(&api, "/graphql", &format!("{{ {aliases} }}"), Value::Null).await;
    assert!(
        errors(&body).contains("too complex"),
        "{}",
        &errors(&body)[..200.min(errors(&body).len())]
    );

    // A far offset costs the records it skips: refused before any is read.
    let far = "{ tools(query: {}, limit: 1, offset: 1000000) { tool_id } }";
    let body = graphql(&api, "/graphql", far, Value::Null).await;
    assert!(errors(&body).contains("too complex"), "{body}");
    let near = "{ tools(query: {}, limit: 1, offset: 100) { tool_id } }";
    let body = graphql(&api, "/graphql", near, Value::Null).await;
    assert!(errors(&body).is_empty(), "{body}");

    // Deeply nested input values, far past the parser's own limits.
    let list = format!("{}1{}", "[".repeat(200_000), "]".repeat(200_000));
    let body = graphql(
        &api,
        "/graphql",
        &format!("{{ tools(query: {list}) {{ tool_id }} }}"),
        Value::Null,
    )
    .await;
    assert!(body["data"].is_null() && !errors(&body).is_empty(), "nested input not refused");

    let (status, body) = api
        .send(
            api.client
                .post(api.url("/graphql"))
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("malformed json"));
    let body =
        graphql(&api, "/graphql", "{ tools(query: {}) { no_such_field } }", Value::Null).await;
    assert!(!errors(&body).is_empty());
    let body = graphql(&api, "/graphql", "{ unclosed", Value::Null).await;
    assert!(!errors(&body).is_empty());

    let page = api.client.get(api.url("/graphql")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().to_lowercase().contains("graphiql"));
    let body =
        graphql(&api, "/graphql", "{ tool(id: \"tool-img\") { tool_id } }", Value::Null).await;
    assert_eq!(body["data"]["tool"]["tool_id"], "tool-img");
    node.shutdown().await.unwrap();
}
