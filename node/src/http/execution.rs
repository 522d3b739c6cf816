//! Execute by id, selection, actions, org allow-lists and the audit log (contract section 11).
//! Execute routes answer in the cluster-tools envelope; selection errors in the seed's
//! `{"success": false, "error"}`; the rest in the usual `{"error"}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use gridnode_store::{Action, AllowList, AuditEntry, Collection, JsonMap};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::access::written;
use super::cluster_tools::{Envelope, ExecuteEnvelope, respond};
use super::extract::{JsonBody, OrgHeader, Params};
use crate::error::{Error, Result};
use crate::runtime::Input;
use crate::service::acl::Principal;
use crate::service::execution::Target;
use crate::service::selection::{Choice, Scope};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/tools/{id}/execute",
            post(|state, id, org, body| execute_by_id(Collection::Tools, state, id, org, body)),
        )
        .route(
            "/functions/{id}/execute",
            post(|state, id, org, body| execute_by_id(Collection::Functions, state, id, org, body)),
        )
        .route("/tools/select", post(select_tool))
        .route("/actions", get(list_actions).post(create_action))
        .route("/actions/{org}/{action_type}", get(get_action).delete(delete_action))
        .route("/actions/{org}/{action_type}/select", post(select_in_action))
        .route("/actions/{org}/{action_type}/execute", post(execute_action))
        .route(
            "/orgs/{org}/allowed-tools",
            get(get_allowed).put(put_allowed).delete(delete_allowed),
        )
        .route("/audit", get(audit))
}

type Body<T> = std::result::Result<JsonBody<T>, Error>;
type Org = std::result::Result<OrgHeader, Error>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteRequest {
    input: Value,
    #[serde(default)]
    org_id: Option<String>,
}

