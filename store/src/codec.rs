//! The one on-disk encoding: bincode 2 (standard config) through serde. A value that reads
//! back from a prefix of the bytes ignores the rest, which is how a header is read alone.

use crate::{Error, Result};

pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| Error::Corrupt(format!("cannot decode: {e}")))
}
