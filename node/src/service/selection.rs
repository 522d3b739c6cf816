//! Rule-based tool selection (contract section 11, the seed's DSL search): a selector
//! `{"filter", "rank", "limit"}` picks the best tools among all registry tools or an action's,
//! after `$param.NAME` strings are replaced by the request's `search_parameters`. The filter is
//! the generic query language (section 7); rank keys are a field, full-text relevance, or the
//! live load of the nodes hosting the tool; ties fall to the next key, then to the id. Every
//! choice comes with an explanation listing the ranked candidates and their key values.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use gridnode_federation::Load;
use gridnode_store::query::Filter;
use gridnode_store::{Collection, JsonMap, Record, Store, ToolEntry};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::service::Registry;
use crate::service::catalog::{self, Catalog};
use crate::service::cluster::Cluster;
use crate::service::cluster_tools::ClusterTools;
use crate::service::cluster_tools::candidates::load_rank;
use crate::service::execution::Kind;
use crate::service::orgs::{Orgs, refused};

/// Candidates listed in an explanation at most (the best first).
pub const MAX_EXPLAINED: usize = 100;
/// Most tools one selection returns.
pub const MAX_LIMIT: usize = 100;
/// Most rank keys in one selector.
pub const MAX_RANK_KEYS: usize = 8;

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    filter_json: Value,
    filter: Filter,
    rank: Vec<RankKey>,
    limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum RankKey {
    Field { path: String, descending: bool },
    Text(String),
    Load,
}

impl RankKey {
    fn json(&self) -> Value {
        match self {
            RankKey::Field { path, descending } => {
                json!({"field": path, "order": if *descending { "desc" } else { "asc" }})
            }
            RankKey::Text(text) => json!({ "text": text }),
            RankKey::Load => json!({ "load": "asc" }),
        }
    }
}

impl Selector {
    /// Replaces `$param.NAME` strings with `params`, then parses.
    pub fn parse(selector: &Value, params: &JsonMap) -> Result<Selector> {
        use crate::service::secrets::{WRITE_ONLY, refuse_write_only};
        refuse_write_only(selector, &WRITE_ONLY)?;
        let selector = substitute(selector, params)?;
        refuse_write_only(&selector, &WRITE_ONLY)?;
        let Value::Object(fields) = &selector else {
            return Err(bad(
                "a selector is a json object: {\"filter\": {…}, \"rank\": […], \"limit\": 1}",
            ));
        };
        if let Some(unknown) =
            fields.keys().find(|k| !matches!(k.as_str(), "filter" | "rank" | "limit"))
        {
            return Err(bad(&format!(
                "unknown selector field '{}': use filter, rank and limit",
                unknown.chars().take(40).collect::<String>()
            )));
        }
        let filter_json = fields.get("filter").cloned().unwrap_or_else(|| json!({}));
        if !filter_json.is_object() {
            return Err(bad("selector.filter must be a json object (a generic query)"));
        }
        let filter = Filter::parse(&filter_json)
            .map_err(|e| Error::BadRequest(format!("selector.filter: {e}")))?;
        let rank = match fields.get("rank") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(keys)) if keys.len() <= MAX_RANK_KEYS => {
                keys.iter().map(rank_key).collect::<Result<_>>()?
            }
            Some(Value::Array(_)) => {
                return Err(bad(&format!("selector.rank holds more than {MAX_RANK_KEYS} keys")));
            }
            Some(_) => return Err(bad("selector.rank must be an array of rank keys")),
        };
        let limit = match fields.get("limit") {
            None | Some(Value::Null) => 1,
            Some(value) => match value.as_u64() {
                Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
                _ => {
                    return Err(bad(&format!(
                        "selector.limit must be a whole number from 1 to {MAX_LIMIT}"
                    )));
                }
            },
        };
        Ok(Selector { filter_json, filter, rank, limit })
    }

    /// Checks a selector stored for later (an action's): fully when it uses no `$param`, else
    /// its shape only (the parameters' values decide the rest at selection time).
    pub fn check(selector: &Value) -> Result<()> {
        if !selector.to_string().contains(PARAM) {
            return Selector::parse(selector, &JsonMap::new()).map(drop);
        }
        match selector {
            Value::Object(fields) => {
                match fields.keys().find(|k| !matches!(k.as_str(), "filter" | "rank" | "limit")) {
                    Some(unknown) => Err(bad(&format!(
                        "unknown selector field '{}': use filter, rank and limit",
                        unknown.chars().take(40).collect::<String>()
                    ))),
                    None => Ok(()),
                }
            }
            _ => Err(bad(
                "a selector is a json object: {\"filter\": {…}, \"rank\": […], \"limit\": 1}",
            )),
        }
    }

    /// Whether a filter or field key reads the field the catalog leaves out.
    fn reads_man_page(&self) -> bool {
        self.filter_json.to_string().contains(catalog::LEFT_OUT)
            || self.rank.iter().any(
                |k| matches!(k, RankKey::Field { path, .. } if path.starts_with(catalog::LEFT_OUT)),
            )
    }
}

