//! The registry service: one Rust API over the store that every transport (REST today, GraphQL
//! and the CLI later) adapts. Business rules live here, never in a handler.
//!
//! Store calls block, so each runs on tokio's blocking pool.

use std::sync::Arc;

use gridnode_search::{Hit, SearchIndex, SearchRequest};
use gridnode_store::query::Filter;
use gridnode_store::{
    ClusterLocalTool, Collection, JsonMap, MAX_RESULTS, Page, RegistryEntry, Store,
};
use serde_json::Value;

use crate::config::Limits;
use crate::error::{Error, Result};

pub mod acl;
pub mod actions;
pub mod audit;
pub mod blobs;
pub mod bundle;
pub mod bundle_cache;
pub mod catalog;
pub mod cluster;
pub mod cluster_tools;
pub mod egress;
pub mod execution;
pub mod fresh;
pub mod orgs;
pub mod remote;
pub mod rendered;
pub mod secrets;
pub mod selection;

/// Runs a blocking store call off the async executor (every service's door to the store).
pub(crate) async fn blocking<T: Send + 'static>(
    store: &Store,
    call: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
}

/// The default page size of every array result.
pub const DEFAULT_LIMIT: usize = 100;

/// A page from a `limit` (1 to 1000, default 100) and an `offset` (0 or more, default 0), as
/// every transport takes them.
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<Page> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_RESULTS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(Error::BadRequest(format!(
                "limit must be a whole number from 1 to {MAX_RESULTS}, got {n}"
            )));
        }
    };
    let offset = match offset {
        None => 0,
        Some(n) if n >= 0 => n as usize,
        Some(n) => {
            return Err(Error::BadRequest(format!("offset must be 0 or more, got {n}")));
        }
    };
    Ok(Page::new(offset, limit))
}

/// A search scope as users write it: `tools`, `functions`, or `all` (the default).
pub fn search_kind(kind: Option<&str>) -> Result<Option<Collection>> {
    match kind {
        None | Some("all") => Ok(None),
        Some("tools") => Ok(Some(Collection::Tools)),
        Some("functions") => Ok(Some(Collection::Functions)),
        Some(other) => Err(Error::BadRequest(format!(
            "kind must be tools, functions or all, got '{}'",
            other.chars().take(40).collect::<String>().escape_default()
        ))),
    }
}

/// A query over one indexed field, as every transport names it (`by-tag`, with `tag=…` over
/// REST: `GET /tools/query/by-tag?tag=nlp`).
#[derive(Debug, Clone, Copy)]
pub struct FieldQuery {
    pub name: &'static str,
    /// The parameter that gives the value.
    pub param: &'static str,
    pub field: &'static str,
    pub kind: ParamKind,
}

/// How a [`FieldQuery`]'s value is read from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Text,
    Bool,
}

impl FieldQuery {
    /// The value the query matches, from its text (`true`/`false` for a flag).
    pub fn value(&self, given: &str) -> Result<Value> {
        match (self.kind, given) {
            (ParamKind::Text, text) => Ok(Value::from(text)),
            (ParamKind::Bool, "true") => Ok(Value::Bool(true)),
            (ParamKind::Bool, "false") => Ok(Value::Bool(false)),
            (ParamKind::Bool, other) => Err(Error::BadRequest(format!(
                "{} must be true or false, got '{}'",
                self.param,
                other.chars().take(40).collect::<String>().escape_default()
            ))),
        }
    }
}

/// A registry and its queryable fields (contract section 5).
pub trait Queryable: RegistryEntry {
    const FIELD_QUERIES: &'static [FieldQuery];
}

impl Queryable for gridnode_store::ToolEntry {
    const FIELD_QUERIES: &'static [FieldQuery] = &[
        FieldQuery { name: "by-type", param: "type", field: "tool_type", kind: ParamKind::Text },
        FieldQuery { name: "by-tag", param: "tag", field: "tool_tags", kind: ParamKind::Text },
        FieldQuery {
            name: "by-execution-mode",
            param: "mode",
            field: "tool_execution_mode",
            kind: ParamKind::Text,
        },
        FieldQuery {
            name: "by-policy-uri",
            param: "uri",
            field: "tool_policy_rule_uri",
            kind: ParamKind::Text,
        },
    ];
}

