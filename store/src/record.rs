//! The domain records and what the store needs to know about each kind.
//!
//! Records are plain serde structs. Through serde_json they are the seed's JSON shapes, every
//! field always present. Through bincode (the on-disk encoding) the JSON-valued fields are
//! carried as a compact tagged tree, because bincode cannot decode a `serde_json::Value` (see
//! [`json_field`]).

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

mod acl_token;
mod action;
mod allow_list;
mod cluster_tool;
mod function;
mod id;
mod member;
mod serde_helpers;
mod tool;

pub use acl_token::{AclToken, MAX_TOKEN_DESCRIPTION, TOKEN_SCOPES};
pub use action::{Action, MAX_ACTION_TOOLS};
pub use allow_list::{AllowList, MAX_ALLOWED_TOOLS};
pub use cluster_tool::ClusterLocalTool;
pub use function::FunctionEntry;
pub(crate) use id::truncate;
pub use id::{ID_MAX_LEN, ID_RULE, validate_id, validate_named};
pub use member::Member;
pub use serde_helpers::write_only::{REDACTED, redacted};
pub(crate) use serde_helpers::{json_field, lenient};
pub use tool::ToolEntry;

/// Longest value of an indexed field (a type, a tag, a policy uri), in bytes.
pub const MAX_INDEXED_VALUE_LEN: usize = 1024;
/// Most index entries one record may have (its tags plus its other indexed fields).
pub const MAX_INDEX_ENTRIES: usize = 256;

/// A JSON object, the type of every dictionary-valued record field.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// The collections the store keeps. The discriminant is part of on-disk keys: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Collection {
    Tools = 1,
    Functions = 2,
    ClusterTools = 3,
    Actions = 4,
    AllowLists = 5,
    Members = 6,
    AclTokens = 7,
}

impl Collection {
    /// Every collection, in discriminant order.
    pub const ALL: [Collection; 7] = [
        Collection::Tools,
        Collection::Functions,
        Collection::ClusterTools,
        Collection::Actions,
        Collection::AllowLists,
        Collection::Members,
        Collection::AclTokens,
    ];

    /// The sled tree that holds this collection's envelopes.
    pub fn tree_name(self) -> &'static str {
        match self {
            Collection::Tools => "tools",
            Collection::Functions => "functions",
            Collection::ClusterTools => "cluster_tools",
            Collection::Actions => "actions",
            Collection::AllowLists => "allow_lists",
            Collection::Members => "members",
            Collection::AclTokens => "acl_tokens",
        }
    }

    /// The record kind as users read it in messages ("tool 'x' not found").
    pub fn kind(self) -> &'static str {
        match self {
            Collection::Tools => "tool",
            Collection::Functions => "function",
            Collection::ClusterTools => "cluster tool",
            Collection::Actions => "action",
            Collection::AllowLists => "allow-list",
            Collection::Members => "member",
            Collection::AclTokens => "token",
        }
    }

    pub fn from_u8(value: u8) -> Option<Collection> {
        Collection::ALL.into_iter().find(|c| *c as u8 == value)
    }
}

/// What the store needs from a record type.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const COLLECTION: Collection;
    /// Fields with a secondary index. Each must be a string, a bool or a list of strings.
    const INDEXED_FIELDS: &'static [&'static str];
    /// The name of the id field (`tool_id`).
    const ID_FIELD: &'static str;

    /// The key the record is stored under.
    fn id(&self) -> Cow<'_, str>;

    /// Checks a key that arrives without its record (a replicated tombstone).
    fn validate_key(key: &str) -> Result<(), Error> {
        validate_id(Self::COLLECTION.kind(), key)
    }

    /// Checks a record before it is written: the id, and the size of its indexed values (each
    /// one is part of an index key).
    fn validate(&self) -> Result<(), Error> {
        validate_id(Self::COLLECTION.kind(), &self.id())?;
        let mut entries = 0;
        let mut problem = None;
        self.index_entries(&mut |field, value| {
            entries += 1;
            let len = value.as_str().map_or(0, str::len);
            if problem.is_none() && len > MAX_INDEXED_VALUE_LEN {
                problem = Some(format!(
                    "{field} holds a value of {len} bytes; indexed values are limited to {MAX_INDEXED_VALUE_LEN}"
                ));
            }
        });
        if entries > MAX_INDEX_ENTRIES {
            problem.get_or_insert(format!(
                "too many indexed values ({entries}); at most {MAX_INDEX_ENTRIES} (tags included)"
            ));
        }
        problem.map_or(Ok(()), |p| Err(Error::Invalid(p)))
    }

    /// Calls `emit(field, value)` for every secondary-index entry of this record. Values are
    /// JSON scalars so that an index entry keeps the value's type (`"true"` is not `true`).
    fn index_entries(&self, emit: &mut dyn FnMut(&'static str, serde_json::Value));
}

/// A record of one of the two registries (tools, functions): what uploads and keyword search
/// need to know about it.
pub trait RegistryEntry: Record {
    /// The capitalised kind used in response messages ("Tool created successfully").
    const LABEL: &'static str;
    /// The code archive inside an upload bundle (`tool.zip`).
    const BUNDLE_CODE: &'static str;
    /// The manual inside an upload bundle (`tool.md`).
    const BUNDLE_DOC: &'static str;

    fn search_description(&self) -> &str;
    fn man_page(&self) -> &str;
    fn tags(&self) -> &[String];
    /// `tool_type` / `function_type`.
    fn record_type(&self) -> &str;
    /// `tool_metadata` / `function_metadata`.
    fn metadata(&self) -> &JsonMap;
    fn set_man_page(&mut self, doc: String);
    fn set_source_code_link(&mut self, link: String);
    /// The write-only credentials field's name (`default_tool_usage_credentials`).
    const CREDENTIALS_FIELD: &'static str;
    /// What decides the code the record runs (its code link, service URL, system tool, runtime),
    /// as one comparable text: credentials are handed only to the code they were given with.
    fn runs(&self) -> String;
    /// The credentials, as stored (sealed by the node that wrote them).
    fn credentials(&self) -> &JsonMap;
    fn credentials_mut(&mut self) -> &mut JsonMap;
}
