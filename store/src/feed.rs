//! The change feed: every committed write gets a sequence number, in commit order, so the search
//! index and the federation can follow the store and resume where they stopped.

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;

/// One committed change. It names the record; readers fetch its current state from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the feed; strictly increasing in commit order.
    pub seq: u64,
    /// `Collection as u8`.
    pub collection: u8,
    /// The record id.
    pub id: String,
    /// The version written.
    pub hlc: Hlc,
    /// True for a delete.
    pub tombstone: bool,
}
