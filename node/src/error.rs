//! The node's error type, shared by every transport. `http::error` maps it to statuses.

use gridnode_store::Error as StoreError;

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
    /// The federation could not start (a p2p listener, the p2p key).
    #[error("federation: {0}")]
    Federation(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}
