//! Metrics and request ids.

use axum::http::StatusCode;
use serde_json::json;

use crate::app;

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
        let mut request = app.api.client.get(app.api.url("/healthz"));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let echoed = ask(Some("trace-42")).await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");
    let replaced = ask(Some("bad id\twith tabs")).await.unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id\twith tabs");
    let (first, second) = (ask(None).await.unwrap(), ask(None).await.unwrap());
    assert_ne!(first.headers()["x-request-id"], second.headers()["x-request-id"]);
}
