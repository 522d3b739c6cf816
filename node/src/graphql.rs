//! GraphQL over both registries (contract sections 4–5): `tools(query: JSON!)` and
//! `functions(query: JSON!)` take the generic filter of section 7, `tool(id)` and `function(id)`
//! read one record, `search(text, kind, limit)` ranks across both. Every resolver is a thin
//! adapter over [`Registry`]; field and argument names keep the records' snake_case.
//!
//! A hostile query is bounded before it runs: nesting depth, complexity (a list field costs its
//! `limit` times its selection, so aliases multiply the bill), recursion and directives.

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Json, Object, Schema, SimpleObject,
};
use gridnode_store::{FunctionEntry, JsonMap, ToolEntry};
use serde_json::Value;

use crate::error::Error;
use crate::service::{DEFAULT_LIMIT, Registry, page, search_kind};

/// Deepest selection accepted (GraphiQL's introspection query needs 13).
pub const MAX_DEPTH: usize = 16;
/// Most complexity one request may have; a field costs 1, a list field `limit ×` its selection
/// plus its `offset` (the records it reads and skips).
pub const MAX_COMPLEXITY: usize = 20_000;
const MAX_RECURSION: usize = 32;
const MAX_DIRECTIVES: usize = 8;

pub type GraphSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema, with the registry it resolves against.
pub fn schema(registry: Registry) -> GraphSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(registry)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(MAX_RECURSION)
        .limit_directives(MAX_DIRECTIVES)
        .finish()
}

/// A ToolEntry, every field typed; JSON-valued fields are the `JSON` scalar.
#[derive(Debug, SimpleObject)]
#[graphql(name = "Tool", rename_fields = "snake_case")]
pub struct Tool {
    tool_id: String,
    tool_metadata: Json<JsonMap>,
    tool_search_description: String,
    tool_tags: Vec<String>,
    tool_type: String,
    tool_man_page_doc: String,
    tool_api_spec: Json<JsonMap>,
    tool_custom_actions_dsl_map: Json<JsonMap>,
    default_tool_usage_credentials: Json<JsonMap>,
    tool_execution_mode: String,
    tool_policy_rule_uri: String,
    tool_source_code_link: String,
    tool_service_url: String,
    tool_system_function_rpc_id: String,
    tool_validation_policy_rule_uri: String,
    tool_validation_mode: String,
}

impl From<ToolEntry> for Tool {
    fn from(t: ToolEntry) -> Tool {
        Tool {
            tool_id: t.tool_id,
            tool_metadata: Json(t.tool_metadata),
            tool_search_description: t.tool_search_description,
            tool_tags: t.tool_tags,
            tool_type: t.tool_type,
            tool_man_page_doc: t.tool_man_page_doc,
            tool_api_spec: Json(t.tool_api_spec),
            tool_custom_actions_dsl_map: Json(t.tool_custom_actions_dsl_map),
            default_tool_usage_credentials: Json(gridnode_store::redacted(
                &t.default_tool_usage_credentials,
            )),
            tool_execution_mode: t.tool_execution_mode,
            tool_policy_rule_uri: t.tool_policy_rule_uri,
            tool_source_code_link: t.tool_source_code_link,
            tool_service_url: t.tool_service_url,
            tool_system_function_rpc_id: t.tool_system_function_rpc_id,
            tool_validation_policy_rule_uri: t.tool_validation_policy_rule_uri,
            tool_validation_mode: t.tool_validation_mode,
        }
    }
}

/// A FunctionEntry (the seed's `FunctionEntryType`), every field typed.
#[derive(Debug, SimpleObject)]
#[graphql(name = "FunctionEntryType", rename_fields = "snake_case")]
pub struct Function {
    function_id: String,
    function_metadata: Json<JsonMap>,
    function_search_description: String,
    function_tags: Vec<String>,
    function_type: String,
    function_man_page_doc: String,
    function_api_spec: Json<JsonMap>,
    func_custom_actions_dsl_map: Json<JsonMap>,
    default_func_usage_credentials: Json<JsonMap>,
    open_api_spec: Json<JsonMap>,
    api_parameters_to_cost_relation_data: Json<JsonMap>,
    is_system_action: bool,
    function_source_code_link: String,
}

