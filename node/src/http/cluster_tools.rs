//! The node-local tool routes (contract section 6): listing, registration of outside nodes'
//! tools, resolve and execute. These routes keep the seed's envelope: errors are
//! `{"success": false, "error": …}`, and execute's always carry `output` and `metadata` too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use gridnode_store::JsonMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::access::written;
use super::error::status_of;
use super::extract::{JsonBody, OrgHeader, Params};
use crate::error::Error;
use crate::runtime::{CallOutcome, Input};
use crate::service::execution::{Answer, Target};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cluster-tools", get(all).post(register))
        // The seed's SDK syncs to `<registry>/tools` and `<registry>/tools/{name}/{node_id}`.
        .route("/cluster-tools/tools", post(register))
        .route("/cluster-tools/tools/{name}/{node_id}", delete(remove_by_name))
        .route("/cluster-tools/resolve", post(resolve))
        .route("/cluster-tools/execute", post(execute))
        .route("/cluster-tools/{node_id}", get(of_node))
        .route("/cluster-tools/{node_id}/{name}", get(one).put(update).delete(remove))
}

/// An error in the seed's cluster-tools envelope: `{"success": false, "error": …}`.
pub(super) struct Envelope(pub(super) Error);

/// An execute error: the seed's full response shape, with `output` and `metadata` too.
pub(super) struct ExecuteEnvelope(pub(super) Error);

impl From<Error> for Envelope {
    fn from(error: Error) -> Self {
        Envelope(error)
    }
}

impl From<Error> for ExecuteEnvelope {
    fn from(error: Error) -> Self {
        ExecuteEnvelope(error)
    }
}

impl IntoResponse for Envelope {
    fn into_response(self) -> Response {
        failure(&self.0, json!({}))
    }
}

impl IntoResponse for ExecuteEnvelope {
    fn into_response(self) -> Response {
        failure(&self.0, json!({ "output": null, "metadata": {} }))
    }
}

/// `{"success": false, "error": …}` plus `fields`, with the error's status.
fn failure(error: &Error, mut fields: Value) -> Response {
    let status = status_of(error);
    if status.is_server_error() {
        tracing::warn!(%error, %status, "cluster-tools request failed");
    }
    fields["success"] = Value::Bool(false);
    fields["error"] = Value::String(error.to_string());
    (status, Json(fields)).into_response()
}

type Result<T, E = Envelope> = std::result::Result<T, E>;
type Body<T> = std::result::Result<JsonBody<T>, Error>;

async fn all(
    State(app): State<AppState>,
    params: std::result::Result<Params, Error>,
) -> Result<Json<Vec<Value>>> {
    Ok(Json(app.cluster_tools.list(None, params?.page()?).await?))
}

async fn of_node(
    State(app): State<AppState>,
    Path(node_id): Path<String>,
    params: std::result::Result<Params, Error>,
) -> Result<Json<Vec<Value>>> {
    Ok(Json(app.cluster_tools.list(Some(node_id), params?.page()?).await?))
}

async fn one(
    State(app): State<AppState>,
    Path((node_id, name)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>> {
    let key = gridnode_store::ClusterLocalTool::key(&node_id, &name);
    let record = app.cluster_tools.get(node_id, name).await?;
    Ok(Json(params.with_provenance(
        record,
        &app.registry,
        gridnode_store::Collection::ClusterTools,
        &key,
    )?))
}

/// `POST /cluster-tools` (and `/cluster-tools/tools`): a tool of a node outside the federation.
async fn register(State(app): State<AppState>, body: Body<Value>) -> Result<Response> {
    let id = app.cluster_tools.register(body?.0).await?;
    Ok(written((StatusCode::CREATED, Json(json!({ "message": "Tool created" }))), id))
}

async fn update(
    State(app): State<AppState>,
    Path((node_id, name)): Path<(String, String)>,
    body: Body<JsonMap>,
) -> Result<Json<Value>> {
    app.cluster_tools.update(node_id, name, body?.0).await?;
    Ok(Json(json!({ "message": "Tool updated" })))
}

async fn remove(
    State(app): State<AppState>,
    Path((node_id, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    app.cluster_tools.remove(node_id, name).await?;
    Ok(Json(json!({ "message": "Tool deleted" })))
}

/// The seed SDK's spelling: name first, then node id.
async fn remove_by_name(
    state: State<AppState>,
    Path((name, node_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    remove(state, Path((node_id, name))).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveRequest {
    tool_name: String,
    #[serde(default)]
    node_id: Option<String>,
}

/// `POST /cluster-tools/resolve`: the node that would run the tool and its gRPC endpoint.
async fn resolve(State(app): State<AppState>, body: Body<ResolveRequest>) -> Result<Json<Value>> {
    let request = body?.0;
    let tool_name = required(&request.tool_name)?;
    let resolution = app.cluster_tools.resolve(tool_name, request.node_id.as_deref()).await?;
    Ok(Json(json!({
        "success": true, "endpoint": resolution.endpoint, "node_id": resolution.node_id
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteRequest {
    tool_name: String,
    input: Value,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    org_id: Option<String>,
}

/// `POST /cluster-tools/execute`: runs the tool on the best live node hosting it.
async fn execute(
    State(app): State<AppState>,
    org: std::result::Result<OrgHeader, Error>,
    body: Body<ExecuteRequest>,
) -> Result<Response, ExecuteEnvelope> {
    let request = body?.0;
    let acting = org?.with_body(request.org_id)?;
    let name = required(&request.tool_name)?;
    let target = Target::ClusterTool { name, pin: request.node_id.as_deref() };
    let caller = acting.caller();
    Ok(respond(app.execution.call(caller, target, Input::from_json(request.input)).await?))
}

/// The seed's execute answer: 200 when the tool succeeded, else 500; with the chosen tool's id
/// when a selection chose it.
pub(super) fn respond(answer: Answer) -> Response {
    let Answer { outcome: execution, tool_id } = answer;
    let status = if execution.success { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    let mut body = self::answer(execution);
    if let Some(id) = tool_id {
        body["tool_id"] = Value::String(id);
    }
    (status, Json(body)).into_response()
}

/// The seed's response: `output` parsed as JSON when it parses, else a string.
pub(super) fn answer(execution: CallOutcome) -> Value {
    let output = if execution.success {
        serde_json::from_slice(&execution.output)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&execution.output).into()))
    } else {
        Value::Null
    };
    json!({
        "success": execution.success,
        "output": output,
        "error": execution.error,
        "metadata": execution.metadata,
    })
}

fn required(tool_name: &str) -> Result<&str, Error> {
    if tool_name.is_empty() {
        return Err(Error::BadRequest("tool_name must not be empty".into()));
    }
    Ok(tool_name)
}