impl Queryable for gridnode_store::FunctionEntry {
    const FIELD_QUERIES: &'static [FieldQuery] = &[
        FieldQuery {
            name: "by-type",
            param: "type",
            field: "function_type",
            kind: ParamKind::Text,
        },
        FieldQuery { name: "by-tag", param: "tag", field: "function_tags", kind: ParamKind::Text },
        FieldQuery {
            name: "by-system-flag",
            param: "is_system",
            field: "is_system_action",
            kind: ParamKind::Bool,
        },
    ];
}

/// Ids that would be shadowed by a fixed route under `/tools/…` or `/functions/…`.
pub const RESERVED_IDS: &[&str] = &["upload", "graphql", "select", "query"];

/// The registry service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Store,
    search: Arc<SearchIndex>,
    settings: Arc<Settings>,
    rendered: Arc<rendered::Rendered>,
}

/// What the service needs from the node's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base of links this node hands out, without a trailing slash.
    pub advertise_http: String,
    pub limits: Limits,
    /// Where the node may connect: links to refused literal addresses are refused at
    /// registration.
    pub egress: egress::Egress,
    /// Seals credentials before they are stored.
    pub sealer: secrets::Sealer,
    /// Where uploads are streamed to before they are unpacked (in the data dir: `/tmp` may
    /// be memory).
    pub upload_dir: std::path::PathBuf,
}

