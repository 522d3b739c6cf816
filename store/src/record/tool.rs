//! The Tools Registry record: the seed's `ToolEntry`, all 16 fields.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Collection, JsonMap, Record, json_field, lenient};

/// A registered tool (seed `tools-registry.txt`). Unknown fields are refused; a missing or
/// `null` field takes its empty value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolEntry {
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_id: String,
    #[serde(with = "json_field")]
    pub tool_metadata: JsonMap,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_search_description: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_tags: Vec<String>,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_type: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_man_page_doc: String,
    #[serde(with = "json_field")]
    pub tool_api_spec: JsonMap,
    #[serde(with = "json_field")]
    pub tool_custom_actions_dsl_map: JsonMap,
    /// Write-only: reads show `"<redacted>"` values; the node keeps them sealed.
    #[serde(with = "super::serde_helpers::write_only")]
    pub default_tool_usage_credentials: JsonMap,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_execution_mode: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_policy_rule_uri: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_source_code_link: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_service_url: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_system_function_rpc_id: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_validation_policy_rule_uri: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub tool_validation_mode: String,
}

impl Record for ToolEntry {
    const COLLECTION: Collection = Collection::Tools;
    const INDEXED_FIELDS: &'static [&'static str] =
        &["tool_type", "tool_tags", "tool_execution_mode", "tool_policy_rule_uri"];
    const ID_FIELD: &'static str = "tool_id";

    fn id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.tool_id)
    }

    fn index_entries(&self, emit: &mut dyn FnMut(&'static str, Value)) {
        emit("tool_type", Value::from(self.tool_type.as_str()));
        for tag in &self.tool_tags {
            emit("tool_tags", Value::from(tag.as_str()));
        }
        emit("tool_execution_mode", Value::from(self.tool_execution_mode.as_str()));
        emit("tool_policy_rule_uri", Value::from(self.tool_policy_rule_uri.as_str()));
    }
}

impl super::RegistryEntry for ToolEntry {
    const LABEL: &'static str = "Tool";
    const BUNDLE_CODE: &'static str = "tool.zip";
    const BUNDLE_DOC: &'static str = "tool.md";

    fn search_description(&self) -> &str {
        &self.tool_search_description
    }
    fn man_page(&self) -> &str {
        &self.tool_man_page_doc
    }
    fn tags(&self) -> &[String] {
        &self.tool_tags
    }
    fn record_type(&self) -> &str {
        &self.tool_type
    }
    fn metadata(&self) -> &JsonMap {
        &self.tool_metadata
    }
    fn set_man_page(&mut self, doc: String) {
        self.tool_man_page_doc = doc;
    }
    fn set_source_code_link(&mut self, link: String) {
        self.tool_source_code_link = link;
    }
    const CREDENTIALS_FIELD: &'static str = "default_tool_usage_credentials";
    fn runs(&self) -> String {
        serde_json::json!([
            self.tool_source_code_link,
            self.tool_service_url,
            self.tool_system_function_rpc_id,
            self.tool_metadata.get("runtime"),
        ])
        .to_string()
    }
    fn credentials(&self) -> &super::JsonMap {
        &self.default_tool_usage_credentials
    }
    fn credentials_mut(&mut self) -> &mut super::JsonMap {
        &mut self.default_tool_usage_credentials
    }
}
