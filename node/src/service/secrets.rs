//! Write-only credentials (contract section 14): `default_tool_usage_credentials` and
//! `default_func_usage_credentials` are sealed before they are stored — XChaCha20-Poly1305 with a
//! key derived from the cluster key, so every member can open what any member sealed, and the
//! store and replication only ever carry ciphertext — and opened only to hand a bundle tool its
//! `GRIDNODE_CREDENTIALS`. Every read shows `"<redacted>"` (the store's serde does that); a
//! filter or selector that names them is refused, so they cannot be guessed through `$regex`.
//!
//! A node without a cluster key (`--open-cluster`) seals with a key file of its own
//! (`<data-dir>/credentials.key`): what it seals opens on it alone.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use gridnode_store::{JsonMap, REDACTED};
use serde_json::Value;

use crate::error::{Error, Result};

/// The write-only fields, as filters and selectors would name them.
pub const WRITE_ONLY: [&str; 2] = [
    <gridnode_store::ToolEntry as gridnode_store::RegistryEntry>::CREDENTIALS_FIELD,
    <gridnode_store::FunctionEntry as gridnode_store::RegistryEntry>::CREDENTIALS_FIELD,
];

/// Every sealed value starts with this.
pub const SEALED: &str = "gnsealed:1:";
const DOMAIN: &[u8] = b"gridnode/credentials/1\0";
const NONCE_BYTES: usize = 24;
/// How deep a filter is searched for a write-only field.
const MAX_FILTER_DEPTH: usize = 64;

/// Seals and opens credential values. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: std::sync::Arc<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// With the key derived from `key` (the cluster key, or the node's own key file).
    pub fn new(key: &gridnode_federation::ClusterKey) -> Sealer {
        let key = key.derive(DOMAIN);
        Sealer { cipher: std::sync::Arc::new(XChaCha20Poly1305::new(&key.into())) }
    }

    /// Seals the values of `new`. A value sent back as `"<redacted>"` (a record read, edited and
    /// written back whole) keeps the value `current` holds for that key.
    pub fn seal(&self, new: &mut JsonMap, current: Option<&JsonMap>, field: &str) -> Result<()> {
        for (key, value) in new.iter_mut() {
            if value.as_str() == Some(REDACTED) {
                *value = current.and_then(|c| c.get(key)).cloned().ok_or_else(|| {
                    Error::BadRequest(format!(
                        "{field}.{key} is \"{REDACTED}\": send the credential's value (reads never \
                         show it)"
                    ))
                })?;
            }
            // A kept value may still be plain (written by an older build): sealed too.
            if !is_sealed(value) {
                *value = Value::String(self.seal_value(value));
            }
        }
        Ok(())
    }

    /// Whether every value of `map` is sealed.
    pub fn all_sealed(map: &JsonMap) -> bool {
        map.values().all(is_sealed)
    }

    /// The values as they were given (plain values written before sealing are taken as they
    /// are).
    pub fn open(&self, map: &JsonMap) -> Result<JsonMap> {
        map.iter().map(|(key, value)| Ok((key.clone(), self.open_value(value)?))).collect()
    }

    fn seal_value(&self, value: &Value) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let plain = value.to_string();
        // Encryption of a byte slice in memory cannot fail.
        let sealed =
            self.cipher.encrypt(XNonce::from_slice(&nonce), plain.as_bytes()).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED}{}", BASE64.encode(out))
    }

    fn open_value(&self, value: &Value) -> Result<Value> {
        let Some(sealed) = value.as_str().and_then(|s| s.strip_prefix(SEALED)) else {
            return Ok(value.clone());
        };
        let cannot = || {
            Error::BadRequest(
                "a credential of this tool cannot be opened on this node: it was sealed with \
                 another cluster key (register the credentials again here)"
                    .into(),
            )
        };
        let bytes = BASE64.decode(sealed).map_err(|_| cannot())?;
        if bytes.len() < NONCE_BYTES {
            return Err(cannot());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| cannot())?;
        serde_json::from_slice(&plain).map_err(|_| cannot())
    }
}

fn is_sealed(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.starts_with(SEALED))
}

/// Whether a field path (`a.b.c`) is `field` or inside it.
fn names(path: &str, field: &str) -> bool {
    path.strip_prefix(field).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// 400 when `filter` (a query filter or a selector, as JSON) names a write-only field.
pub fn refuse_write_only(filter: &Value, fields: &[&str]) -> Result<()> {
    fn walk(value: &Value, fields: &[&str], depth: usize) -> Option<String> {
        if depth > MAX_FILTER_DEPTH {
            return None;
        }
        match value {
            Value::Object(map) => map.iter().find_map(|(key, value)| {
                let named = fields.iter().find(|field| names(key, field));
                match named {
                    Some(field) => Some((*field).to_owned()),
                    None => walk(value, fields, depth + 1),
                }
            }),
            Value::Array(items) => items.iter().find_map(|item| walk(item, fields, depth + 1)),
            Value::String(text) => {
                fields.iter().find(|field| names(text, field)).map(|f| (*f).to_owned())
            }
            _ => None,
        }
    }
    match walk(filter, fields, 0) {
        Some(field) => Err(Error::BadRequest(format!(
            "{field} is write-only: it cannot be filtered, selected or ranked on"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_sealed_opened_kept_when_redacted_and_never_shown() {
        let key = gridnode_federation::ClusterKey::generate();
        let sealer = Sealer::new(&key);
        let mut creds: JsonMap = json!({"api_key": "s3cret", "n": 7}).as_object().unwrap().clone();
        sealer.seal(&mut creds, None, "c").unwrap();
        assert!(Sealer::all_sealed(&creds));
        assert!(!serde_json::to_string(&creds).unwrap().contains("s3cret"));
        assert_eq!(
            Value::Object(sealer.open(&creds).unwrap()),
            json!({"api_key": "s3cret", "n": 7})
        );
        // Sealing twice changes nothing; a redacted value keeps the stored one.
        let mut again: JsonMap = json!({"api_key": REDACTED}).as_object().unwrap().clone();
        sealer.seal(&mut again, Some(&creds), "c").unwrap();
        assert_eq!(again["api_key"], creds["api_key"]);
        let mut unknown: JsonMap = json!({"other": REDACTED}).as_object().unwrap().clone();
        assert!(sealer.seal(&mut unknown, Some(&creds), "c").is_err());
        // Another key cannot open it.
        let stranger = Sealer::new(&gridnode_federation::ClusterKey::generate());
        assert!(stranger.open(&creds).is_err());
        // Plain values from before sealing open as they are.
        let plain: JsonMap = json!({"k": "v"}).as_object().unwrap().clone();
        assert_eq!(sealer.open(&plain).unwrap(), plain);
    }

    #[test]
    fn filters_naming_a_write_only_field_are_refused() {
        let fields = ["default_tool_usage_credentials"];
        for filter in [
            json!({"default_tool_usage_credentials.api_key": {"$regex": "^a"}}),
            json!({"$or": [{"tool_type": "x"}, {"default_tool_usage_credentials": {"$exists": true}}]}),
            json!({"sort": [{"field": "default_tool_usage_credentials.k"}]}),
        ] {
            assert!(refuse_write_only(&filter, &fields).is_err(), "{filter}");
        }
        assert!(refuse_write_only(&json!({"tool_type": "x"}), &fields).is_ok());
    }
}
