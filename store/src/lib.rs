//! gridnode's embedded store: the single source of truth of a node.
//!
//! It keeps the Tools and Functions registries (and, as later parts land, cluster-local tool
//! records, actions, org allow-lists and the audit log) in sled, each record in an [`Envelope`] that carries a
//! hybrid-logical-clock version and a tombstone flag, so replicas merge without a migration.
//! Secondary indexes are written in the same transaction as their record; every write appends to
//! a sequence-numbered change feed that the search index and the federation follow; blobs are
//! content-addressed by sha256. [`query`] is the MongoDB-style filter language.
//!
//! This crate never does network I/O and never depends on the node, search or federation crates.
//! Its calls block: async callers wrap them in `spawn_blocking`.

#![forbid(unsafe_code)]

mod audit;
mod codec;
mod durability;
mod envelope;
mod error;
mod feed;
mod hlc;
mod index;
pub mod query;
mod record;
mod store;

pub use audit::{AuditEntry, AuditKind, AuditQuery};
pub use codec::{MAX_DECODE_BYTES, MAX_JSON_DEPTH};
pub use envelope::{Envelope, Header, decode_header};
pub use error::{Error, Result};
pub use feed::Change;
pub use hlc::{Clock, Hlc, now_ms};
pub use record::{
    AclToken, Action, AllowList, ClusterLocalTool, Collection, FunctionEntry, ID_MAX_LEN, ID_RULE,
    JsonMap, MAX_ACTION_TOOLS, MAX_ALLOWED_TOOLS, MAX_INDEX_ENTRIES, MAX_INDEXED_VALUE_LEN,
    MAX_TOKEN_DESCRIPTION, Member, REDACTED, Record, RegistryEntry, TOKEN_SCOPES, ToolEntry,
    redacted, validate_id, validate_named,
};
pub use store::{
    DEFAULT_CACHE_CAPACITY, MAX_RESULTS, MAX_VERSION_BYTES, Merged, Page, Provenance, Resigned,
    SCHEMA_VERSION, SignedVersion, Signer, Store, StoreConfig, Written, is_sha256_hex, sha256_hex,
    signed_message,
};

/// Decodes bytes that came from elsewhere (a peer, a file) with the store's limits: the one
/// decode entry for foreign bytes (see the codec's size and nesting limits).
pub fn decode_bounded<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    codec::decode(bytes)
}

/// [`decode_bounded`], also returning how many bytes the value took (to refuse trailing bytes).
pub fn decode_counted<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    codec::decode_counted(bytes)
}

/// Encodes a value the way [`decode_bounded`] reads it back.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    codec::encode(value)
}
