//! Members and provenance.

use axum::http::StatusCode;
use serde_json::json;

use crate::{app, error_of};

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
    app.store().put(&hosted).unwrap();
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