fn rank_key(key: &Value) -> Result<RankKey> {
    let shape = "a rank key is {\"field\": \"dotted.path\", \"order\": \"asc|desc\"}, {\"text\": \"words\"} or {\"load\": \"asc\"}";
    let Value::Object(fields) = key else { return Err(bad(shape)) };
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    match (fields.get("field"), fields.get("text"), fields.get("load")) {
        (Some(_), None, None) => {
            let path = text("field")
                .filter(|p| !p.is_empty() && p.len() <= 256)
                .ok_or_else(|| bad(shape))?;
            if fields.keys().any(|k| k != "field" && k != "order") {
                return Err(bad(shape));
            }
            let descending = match fields.get("order") {
                None => false,
                Some(order) => match order.as_str() {
                    Some("asc") => false,
                    Some("desc") => true,
                    _ => return Err(bad("a field key's order is \"asc\" or \"desc\"")),
                },
            };
            Ok(RankKey::Field { path: path.to_owned(), descending })
        }
        (None, Some(_), None) if fields.len() == 1 => {
            let words = text("text")
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| bad("a text key needs words: {\"text\": \"words\"}"))?;
            Ok(RankKey::Text(words.to_owned()))
        }
        (None, None, Some(order)) if fields.len() == 1 => match order.as_str() {
            Some("asc") => Ok(RankKey::Load),
            _ => Err(bad("a load key is {\"load\": \"asc\"}: the least loaded first")),
        },
        _ => Err(bad(shape)),
    }
}

/// Every `"$param.NAME"` string replaced by `params.NAME` (any JSON value); `$param.NAME` inside
/// a longer string replaced by the value's text.
pub fn substitute(value: &Value, params: &JsonMap) -> Result<Value> {
    Ok(match value {
        Value::String(text) => substitute_text(text, params)?,
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute(v, params)).collect::<Result<_>>()?)
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, params)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

const PARAM: &str = "$param.";

fn substitute_text(text: &str, params: &JsonMap) -> Result<Value> {
    if !text.contains(PARAM) {
        return Ok(Value::String(text.to_owned()));
    }
    let lookup = |name: &str| {
        params.get(name).ok_or_else(|| {
            Error::BadRequest(format!(
                "the selector uses $param.{name}, but search_parameters has no '{name}'"
            ))
        })
    };
    if let Some(name) = text.strip_prefix(PARAM)
        && is_param_name(name)
    {
        return lookup(name).cloned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PARAM) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PARAM.len()..];
        let len =
            after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        if len == 0 {
            out.push_str(PARAM);
        } else {
            match lookup(&after[..len])? {
                Value::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            }
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bad(message: &str) -> Error {
    Error::BadRequest(message.to_owned())
}

/// Which tools a selection picks among.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every registry tool.
    All,
    /// These tool ids (an action's).
    Ids(Vec<String>),
}

/// A selection's answer.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The best tools, best first (`limit` of them at most); never empty.
    pub tool_ids: Vec<String>,
    pub explanation: Value,
}

/// One candidate's key values.
#[derive(Debug)]
struct Ranked {
    id: String,
    keys: Vec<KeyValue>,
    allowed: bool,
}

#[derive(Debug, Clone)]
enum KeyValue {
    Field(Option<Value>),
    Text(f32),
    Load(Option<(String, Load)>),
}

