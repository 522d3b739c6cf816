//! The node-local tool records (contract section 6): `GET /cluster-tools`,
//! `GET /cluster-tools/{node_id}`, `GET /cluster-tools/{node_id}/{name}`. These routes keep the
//! seed's envelope: errors are `{"success": false, "error": …}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::status_of;
use super::extract::Params;
use crate::error::Error;
use crate::service::HostedTool;

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
    Ok(Json(records.into_iter().map(|r| with_liveness(&app, r)).collect()))
}

async fn of_node(
    State(app): State<AppState>,
    Path(node_id): Path<String>,
    params: std::result::Result<Params, Error>,
) -> Result<Json<Vec<Value>>> {
    let records = app.registry.cluster_tools(Some(node_id), params?.page()?).await?;
    Ok(Json(records.into_iter().map(|r| with_liveness(&app, r)).collect()))
}

async fn one(
    State(app): State<AppState>,
    Path((node_id, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let hosted = app.registry.cluster_tool(node_id, name).await?;
    Ok(Json(with_liveness(&app, hosted)))
}

/// A record with its `alive` flag (see [`crate::service::cluster::Cluster::is_alive`]).
fn with_liveness(app: &AppState, hosted: HostedTool) -> Value {
    let alive = app.cluster.is_alive(&hosted.record.node_id, &hosted.written_by);
    let mut value = serde_json::to_value(hosted.record).unwrap_or_default();
    if let Value::Object(fields) = &mut value {
        fields.insert("alive".into(), Value::Bool(alive));
    }
    value
}