impl Registry {
    pub fn new(store: Store, search: Arc<SearchIndex>, settings: Settings) -> Registry {
        Registry { store, search, settings: Arc::new(settings), rendered: Arc::default() }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The search index, for in-process callers (benchmarks) that search without a hop.
    pub fn search_index(&self) -> &Arc<SearchIndex> {
        &self.search
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs a blocking store call off the async executor.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        blocking(&self.store, call).await
    }

    /// Registers a new record given as JSON; 409 if its id is taken.
    pub async fn create<R: RegistryEntry>(&self, record: Value) -> Result<String> {
        if let Value::Object(fields) = &record {
            check_egress(&self.settings.egress, fields)?;
        }
        let mut record: R = record_from_json(record, "invalid request body")?;
        check_not_reserved::<R>(&record.id())?;
        self.settings.sealer.seal(record.credentials_mut(), None, R::CREDENTIALS_FIELD)?;
        self.blocking(move |store| {
            store.create(&record)?;
            Ok(record.id().into_owned())
        })
        .await
    }

    /// One record by id. A point read (one sled lookup, from its cache or the OS page cache) is
    /// done on the request's task: handing it to the blocking pool and back costs more than the
    /// read (measured: `gridnode-bench registry`). Scans and writes still go to the pool.
    pub async fn get<R: RegistryEntry>(&self, id: String) -> Result<R> {
        Ok(self.store.get::<R>(&id)?)
    }

    /// One record by id as its JSON answer, rendered once per version (see [`rendered`]).
    pub fn get_json<R: RegistryEntry>(&self, id: &str) -> Result<axum::body::Bytes> {
        self.rendered.get::<R>(&self.store, id)
    }

    /// A page of the records matching a field query, as one JSON array of their answers.
    pub async fn by_field_json<R: Queryable>(
        &self,
        query: &FieldQuery,
        given: &str,
        page: Page,
    ) -> Result<axum::body::Bytes> {
        let value = query.value(given)?;
        let (rendered, field) = (self.rendered.clone(), query.field);
        self.blocking(move |store| {
            // Index entries exist for live records only: the page is taken from the ids.
            let ids = store.ids_where::<R>(field, &value)?;
            let mut array = Vec::with_capacity(2 + ids.len().min(page.limit) * 1024);
            array.push(b'[');
            for id in ids.iter().skip(page.offset).take(page.limit) {
                // A record deleted since its index entry was read is skipped.
                let json = match rendered.get::<R>(store, id) {
                    Err(Error::Store(gridnode_store::Error::NotFound { .. })) => continue,
                    other => other?,
                };
                if array.len() > 1 {
                    array.push(b',');
                }
                array.extend_from_slice(&json);
            }
            array.push(b']');
            Ok(axum::body::Bytes::from(array))
        })
        .await
    }

    /// Who wrote the version held of a record (contract section 13, `?provenance=true`):
    /// `{"author", "signed", "at"}`. Every version merged from a peer had its author's signature
    /// checked; this node's own are signed as they are written.
    pub fn provenance(&self, collection: gridnode_store::Collection, id: &str) -> Result<Value> {
        let found = self.store.provenance(collection, id)?;
        let provenance = found
            .ok_or_else(|| Error::NotFound(format!("{} '{id}' not found", collection.kind())))?;
        Ok(serde_json::json!({
            "author": provenance.author,
            "signed": provenance.signed,
            "at": crate::client::output::rfc3339(provenance.at_ms),
        }))
    }

    pub async fn list<R: RegistryEntry>(&self, page: Page) -> Result<Vec<R>> {
        self.blocking(move |store| Ok(store.list::<R>(page)?)).await
    }

    /// Applies a partial update: known fields only, the id immutable, types checked.
    pub async fn update<R: RegistryEntry>(&self, id: String, patch: JsonMap) -> Result<R> {
        if let Some(given) = patch.get(R::ID_FIELD)
            && given.as_str() != Some(id.as_str())
        {
            return Err(Error::BadRequest(format!(
                "{} is immutable: remove it from the body, or create a new {} with that id",
                R::ID_FIELD,
                R::COLLECTION.kind()
            )));
        }
        check_egress(&self.settings.egress, &patch)?;
        let sealer = self.settings.sealer.clone();
        self.blocking(move |store| {
            // A sealing problem (a credential sent back redacted) is the caller's: it is kept
            // out of the store's update and answered as it is.
            let refused = std::cell::RefCell::new(None);
            let updated = store.update::<R>(&id, |current| {
                let kept = current.credentials().clone();
                let ran = current.runs();
                let mut next = patched(current, &patch, R::COLLECTION.kind())?;
                // Credentials were given for the code the record ran: a patch that points it at
                // other code without sending them again would hand them to that code.
                let moved = next.runs() != ran && !kept.is_empty();
                if moved && !patch.contains_key(R::CREDENTIALS_FIELD) {
                    let message = format!(
                        "this update changes what the {} runs: send {} again with it (or {{}} to drop them)",
                        R::COLLECTION.kind(),
                        R::CREDENTIALS_FIELD
                    );
                    *refused.borrow_mut() = Some(Error::BadRequest(message.clone()));
                    return Err(gridnode_store::Error::Invalid(message));
                }
                if patch.contains_key(R::CREDENTIALS_FIELD) {
                    let field = R::CREDENTIALS_FIELD;
                    // Masked values keep the stored ones only while the code is the same.
                    let current = (!moved).then_some(&kept);
                    if let Err(error) = sealer.seal(next.credentials_mut(), current, field) {
                        let message = error.to_string();
                        *refused.borrow_mut() = Some(error);
                        return Err(gridnode_store::Error::Invalid(message));
                    }
                } else {
                    *next.credentials_mut() = kept;
                }
                Ok(next)
            });
            match (updated, refused.into_inner()) {
                (_, Some(error)) => Err(error),
                (updated, None) => Ok(updated?),
            }
        })
        .await
    }

    /// Seals credentials stored in plain text (by a build from before sealing): each such
    /// record is written again, sealed, and replicates so. Runs once per store (a step recorded
    /// in it), so later starts do not read every record. Returns how many were sealed.
    pub async fn seal_plaintext<R: RegistryEntry>(&self) -> Result<usize> {
        let sealer = self.settings.sealer.clone();
        let step = format!("seal_credentials:{}", R::COLLECTION.tree_name());
        self.blocking(move |store| {
            if store.step_done(&step)? {
                return Ok(0);
            }
            let mut plain = Vec::new();
            for record in store.live::<R>() {
                let record = record?;
                if !secrets::Sealer::all_sealed(record.credentials()) {
                    plain.push(record.id().into_owned());
                }
            }
            let mut sealed = 0;
            for id in &plain {
                let written = store.update::<R>(id, |mut record| {
                    let field = R::CREDENTIALS_FIELD;
                    sealer
                        .seal(record.credentials_mut(), None, field)
                        .map_err(|e| gridnode_store::Error::Invalid(e.to_string()))?;
                    Ok(record)
                });
                match written {
                    Ok(_) => sealed += 1,
                    // One record that cannot be sealed does not keep the node from starting.
                    Err(error) => tracing::warn!(%id, %error, "credentials left unsealed"),
                }
            }
            store.finish_step(&step)?;
            Ok(sealed)
        })
        .await
    }

    pub async fn delete<R: RegistryEntry>(&self, id: String) -> Result<()> {
        self.blocking(move |store| {
            store.delete::<R>(&id)?;
            Ok(())
        })
        .await
    }

    /// Records matching a generic filter (contract section 7). The filter is parsed before any
    /// data is touched.
    pub async fn query<R: RegistryEntry>(&self, filter: Value, page: Page) -> Result<Vec<R>> {
        self.blocking(move |store| {
            // Compiling regexes is CPU work: it runs here, off the async threads, too.
            secrets::refuse_write_only(&filter, &secrets::WRITE_ONLY)?;
            let filter = Filter::parse(&filter).map_err(gridnode_store::Error::from)?;
            Ok(store.query::<R>(&filter, page)?)
        })
        .await
    }

    /// Records matching a keyword query, best first (served by the search index).
    pub async fn keyword<R: RegistryEntry>(&self, keyword: String, page: Page) -> Result<Vec<R>> {
        let search = self.search.clone();
        self.blocking(move |store| {
            let request =
                SearchRequest { text: &keyword, kind: Some(R::COLLECTION), page, snippets: false };
            let hits = search.search(&request)?;
            // A record deleted since the index committed is skipped, not an error.
            let mut records = Vec::with_capacity(hits.len());
            for hit in hits {
                if let Some(record) = store.try_get::<R>(&hit.id)? {
                    records.push(record);
                }
            }
            Ok(records)
        })
        .await
    }

    /// Ranked hits across one or both registries, with scores and snippets.
    pub async fn search(
        &self,
        text: String,
        kind: Option<Collection>,
        page: Page,
    ) -> Result<Vec<Hit>> {
        let search = self.search.clone();
        self.blocking(move |_| {
            Ok(search.search(&SearchRequest { text: &text, kind, page, snippets: true })?)
        })
        .await
    }

    /// Registers a record from an upload bundle (contract section 4): the code archive goes to
    /// the blob store and its link into the record, the manual into the man page; the record and
    /// its blob are written together, or nothing is.
    /// A file the handler can stream an upload into: unnamed, gone when dropped.
    pub async fn upload_file(&self) -> Result<std::fs::File> {
        let dir = self.settings.upload_dir.clone();
        let made = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tempfile::tempfile_in(&dir)
        });
        made.await
            .map_err(|e| Error::Internal(format!("upload file task failed: {e}")))?
            .map_err(|e| Error::io("cannot make an upload file", e))
    }

    /// Registers the record of an uploaded bundle (a zip, streamed to `zip`).
    pub async fn upload<R: RegistryEntry>(&self, zip: std::fs::File) -> Result<String> {
        let max_unpacked = self.settings.limits.max_unpacked_bytes;
        let base = self.settings.advertise_http.clone();
        let egress = self.settings.egress.clone();
        let sealer = self.settings.sealer.clone();
        self.blocking(move |store| {
            let zip = std::io::BufReader::new(zip);
            let bundle = bundle::read_from(zip, R::BUNDLE_CODE, R::BUNDLE_DOC, max_unpacked)?;
            let spec = serde_json::from_slice(&bundle.spec)
                .map_err(|e| Error::BadRequest(format!("spec.json is not valid json: {e}")))?;
            if let Value::Object(fields) = &spec {
                check_egress(&egress, fields)?;
            }
            let context = format!("spec.json is not a valid {}", R::COLLECTION.kind());
            let mut record: R = record_from_json(spec, &context)?;
            check_not_reserved::<R>(&record.id())?;
            sealer.seal(record.credentials_mut(), None, R::CREDENTIALS_FIELD)?;
            if let Some(doc) = bundle.doc {
                record.set_man_page(doc);
            }
            if let Some(code) = &bundle.code {
                let sha = gridnode_store::sha256_hex(code);
                record.set_source_code_link(format!("{base}/blobs/{sha}"));
            }
            store.create_with_blob(&record, bundle.code)?;
            Ok(record.id().into_owned())
        })
        .await
    }

    /// Node-local tool records (contract section 6), all or one node's, in key order.
    pub async fn cluster_tools(
        &self,
        node_id: Option<String>,
        page: Page,
    ) -> Result<Vec<HostedTool>> {
        self.blocking(move |store| match node_id {
            None => {
                let records = store.list::<ClusterLocalTool>(page)?;
                records.into_iter().map(|record| HostedTool::read(store, record)).collect()
            }
            Some(node) => HostedTool::find(store, "node_id", node, page),
        })
        .await
    }

    /// The node-local tool records named `name` (on every node, or only on `node_id`).
    pub async fn hosts_of(&self, name: String, node_id: Option<String>) -> Result<Vec<HostedTool>> {
        if let Some(node_id) = node_id {
            return match self.cluster_tool(node_id, name).await {
                Ok(hosted) => Ok(vec![hosted]),
                Err(Error::NotFound(_)) => Ok(Vec::new()),
                Err(other) => Err(other),
            };
        }
        self.blocking(move |store| HostedTool::find(store, "name", name, Page::new(0, MAX_RESULTS)))
            .await
    }

    /// One node-local tool record (record and writer from one read of its envelope).
    pub async fn cluster_tool(&self, node_id: String, name: String) -> Result<HostedTool> {
        self.blocking(move |store| {
            HostedTool::at(store, &ClusterLocalTool::key(&node_id, &name))?.ok_or_else(|| {
                Error::NotFound(format!("tool '{name}' is not registered on node '{node_id}'"))
            })
        })
        .await
    }
}

