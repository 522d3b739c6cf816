//! Secondary-index keys. One sled tree holds every index entry of every collection:
//!
//! `[collection: u8][field length: u8][field][value length: u32 BE][value as JSON text][record id]`
//!
//! The value is stored as JSON text so an entry keeps its type (`"true"` is not `true`), and the
//! lengths make every prefix unambiguous: a lookup is one prefix scan, never a scan of records.

use serde_json::Value;

use crate::record::Collection;

/// The prefix shared by all entries of `field = value`.
pub fn prefix(collection: Collection, field: &str, value: &Value) -> Vec<u8> {
    let value = value.to_string();
    let mut key = Vec::with_capacity(6 + field.len() + value.len());
    key.push(collection as u8);
    // Field names are our own constants, far below 256 bytes.
    key.push(field.len() as u8);
    key.extend_from_slice(field.as_bytes());
    key.extend_from_slice(&(value.len() as u32).to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key
}

/// The key of one entry.
pub fn entry(collection: Collection, field: &str, value: &Value, id: &str) -> Vec<u8> {
    let mut key = prefix(collection, field, value);
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_overlap() {
        // "ab" + id "c" must not share a prefix with "a" + id "bc".
        let a = entry(Collection::Tools, "tool_type", &Value::from("ab"), "c");
        let b = prefix(Collection::Tools, "tool_type", &Value::from("a"));
        assert!(!a.starts_with(&b));
        let s = prefix(Collection::Functions, "is_system_action", &Value::from("true"));
        let t = prefix(Collection::Functions, "is_system_action", &Value::from(true));
        assert_ne!(s, t);
    }
}
