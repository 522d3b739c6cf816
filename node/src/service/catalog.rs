//! An in-memory JSON view of the Tools Registry, kept current by following the store's change
//! feed, for selection: a selector's filter and rank keys are evaluated over every tool, and
//! reading and rendering 10k records from sled for each request would cost tens of
//! milliseconds. Built on first use; man pages are left out (they are most of a record's bytes
//! and rarely filtered on — a selector that names `tool_man_page_doc` reads the store instead).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use gridnode_store::{Collection, Store, ToolEntry};
use serde_json::Value;

use crate::error::{Error, Result};

/// The field left out of the view.
pub const LEFT_OUT: &str = "tool_man_page_doc";
/// Changes read from the feed at once while catching up.
const BATCH: usize = 10_000;

/// The view. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
    state: Arc<RwLock<Option<State>>>,
}

/// The tools at one feed position.
#[derive(Debug, Default)]
pub struct State {
    pub applied: u64,
    pub tools: HashMap<String, Arc<Value>>,
}

impl Catalog {
    pub fn new(store: Store) -> Catalog {
        Catalog { store, state: Arc::default() }
    }

    /// Runs `read` over the view brought up to date with the store. Blocks: call it from a
    /// blocking task.
    pub fn read<T>(&self, read: impl FnOnce(&State) -> T) -> Result<T> {
        let last = self.store.last_seq();
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(state) = state.as_ref()
                && state.applied >= last
            {
                return Ok(read(state));
            }
        }
        let mut guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.load()?);
        }
        let state = guard.as_mut().ok_or_else(|| Error::Internal("catalog not loaded".into()))?;
        self.catch_up(state)?;
        Ok(read(state))
    }

    fn load(&self) -> Result<State> {
        // Read the position first: changes committed during the scan are applied again after.
        let applied = self.store.last_seq();
        let mut tools = HashMap::new();
        for tool in self.store.live::<ToolEntry>() {
            let tool = tool?;
            tools.insert(tool.tool_id.clone(), Arc::new(view(&tool)));
        }
        Ok(State { applied, tools })
    }

    fn catch_up(&self, state: &mut State) -> Result<()> {
        loop {
            let changes = self.store.changes_since(state.applied, BATCH)?;
            let Some(last) = changes.last().map(|c| c.seq) else { return Ok(()) };
            for change in changes {
                if change.collection != Collection::Tools as u8 {
                    continue;
                }
                match self.store.try_get::<ToolEntry>(&change.id)? {
                    Some(tool) => {
                        state.tools.insert(change.id, Arc::new(view(&tool)));
                    }
                    None => {
                        state.tools.remove(&change.id);
                    }
                }
            }
            state.applied = last;
        }
    }
}

/// A tool's JSON without its man page.
fn view(tool: &ToolEntry) -> Value {
    let mut value = serde_json::to_value(tool).unwrap_or_default();
    if let Value::Object(fields) = &mut value {
        fields.remove(LEFT_OUT);
    }
    value
}
