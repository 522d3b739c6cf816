//! A tool hosted by one node's runtime (the seed's `ClusterLocalTools`, without its `func`):
//! unique per `(name, node_id)`, stored under the key `<node_id>/<name>`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Collection, JsonMap, Record, json_field, lenient, validate_id};
use crate::Error;

/// A node-local tool record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterLocalTool {
    #[serde(deserialize_with = "lenient::deserialize")]
    pub name: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub node_id: String,
    #[serde(with = "json_field")]
    pub input_spec: JsonMap,
    #[serde(with = "json_field")]
    pub metadata: JsonMap,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub description: String,
}

impl ClusterLocalTool {
    /// The store key of `(node_id, name)`.
    pub fn key(node_id: &str, name: &str) -> String {
        format!("{node_id}/{name}")
    }

    /// The `(node_id, name)` a store key names, when it is one.
    pub fn split_key(key: &str) -> Option<(&str, &str)> {
        key.split_once('/')
    }
}

impl Record for ClusterLocalTool {
    const COLLECTION: Collection = Collection::ClusterTools;
    const INDEXED_FIELDS: &'static [&'static str] = &["node_id", "name"];
    const ID_FIELD: &'static str = "name";

    fn id(&self) -> Cow<'_, str> {
        Cow::Owned(ClusterLocalTool::key(&self.node_id, &self.name))
    }

    fn validate_key(key: &str) -> Result<(), Error> {
        let (node_id, name) = ClusterLocalTool::split_key(key).ok_or_else(|| {
            Error::Invalid(format!(
                "invalid node-local tool key '{}': expected <node_id>/<name>",
                super::truncate(key, 64)
            ))
        })?;
        ClusterLocalTool { name: name.into(), node_id: node_id.into(), ..Default::default() }
            .validate()
    }

    fn validate(&self) -> Result<(), Error> {
        super::validate_named("tool name", "names", &self.name)?;
        validate_id("node", &self.node_id)
    }

    fn index_entries(&self, emit: &mut dyn FnMut(&'static str, Value)) {
        emit("node_id", Value::from(self.node_id.as_str()));
        emit("name", Value::from(self.name.as_str()));
    }
}
