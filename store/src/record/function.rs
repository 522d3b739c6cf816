//! The Functions Registry record: the seed's `FunctionEntry` (12 fields) plus
//! `function_source_code_link`, which the seed's upload computes and then loses.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Collection, JsonMap, Record, json_field, lenient};

/// A registered function (seed `functions-registry.txt`). Unknown fields are refused; a missing
/// or `null` field takes its empty value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionEntry {
    #[serde(deserialize_with = "lenient::deserialize")]
    pub function_id: String,
    #[serde(with = "json_field")]
    pub function_metadata: JsonMap,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub function_search_description: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub function_tags: Vec<String>,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub function_type: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub function_man_page_doc: String,
    #[serde(with = "json_field")]
    pub function_api_spec: JsonMap,
    #[serde(with = "json_field")]
    pub func_custom_actions_dsl_map: JsonMap,
    /// Write-only: reads show `"<redacted>"` values; the node keeps them sealed.
    #[serde(with = "super::serde_helpers::write_only")]
    pub default_func_usage_credentials: JsonMap,
    #[serde(with = "json_field")]
    pub open_api_spec: JsonMap,
    #[serde(with = "json_field")]
    pub api_parameters_to_cost_relation_data: JsonMap,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub is_system_action: bool,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub function_source_code_link: String,
}

impl Record for FunctionEntry {
    const COLLECTION: Collection = Collection::Functions;
    const INDEXED_FIELDS: &'static [&'static str] =
        &["function_type", "function_tags", "is_system_action"];
    const ID_FIELD: &'static str = "function_id";

    fn id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.function_id)
    }

    fn index_entries(&self, emit: &mut dyn FnMut(&'static str, Value)) {
        emit("function_type", Value::from(self.function_type.as_str()));
        for tag in &self.function_tags {
            emit("function_tags", Value::from(tag.as_str()));
        }
        emit("is_system_action", Value::from(self.is_system_action));
    }
}

impl super::RegistryEntry for FunctionEntry {
    const LABEL: &'static str = "Function";
    const BUNDLE_CODE: &'static str = "function.zip";
    const BUNDLE_DOC: &'static str = "function.md";

    fn search_description(&self) -> &str {
        &self.function_search_description
    }
    fn man_page(&self) -> &str {
        &self.function_man_page_doc
    }
    fn tags(&self) -> &[String] {
        &self.function_tags
    }
    fn record_type(&self) -> &str {
        &self.function_type
    }
    fn metadata(&self) -> &JsonMap {
        &self.function_metadata
    }
    fn set_man_page(&mut self, doc: String) {
        self.function_man_page_doc = doc;
    }
    fn set_source_code_link(&mut self, link: String) {
        self.function_source_code_link = link;
    }
    const CREDENTIALS_FIELD: &'static str = "default_func_usage_credentials";
    fn runs(&self) -> String {
        serde_json::json!([
            self.function_source_code_link,
            self.open_api_spec,
            self.function_metadata.get("runtime"),
        ])
        .to_string()
    }
    fn credentials(&self) -> &super::JsonMap {
        &self.default_func_usage_credentials
    }
    fn credentials_mut(&mut self) -> &mut super::JsonMap {
        &mut self.default_func_usage_credentials
    }
}
