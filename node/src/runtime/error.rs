//! Why the runtime cannot host a tool. Calls never fail with these: a call that goes wrong is a
//! [`CallOutcome`](super::CallOutcome) with `success: false`.

/// A tool that cannot be hosted, named.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tool '{0}' is defined twice")]
    Duplicate(String),
    #[error("tool '{tool}': {source}")]
    Name {
        tool: String,
        #[source]
        source: gridnode_store::Error,
    },
    /// The tool's input spec does not compile.
    #[error("tool '{tool}': {why}")]
    Spec { tool: String, why: String },
    /// Its executable or working directory cannot be set up.
    #[error("tool '{tool}': {what}: {source}")]
    Io {
        tool: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the tool's definition is at fault (else this machine is).
    pub fn is_definition(&self) -> bool {
        !matches!(self, Error::Io { .. })
    }
}
