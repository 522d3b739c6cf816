//! The search crate's error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's query does not parse; the message says what is wrong.
    #[error("{0}")]
    Query(String),
    /// tantivy failed: a bug, a full disk or a damaged index directory.
    #[error("search index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error(transparent)]
    Store(#[from] gridnode_store::Error),
    #[error("search index directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
