//! The node-local tool records (contract section 6): `GET /cluster-tools`,
//! `GET /cluster-tools/{node_id}`, `GET /cluster-tools/{node_id}/{name}`. These routes keep the
//! seed's envelope: errors are `{"success": false, "error": …}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gridnode_store::ClusterLocalTool;
use serde_json::{Value, json};

use super::AppState;
use super::error::status_of;
use super::extract::Params;
use crate::error::Error;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cluster-tools", get(all))
        .route("/cluster-tools/{node_id}", get(of_node))
        .route("/cluster-tools/{node_id}/{name}", get(one))
}

/// An error in the seed's cluster-tools envelope.
struct Envelope(Error);

impl From<Error> for Envelope {
    fn from(error: Error) -> Self {
        Envelope(error)
    }
}

impl IntoResponse for Envelope {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        (status, Json(json!({ "success": false, "error": self.0.to_string() }))).into_response()
    }
}

type Result<T> = std::result::Result<T, Envelope>;

async fn all(
    State(app): State<AppState>,
    params: std::result::Result<Params, Error>,
) -> Result<Json<Vec<Value>>> {
    let records = app.registry.cluster_tools(None, params?.page()?).await?;
    Ok(Json(records.into_iter().map(with_liveness).collect()))
}

async fn of_node(
    State(app): State<AppState>,
    Path(node_id): Path<String>,
    params: std::result::Result<Params, Error>,
) -> Result<Json<Vec<Value>>> {
    let records = app.registry.cluster_tools(Some(node_id), params?.page()?).await?;
    Ok(Json(records.into_iter().map(with_liveness).collect()))
}

async fn one(
    State(app): State<AppState>,
    Path((node_id, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    Ok(Json(with_liveness(app.registry.cluster_tool(node_id, name).await?)))
}

/// A record with its `alive` flag. Every known node counts as alive until the federation
/// gossips liveness (contract section 9).
fn with_liveness(record: ClusterLocalTool) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Value::Object(fields) = &mut value {
        fields.insert("alive".into(), Value::Bool(true));
    }
    value
}
