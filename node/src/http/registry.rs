//! The registry routes (contract sections 4 and 5), one generic set of thin handlers over
//! [`Registry`](crate::service::Registry) for tools and functions alike.

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use gridnode_store::{FunctionEntry, JsonMap, ToolEntry};
use serde_json::{Value, json};

use super::AppState;
use super::access::written;
use super::extract::{JsonBody, Params};
use crate::error::{Error, Result};
use crate::service::{FieldQuery, Queryable};

/// How a registry appears over REST.
pub trait RegistryApi: Queryable {
    /// The path segment: `tools`.
    const PATH: &'static str;
}

impl RegistryApi for ToolEntry {
    const PATH: &'static str = "tools";
}

impl RegistryApi for FunctionEntry {
    const PATH: &'static str = "functions";
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
    for query in R::FIELD_QUERIES {
        router = router.route(
            &format!("{base}/query/{}", query.name),
            get(move |state: State<AppState>, params: Params| by_field::<R>(state, params, query)),
        );
    }
    router
}

async fn create<R: RegistryApi>(
    State(app): State<AppState>,
    JsonBody(record): JsonBody<Value>,
) -> Result<axum::response::Response> {
    let id = app.registry.create::<R>(record).await?;
    let id_key = R::ID_FIELD;
    let body = json!({ "message": format!("{} created successfully", R::LABEL), id_key: id });
    Ok(written((StatusCode::CREATED, Json(body)), id))
}

async fn list<R: RegistryApi>(State(app): State<AppState>, params: Params) -> Result<Json<Vec<R>>> {
    Ok(Json(app.registry.list::<R>(params.page()?).await?))
}

async fn read<R: RegistryApi>(
    State(app): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<axum::response::Response> {
    // The common read answers with the record's rendered JSON (rendered once per version).
    if !params.provenance()? {
        return Ok(json_answer(app.registry.get_json::<R>(&id)?));
    }
    let record = app.registry.get::<R>(id.clone()).await?;
    let value = params.with_provenance(record, &app.registry, R::COLLECTION, &id)?;
    Ok(Json(value).into_response())
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
    query: &'static FieldQuery,
) -> Result<axum::response::Response> {
    let given = params.required(query.param)?;
    Ok(json_answer(app.registry.by_field_json::<R>(query, given, params.page()?).await?))
}

/// JSON already rendered.
fn json_answer(json: axum::body::Bytes) -> axum::response::Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], json).into_response()
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
) -> Result<axum::response::Response> {
    let mut multipart = multipart.map_err(|_| {
        Error::UnsupportedMediaType(
            "expected multipart/form-data with the zip in a part named 'file'".into(),
        )
    })?;
    // The zip is streamed to a file and unpacked from there: an upload is never whole in
    // memory.
    let mut zip = None;
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(mut field) = field else { break };
        if field.name() == Some("file") {
            use std::io::Seek;
            use tokio::io::AsyncWriteExt;
            let failed = |e: std::io::Error| Error::io("cannot write the upload", e);
            let mut file = tokio::fs::File::from_std(app.registry.upload_file().await?);
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                file.write_all(&chunk).await.map_err(failed)?;
            }
            file.flush().await.map_err(failed)?;
            let mut file = file.into_std().await;
            file.rewind().map_err(failed)?;
            zip = Some(file);
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
    let body = json!({ "message": format!("{} uploaded successfully", R::LABEL), id_key: id });
    Ok(written(Json(body), id))
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
