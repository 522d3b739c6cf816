//! Ranked full-text search over the Tools and Functions registries.
//!
//! [`SearchIndex`] is one tantivy index over both registries (kind, id, description, man page,
//! tags, type, metadata values), BM25-ranked with the description weighted highest, English
//! stemming, case-insensitive exact fields for ids, tags and types, a fuzzy fallback when an exact
//! query finds nothing, and snippets. It follows the store's change feed ([`follow`]) and records
//! in each commit how far it got, so on start it catches up from there — or rebuilds itself from
//! the store when the index is missing, corrupt, or from another schema.
//!
//! This crate reads the store; it never writes to it and never depends on the node. Its calls
//! block: async callers wrap them in `spawn_blocking`.

#![forbid(unsafe_code)]

mod document;
mod error;
mod follow;
mod index;
pub mod scan;
mod schema;

pub use error::{Error, Result};
pub use follow::{Follower, follow};
pub use index::{Hit, SearchIndex, SearchRequest};
