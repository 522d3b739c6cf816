//! What every request passes through: a request id (the caller's `X-Request-Id` when it is a
//! sane token, else a new one) echoed in the response, a `tracing` span carrying it, and the
//! request's count and latency in the metrics (by route template, never the raw path).
//!
//! [`layers`] stacks two, outermost first:
//!
//! 1. [`observe`], by hand: the request id and the request metrics. tower-http's request-id
//!    layers were measured here (`gridnode-bench registry`): with them a `GET /healthz` served
//!    0.85–0.88 × the bare handler's throughput, without them 0.94 ×; they keep any id the
//!    caller sent (a hostile one — control characters, log injection, 4 KiB — would need a
//!    filter before them anyway), and no tower-http layer knows axum's route template
//!    (`MatchedPath`), which labels the metrics. One small function does all three.
//! 2. tower-http `TraceLayer`: the info span `request` with `id`, `method` and `route`, entered
//!    while the handler and the response body run. Its per-response event (status, latency)
//!    stays at debug, off under the default `info`; its start, end-of-body and 5xx error events
//!    are off (the audit log and the handlers say what failed).

use std::convert::Infallible;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::Route;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::AppState;
use crate::metrics::{self, Gauges, Metrics};

/// The header a request id travels in, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The layers every route is served through (see the module doc).
pub fn layers(
    metrics: Metrics,
) -> impl Layer<
    Route,
    Service: Service<
        Request,
        Response: IntoResponse + 'static,
        Error: Into<Infallible> + 'static,
        Future: Send + 'static,
    > + Clone
                 + Send
                 + Sync
                 + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new().layer(axum::middleware::from_fn_with_state(metrics, observe)).layer(
        TraceLayer::new_for_http()
            .make_span_with(request_span)
            .on_request(())
            .on_eos(())
            .on_failure(()),
    )
}

/// Gives the request its id (the caller's when usable, else a new one), echoes it in the
/// response, and counts the request by route template, method and status.
pub async fn observe(State(metrics): State<Metrics>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = match usable_id(request.headers()) {
        Some(id) => id,
        None => {
            let id = new_id();
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    // A route template is shared (an `Arc<str>` inside): cloning it allocates nothing.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, id);
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// The caller's id when it is 1–64 characters of letters, digits and `. _ : -`.
fn usable_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let id = headers.get(REQUEST_ID)?;
    let sane = (1..=64).contains(&id.len())
        && id.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(b));
    sane.then(|| id.clone())
}

/// A new id: a per-process random prefix and a counter (`1a2b3c4d-0000002a`).
fn new_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<u64> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::process::id()) >> 32
    });
    let id = format!("{prefix:08x}-{:08x}", NEXT.fetch_add(1, Ordering::Relaxed));
    HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("0"))
}

/// The `request` span, with the id [`observe`] gave the request.
fn request_span(request: &Request) -> Span {
    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!("request", id = %id, method = method_label(request.method()), route)
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

/// `GET /metrics`: OpenMetrics text (contract section 10; see [`crate::metrics`] for the
/// content type).
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
        in_flight_calls: app.runtime.in_flight(),
        peer_ages: peers
            .iter()
            .map(|p| (p.heartbeat.node_id.clone(), p.last_seen_ms as f64 / 1000.0))
            .collect(),
    };
    ([(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], app.metrics.render(&gauges))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    async fn ask(router: &Router, uri: &str, id: Option<&str>) -> Response {
        let mut request = Request::builder().uri(uri);
        if let Some(id) = id {
            request = request.header(REQUEST_ID, id);
        }
        let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await;
        response.unwrap()
    }

    #[tokio::test]
    async fn request_ids_and_metrics_pass_through_the_layers() {
        let metrics = Metrics::new();
        let router = Router::new()
            .route("/tools/{id}", get(|| async { "ok" }))
            .layer(layers(metrics.clone()));
        let echoed = ask(&router, "/tools/a", Some("trace-42.a_b:c")).await;
        assert_eq!(echoed.headers()[REQUEST_ID], "trace-42.a_b:c");
        for hostile in ["bad id\twith tabs", "", &"x".repeat(65), "a/b", "é"] {
            let replaced = ask(&router, "/tools/b", Some(hostile)).await;
            let id = replaced.headers()[REQUEST_ID].to_str().unwrap();
            assert_ne!(id, hostile);
            assert_eq!(id.len(), 17, "{id}");
        }
        let first = ask(&router, "/tools/c", None).await;
        let second = ask(&router, "/nowhere", None).await;
        assert_ne!(first.headers()[REQUEST_ID], second.headers()[REQUEST_ID]);
        let text = metrics.render(&Gauges::default());
        for line in [
            r#"gridnode_http_requests_total{route="/tools/{id}",method="GET",status="200"} 7"#,
            r#"gridnode_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
            r#"gridnode_http_request_duration_seconds_count{route="/tools/{id}",method="GET"} 7"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
