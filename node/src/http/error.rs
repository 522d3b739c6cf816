//! One mapping from error kind to HTTP status, and the `{"error": …}` body every error gets.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridnode_search::Error as SearchError;
use gridnode_store::Error as StoreError;
use serde_json::json;

use crate::error::Error;
use crate::resolve::ResolveError;

/// The status an error answers with (contract section 3).
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::Store(store) | Error::Search(SearchError::Store(store)) => store_status(store),
        Error::Search(SearchError::Query(_)) => StatusCode::BAD_REQUEST,
        Error::Search(SearchError::Index(_) | SearchError::Io { .. }) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::NotFound(_) | Error::Resolve(ResolveError::Unknown(_)) => StatusCode::NOT_FOUND,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Unreachable(_) => StatusCode::BAD_GATEWAY,
        Error::Resolve(ResolveError::Misconfigured(_) | ResolveError::Unavailable(_)) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Error::Internal(_) | Error::Io { .. } | Error::Config(_) | Error::Federation(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn store_status(error: &StoreError) -> StatusCode {
    match error {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::Conflict { .. } => StatusCode::CONFLICT,
        StoreError::Invalid(_) | StoreError::Query(_) => StatusCode::BAD_REQUEST,
        StoreError::Corrupt(_) | StoreError::Schema { .. } | StoreError::Storage(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
