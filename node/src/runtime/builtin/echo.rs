//! `echo`: returns its input bytes unchanged.

use gridnode_store::JsonMap;

use super::builtin_metadata;
use crate::runtime::{Input, Tool, ToolFuture};

pub struct Echo;

impl Tool for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    fn description(&self) -> &str {
        "Returns its input bytes unchanged"
    }

    fn metadata(&self) -> JsonMap {
        builtin_metadata()
    }

    fn call<'a>(&'a self, input: &'a Input) -> ToolFuture<'a> {
        Box::pin(async move { Ok(input.bytes().to_vec()) })
    }
}