/// A node-local tool record and the node that last wrote it (a node writes its own records; a
/// record written by another is an outside node's, registered over REST).
#[derive(Debug, Clone, PartialEq)]
pub struct HostedTool {
    pub record: ClusterLocalTool,
    pub written_by: String,
}

impl HostedTool {
    /// The live record under `key`, with its writer, from one read of its envelope.
    fn at(store: &Store, key: &str) -> Result<Option<HostedTool>> {
        Ok(store.envelope::<ClusterLocalTool>(key)?.and_then(|envelope| {
            let written_by = envelope.header.hlc.node.clone();
            envelope.into_live().map(|record| HostedTool { record, written_by })
        }))
    }

    /// The records whose indexed `field` is `value`, a page of them, one read each.
    fn find(store: &Store, field: &str, value: String, page: Page) -> Result<Vec<HostedTool>> {
        // Index entries exist for live records only: the page is taken from the ids.
        let ids = store.ids_where::<ClusterLocalTool>(field, &Value::from(value))?;
        let page = ids.iter().skip(page.offset).take(page.limit);
        page.filter_map(|id| HostedTool::at(store, id).transpose()).collect()
    }

    /// A record read by a listing, with its writer (a second read, of the header).
    fn read(store: &Store, record: ClusterLocalTool) -> Result<HostedTool> {
        let key = ClusterLocalTool::key(&record.node_id, &record.name);
        let header = store.header::<ClusterLocalTool>(&key)?;
        let written_by = header.map(|h| h.hlc.node).unwrap_or_default();
        Ok(HostedTool { record, written_by })
    }
}

