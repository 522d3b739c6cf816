//! The registry routes (contract sections 4 and 5), one generic set of thin handlers over
//! [`Registry`](crate::service::Registry) for tools and functions alike.

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gridnode_store::{FunctionEntry, JsonMap, RegistryEntry, ToolEntry};
use serde_json::{Value, json};

use super::AppState;
use super::extract::{JsonBody, Params};
use crate::error::{Error, Result};

/// A `GET /{kind}/query/{route}?{param}=` route over one indexed field.
#[derive(Debug, Clone, Copy)]
pub struct FieldRoute {
    pub route: &'static str,
    pub param: &'static str,
    pub field: &'static str,
    pub kind: ParamKind,
}

#[derive(Debug, Clone, Copy)]
pub enum ParamKind {
    Text,
    Bool,
}

/// How a registry appears over REST.
pub trait RegistryApi: RegistryEntry {
    /// The path segment: `tools`.
    const PATH: &'static str;
    const FIELD_ROUTES: &'static [FieldRoute];
}

impl RegistryApi for ToolEntry {
    const PATH: &'static str = "tools";
    const FIELD_ROUTES: &'static [FieldRoute] = &[
        FieldRoute { route: "by-type", param: "type", field: "tool_type", kind: ParamKind::Text },
        FieldRoute { route: "by-tag", param: "tag", field: "tool_tags", kind: ParamKind::Text },
        FieldRoute {
            route: "by-execution-mode",
            param: "mode",
            field: "tool_execution_mode",
            kind: ParamKind::Text,
        },
        FieldRoute {
            route: "by-policy-uri",
            param: "uri",
            field: "tool_policy_rule_uri",
            kind: ParamKind::Text,
        },
    ];
}

impl RegistryApi for FunctionEntry {
    const PATH: &'static str = "functions";
    const FIELD_ROUTES: &'static [FieldRoute] = &[
        FieldRoute {
            route: "by-type",
            param: "type",
            field: "function_type",
            kind: ParamKind::Text,
        },
        FieldRoute { route: "by-tag", param: "tag", field: "function_tags", kind: ParamKind::Text },
        FieldRoute {
            route: "by-system-flag",
            param: "is_system",
            field: "is_system_action",
            kind: ParamKind::Bool,
        },
    ];
}

/// Every route of one registry.
pub fn routes<R: RegistryApi>(max_upload_bytes: usize) -> Router<AppState> {
    let base = format!("/{}", R::PATH);
    let mut router = Router::new()
        .route(&base, post(create::<R>).get(list::<R>))
        .route(
            &format!("{base}/upload"),
            post(upload::<R>).layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route(&format!("{base}/{{id}}"), get(read::<R>).put(update::<R>).delete(delete::<R>))
        .route(&format!("{base}/query/generic"), post(generic::<R>))
        .route(&format!("{base}/query/by-keyword"), get(by_keyword::<R>));
    for def in R::FIELD_ROUTES {
        let def = *def;
        router = router.route(
            &format!("{base}/query/{}", def.route),
            get(move |state: State<AppState>, params: Params| by_field::<R>(state, params, def)),
        );
    }
    router
}

async fn create<R: RegistryApi>(
    State(app): State<AppState>,
    JsonBody(record): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>)> {
    let id = app.registry.create::<R>(record).await?;
    let id_key = R::ID_FIELD;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "message": format!("{} created successfully", R::LABEL), id_key: id })),
    ))
}

async fn list<R: RegistryApi>(State(app): State<AppState>, params: Params) -> Result<Json<Vec<R>>> {
    Ok(Json(app.registry.list::<R>(params.page()?).await?))
}

async fn read<R: RegistryApi>(
    State(app): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<axum::response::Response> {
    let record = app.registry.get::<R>(id.clone()).await?;
    // The common read renders the record straight: no detour through a JSON value.
    if !params.provenance()? {
        return Ok(axum::response::IntoResponse::into_response(Json(record)));
    }
    let value = params.with_provenance(record, &app.registry, R::COLLECTION, &id)?;
    Ok(axum::response::IntoResponse::into_response(Json(value)))
}

async fn update<R: RegistryApi>(
    State(app): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> Result<Json<Value>> {
    let Value::Object(patch) = patch else {
        return Err(Error::BadRequest(
            "the update must be a json object of the fields to change".into(),
        ));
    };
    let patch: JsonMap = patch;
    app.registry.update::<R>(id, patch).await?;
    Ok(Json(json!({ "message": format!("{} updated successfully", R::LABEL) })))
}

async fn delete<R: RegistryApi>(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    app.registry.delete::<R>(id).await?;
    Ok(Json(json!({ "message": format!("{} deleted successfully", R::LABEL) })))
}

async fn by_field<R: RegistryApi>(
    State(app): State<AppState>,
    params: Params,
    def: FieldRoute,
) -> Result<Json<Vec<R>>> {
    let text = params.required(def.param)?;
    let value = match def.kind {
        ParamKind::Text => Value::from(text),
        ParamKind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                return Err(Error::BadRequest(format!(
                    "{} must be true or false, got '{}'",
                    def.param,
                    text.escape_default()
                )));
            }
        },
    };
    Ok(Json(app.registry.find::<R>(def.field, value, params.page()?).await?))
}

async fn by_keyword<R: RegistryApi>(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<Vec<R>>> {
    let keyword = params.required("keyword")?.to_owned();
    Ok(Json(app.registry.keyword::<R>(keyword, params.page()?).await?))
}

async fn generic<R: RegistryApi>(
    State(app): State<AppState>,
    params: Params,
    JsonBody(filter): JsonBody<Value>,
) -> Result<Json<Vec<R>>> {
    Ok(Json(app.registry.query::<R>(filter, params.page()?).await?))
}

async fn upload<R: RegistryApi>(
    State(app): State<AppState>,
    multipart: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<Value>> {
    let mut multipart = multipart.map_err(|_| {
        Error::UnsupportedMediaType(
            "expected multipart/form-data with the zip in a part named 'file'".into(),
        )
    })?;
    let mut zip = None;
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else { break };
        if field.name() == Some("file") {
            zip = Some(field.bytes().await.map_err(multipart_error)?);
            break;
        }
    }
    let zip = zip.ok_or_else(|| {
        Error::BadRequest(
            "missing multipart part 'file': send the zip as -F file=@bundle.zip".into(),
        )
    })?;
    let id = app.registry.upload::<R>(zip).await?;
    let id_key = R::ID_FIELD;
    Ok(Json(json!({ "message": format!("{} uploaded successfully", R::LABEL), id_key: id })))
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> Error {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge("the upload is over the size limit: send a smaller bundle".into())
    } else {
        Error::BadRequest(format!(
            "malformed multipart body ({}): send the zip as -F file=@bundle.zip",
            error.status().as_u16()
        ))
    }
}
