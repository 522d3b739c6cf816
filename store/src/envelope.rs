//! The envelope every stored record lives in: a version and a tombstone flag, so that replicas
//! can merge (last writer wins) and deletes can replicate.
//!
//! On disk an envelope is the bincode encoding of `(Header, Option<R>)`: the header first, so
//! the version can be read without decoding the record.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hlc::Hlc;
use crate::record::{Collection, Record};
use crate::{Error, Result};

/// What every envelope carries besides the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The version of this write.
    pub hlc: Hlc,
    /// True when the record was deleted; the record itself is then absent.
    pub tombstone: bool,
}

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<R> {
    pub header: Header,
    pub record: Option<R>,
}

impl<R: Record> Envelope<R> {
    pub fn live(hlc: Hlc, record: R) -> Self {
        Envelope { header: Header { hlc, tombstone: false }, record: Some(record) }
    }

    pub fn tombstone(hlc: Hlc) -> Self {
        Envelope { header: Header { hlc, tombstone: true }, record: None }
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(&(&self.header, &self.record)).map_err(|e| context(R::COLLECTION, e))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (header, record) =
            codec::decode::<(Header, Option<R>)>(bytes).map_err(|e| context(R::COLLECTION, e))?;
        Ok(Envelope { header, record })
    }

    /// The record, when the envelope is not a tombstone.
    pub fn into_live(self) -> Option<R> {
        if self.header.tombstone { None } else { self.record }
    }
}

/// Reads only the header of an encoded envelope.
pub fn decode_header(collection: Collection, bytes: &[u8]) -> Result<Header> {
    codec::decode::<Header>(bytes).map_err(|e| context(collection, e))
}

fn context(collection: Collection, error: Error) -> Error {
    Error::Corrupt(format!("a {} record: {error}", collection.kind()))
}
