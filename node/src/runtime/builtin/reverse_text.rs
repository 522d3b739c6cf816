//! `reverse_text`: `{"text": "hello world"}` → `{"result": "dlrow olleh"}`.

use std::borrow::Cow;

use gridnode_store::JsonMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{builtin_metadata, object};
use crate::runtime::{Tool, ToolFuture};

pub struct ReverseText;

#[derive(Deserialize)]
struct Input<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

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

    fn call<'a>(&'a self, input: &'a [u8]) -> ToolFuture<'a> {
        Box::pin(async move {
            // Borrowed where the JSON has no escapes: no copy of the text before reversing it.
            let input: Input<'_> = serde_json::from_slice(input).map_err(|e| e.to_string())?;
            let result: String = input.text.chars().rev().collect();
            serde_json::to_vec(&Output { result }).map_err(|e| e.to_string())
        })
    }
}