/// `POST /tools/{id}/execute` and `POST /functions/{id}/execute`: loads the tool on demand,
/// checks the input, runs it.
async fn execute_by_id(
    registry: Collection,
    State(app): State<AppState>,
    Path(id): Path<String>,
    org: Org,
    body: Body<ExecuteRequest>,
) -> std::result::Result<Response, ExecuteEnvelope> {
    let request = body?.0;
    let acting = org?.with_body(request.org_id)?;
    let caller = acting.caller();
    let input = Input::from_json(request.input);
    let target = match registry {
        Collection::Functions => Target::Function(&id),
        _ => Target::Tool(&id),
    };
    Ok(respond(app.execution.call(caller, target, input).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectRequest {
    #[serde(default)]
    search_parameters: JsonMap,
    selector: Value,
    #[serde(default)]
    org_id: Option<String>,
}

/// `POST /tools/select`: the best registry tool for a selector.
async fn select_tool(
    State(app): State<AppState>,
    org: Org,
    body: Body<SelectRequest>,
) -> std::result::Result<Json<Value>, Envelope> {
    let request = body?.0;
    let org = org?.with_body(request.org_id)?.org;
    let choice = app
        .selection
        .select(Scope::All, &request.selector, &request.search_parameters, org.as_deref())
        .await?;
    Ok(Json(chosen(choice)))
}

fn chosen(choice: Choice) -> Value {
    json!({
        "tool_id": choice.tool_ids[0],
        "tool_ids": choice.tool_ids,
        "explanation": choice.explanation,
    })
}

/// `POST /actions`.
async fn create_action(
    State(app): State<AppState>,
    org: Org,
    body: Body<Value>,
) -> Result<Response> {
    let action = app.actions.create(body?.0, org?.0.as_deref()).await?;
    let id = gridnode_store::Record::id(&action).into_owned();
    let body = json!({
        "message": "Action created successfully",
        "action_type": action.action_type,
        "mapping_org_id": action.mapping_org_id,
    });
    Ok(written((StatusCode::CREATED, Json(body)), id))
}

/// `GET /actions?org=&limit=&offset=`: every action, or one org's (the `X-Org-Id` header's
/// when it is given).
async fn list_actions(
    State(app): State<AppState>,
    org: Org,
    params: std::result::Result<Params, Error>,
) -> Result<Json<Vec<Action>>> {
    let params = params?;
    let org = org?.with_body(params.0.get("org").cloned())?.org;
    Ok(Json(app.actions.list(org, params.page()?).await?))
}

async fn get_action(
    State(app): State<AppState>,
    Path((org, action_type)): Path<(String, String)>,
    caller: Org,
    params: Params,
) -> Result<Json<Value>> {
    let action = app.actions.get(&org, &action_type, caller?.0.as_deref()).await?;
    let key = gridnode_store::Record::id(&action).into_owned();
    Ok(Json(params.with_provenance(
        action,
        &app.registry,
        gridnode_store::Collection::Actions,
        &key,
    )?))
}

async fn delete_action(
    State(app): State<AppState>,
    Path((org, action_type)): Path<(String, String)>,
    caller: Org,
) -> Result<Json<Value>> {
    app.actions.delete(&org, &action_type, caller?.0.as_deref()).await?;
    Ok(Json(json!({ "message": "Action deleted successfully" })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSelectRequest {
    #[serde(default)]
    search_parameters: JsonMap,
}

/// `POST /actions/{org}/{action_type}/select`.
async fn select_in_action(
    State(app): State<AppState>,
    Path((org, action_type)): Path<(String, String)>,
    caller: Org,
    body: Body<ActionSelectRequest>,
) -> std::result::Result<Json<Value>, Envelope> {
    let request = body?.0;
    let choice = app
        .actions
        .select(&org, &action_type, &request.search_parameters, caller?.0.as_deref())
        .await?;
    Ok(Json(chosen(choice)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionExecuteRequest {
    input: Value,
    #[serde(default)]
    search_parameters: JsonMap,
}

/// `POST /actions/{org}/{action_type}/execute`: select, then run; the answer names the tool.
async fn execute_action(
    State(app): State<AppState>,
    Path((org, action_type)): Path<(String, String)>,
    caller: Org,
    body: Body<ActionExecuteRequest>,
) -> std::result::Result<Response, ExecuteEnvelope> {
    let request = body?.0;
    let acting = caller?.acting();
    let caller = acting.caller();
    let params = &request.search_parameters;
    let target = Target::Action { org: &org, action_type: &action_type, params };
    Ok(respond(app.execution.call(caller, target, Input::from_json(request.input)).await?))
}

/// `GET /orgs/{org}/allowed-tools`.
async fn get_allowed(
    State(app): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    params: Params,
) -> Result<Json<Value>> {
    principal.acting_org(Some(org.clone()))?;
    let list: AllowList = app.orgs.get(org.clone()).await?;
    if !params.provenance()? {
        return Ok(Json(json!(list.allowed_tools)));
    }
    // An allow-list is a bare array: with its provenance it becomes an object.
    let provenance = app.registry.provenance(gridnode_store::Collection::AllowLists, &org)?;
    Ok(Json(json!({ "allowed_tools": list.allowed_tools, "provenance": provenance })))
}

/// `PUT /orgs/{org}/allowed-tools` with `["tool id or cluster tool name", …]`.
async fn put_allowed(
    State(app): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    body: Body<Vec<String>>,
) -> Result<Json<Value>> {
    principal.acting_org(Some(org.clone()))?;
    let tools = body?.0;
    let count = tools.len();
    app.orgs.put(org.clone(), tools).await?;
    Ok(Json(json!({ "message": "Allow-list updated", "org_id": org, "count": count })))
}

/// `DELETE /orgs/{org}/allowed-tools`: the org may use every tool again.
async fn delete_allowed(
    State(app): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<Json<Value>> {
    principal.acting_org(Some(org.clone()))?;
    app.orgs.delete(org).await?;
    Ok(Json(json!({ "message": "Allow-list deleted" })))
}

/// `GET /audit?limit=&org=&tool=`: this node's executions, newest first.
async fn audit(
    State(app): State<AppState>,
    principal: Principal,
    params: std::result::Result<Params, Error>,
) -> Result<Json<Vec<AuditEntry>>> {
    let params = params?;
    // A bound admin reads its own org's entries only.
    let org = principal.acting_org(params.text("org").filter(|org| !org.is_empty()))?;
    let tool = params.text("tool");
    let entries = app.audit.entries(org, tool, params.number("limit")?, params.number("offset")?);
    Ok(Json(entries.await?))
}
