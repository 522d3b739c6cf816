//! A cluster member's identity: the binding of a `node_id` to the libp2p peer id (and so the
//! ed25519 public key) that speaks for it (contract section 13). Written by the node itself the
//! first time it joins, replicated like every record, and signed by the key it names; the
//! federation refuses a version that names another key for a bound node id. A tombstone (the
//! admin's `gridnode cluster forget`) releases the binding.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Collection, Record, lenient, validate_id};
use crate::Error;

/// Longest peer id text (an ed25519 peer id is 52 characters).
const PEER_ID_MAX_LEN: usize = 128;

/// One member's binding, stored under its node id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Member {
    #[serde(deserialize_with = "lenient::deserialize")]
    pub node_id: String,
    /// The base58 libp2p peer id; its public key signs the member's versions.
    #[serde(deserialize_with = "lenient::deserialize")]
    pub peer_id: String,
}

impl Record for Member {
    const COLLECTION: Collection = Collection::Members;
    const INDEXED_FIELDS: &'static [&'static str] = &[];
    const ID_FIELD: &'static str = "node_id";

    fn id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.node_id)
    }

    fn validate(&self) -> Result<(), Error> {
        validate_id("node", &self.node_id)?;
        let ok = !self.peer_id.is_empty()
            && self.peer_id.len() <= PEER_ID_MAX_LEN
            && self.peer_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "invalid peer id '{}' for node '{}'",
                super::truncate(&self.peer_id, 64),
                self.node_id
            )))
        }
    }

    fn index_entries(&self, _emit: &mut dyn FnMut(&'static str, Value)) {}
}
