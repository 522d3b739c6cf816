//! The one encoding, on disk and between peers: bincode 2 (standard config) through serde. A
//! value that reads back from a prefix of the bytes ignores the rest, which is how a header is
//! read alone.
//!
//! Every decode is bounded. bincode allocates whatever length a prefix declares (12 bytes can
//! declare a 1 TiB string and abort the process), so it runs with a limit on the bytes it may
//! claim, chosen by the size of the input: a small input can never make it allocate much. The
//! JSON trees inside records are decoded with a nesting limit ([`MAX_JSON_DEPTH`]).

use crate::{Error, Result};

/// Largest input [`decode`] accepts (a record with its manual, a blob link, a fetched batch).
pub const MAX_DECODE_BYTES: usize = 64 << 20;
/// Deepest JSON tree a record may carry (serde_json refuses deeper HTTP input at 128 too).
pub const MAX_JSON_DEPTH: usize = 128;

pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))
}

/// Decodes `bytes`; what bincode may allocate is bounded by a multiple of their length.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_counted(bytes).map(|(value, _)| value)
}

/// [`decode`], also returning how many bytes the value took.
pub fn decode_counted<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    use bincode::config::standard;
    use bincode::serde::decode_from_slice;
    // bincode counts the bytes of every value it decodes at their in-memory size (a one-byte
    // varint claims 8), so the claim limit is a multiple of the input's size tier.
    let decoded = match bytes.len() {
        0..=0x1_0000 => decode_from_slice(bytes, standard().with_limit::<0x20_0000>()),
        0x1_0001..=0x10_0000 => decode_from_slice(bytes, standard().with_limit::<0x200_0000>()),
        0x10_0001..=MAX_DECODE_BYTES => {
            decode_from_slice(bytes, standard().with_limit::<0x1000_0000>())
        }
        len => {
            return Err(Error::Corrupt(format!(
                "cannot decode {len} bytes: at most {MAX_DECODE_BYTES}"
            )));
        }
    };
    decoded.map_err(|e| Error::Corrupt(format!("cannot decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_past_the_input_is_refused_not_allocated() {
        // A string that declares 1 TiB (varint 0xfd + u64 little endian).
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode::<String>(&bytes).is_err());
        // The same length inside a tuple, behind a valid prefix.
        let mut tuple = encode(&(7u64, true)).unwrap();
        tuple.extend_from_slice(&bytes);
        assert!(decode::<(u64, bool, String)>(&tuple).is_err());
        // A whole tier's worth still decodes.
        let big = "x".repeat(3 << 20);
        assert_eq!(decode::<String>(&encode(&big).unwrap()).unwrap(), big);
    }
}
