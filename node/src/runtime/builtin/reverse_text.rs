//! `reverse_text`: `{"text": "hello world"}` → `{"result": "dlrow olleh"}`.

use gridnode_store::JsonMap;
use serde_json::json;

use super::object;
use crate::runtime::{Tool, ToolFuture};

pub struct ReverseText;

impl Tool for ReverseText {
    fn name(&self) -> &str {
        "reverse_text"
    }

    fn description(&self) -> &str {
        "Reverses the text it is given"
    }

    fn input_spec(&self) -> JsonMap {
        object(json!({"text": "string"}))
    }

    fn metadata(&self) -> JsonMap {
        object(json!({"version": env!("CARGO_PKG_VERSION"), "builtin": true}))
    }

    fn call<'a>(&'a self, input: &'a [u8]) -> ToolFuture<'a> {
        Box::pin(async move {
            let value: serde_json::Value =
                serde_json::from_slice(input).map_err(|e| e.to_string())?;
            let text = value["text"].as_str().unwrap_or_default();
            let reversed: String = text.chars().rev().collect();
            serde_json::to_vec(&json!({ "result": reversed })).map_err(|e| e.to_string())
        })
    }
}
