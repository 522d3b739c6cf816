//! Org allow-lists (contract section 11): the registry tool ids and cluster tool names an org's
//! requests may run or select. An org without a list may use every tool. Lists are records of
//! the store, so they replicate to every peer like the registry and are enforced everywhere.

use std::sync::Arc;

use gridnode_store::{AllowList, MAX_ALLOWED_TOOLS, Store, validate_id};

use crate::error::{Error, Result};
use crate::service::fresh::Fresh;

/// Orgs whose lists are cached at most (past this the cache starts over).
const MAX_CACHED: usize = 4096;

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Orgs {
    store: Store,
    /// `org` → its list (none: no list), while the store has not changed.
    cache: Arc<Fresh<String, Option<Arc<AllowList>>>>,
}

impl Orgs {
    pub fn new(store: Store) -> Orgs {
        Orgs { store, cache: Arc::new(Fresh::new(MAX_CACHED)) }
    }

    /// Sets (or replaces) an org's allow-list (`PUT /orgs/{org}/allowed-tools`).
    pub async fn put(&self, org: String, tools: Vec<String>) -> Result<()> {
        check_org(&org)?;
        if tools.len() > MAX_ALLOWED_TOOLS {
            return Err(Error::BadRequest(format!(
                "the allow-list holds {} entries; at most {MAX_ALLOWED_TOOLS}",
                tools.len()
            )));
        }
        let mut allowed_tools = Vec::with_capacity(tools.len());
        for tool in tools {
            validate_id("tool", &tool).map_err(|e| {
                Error::BadRequest(format!(
                    "allow-list entry: {e} (use a tool id or a cluster tool name)"
                ))
            })?;
            if !allowed_tools.contains(&tool) {
                allowed_tools.push(tool);
            }
        }
        let list = AllowList { org_id: org, allowed_tools };
        crate::service::blocking(&self.store, move |store| {
            store.put(&list)?;
            Ok(())
        })
        .await
    }

    /// An org's allow-list (`GET /orgs/{org}/allowed-tools`); 404 when it has none.
    pub async fn get(&self, org: String) -> Result<AllowList> {
        check_org(&org)?;
        match self.allow_list(&org).await? {
            Some(list) => Ok(list.as_ref().clone()),
            None => Err(no_list(&org)),
        }
    }

    /// Removes an org's allow-list: it may use every tool again.
    pub async fn delete(&self, org: String) -> Result<()> {
        check_org(&org)?;
        crate::service::blocking(&self.store, move |store| {
            if store.try_get::<AllowList>(&org)?.is_none() {
                return Err(no_list(&org));
            }
            store.delete::<AllowList>(&org)?;
            Ok(())
        })
        .await
    }

    /// 403 when `org` has an allow-list without `tool`. No org, or an org without a list, may
    /// use anything.
    pub async fn check(&self, org: Option<&str>, tool: &str) -> Result<()> {
        let Some(org) = org else { return Ok(()) };
        match self.allow_list(org).await? {
            Some(list) if !list.allows(tool) => Err(refused(tool, org)),
            _ => Ok(()),
        }
    }

    /// An org's list, read again only when the store has changed since it was last read.
    pub async fn allow_list(&self, org: &str) -> Result<Option<Arc<AllowList>>> {
        check_org(org)?;
        let seq = self.store.last_seq();
        if let Some(list) = self.cache.get(&org.to_owned(), seq) {
            return Ok(list);
        }
        let key = org.to_owned();
        let list = crate::service::blocking(&self.store, move |store| {
            Ok(store.try_get::<AllowList>(&key)?.map(Arc::new))
        })
        .await?;
        self.cache.insert(org.to_owned(), seq, list.clone());
        Ok(list)
    }
}

/// The contract's refusal: `tool 'X' is not allowed for org 'Y'`.
pub fn refused(tool: &str, org: &str) -> Error {
    Error::Forbidden(format!("tool '{tool}' is not allowed for org '{org}'"))
}

fn no_list(org: &str) -> Error {
    Error::NotFound(format!("org '{org}' has no allow-list: it may use every tool"))
}

/// Org ids follow the id pattern.
pub fn check_org(org: &str) -> Result<()> {
    gridnode_store::validate_named("org id", "org ids", org)
        .map_err(|e| Error::BadRequest(e.to_string()))
}
