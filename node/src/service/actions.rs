//! Actions (contract section 11, the seed's `create_action` and DSL search): named groups of
//! registry tools of one org, each with a selector (`action_dsl`) that picks the best of its
//! tools for a request. Running the chosen tool is execution's (`Target::Action`).

use gridnode_store::{Action, JsonMap, Page, Store, ToolEntry};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::orgs::{Orgs, check_org, refused};
use crate::service::selection::{Choice, Scope, Selection, Selector};

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Actions {
    store: Store,
    selection: Selection,
    orgs: Orgs,
}

impl Actions {
    pub fn new(store: Store, selection: Selection, orgs: Orgs) -> Actions {
        Actions { store, selection, orgs }
    }

    /// Creates an action (`POST /actions`). Every tool id must exist and be allowed for the
    /// action's org; the selector must parse; `(mapping_org_id, action_type)` must be new.
    pub async fn create(&self, body: Value, caller_org: Option<&str>) -> Result<Action> {
        let Value::Object(fields) = &body else {
            return Err(Error::BadRequest(
                "expected a json object with action_type, mapping_org_id and tool_ids".into(),
            ));
        };
        for field in ["action_type", "mapping_org_id", "tool_ids"] {
            if !fields.contains_key(field) {
                return Err(Error::BadRequest(format!("missing field '{field}'")));
            }
        }
        let action: Action = serde_json::from_value(body)
            .map_err(|e| Error::BadRequest(format!("invalid action: {e}")))?;
        gridnode_store::Record::validate(&action).map_err(|e| Error::BadRequest(e.to_string()))?;
        same_org(caller_org, &action.mapping_org_id)?;
        if !action.action_dsl.is_empty() {
            Selector::check(&Value::Object(action.action_dsl.clone()))
                .map_err(|e| Error::BadRequest(format!("action_dsl: {e}")))?;
        }
        // Existence first (400 naming the missing id), then the org's allow-list (403).
        let ids = action.tool_ids.clone();
        crate::service::blocking(&self.store, move |store| {
                for id in &ids {
                    if store.try_get::<ToolEntry>(id)?.is_none() {
                        return Err(Error::BadRequest(format!(
                            "tool_ids names tool '{id}', which is not in the registry: register it first"
                        )));
                    }
                }
                Ok(())
            })
            .await?;
        if let Some(list) = self.orgs.allow_list(&action.mapping_org_id).await?
            && let Some(outside) = action.tool_ids.iter().find(|id| !list.allows(id))
        {
            return Err(refused(outside, &action.mapping_org_id));
        }
        let created = action.clone();
        crate::service::blocking(&self.store, move |store| {
            store.create(&action)?;
            Ok(())
        })
        .await?;
        Ok(created)
    }

    /// Every action, or one org's (`GET /actions?org=`).
    pub async fn list(&self, org: Option<String>, page: Page) -> Result<Vec<Action>> {
        if let Some(org) = &org {
            check_org(org)?;
        }
        crate::service::blocking(&self.store, move |store| match org {
            Some(org) => Ok(store.find::<Action>("mapping_org_id", &Value::from(org), page)?),
            None => Ok(store.list::<Action>(page)?),
        })
        .await
    }

    /// One action (`GET /actions/{org}/{action_type}`).
    pub async fn get(
        &self,
        org: &str,
        action_type: &str,
        caller_org: Option<&str>,
    ) -> Result<Action> {
        check_org(org)?;
        same_org(caller_org, org)?;
        let (org, action_type) = (org.to_owned(), action_type.to_owned());
        crate::service::blocking(&self.store, move |store| {
            store.try_get::<Action>(&Action::key(&org, &action_type))?.ok_or_else(|| {
                Error::NotFound(format!(
                    "action '{}' not found for org '{org}'",
                    action_type.chars().take(128).collect::<String>()
                ))
            })
        })
        .await
    }

    /// Deletes an action (`DELETE /actions/{org}/{action_type}`).
    pub async fn delete(
        &self,
        org: &str,
        action_type: &str,
        caller_org: Option<&str>,
    ) -> Result<()> {
        self.get(org, action_type, caller_org).await?;
        let key = Action::key(org, action_type);
        crate::service::blocking(&self.store, move |store| {
            store.delete::<Action>(&key)?;
            Ok(())
        })
        .await
    }

    /// Picks among the action's tools with its `action_dsl` (`POST /actions/{org}/{type}/select`).
    pub async fn select(
        &self,
        org: &str,
        action_type: &str,
        params: &JsonMap,
        caller_org: Option<&str>,
    ) -> Result<Choice> {
        let action = self.get(org, action_type, caller_org).await?;
        self.selection
            .select(
                Scope::Ids(action.tool_ids),
                &Value::Object(action.action_dsl),
                params,
                Some(org),
            )
            .await
    }
}

/// A request that names its org may only use that org's actions.
fn same_org(caller: Option<&str>, org: &str) -> Result<()> {
    match caller {
        Some(caller) if caller != org => {
            Err(Error::Forbidden(format!("org '{caller}' may not use the actions of org '{org}'")))
        }
        _ => Ok(()),
    }
}