impl KeyValue {
    fn json(&self) -> Value {
        match self {
            KeyValue::Field(value) => value.clone().unwrap_or(Value::Null),
            KeyValue::Text(score) => json!(score),
            KeyValue::Load(None) => Value::Null,
            KeyValue::Load(Some((node, load))) => json!({
                "node_id": node, "in_flight_calls": load.in_flight_calls, "cpu_percent": load.cpu_percent,
            }),
        }
    }
}

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Selection {
    registry: Registry,
    catalog: Catalog,
    cluster_tools: ClusterTools,
    cluster: Cluster,
    orgs: Orgs,
}

impl Selection {
    pub fn new(
        registry: Registry,
        cluster_tools: ClusterTools,
        cluster: Cluster,
        orgs: Orgs,
    ) -> Selection {
        let catalog = Catalog::new(registry.store().clone());
        Selection { registry, catalog, cluster_tools, cluster, orgs }
    }

    /// Picks the best tools of `scope` with `selector` (`$param`s from `params`). Tools outside
    /// `org`'s allow-list are ranked but never chosen: 404 when no tool passes the filter, 403
    /// (naming the best) when every one that does is outside the allow-list.
    pub async fn select(
        &self,
        scope: Scope,
        selector: &Value,
        params: &JsonMap,
        org: Option<&str>,
    ) -> Result<Choice> {
        let selector = Selector::parse(selector, params)?;
        let allow_list = match org {
            Some(org) => self.orgs.allow_list(org).await?,
            None => None,
        };
        let listed = match &scope {
            Scope::All => None,
            Scope::Ids(ids) => Some(ids.len()),
        };
        // Candidates and their filter, off the async executor.
        let (catalog, picked) = (self.catalog.clone(), selector.clone());
        let (considered, matched) = self
            .registry
            .blocking(move |store| candidates(store, &catalog, &scope, &picked))
            .await?;
        if matched.is_empty() {
            return Err(Error::NotFound(format!(
                "no tool matches the selector: none of {considered} candidate tools passed its filter{}",
                listed.map(|n| format!(" (the action lists {n})")).unwrap_or_default()
            )));
        }
        let ranked = self.rank(&selector, matched, allow_list.as_deref()).await?;
        let tool_ids: Vec<String> = ranked
            .iter()
            .filter(|r| r.allowed)
            .take(selector.limit)
            .map(|r| r.id.clone())
            .collect();
        if tool_ids.is_empty() {
            let org = org.unwrap_or_default();
            return Err(refused(&ranked[0].id, org));
        }
        let explanation = json!({
            "filter": selector.filter_json,
            "rank": selector.rank.iter().map(RankKey::json).collect::<Vec<_>>(),
            "considered": considered,
            "matched": ranked.len(),
            "candidates": ranked.iter().take(MAX_EXPLAINED).map(|r| json!({
                "tool_id": r.id,
                "keys": r.keys.iter().map(KeyValue::json).collect::<Vec<_>>(),
                "allowed": r.allowed,
            })).collect::<Vec<_>>(),
            "chosen": tool_ids[0],
        });
        Ok(Choice { tool_ids, explanation })
    }

    /// The matched tools with their key values, best first.
    async fn rank(
        &self,
        selector: &Selector,
        matched: Vec<(String, Arc<Value>)>,
        allow_list: Option<&gridnode_store::AllowList>,
    ) -> Result<Vec<Ranked>> {
        let mut columns: Vec<Vec<KeyValue>> = Vec::with_capacity(selector.rank.len());
        for key in &selector.rank {
            columns.push(match key {
                RankKey::Field { path, .. } => matched
                    .iter()
                    .map(|(_, doc)| KeyValue::Field(lookup(doc, path).cloned()))
                    .collect(),
                RankKey::Text(text) => {
                    let ids: Vec<String> = matched.iter().map(|(id, _)| id.clone()).collect();
                    let (search, text) = (self.registry.search_index().clone(), text.clone());
                    let scores = self
                        .registry
                        .blocking(move |_| {
                            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                            Ok(search.relevance(&text, Collection::Tools, &ids)?)
                        })
                        .await?;
                    matched
                        .iter()
                        .map(|(id, _)| KeyValue::Text(scores.get(id).copied().unwrap_or(0.0)))
                        .collect()
                }
                RankKey::Load => self.loads(&matched).await,
            });
        }
        let mut ranked: Vec<Ranked> = matched
            .into_iter()
            .enumerate()
            .map(|(row, (id, _))| Ranked {
                allowed: allow_list.is_none_or(|list| list.allows(&id)),
                keys: columns.iter().map(|column| column[row].clone()).collect(),
                id,
            })
            .collect();
        ranked.sort_by(|a, b| {
            for (index, key) in selector.rank.iter().enumerate() {
                let order = compare(key, &a.keys[index], &b.keys[index]);
                if order != Ordering::Equal {
                    return order;
                }
            }
            a.id.cmp(&b.id)
        });
        Ok(ranked)
    }

