//! The REST door's bounds (contract section 14): requests in flight, for the door and per client
//! address (503 with `Retry-After` past either), and how long a request may take (503 past it).
//! Executions and uploads are not cut by the request timeout: they have their own (the tool's
//! timeout and the execute deadline; the upload size limit and the header timeout). Health
//! probes pass uncounted, so a busy node is not mistaken for a dead one.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::access::{Need, need};
use crate::service::acl::Scope;

/// What a busy door asks clients to wait before they retry, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// The bounds of the REST door.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub limiter: crate::limiter::Limiter,
    pub request_timeout: Duration,
}

pub async fn bound(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("", MatchedPath::as_str);
    if matches!(route, "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let _permit = match app.bounds.limiter.enter(client) {
        Ok(permit) => permit,
        Err(full) => return busy(full.message().to_owned()),
    };
    let own_timeout =
        need(request.method(), route) == Need::Scope(Scope::Execute) || route.ends_with("/upload");
    if own_timeout {
        return next.run(request).await;
    }
    let timeout = app.bounds.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => busy(format!(
            "the request did not finish within {} ms (limits.request_timeout_ms): retry, or \
             narrow it",
            timeout.as_millis()
        )),
    }
}

fn busy(message: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
        Json(json!({ "error": message })),
    )
        .into_response()
}