/// `current` with the fields of `patch` replaced; the result must still be a valid `kind`.
pub(crate) fn patched<R: serde::Serialize + serde::de::DeserializeOwned>(
    current: R,
    patch: &JsonMap,
    kind: &str,
) -> gridnode_store::Result<R> {
    let Ok(Value::Object(mut doc)) = serde_json::to_value(current) else {
        return Err(gridnode_store::Error::Corrupt("record is not an object".into()));
    };
    doc.extend(patch.iter().map(|(field, value)| (field.clone(), value.clone())));
    serde_json::from_value(Value::Object(doc))
        .map_err(|e| gridnode_store::Error::Invalid(format!("invalid {kind} update: {e}")))
}

/// A record from JSON: it must be an object (serde would also read a struct from an array).
fn record_from_json<R: RegistryEntry>(value: Value, context: &str) -> Result<R> {
    if !value.is_object() {
        return Err(Error::BadRequest(format!(
            "{context}: expected a json object with the {} fields",
            R::COLLECTION.kind()
        )));
    }
    serde_json::from_value(value).map_err(|e| Error::BadRequest(format!("{context}: {e}")))
}

fn check_not_reserved<R: RegistryEntry>(id: &str) -> Result<()> {
    if RESERVED_IDS.contains(&id) {
        return Err(Error::BadRequest(format!(
            "'{id}' cannot be a {} id: it names a route ({})",
            R::COLLECTION.kind(),
            RESERVED_IDS.join(", ")
        )));
    }
    Ok(())
}

/// The URLs a record would make this node call (a remote tool's `tool_service_url`, a
/// function's `open_api_spec.servers[].url`): one whose host is a literal address the
/// egress rules refuse is a 400 now, not a 403 at every execution (contract section 14).
fn check_egress(egress: &egress::Egress, fields: &JsonMap) -> Result<()> {
    let servers = fields
        .get("open_api_spec")
        .and_then(|spec| spec.get("servers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|server| server.get("url"));
    let urls = fields.get("tool_service_url").into_iter().chain(servers);
    for url in urls.filter_map(Value::as_str).filter_map(|u| reqwest::Url::parse(u).ok()) {
        egress.check_url(&url).map_err(|refused| {
            Error::BadRequest(format!(
                "{refused}: this node may not call {url} (list it in [egress] allow to let it through)"
            ))
        })?;
    }
    Ok(())
}
