//! The node's error type, shared by every transport. `http::error` maps it to statuses.

use gridnode_store::Error as StoreError;

use crate::resolve::ResolveError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] gridnode_search::Error),
    /// Bad input: the message says what was wrong and how to fix it.
    #[error("{0}")]
    BadRequest(String),
    /// A body or archive over a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A body sent with the wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Something other than a record that is not there (a blob).
    #[error("{0}")]
    NotFound(String),
    /// The request has no valid token (contract section 12).
    #[error("missing or invalid token")]
    Unauthenticated,
    /// The caller may not do this; the message says who may.
    #[error("{0}")]
    Forbidden(String),
    /// No live node can serve the request now.
    #[error("{0}")]
    Unavailable(String),
    /// A remote node could not be reached, or did not answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// A node's endpoint could not be resolved.
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    /// A fault of ours, not of the caller.
    #[error("internal error: {0}")]
    Internal(String),
    /// Start-up could not bind, open or read what it needs.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The federation could not start (a p2p listener, a key), or refused a request.
    #[error(transparent)]
    Federation(#[from] gridnode_federation::Error),
    /// The Kubernetes resolver cannot reach or read its API server.
    #[error(transparent)]
    Kubernetes(#[from] crate::resolve::kubernetes::Error),
    /// A tool cannot be hosted (its definition, or this machine, is at fault).
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
}

impl Error {
    /// The HTTP status this error answers with (contract section 3). The service records it in
    /// the audit log; the REST layer answers with it.
    pub fn status(&self) -> u16 {
        use gridnode_federation::Error as FederationError;
        use gridnode_search::Error as SearchError;
        match self {
            Error::Store(store)
            | Error::Search(SearchError::Store(store))
            | Error::Federation(FederationError::Store(store)) => store_status(store),
            Error::Federation(FederationError::Refused(_)) => 400,
            Error::Search(SearchError::Query(_)) => 400,
            Error::Search(SearchError::Index(_) | SearchError::Io { .. }) => 500,
            Error::BadRequest(_) => 400,
            Error::TooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::NotFound(_) | Error::Resolve(ResolveError::Unknown(_)) => 404,
            Error::Unauthenticated => 401,
            Error::Forbidden(_) => 403,
            Error::Unavailable(_) => 503,
            Error::Unreachable(_) => 502,
            Error::Resolve(ResolveError::Misconfigured(_) | ResolveError::Unavailable(_)) => 500,
            Error::Runtime(error) if error.is_definition() => 400,
            Error::Internal(_)
            | Error::Io { .. }
            | Error::Config(_)
            | Error::Federation(_)
            | Error::Kubernetes(_)
            | Error::Runtime(_) => 500,
        }
    }

    /// The gRPC code of the same meaning as [`Error::status`]: one mapping, from the status.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.status() {
            400 | 413 | 415 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            403 => tonic::Code::PermissionDenied,
            404 => tonic::Code::NotFound,
            409 => tonic::Code::AlreadyExists,
            502 | 503 => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

fn store_status(error: &StoreError) -> u16 {
    match error {
        StoreError::NotFound { .. } => 404,
        StoreError::Conflict { .. } => 409,
        StoreError::Invalid(_) | StoreError::Query(_) => 400,
        StoreError::TooLarge(_) => 413,
        StoreError::Corrupt(_) | StoreError::Schema { .. } | StoreError::Storage(_) => 500,
    }
}
