//! The `static` resolver: a `node_id → host:port` table from the config (`[resolver.static]`),
//! for nodes outside the federation with fixed addresses.

use std::collections::BTreeMap;

use super::{ResolveError, ResolveFuture, Resolver};

#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    table: BTreeMap<String, String>,
}

impl StaticResolver {
    /// A table checked by the config's validation.
    pub fn new(table: BTreeMap<String, String>) -> StaticResolver {
        StaticResolver { table }
    }
}

impl Resolver for StaticResolver {
    fn name(&self) -> &'static str {
        "static"
    }

    fn resolve<'a>(&'a self, node_id: &'a str) -> ResolveFuture<'a> {
        let answer = self.table.get(node_id).cloned().ok_or_else(|| {
            ResolveError::Unknown(format!("no entry for '{node_id}' in [resolver.static]"))
        });
        Box::pin(std::future::ready(answer))
    }
}
