//! `echo`: returns its input bytes unchanged.

use gridnode_store::JsonMap;
use serde_json::json;

use super::object;
use crate::runtime::{Tool, ToolFuture};

pub struct Echo;

impl Tool for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    fn description(&self) -> &str {
        "Returns its input bytes unchanged"
    }

    fn metadata(&self) -> JsonMap {
        object(json!({"version": env!("CARGO_PKG_VERSION"), "builtin": true}))
    }

    fn call<'a>(&'a self, input: &'a [u8]) -> ToolFuture<'a> {
        Box::pin(async move { Ok(input.to_vec()) })
    }
}
