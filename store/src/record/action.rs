//! An action (seed `tools-sdk.txt`, `AgentAllowedToolAction`): a named group of registry tools
//! of one org, with a selector (`action_dsl`) that picks the best of them for a request. Unique
//! per `(mapping_org_id, action_type)`, stored under the key `<mapping_org_id>/<action_type>`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Collection, JsonMap, Record, json_field, lenient, truncate, validate_id, validate_named,
};
use crate::Error;

/// Most tools one action may group.
pub const MAX_ACTION_TOOLS: usize = 1000;

/// A group of tools of one org.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Action {
    #[serde(deserialize_with = "lenient::deserialize")]
    pub action_type: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_ids: Vec<String>,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub action_tags: Vec<String>,
    #[serde(with = "json_field")]
    pub action_metadata: JsonMap,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub action_search_description: String,
    #[serde(with = "json_field")]
    pub action_dsl: JsonMap,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub derived_from: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub mapping_org_id: String,
}

impl Action {
    /// The store key of `(org, action_type)`.
    pub fn key(org: &str, action_type: &str) -> String {
        format!("{org}/{action_type}")
    }
}

impl Record for Action {
    const COLLECTION: Collection = Collection::Actions;
    const INDEXED_FIELDS: &'static [&'static str] = &["mapping_org_id"];
    const ID_FIELD: &'static str = "action_type";

    fn id(&self) -> Cow<'_, str> {
        Cow::Owned(Action::key(&self.mapping_org_id, &self.action_type))
    }

    fn validate_key(key: &str) -> Result<(), Error> {
        let (org, action_type) = key.split_once('/').ok_or_else(|| {
            Error::Invalid(format!(
                "invalid action key '{}': expected <org>/<action_type>",
                truncate(key, 64)
            ))
        })?;
        validate_named("mapping_org_id", "org ids", org)?;
        validate_named("action_type", "action types", action_type)
    }

    fn validate(&self) -> Result<(), Error> {
        validate_named("mapping_org_id", "org ids", &self.mapping_org_id)?;
        validate_named("action_type", "action types", &self.action_type)?;
        if self.tool_ids.is_empty() {
            return Err(Error::Invalid(
                "tool_ids is empty: an action groups at least one tool".into(),
            ));
        }
        if self.tool_ids.len() > MAX_ACTION_TOOLS {
            return Err(Error::Invalid(format!(
                "tool_ids holds {} ids; an action groups at most {MAX_ACTION_TOOLS}",
                self.tool_ids.len()
            )));
        }
        for id in &self.tool_ids {
            validate_id("tool", id)?;
        }
        Ok(())
    }

    fn index_entries(&self, emit: &mut dyn FnMut(&'static str, Value)) {
        emit("mapping_org_id", Value::from(self.mapping_org_id.as_str()));
    }
}
