//! The REST API: thin axum handlers over the service layer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use gridnode_store::{FunctionEntry, ToolEntry};
use serde_json::json;

use crate::error::{Error, Result};
use crate::graphql::GraphSchema;
use crate::http::extract::{JsonBody, Params};
use crate::services::Services;

pub mod access;
pub mod acl;
pub mod bounds;
pub mod cluster_tools;
pub mod error;
pub mod execution;
pub mod extract;
pub mod observe;
pub mod origin;
pub mod registry;
pub mod serve;

/// What every handler can reach: the node's services.
pub type AppState = Arc<Services>;

/// The whole REST API.
pub fn router(state: AppState) -> Router {
    let limits = &state.registry.settings().limits;
    let max_json = limits.max_json_body_bytes as usize;
    let max_upload = limits.max_upload_bytes as usize;
    let schema = crate::graphql::schema(state.registry.clone());
    let graphql = move |request| graphql(schema.clone(), request);
    Router::new()
        .merge(registry::routes::<ToolEntry>(max_upload))
        .merge(registry::routes::<FunctionEntry>(max_upload))
        .merge(cluster_tools::routes())
        .merge(execution::routes())
        .merge(acl::routes())
        .route("/node", get(node))
        .route("/peers", get(peers))
        .route("/cluster/members", get(members))
        .route("/cluster/members/{node_id}", axum::routing::delete(forget))
        .route("/blobs/{sha256}", get(blob))
        .route("/search", get(search))
        .route("/graphql", get(|| graphiql("/graphql")).post(graphql.clone()))
        .route("/functions/graphql", get(|| graphiql("/functions/graphql")).post(graphql))
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(observe::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_json))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), bounds::bound))
        .layer(observe::layers(state.metrics.clone()))
        .with_state(state)
}

/// `GET /blobs/{sha256}`: from this node, else fetched from a peer (and kept). `?local=true`
/// answers from this node only (what peers ask each other, so no request goes round).
async fn blob(
    State(app): State<AppState>,
    Path(sha256): Path<String>,
    params: Params,
) -> Result<impl IntoResponse> {
    let local_only = match params.0.get("local").map(String::as_str) {
        Some("true") => true,
        None | Some("false") => false,
        Some(_) => return Err(Error::BadRequest("local must be true or false".into())),
    };
    let bytes = app.blobs.get(sha256, local_only).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

/// `GET /node`: this node's ids, cluster, version and listeners.
async fn node(State(app): State<AppState>) -> Json<crate::service::cluster::NodeInfo> {
    Json(app.cluster.node())
}

/// `GET /peers`: every node heard from, this one included, with `alive`, `last_seen_ms` and load.
async fn peers(State(app): State<AppState>) -> Json<Vec<gridnode_federation::PeerView>> {
    Json(app.cluster.peers())
}

/// `GET /cluster/members`: every bound member, with the peer id its node id is bound to.
async fn members(State(app): State<AppState>) -> Json<Vec<crate::service::cluster::Member>> {
    Json(app.cluster.members())
}

/// `DELETE /cluster/members/{node_id}`: releases a node id's binding (`gridnode cluster forget`).
async fn forget(
    State(app): State<AppState>,
    principal: crate::service::acl::Principal,
    Path(node_id): Path<String>,
) -> Result<Json<serde_json::Value>> {
    // A member binding is the whole cluster's, no org's.
    if let Some(org) = principal.org() {
        return Err(Error::Forbidden(format!(
            "this token is bound to org '{org}': releasing a cluster member takes an unbound admin token"
        )));
    }
    app.cluster.forget(&node_id).await?;
    Ok(Json(json!({ "message": "Member forgotten successfully", "node_id": node_id })))
}

/// `GET /search?q=&kind=tools|functions|all&limit=&offset=`: ranked hits across the registries.
async fn search(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<Vec<serde_json::Value>>> {
    let text = params.required("q")?.to_owned();
    let kind = crate::service::search_kind(params.0.get("kind").map(String::as_str))?;
    let hits = app.registry.search(text, kind, params.page()?).await?;
    Ok(Json(
        hits.into_iter()
            .map(|hit| {
                json!({"kind": hit.kind.kind(), "id": hit.id, "score": hit.score, "snippet": hit.snippet})
            })
            .collect(),
    ))
}

/// `POST /graphql`: one GraphQL request as JSON; answers `{data, errors}` (errors with 200).
async fn graphql(
    schema: GraphSchema,
    JsonBody(request): JsonBody<async_graphql::Request>,
) -> Json<async_graphql::Response> {
    Json(schema.execute(request).await)
}

/// `GET /graphql`: the GraphiQL page, pointed at the same path.
async fn graphiql(endpoint: &'static str) -> Html<String> {
    Html(async_graphql::http::GraphiQLSource::build().endpoint(endpoint).finish())
}

async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    if app.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "starting" })))
    }
}

async fn not_found(method: Method, uri: Uri) -> Error {
    Error::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "error": format!("method {method} is not allowed on {}", uri.path()) })),
    )
}
