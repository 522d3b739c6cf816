//! Who may come in (contract sections 12 and 14): every request passes [`guard`], which refuses a
//! foreign web origin, finds the request's token, checks the scope its route needs, hands the
//! [`Principal`] to the handler, and audits the registry writes it let through.
//!
//! What each route needs is one table, [`need`], over the route template axum matched (never the
//! raw path), so a new route falls into a rule rather than out of one: a GET needs `read`, any
//! other method `write`, and the exceptions are named.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gridnode_store::AuditKind;

use super::AppState;
use super::extract::ORG_HEADER;
use crate::error::Error;
use crate::service::acl::{Principal, Scope, bearer};
use crate::service::audit::{CANCELLED, Write};

/// What a route needs from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: health probes, the GraphiQL page (its queries need `read`).
    Open,
    /// Any valid token (`/acl/whoami`).
    Token,
    /// A token with this scope.
    Scope(Scope),
    /// `/metrics`: open with `[acl] open_metrics`, else `read`.
    Metrics,
}

/// The scope `method` on `route` (a route template, `/tools/{id}`) needs.
pub fn need(method: &Method, route: &str) -> Need {
    let read_only = matches!(*method, Method::GET | Method::HEAD);
    match route {
        "/healthz" | "/readyz" => Need::Open,
        "/graphql" | "/functions/graphql" if read_only => Need::Open,
        "/graphql" | "/functions/graphql" => Need::Scope(Scope::Read),
        "/metrics" => Need::Metrics,
        "/acl/whoami" => Need::Token,
        "/audit" | "/cluster/members/{node_id}" => Need::Scope(Scope::Admin),
        _ if route.starts_with("/acl/") || route.starts_with("/orgs/") => Need::Scope(Scope::Admin),
        "/tools/{id}/execute"
        | "/functions/{id}/execute"
        | "/tools/select"
        | "/actions/{org}/{action_type}/select"
        | "/actions/{org}/{action_type}/execute"
        | "/cluster-tools/resolve"
        | "/cluster-tools/execute" => Need::Scope(Scope::Execute),
        // Queries sent as a body (`POST /tools/query/generic`) only read.
        _ if read_only || route.contains("/query/") => Need::Scope(Scope::Read),
        _ => Need::Scope(Scope::Write),
    }
}

/// The id a create handler wrote, for the audit entry of its request (the others name theirs
/// in the path).
#[derive(Debug, Clone)]
pub struct Written(pub String);

/// A create handler's response, carrying the id it wrote for the audit entry.
pub fn written(response: impl IntoResponse, id: String) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(Written(id));
    response
}