    /// Each tool's least-loaded live host: a system tool's cluster tool hosts; this node for a
    /// bundle tool (it runs where it is asked for); none for a remote tool.
    async fn loads(&self, matched: &[(String, Arc<Value>)]) -> Vec<KeyValue> {
        let mut by_name: HashMap<String, Option<(String, Load)>> = HashMap::new();
        let mut out = Vec::with_capacity(matched.len());
        for (_, doc) in matched {
            let value = match Kind::of_json(doc) {
                Ok(Kind::System) => {
                    let name = doc
                        .get("tool_system_function_rpc_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if !by_name.contains_key(&name) {
                        let best = self.cluster_tools.least_loaded(&name).await;
                        by_name.insert(name.clone(), best);
                    }
                    by_name[&name].clone()
                }
                Ok(Kind::Bundle) => {
                    let me = self.cluster.node_id().to_owned();
                    self.cluster.standing(&me, &me).load.map(|load| (me, load))
                }
                Ok(Kind::Remote) | Err(_) => None,
            };
            out.push(KeyValue::Load(value));
        }
        out
    }
}

/// A tool as the JSON the filter and the field keys read.
type Doc = (String, Arc<Value>);

/// The tools of `scope` (how many there were) and those passing the selector's filter. The
/// catalog answers, narrowed first by an indexed equality of the filter; a selector that reads
/// man pages (which the catalog leaves out) reads the store instead.
fn candidates(
    store: &Store,
    catalog: &Catalog,
    scope: &Scope,
    selector: &Selector,
) -> Result<(usize, Vec<Doc>)> {
    let filter = &selector.filter;
    if selector.reads_man_page() {
        let full = |tool: ToolEntry| {
            (tool.tool_id.clone(), Arc::new(serde_json::to_value(&tool).unwrap_or_default()))
        };
        let docs: Vec<Doc> = match scope {
            Scope::All => store
                .live::<ToolEntry>()
                .map(|t| t.map(full))
                .collect::<gridnode_store::Result<_>>()?,
            Scope::Ids(ids) => ids
                .iter()
                .filter_map(|id| store.try_get::<ToolEntry>(id).transpose())
                .map(|t| t.map(full))
                .collect::<gridnode_store::Result<_>>()?,
        };
        let considered = docs.len();
        return Ok((considered, docs.into_iter().filter(|(_, doc)| filter.matches(doc)).collect()));
    }
    let narrowed = match scope {
        Scope::All => filter
            .equality_hints()
            .into_iter()
            .find(|(path, value)| {
                ToolEntry::INDEXED_FIELDS.contains(path)
                    && (value.is_string() || value.is_boolean())
            })
            .map(|(path, value)| store.ids_where::<ToolEntry>(path, value))
            .transpose()?,
        Scope::Ids(_) => None,
    };
    catalog.read(|state| {
        let keep = |(id, doc): (&String, &Arc<Value>)| {
            filter.matches(doc).then(|| (id.clone(), doc.clone()))
        };
        let present = |ids: &[String]| -> Vec<(&String, &Arc<Value>)> {
            ids.iter().filter_map(|id| state.tools.get_key_value(id)).collect()
        };
        match (scope, narrowed) {
            (Scope::All, None) => {
                (state.tools.len(), state.tools.iter().filter_map(keep).collect())
            }
            (Scope::All, Some(ids)) => {
                (state.tools.len(), present(&ids).into_iter().filter_map(keep).collect())
            }
            (Scope::Ids(ids), _) => {
                let present = present(ids);
                (present.len(), present.into_iter().filter_map(keep).collect())
            }
        }
    })
}

