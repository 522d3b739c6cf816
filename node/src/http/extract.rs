//! Extractors whose rejections are the same `{"error": …}` shape as every other error.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use gridnode_store::Page;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::service::acl::Principal;

/// A JSON body. Wrong content type → 415, over the body limit → 413, malformed → 400.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Error::UnsupportedMediaType(
                "expected a json body: send it with 'content-type: application/json'".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge("the request body is over the size limit".into())
            } else {
                Error::BadRequest("the request body could not be read: send it again".into())
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof | Category::Io => {
                    Error::BadRequest(format!("malformed json: {e}"))
                }
                Category::Data => Error::BadRequest(format!("invalid request body: {e}")),
            }
        })
    }
}

/// The query string as a map; a malformed one is a 400.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|_| {
                Error::BadRequest("malformed query string: use ?name=value&name=value".into())
            })
    }
}

impl Params {
    /// A parameter that must be present and non-empty.
    pub fn required(&self, name: &str) -> Result<&str, Error> {
        match self.0.get(name).map(String::as_str) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(Error::BadRequest(format!("missing query parameter '{name}': add ?{name}=…"))),
        }
    }

    /// `?provenance=true|false` (default false).
    pub fn provenance(&self) -> Result<bool, Error> {
        match self.0.get("provenance").map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(Error::BadRequest("provenance must be true or false".into())),
        }
    }

    /// A record as JSON, with its `provenance` added when `?provenance=true` asked for it.
    pub fn with_provenance(
        &self,
        record: impl serde::Serialize,
        registry: &crate::service::Registry,
        collection: gridnode_store::Collection,
        id: &str,
    ) -> Result<serde_json::Value, Error> {
        let mut value = serde_json::to_value(record)
            .map_err(|e| Error::Internal(format!("cannot render a record: {e}")))?;
        if self.provenance()?
            && let serde_json::Value::Object(fields) = &mut value
        {
            fields.insert("provenance".into(), registry.provenance(collection, id)?);
        }
        Ok(value)
    }

    /// `?limit=` (1 to 1000, default 100) and `?offset=` (default 0).
    pub fn page(&self) -> Result<Page, Error> {
        crate::service::page(self.number("limit")?, self.number("offset")?)
    }

    /// A whole-number parameter, if given.
    pub fn number(&self, name: &str) -> Result<Option<i64>, Error> {
        match self.0.get(name) {
            None => Ok(None),
            Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
                Error::BadRequest(format!(
                    "{name} must be a whole number, got '{}'",
                    text.chars().take(40).collect::<String>().escape_default()
                ))
            }),
        }
    }

    /// A text parameter, if given.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// The org a request acts as, and who asks. The org is the `X-Org-Id` header's, except for a
/// token bound to an org: its requests act as that org, and naming another is 403.
#[derive(Debug, Clone)]
pub struct OrgHeader(pub Option<String>, pub Principal);

/// The header naming a request's org.
pub const ORG_HEADER: &str = "x-org-id";

impl<S: Send + Sync> FromRequestParts<S> for OrgHeader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let principal = principal(parts);
        let Some(value) = parts.headers.get(ORG_HEADER) else {
            return Ok(OrgHeader(principal.acting_org(None)?, principal));
        };
        let org = value.to_str().map_err(|_| {
            Error::BadRequest("the X-Org-Id header is not plain text: send an org id".into())
        })?;
        crate::service::orgs::check_org(org)?;
        Ok(OrgHeader(principal.acting_org(Some(org.to_owned()))?, principal))
    }
}

impl OrgHeader {
    /// The request's org: the header's, or `org_id` of the body; both given must agree, and a
    /// bound token's org overrides both (naming another is 403).
    pub fn with_body(self, body: Option<String>) -> Result<Acting, Error> {
        let OrgHeader(header, principal) = self;
        if principal.org().is_some() {
            // The header was held to the bound org already; the body is held to it here.
            return Ok(Acting { org: principal.acting_org(body)?, principal });
        }
        let named = match (header, body) {
            (Some(header), Some(body)) if header != body => {
                return Err(Error::BadRequest(format!(
                    "the X-Org-Id header names org '{header}' but the body's org_id is '{}': send one",
                    body.chars().take(64).collect::<String>()
                )));
            }
            (Some(org), _) => Some(org),
            (None, Some(org)) => {
                crate::service::orgs::check_org(&org)?;
                Some(org)
            }
            (None, None) => None,
        };
        Ok(Acting { org: principal.acting_org(named)?, principal })
    }

    /// The request as the execution door's caller, with the header's org alone.
    pub fn acting(self) -> Acting {
        Acting { org: self.0, principal: self.1 }
    }
}

/// Who a request is and the org it acts as.
#[derive(Debug, Clone)]
pub struct Acting {
    pub org: Option<String>,
    pub principal: Principal,
}

impl Acting {
    pub fn caller(&self) -> crate::service::execution::Caller<'_> {
        crate::service::execution::Caller {
            org: self.org.as_deref(),
            token: self.principal.token_id(),
        }
    }
}

/// Who the request is, as the access guard found it (the open principal when access control
/// is off).
pub fn principal(parts: &Parts) -> Principal {
    parts.extensions.get::<Principal>().cloned().unwrap_or_else(Principal::open)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(principal(parts))
    }
}