/// The guard itself (see the module doc).
pub async fn guard(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    // A route template is shared (an `Arc<str>` inside): cloning it allocates nothing.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map(MatchedPath::as_str);
    let method = request.method().clone();
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        && let Some(origin) = request.headers().get(header::ORIGIN)
        && !app.origins.allows(origin.as_bytes())
    {
        let shown =
            String::from_utf8_lossy(origin.as_bytes()).chars().take(128).collect::<String>();
        return Error::Forbidden(format!(
            "requests from the web origin '{shown}' are not accepted: add it to [http] \
             allowed_origins to let its pages call this node"
        ))
        .into_response();
    }
    let need = route.map_or(Need::Scope(Scope::Read), |route| need(&method, route));
    let open = match need {
        Need::Open => true,
        Need::Metrics => app.acl.open_metrics(),
        Need::Token | Need::Scope(_) => false,
    };
    if open {
        return next.run(request).await;
    }
    if let Some(member) = member_fetch(&app, route, &request) {
        request.extensions_mut().insert(member);
        return next.run(request).await;
    }
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    let principal = match app.acl.authenticate(secret) {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    let scope = match need {
        Need::Scope(scope) => Some(scope),
        Need::Metrics => Some(Scope::Read),
        Need::Open | Need::Token => None,
    };
    if let Some(scope) = scope
        && let Err(error) = principal.require(scope)
    {
        return error.into_response();
    }
    let kind = route.and_then(audited);
    let write = matches!(scope, Some(Scope::Write | Scope::Admin))
        && !matches!(method, Method::GET | Method::HEAD);
    let (Some(kind), true) = (kind, write) else {
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    };
    let route = route.unwrap_or_default();
    let named_org = request
        .headers()
        .get(ORG_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|org| gridnode_store::validate_id("org", org).is_ok())
        .map(str::to_owned);
    // Recorded when dropped: after the answer, or — the request cancelled (the client went
    // away, the request timeout) while the write may still commit — as cancelled.
    let mut entry = WriteEntry {
        app: app.clone(),
        kind,
        id: path_id(route, request.uri().path()),
        org: principal.org().map(str::to_owned).or(named_org),
        operation: operation(&method, route),
        token: principal.token_id().map(str::to_owned),
        started: Instant::now(),
        status: CANCELLED,
    };
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    if let Some(written) = response.extensions().get::<Written>() {
        entry.id = written.0.clone();
    }
    entry.status = response.status().as_u16();
    response
}

/// A registry write's audit entry, written when dropped.
struct WriteEntry {
    app: AppState,
    kind: AuditKind,
    id: String,
    org: Option<String>,
    operation: &'static str,
    token: Option<String>,
    started: Instant,
    status: u16,
}

impl Drop for WriteEntry {
    fn drop(&mut self) {
        self.app.audit.write(Write {
            kind: self.kind,
            id: &self.id,
            org: self.org.as_deref(),
            operation: self.operation,
            token: self.token.as_deref(),
            status: self.status,
            duration_ms: self.started.elapsed().as_millis() as u64,
        });
    }
}

/// A member's blob fetch (`GET /blobs/{sha256}` with a member proof over the sha256): peers
/// fetch bundles from each other without tokens, as their gRPC hops do.
fn member_fetch(app: &AppState, route: Option<&str>, request: &Request) -> Option<Principal> {
    if route != Some("/blobs/{sha256}") || request.method() != Method::GET {
        return None;
    }
    let text = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let (origin, proof) = (text(crate::grpc::HOP)?, text(crate::grpc::PROOF)?);
    let sha = request.uri().path().rsplit('/').next()?;
    let blob = crate::service::blobs::BLOB_PROOF;
    app.member_proof.verify(proof, origin, blob, sha.as_bytes()).then(|| Principal::member(origin))
}

/// The record kind a write route changes; none for routes that change no record.
fn audited(route: &str) -> Option<AuditKind> {
    let first = route.trim_start_matches('/').split('/').next().unwrap_or_default();
    Some(match first {
        "tools" => AuditKind::Tool,
        "functions" => AuditKind::Function,
        "cluster-tools" => AuditKind::ClusterTool,
        "actions" => AuditKind::Action,
        "orgs" => AuditKind::AllowList,
        "acl" => AuditKind::AclToken,
        "cluster" => AuditKind::Member,
        _ => return None,
    })
}

fn operation(method: &Method, route: &str) -> &'static str {
    match *method {
        Method::PUT => "update",
        Method::DELETE => "delete",
        _ if route.ends_with("/upload") => "upload",
        _ => "create",
    }
}

/// The path's values at the template's `{param}` segments, joined by `/` (`acme/summarise`).
fn path_id(route: &str, path: &str) -> String {
    route
        .split('/')
        .zip(path.split('/'))
        .filter(|(template, _)| template.starts_with('{'))
        .map(|(_, value)| value)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_the_contract_says() {
        let get = Method::GET;
        let post = Method::POST;
        let cases = [
            (&get, "/healthz", Need::Open),
            (&get, "/graphql", Need::Open),
            (&post, "/graphql", Need::Scope(Scope::Read)),
            (&get, "/tools/{id}", Need::Scope(Scope::Read)),
            (&post, "/tools/query/generic", Need::Scope(Scope::Read)),
            (&post, "/tools", Need::Scope(Scope::Write)),
            (&Method::DELETE, "/tools/{id}", Need::Scope(Scope::Write)),
            (&post, "/tools/{id}/execute", Need::Scope(Scope::Execute)),
            (&post, "/cluster-tools/resolve", Need::Scope(Scope::Execute)),
            (&Method::PUT, "/orgs/{org}/allowed-tools", Need::Scope(Scope::Admin)),
            (&get, "/orgs/{org}/allowed-tools", Need::Scope(Scope::Admin)),
            (&get, "/audit", Need::Scope(Scope::Admin)),
            (&get, "/acl/tokens", Need::Scope(Scope::Admin)),
            (&get, "/acl/whoami", Need::Token),
            (&get, "/metrics", Need::Metrics),
        ];
        for (method, route, expected) in cases {
            assert_eq!(need(method, route), expected, "{method} {route}");
        }
    }

    #[test]
    fn writes_are_named_by_their_path_values() {
        assert_eq!(path_id("/actions/{org}/{action_type}", "/actions/acme/sum"), "acme/sum");
        assert_eq!(path_id("/tools", "/tools"), "");
        assert_eq!(audited("/orgs/{org}/allowed-tools"), Some(AuditKind::AllowList));
        assert_eq!(audited("/graphql"), None);
        assert_eq!(operation(&Method::POST, "/tools/upload"), "upload");
    }
}