impl From<FunctionEntry> for Function {
    fn from(f: FunctionEntry) -> Function {
        Function {
            function_id: f.function_id,
            function_metadata: Json(f.function_metadata),
            function_search_description: f.function_search_description,
            function_tags: f.function_tags,
            function_type: f.function_type,
            function_man_page_doc: f.function_man_page_doc,
            function_api_spec: Json(f.function_api_spec),
            func_custom_actions_dsl_map: Json(f.func_custom_actions_dsl_map),
            default_func_usage_credentials: Json(gridnode_store::redacted(
                &f.default_func_usage_credentials,
            )),
            open_api_spec: Json(f.open_api_spec),
            api_parameters_to_cost_relation_data: Json(f.api_parameters_to_cost_relation_data),
            is_system_action: f.is_system_action,
            function_source_code_link: f.function_source_code_link,
        }
    }
}

/// One ranked search result.
#[derive(Debug, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct SearchHit {
    /// `tool` or `function`.
    kind: String,
    id: String,
    score: f32,
    snippet: String,
}

pub struct Query;

/// What a list field costs: its page size times its selection, plus the records it skips to
/// reach the page (each is read and filtered).
fn list_cost(limit: Option<i64>, offset: Option<i64>, child_complexity: usize) -> usize {
    let limit =
        limit.map_or(DEFAULT_LIMIT, |n| n.clamp(1, gridnode_store::MAX_RESULTS as i64) as usize);
    let skipped = usize::try_from(offset.unwrap_or(0).max(0)).unwrap_or(usize::MAX);
    limit.saturating_mul(child_complexity.max(1)).saturating_add(skipped)
}

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl Query {
    /// Tools matching a MongoDB-style filter, e.g. `{ tool_type: "extractor", tool_tags: "nlp" }`.
    #[graphql(complexity = "list_cost(limit, offset, child_complexity)")]
    async fn tools(
        &self,
        ctx: &Context<'_>,
        query: Value,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> async_graphql::Result<Vec<Tool>> {
        let records = registry(ctx)?.query::<ToolEntry>(query, page(limit, offset)?).await?;
        Ok(records.into_iter().map(Tool::from).collect())
    }

    /// Functions matching a MongoDB-style filter.
    #[graphql(complexity = "list_cost(limit, offset, child_complexity)")]
    async fn functions(
        &self,
        ctx: &Context<'_>,
        query: Value,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> async_graphql::Result<Vec<Function>> {
        let records = registry(ctx)?.query::<FunctionEntry>(query, page(limit, offset)?).await?;
        Ok(records.into_iter().map(Function::from).collect())
    }

    /// One tool by id, or null.
    async fn tool(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Tool>> {
        Ok(found(registry(ctx)?.get::<ToolEntry>(id).await)?.map(Tool::from))
    }

    /// One function by id, or null.
    async fn function(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Function>> {
        Ok(found(registry(ctx)?.get::<FunctionEntry>(id).await)?.map(Function::from))
    }

    /// Ranked full-text search; `kind` is `tools`, `functions` or `all` (the default).
    #[graphql(complexity = "list_cost(limit, None, child_complexity)")]
    async fn search(
        &self,
        ctx: &Context<'_>,
        text: String,
        kind: Option<String>,
        limit: Option<i64>,
    ) -> async_graphql::Result<Vec<SearchHit>> {
        let kind = search_kind(kind.as_deref())?;
        let hits = registry(ctx)?.search(text, kind, page(limit, None)?).await?;
        Ok(hits
            .into_iter()
            .map(|hit| SearchHit {
                kind: hit.kind.kind().to_owned(),
                id: hit.id,
                score: hit.score,
                snippet: hit.snippet,
            })
            .collect())
    }
}

fn registry<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Registry> {
    ctx.data::<Registry>()
}

/// A missing record is `null`, not an error.
fn found<T>(result: crate::Result<T>) -> crate::Result<Option<T>> {
    match result {
        Ok(record) => Ok(Some(record)),
        Err(Error::Store(gridnode_store::Error::NotFound { .. })) => Ok(None),
        Err(error) => Err(error),
    }
}
