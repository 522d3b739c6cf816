//! Tools and functions: CRUD, queries, uploads.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::{app, error_of};
use gridnode_tests::bundle::zip;

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
    let blob = app.api.bytes(&app.api.url(&format!("/blobs/{sha}"))).await;
    assert_eq!(blob, (StatusCode::OK, b"PK-pretend-code".to_vec()));
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
    assert!(app.store().get_blob(&gridnode_store::sha256_hex(&code)).unwrap().is_none());
    assert_eq!(app.store().last_seq(), app.start_seq, "nothing was written at all");
}

/// Reads answer from answers rendered once per version: every write shows at once.
#[tokio::test]
async fn rendered_answers_follow_every_write() {
    let app = app().await;
    let tool = json!({"tool_id": "cached", "tool_type": "a", "tool_tags": ["t1"]});
    assert_eq!(app.json("POST", "/tools", &tool).await.0, StatusCode::CREATED);
    for _ in 0..2 {
        let (status, body) = app.get("/tools/cached").await;
        assert_eq!((status, &body["tool_type"]), (StatusCode::OK, &json!("a")));
    }
    let (_, tagged) = app.get("/tools/query/by-tag?tag=t1").await;
    assert_eq!(tagged[0]["tool_type"], "a");

    let patch = json!({"tool_type": "b", "tool_tags": ["t2"]});
    assert_eq!(app.json("PUT", "/tools/cached", &patch).await.0, StatusCode::OK);
    assert_eq!(app.get("/tools/cached").await.1["tool_type"], "b");
    assert_eq!(app.get("/tools/query/by-tag?tag=t1").await.1, json!([]));
    assert_eq!(app.get("/tools/query/by-tag?tag=t2").await.1[0]["tool_type"], "b");

    // A write elsewhere moves the store on: the answer is confirmed by its version, unchanged.
    let other = json!({"tool_id": "other"});
    assert_eq!(app.json("POST", "/tools", &other).await.0, StatusCode::CREATED);
    assert_eq!(app.get("/tools/cached").await.1["tool_type"], "b");

    assert_eq!(app.call("DELETE", "/tools/cached", None, vec![]).await.0, StatusCode::OK);
    let (status, body) = app.get("/tools/cached").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&body), "tool 'cached' not found");
    let again = json!({"tool_id": "cached", "tool_type": "c"});
    assert_eq!(app.json("POST", "/tools", &again).await.0, StatusCode::CREATED);
    assert_eq!(app.get("/tools/cached").await.1["tool_type"], "c");
    // Same content type as any other answer.
    let (status, body) = app.get("/tools/query/by-type?type=c").await;
    assert_eq!((status, body.as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
}