/// A dotted path into a JSON document.
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |value, part| value.get(part)).filter(|v| !v.is_null())
}

/// Key order: present values first (missing or null always last), in the key's order.
fn compare(key: &RankKey, a: &KeyValue, b: &KeyValue) -> Ordering {
    match (key, a, b) {
        (RankKey::Field { descending, .. }, KeyValue::Field(a), KeyValue::Field(b)) => match (a, b)
        {
            (Some(a), Some(b)) => {
                let order = compare_json(a, b);
                if *descending { order.reverse() } else { order }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        (RankKey::Text(_), KeyValue::Text(a), KeyValue::Text(b)) => b.total_cmp(a),
        (RankKey::Load, KeyValue::Load(a), KeyValue::Load(b)) => match (a, b) {
            (Some((_, a)), Some((_, b))) => load_rank(a).cmp(&load_rank(b)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        _ => Ordering::Equal,
    }
}

/// Numbers before strings before booleans before anything else; within a kind, natural order.
fn compare_json(a: &Value, b: &Value) -> Ordering {
    fn kind(value: &Value) -> u8 {
        match value {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            _ => 3,
        }
    }
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => {
            a.as_f64().unwrap_or(0.0).total_cmp(&b.as_f64().unwrap_or(0.0))
        }
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => kind(a).cmp(&kind(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Value) -> JsonMap {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn params_replace_whole_strings_with_any_value_and_parts_of_strings_with_text() {
        let selector = json!({
            "filter": {"tool_metadata.cost": {"$lte": "$param.budget"}, "tool_type": "$param.kind"},
            "rank": [{"text": "translate to $param.lang now"}],
        });
        let out = substitute(&selector, &params(json!({"budget": 5, "kind": "nlp", "lang": "fr"})))
            .unwrap();
        assert_eq!(out["filter"]["tool_metadata.cost"]["$lte"], json!(5));
        assert_eq!(out["filter"]["tool_type"], json!("nlp"));
        assert_eq!(out["rank"][0]["text"], json!("translate to fr now"));
    }

    #[test]
    fn a_missing_param_names_it() {
        let error =
            substitute(&json!({"filter": {"a": "$param.nope"}}), &JsonMap::new()).unwrap_err();
        assert!(error.to_string().contains("search_parameters has no 'nope'"), "{error}");
    }

    #[test]
    fn selectors_are_checked() {
        let none = JsonMap::new();
        for (selector, expected) in [
            (json!([]), "json object"),
            (json!({"filter": {"$where": "1"}}), "$where"),
            (json!({"rank": [{"field": "a", "order": "up"}]}), "asc"),
            (json!({"rank": [{"load": "desc"}]}), "least loaded"),
            (json!({"rank": [{"text": ""}]}), "needs words"),
            (json!({"rank": [{"bogus": 1}]}), "rank key is"),
            (json!({"limit": 0}), "limit"),
            (json!({"sort": []}), "unknown selector field 'sort'"),
        ] {
            let error = Selector::parse(&selector, &none).unwrap_err();
            assert!(error.to_string().contains(expected), "{selector}: {error}");
            assert_eq!(error.status(), 400);
        }
        let parsed = Selector::parse(
            &json!({"filter": {}, "rank": [{"field": "tool_metadata.cost"}, {"text": "x"}, {"load": "asc"}], "limit": 3}),
            &none,
        )
        .unwrap();
        assert_eq!(parsed.limit, 3);
        assert_eq!(parsed.rank.len(), 3);
    }

    #[test]
    fn missing_values_rank_last_in_either_order() {
        let asc = RankKey::Field { path: "x".into(), descending: false };
        let desc = RankKey::Field { path: "x".into(), descending: true };
        let one = KeyValue::Field(Some(json!(1)));
        let two = KeyValue::Field(Some(json!(2)));
        let none = KeyValue::Field(None);
        assert_eq!(compare(&asc, &one, &two), Ordering::Less);
        assert_eq!(compare(&desc, &one, &two), Ordering::Greater);
        assert_eq!(compare(&asc, &none, &one), Ordering::Greater);
        assert_eq!(compare(&desc, &none, &one), Ordering::Greater);
        assert_eq!(compare_json(&json!(10), &json!("a")), Ordering::Less);
    }
}
