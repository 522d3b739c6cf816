//! `reverse_text`: `{"text": "hello world"}` → `{"result": "dlrow olleh"}`.

use gridnode_store::JsonMap;
use serde::Serialize;
use serde_json::json;

use super::{builtin_metadata, object};
use crate::runtime::{Input, Tool, ToolFuture};

pub struct ReverseText;

#[derive(Serialize)]
struct Output {
    result: String,
}

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
        builtin_metadata()
    }

    fn call<'a>(&'a self, input: &'a Input) -> ToolFuture<'a> {
        Box::pin(async move {
            // The input as its spec check parsed it: no second parse, no copy of the text.
            let text = input.json()?.get("text").and_then(|text| text.as_str());
            let text = text.ok_or("field 'text' is required and must be a string")?;
            let result: String = text.chars().rev().collect();
            serde_json::to_vec(&Output { result }).map_err(|e| e.to_string())
        })
    }
}
