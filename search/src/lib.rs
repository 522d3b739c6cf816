//! Keyword search over the registries.
//!
//! For now this is a plain, case-insensitive term scorer run over the records a caller hands it
//! ([`keyword`]); the full-text index (tantivy, following the store's change feed) replaces it.
//! This crate reads records; it never writes to the store and never depends on the node.

#![forbid(unsafe_code)]

pub mod keyword;
