//! The store's error type. Each variant is one kind the transports map to a status.

use crate::query::QueryError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No live record with that id.
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    /// A live record with that id exists already.
    #[error("{kind} '{id}' already exists: choose another id, or update it with PUT")]
    Conflict { kind: &'static str, id: String },
    /// The caller's input breaks a rule; the message says which and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// A record too large to keep and replicate.
    #[error("{0}")]
    TooLarge(String),
    /// A filter that does not parse.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Bytes on disk that do not decode: a bug or a damaged data dir, never the caller's fault.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The data dir was written by a newer gridnode.
    #[error(
        "the data dir has store schema version {found}; this gridnode reads up to {supported}: upgrade gridnode or use another --data-dir"
    )]
    Schema { found: u32, supported: u32 },
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(error: sled::transaction::TransactionError<Error>) -> Self {
        match error {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => Error::Storage(e),
        }
    }
}
