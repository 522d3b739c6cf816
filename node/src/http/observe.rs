//! What every request passes through: a request id (the caller's `X-Request-Id` when it is a
//! sane token, else a new one) echoed in the response, a `tracing` span carrying it, and the
//! request's count and latency in the metrics (by route template, never the raw path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use crate::metrics::Gauges;

/// The header a request id travels in, both ways.
pub const REQUEST_ID: &str = "x-request-id";

pub async fn observe(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A route template is shared (an `Arc<str>` inside): cloning it allocates nothing.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(request.method());
    let id = request_id(request.headers());
    let span = tracing::info_span!("request", id = %id, method, route);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    app.metrics.request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// Methods as a bounded label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// The caller's id when it is 1–64 characters of letters, digits and `. _ : -`; else a new one.
fn request_id(headers: &HeaderMap) -> String {
    let given = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|id| {
        (1..=64).contains(&id.len())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    });
    match given {
        Some(id) => id.to_owned(),
        None => {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
            let prefix = PREFIX.get_or_init(|| {
                use std::hash::{BuildHasher, RandomState};
                RandomState::new().hash_one(std::process::id()) >> 32
            });
            format!("{prefix:08x}-{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
        }
    }
}

/// `GET /metrics`: Prometheus text (contract section 10).
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let peers = app.cluster.peers();
    let stats = app.cluster.federation().stats();
    let store_seq = app.registry.store().last_seq();
    let gauges = Gauges {
        peers_alive: peers.iter().filter(|p| p.alive).count(),
        peers_silent: peers.iter().filter(|p| !p.alive).count(),
        store_seq,
        replication_backlog: store_seq.saturating_sub(stats.followed_seq),
        published_versions: stats.published_versions,
        merged_versions: stats.merged_versions,
        rejected: stats.rejected,
        peer_rejected: app.cluster.rejections(),
        in_flight_calls: app.cluster_tools.runtime().in_flight(),
        peer_ages: peers
            .iter()
            .map(|p| (p.heartbeat.node_id.clone(), p.last_seen_ms as f64 / 1000.0))
            .collect(),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics.render(&gauges),
    )
}
