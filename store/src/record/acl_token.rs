//! An access token (contract section 12): what a bearer may do, replicated like every record so
//! that a token made on one node works on every node and a delete revokes it everywhere. The
//! secret itself is never stored or replicated: only its SHA-256.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Collection, Record, lenient, validate_id};
use crate::Error;

/// Longest description, in bytes.
pub const MAX_TOKEN_DESCRIPTION: usize = 1024;
/// The scopes a token may hold.
pub const TOKEN_SCOPES: [&str; 4] = ["read", "write", "execute", "admin"];

/// One token, stored under its id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclToken {
    #[serde(deserialize_with = "lenient::deserialize")]
    pub token_id: String,
    /// SHA-256 of the secret, lowercase hex.
    #[serde(deserialize_with = "lenient::deserialize")]
    pub secret_sha256: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub description: String,
    /// Some of [`TOKEN_SCOPES`].
    #[serde(deserialize_with = "lenient::deserialize")]
    pub scopes: Vec<String>,
    /// The org the token acts as; empty when unbound.
    #[serde(deserialize_with = "lenient::deserialize")]
    pub org: String,
    /// Milliseconds since the Unix epoch; 0 when it never expires.
    #[serde(deserialize_with = "lenient::deserialize")]
    pub expires_at_ms: u64,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub created_at_ms: u64,
    /// The token id that made it ("admin" for the management secret).
    #[serde(deserialize_with = "lenient::deserialize")]
    pub created_by: String,
}

impl Record for AclToken {
    const COLLECTION: Collection = Collection::AclTokens;
    const INDEXED_FIELDS: &'static [&'static str] = &[];
    const ID_FIELD: &'static str = "token_id";

    fn id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.token_id)
    }

    fn validate(&self) -> Result<(), Error> {
        validate_id("token", &self.token_id)?;
        if !crate::is_sha256_hex(&self.secret_sha256) {
            return Err(Error::Invalid(format!(
                "token '{}' holds no valid secret hash",
                self.token_id
            )));
        }
        if self.description.len() > MAX_TOKEN_DESCRIPTION {
            return Err(Error::Invalid(format!(
                "the description is {} bytes; at most {MAX_TOKEN_DESCRIPTION}",
                self.description.len()
            )));
        }
        if self.scopes.is_empty() || self.scopes.len() > TOKEN_SCOPES.len() {
            return Err(Error::Invalid(format!(
                "a token needs one or more of the scopes {}",
                TOKEN_SCOPES.join(", ")
            )));
        }
        for scope in &self.scopes {
            if !TOKEN_SCOPES.contains(&scope.as_str()) {
                return Err(Error::Invalid(format!(
                    "unknown scope '{}': use {}",
                    super::truncate(scope, 64),
                    TOKEN_SCOPES.join(", ")
                )));
            }
        }
        if !self.org.is_empty() {
            validate_id("org", &self.org)?;
        }
        Ok(())
    }

    fn index_entries(&self, _emit: &mut dyn FnMut(&'static str, Value)) {}
}
