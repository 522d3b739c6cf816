//! An org's allow-list: the registry tool ids and cluster tool names its requests may run or
//! select (contract section 11). Stored under the org id; an org without one may run anything.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Collection, Record, lenient, validate_id};
use crate::Error;

/// Most entries one allow-list may hold.
pub const MAX_ALLOWED_TOOLS: usize = 10_000;

/// The tools one org may use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowList {
    #[serde(deserialize_with = "lenient::deserialize")]
    pub org_id: String,
    #[serde(deserialize_with = "lenient::deserialize")]
    pub allowed_tools: Vec<String>,
}

impl AllowList {
    pub fn allows(&self, tool: &str) -> bool {
        self.allowed_tools.iter().any(|allowed| allowed == tool)
    }
}

impl Record for AllowList {
    const COLLECTION: Collection = Collection::AllowLists;
    const INDEXED_FIELDS: &'static [&'static str] = &[];
    const ID_FIELD: &'static str = "org_id";

    fn id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.org_id)
    }

    fn validate(&self) -> Result<(), Error> {
        validate_id("org", &self.org_id)?;
        if self.allowed_tools.len() > MAX_ALLOWED_TOOLS {
            return Err(Error::Invalid(format!(
                "the allow-list holds {} entries; at most {MAX_ALLOWED_TOOLS}",
                self.allowed_tools.len()
            )));
        }
        for tool in &self.allowed_tools {
            validate_id("tool", tool)?;
        }
        Ok(())
    }

    fn index_entries(&self, _emit: &mut dyn FnMut(&'static str, Value)) {}
}
