//! The node-local tool records (contract section 6): `GET /cluster-tools`,
//! `GET /cluster-tools/{node_id}`, `GET /cluster-tools/{node_id}/{name}`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use gridnode_store::ClusterLocalTool;
use serde_json::Value;

use super::AppState;
use super::extract::Params;
use crate::error::Result;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cluster-tools", get(all))
        .route("/cluster-tools/{node_id}", get(of_node))
        .route("/cluster-tools/{node_id}/{name}", get(one))
}

async fn all(State(app): State<AppState>, params: Params) -> Result<Json<Vec<Value>>> {
    let records = app.registry.cluster_tools(None, params.page()?).await?;
    Ok(Json(records.into_iter().map(with_liveness).collect()))
}

async fn of_node(
    State(app): State<AppState>,
    Path(node_id): Path<String>,
    params: Params,
) -> Result<Json<Vec<Value>>> {
    let records = app.registry.cluster_tools(Some(node_id), params.page()?).await?;
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
