//! The federation's error type: what its public calls (start, keys, identities, forget) can
//! fail with. Each variant is one kind the node maps to a status or a start-up message. What
//! peers send is never an error of this kind: it is refused and counted ([`crate::rejections`]).

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work: a cluster name, a node id that is not the store's.
    #[error("{0}")]
    Config(String),
    /// A key file (the cluster key, the node's p2p key) that cannot be read, written or used.
    #[error("{0}")]
    Key(String),
    /// The p2p transports or listeners could not start.
    #[error("{0}")]
    Listen(String),
    /// A request that cannot be done as asked (forgetting this node, or a member that is alive).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] gridnode_store::Error),
    /// The federation's tasks are gone (it was shut down, or a task failed).
    #[error("the federation has stopped: {0}")]
    Stopped(String),
}
