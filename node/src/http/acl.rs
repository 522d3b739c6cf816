//! `/acl/...` (contract section 12): tokens and `whoami`, thin over [`crate::service::acl`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::access::written;
use super::extract::JsonBody;
use crate::error::{Error, Result};
use crate::service::acl::{NewToken, Principal, TokenView, WhoAmI};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/acl/tokens", get(list).post(create))
        .route("/acl/tokens/{token_id}", get(one).delete(delete))
        .route("/acl/whoami", get(whoami))
}

/// `POST /acl/tokens`: 201 with the secret, the only time it is shown.
async fn create(
    State(app): State<AppState>,
    principal: Principal,
    body: std::result::Result<JsonBody<NewToken>, Error>,
) -> Result<Response> {
    let created = app.acl.create(&principal, body?.0).await?;
    let id = created.token.token_id.clone();
    Ok(written((StatusCode::CREATED, Json(created)), id))
}

async fn list(State(app): State<AppState>, principal: Principal) -> Result<Json<Vec<TokenView>>> {
    Ok(Json(app.acl.list(&principal).await?))
}

async fn one(
    State(app): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TokenView>> {
    Ok(Json(app.acl.get(&principal, id).await?))
}

async fn delete(
    State(app): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>> {
    app.acl.delete(&principal, id.clone()).await?;
    Ok(Json(json!({ "message": "Token deleted: it stops working on every node", "token_id": id })))
}

async fn whoami(State(app): State<AppState>, principal: Principal) -> Json<WhoAmI> {
    Json(app.acl.whoami(&principal))
}
