//! The search index: open or rebuild, follow the feed, search.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use gridnode_store::{Change, Collection, FunctionEntry, Page, RegistryEntry, Store, ToolEntry};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::index::IndexSettings;
use tantivy::query::{
    BooleanQuery, FuzzyTermQuery, Occur, Query, QueryParser, TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Term, Value as _};
use tantivy::snippet::SnippetGenerator;
use tantivy::store::Compressor;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument,
};

use crate::document::{document, key_term};
use crate::schema::{self, Fields};
use crate::{Error, Result};

/// Changes applied per commit while catching up (one tantivy commit per batch, not per write).
pub const BATCH: usize = 10_000;
/// Memory the single indexing thread may buffer before it flushes a segment.
pub const WRITER_MEMORY: usize = 32 * 1024 * 1024;
/// Size of a stored-document block.
const DOCSTORE_BLOCK: usize = 4096;
/// Deepest parenthesis nesting accepted in a query (tantivy's parser recurses on each).
pub const MAX_QUERY_NESTING: usize = 16;
/// Furthest a search pages: `offset + limit` at most this (the collector keeps that many).
pub const MAX_WINDOW: usize = 10_000;
/// Longest query text accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 1024;
/// Longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 160;
/// Query words tried with typo tolerance when the exact query finds nothing.
const MAX_FUZZY_TERMS: usize = 8;

/// A search.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// The query, in tantivy's syntax: words, `"phrases"`, `+must`, `-not`, `AND`/`OR`,
    /// `field:value` for `id kind tag type description man_page meta`.
    pub text: &'a str,
    /// Only this registry, or both.
    pub kind: Option<Collection>,
    pub page: Page,
    /// Whether hits need snippets (they cost a document load each); without, `snippet` is empty.
    pub snippets: bool,
}

/// One ranked result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub kind: Collection,
    pub id: String,
    pub score: f32,
    /// A fragment of the description (or man page) with the matched words in `<b>…</b>`,
    /// HTML-escaped.
    pub snippet: String,
}

/// The index over both registries. Share it behind an `Arc`.
pub struct SearchIndex {
    store: Store,
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// `None` once [`SearchIndex::close`]d: the writer (and tantivy's lock) is released.
    writer: Mutex<Option<IndexWriter>>,
    parser: QueryParser,
    /// The last feed sequence number applied and committed.
    applied: AtomicU64,
    dir: PathBuf,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("dir", &self.dir)
            .field("applied", &self.applied())
            .finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir` and brings it up to date with the store: it catches up from the
    /// sequence number its last commit recorded, or rebuilds itself from the store when the
    /// directory is missing, unreadable, of another schema, or ahead of the store.
    pub fn open(dir: &Path, store: Store) -> Result<SearchIndex> {
        let (schema, fields) = schema::build();
        let (index, rebuild) = match open_existing(dir, &schema) {
            Ok(index) => (index, false),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "rebuilding the search index");
                (create_fresh(dir, &schema)?, true)
            }
        };
        schema::register_tokenizers(&index);
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let mut parser =
            QueryParser::for_index(&index, boosted_fields(&fields).map(|(f, _)| f).to_vec());
        for (field, boost) in boosted_fields(&fields) {
            parser.set_field_boost(field, boost);
        }
        let recorded = index.load_metas()?.payload.and_then(|p| p.parse::<u64>().ok());
        let search = SearchIndex {
            applied: AtomicU64::new(recorded.unwrap_or(0)),
            store,
            index,
            fields,
            reader,
            writer: Mutex::new(Some(writer)),
            parser,
            dir: dir.to_owned(),
        };
        let ahead_of_store = recorded.is_some_and(|seq| seq > search.store.last_seq());
        if rebuild || recorded.is_none() || ahead_of_store {
            search.rebuild()?;
        }
        search.catch_up()?;
        Ok(search)
    }

    /// The last feed sequence number the index has applied.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Applies every change in the feed after [`SearchIndex::applied`], one commit per batch.
    /// Returns the sequence number reached. A closed index applies nothing.
    pub fn catch_up(&self) -> Result<u64> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(writer) = guard.as_mut() else { return Ok(self.applied()) };
        loop {
            let applied = self.applied();
            // The feed is never compacted yet; when it is, a gap here must trigger a rebuild.
            let changes = self.store.changes_since(applied, BATCH)?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(applied);
            };
            self.apply(writer, &changes)?;
            self.commit(writer, last)?;
        }
    }

    /// Replaces the whole index with the store's live records.
    pub fn rebuild(&self) -> Result<u64> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(writer) = guard.as_mut() else { return Ok(self.applied()) };
        // Read the position first: records written meanwhile are re-applied from the feed.
        let last = self.store.last_seq();
        writer.delete_all_documents()?;
        add_all::<ToolEntry>(&self.store, &self.fields, writer)?;
        add_all::<FunctionEntry>(&self.store, &self.fields, writer)?;
        self.commit(writer, last)?;
        tracing::info!(seq = last, "search index rebuilt from the store");
        Ok(last)
    }

    /// Releases the writer, its threads and tantivy's directory lock, so the index can be opened
    /// again (by a restart in this process). Searches still work; nothing is indexed any more.
    /// Blocks while the writer's threads finish.
    pub fn close(&self) {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(writer);
    }

    fn apply(&self, writer: &IndexWriter, changes: &[Change]) -> Result<()> {
        // The last change of each record decides; the record is read as it is now.
        let mut seen: HashSet<(u8, &str)> = HashSet::new();
        for change in changes.iter().rev() {
            if !seen.insert((change.collection, &change.id)) {
                continue;
            }
            // Only the two registries are searchable: node-local tools, actions and allow-lists
            // are not.
            let (collection, doc) = match Collection::from_u8(change.collection) {
                Some(c @ Collection::Tools) => (c, self.document_of::<ToolEntry>(&change.id)?),
                Some(c @ Collection::Functions) => {
                    (c, self.document_of::<FunctionEntry>(&change.id)?)
                }
                Some(
                    Collection::ClusterTools
                    | Collection::Actions
                    | Collection::AllowLists
                    | Collection::Members
                    | Collection::AclTokens,
                )
                | None => continue,
            };
            writer.delete_term(key_term(&self.fields, collection, &change.id));
            if let Some(doc) = doc {
                writer.add_document(doc)?;
            }
        }
        Ok(())
    }

    /// The record a stored document is of (its `key` field, read back).
    fn key_of<'d>(&self, doc: &'d TantivyDocument) -> Option<(Collection, &'d str)> {
        parse_key(doc.get_first(self.fields.key).and_then(|v| v.as_str())?)
    }

    fn document_of<R: RegistryEntry>(&self, id: &str) -> Result<Option<TantivyDocument>> {
        Ok(self.store.try_get::<R>(id)?.map(|record| document(&self.fields, &record)))
    }

    fn commit(&self, writer: &mut IndexWriter, seq: u64) -> Result<()> {
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&seq.to_string());
        prepared.commit()?;
        self.reader.reload()?;
        self.applied.store(seq, Ordering::Release);
        Ok(())
    }

    /// Ranked hits, best first. A plain-words query that finds nothing is retried with typo
    /// tolerance.
    pub fn search(&self, request: &SearchRequest<'_>) -> Result<Vec<Hit>> {
        let text = request.text.trim();
        check_text(text)?;
        let window = request.page.offset.saturating_add(request.page.limit);
        if window > MAX_WINDOW {
            return Err(Error::Query(format!(
                "offset + limit is {window}; a search reaches at most the first {MAX_WINDOW} hits: refine the query"
            )));
        }
        let parsed = self.parser.parse_query(text).map_err(|e| query_error(text, &e))?;
        let searcher = self.reader.searcher();
        let exact = self.within_kind(parsed.box_clone(), request.kind);
        let hits = self.run(&searcher, exact.as_ref(), request)?;
        if !hits.is_empty() || !is_plain_words(text) {
            return self.hits(&searcher, parsed.as_ref(), hits, request.snippets);
        }
        // An empty page past the end of real results is not a reason to go fuzzy.
        if request.page.offset > 0
            && searcher.search(exact.as_ref(), &Count).map_err(search_error)? > 0
        {
            return Ok(Vec::new());
        }
        let Some(fuzzy) = self.fuzzy(text) else { return Ok(Vec::new()) };
        let hits = self.run(&searcher, self.within_kind(fuzzy, request.kind).as_ref(), request)?;
        self.hits(&searcher, parsed.as_ref(), hits, request.snippets)
    }

    /// The relevance of each of `ids` (records of `kind`) to `text`, scored as a search scores
    /// them; ids that do not match are absent. Selection ranks candidates with it.
    pub fn relevance(
        &self,
        text: &str,
        kind: Collection,
        ids: &[&str],
    ) -> Result<HashMap<String, f32>> {
        let text = text.trim();
        check_text(text)?;
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let parsed = self.parser.parse_query(text).map_err(|e| query_error(text, &e))?;
        let searcher = self.reader.searcher();
        // Most texts match far fewer records than a selection has candidates: then searching
        // the whole index and keeping the candidates' hits is cheaper than restricting the
        // query to a set of thousands of keys.
        let total = searcher.search(parsed.as_ref(), &Count).map_err(search_error)?;
        let wanted: Option<HashSet<&str>> = (total <= ids.len().max(64) && total <= MAX_WINDOW)
            .then(|| ids.iter().copied().collect());
        let found = match &wanted {
            Some(_) => searcher
                .search(parsed.as_ref(), &TopDocs::with_limit(total.max(1)).order_by_score())
                .map_err(search_error)?,
            None => {
                let within =
                    TermSetQuery::new(ids.iter().map(|id| key_term(&self.fields, kind, id)));
                let query = BooleanQuery::new(vec![
                    (Occur::Must, parsed),
                    (Occur::Must, Box::new(within) as Box<dyn Query>),
                ]);
                searcher
                    .search(&query, &TopDocs::with_limit(ids.len()).order_by_score())
                    .map_err(search_error)?
            }
        };
        let mut scores = HashMap::with_capacity(found.len());
        for (score, address) in found {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some((found_kind, id)) = self.key_of(&doc)
                && found_kind == kind
                && wanted.as_ref().is_none_or(|wanted| wanted.contains(id))
            {
                scores.insert(id.to_owned(), score);
            }
        }
        Ok(scores)
    }

    fn run(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        request: &SearchRequest<'_>,
    ) -> Result<Vec<(f32, DocAddress)>> {
        let collector = TopDocs::with_limit(request.page.limit.max(1))
            .and_offset(request.page.offset)
            .order_by_score();
        searcher.search(query, &collector).map_err(search_error)
    }

    fn within_kind(&self, query: Box<dyn Query>, kind: Option<Collection>) -> Box<dyn Query> {
        match kind {
            None => query,
            Some(kind) => {
                let term = Term::from_field_text(self.fields.kind, kind.kind());
                let filter = TermQuery::new(term, IndexRecordOption::Basic);
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, query),
                    (Occur::Must, Box::new(filter) as Box<dyn Query>),
                ]))
            }
        }
    }

    /// Each word of the text, stemmed as the index stems it, matched within 1 edit (2 for
    /// words of 6 letters or more) in the description and the man page.
    fn fuzzy(&self, text: &str) -> Option<Box<dyn Query>> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.description).ok()?;
        let mut words = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            if token.text.chars().count() >= 3 && !words.contains(&token.text) {
                words.push(token.text.clone());
            }
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .take(MAX_FUZZY_TERMS)
            .flat_map(|word| {
                let distance = if word.chars().count() >= 6 { 2 } else { 1 };
                [self.fields.description, self.fields.man_page].map(|field| {
                    let term = Term::from_field_text(field, word);
                    (
                        Occur::Should,
                        Box::new(FuzzyTermQuery::new(term, distance, true)) as Box<dyn Query>,
                    )
                })
            })
            .collect();
        (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
    }

    fn hits(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        found: Vec<(f32, DocAddress)>,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut snippet =
            if snippets { Some(Snippets::new(searcher, query, &self.fields)?) } else { None };
        let mut hits = Vec::with_capacity(found.len());
        for (score, address) in found {
            // The key (and, for snippets, the prose) is read back from the stored document.
            let doc: TantivyDocument = searcher.doc(address)?;
            let Some((kind, id)) = self.key_of(&doc) else { continue };
            let snippet = match &mut snippet {
                Some(snippets) => snippets.of(&doc),
                None => String::new(),
            };
            hits.push(Hit { kind, id: id.to_owned(), score, snippet });
        }
        Ok(hits)
    }
}

/// Snippet generators for one search: the description first, the man page when only it matched.
struct Snippets {
    description: SnippetGenerator,
    man_page: SnippetGenerator,
    description_field: Field,
}

impl Snippets {
    fn new(searcher: &Searcher, query: &dyn Query, fields: &Fields) -> Result<Snippets> {
        let mut description = SnippetGenerator::create(searcher, query, fields.description)?;
        description.set_max_num_chars(SNIPPET_CHARS);
        let mut man_page = SnippetGenerator::create(searcher, query, fields.man_page)?;
        man_page.set_max_num_chars(SNIPPET_CHARS);
        Ok(Snippets { description, man_page, description_field: fields.description })
    }

    fn of(&mut self, doc: &TantivyDocument) -> String {
        let snippet = self.description.snippet_from_doc(doc);
        if !snippet.highlighted().is_empty() {
            return snippet.to_html();
        }
        let snippet = self.man_page.snippet_from_doc(doc);
        if !snippet.highlighted().is_empty() {
            return snippet.to_html();
        }
        // Typo-tolerant matches are not highlighted: the start of the description stands in.
        let text = doc.get_first(self.description_field).and_then(|v| v.as_str()).unwrap_or("");
        escape_html(&prefix(text, SNIPPET_CHARS))
    }
}

/// `tool/<id>` → (Tools, id).
fn parse_key(key: &str) -> Option<(Collection, &str)> {
    let (kind, id) = key.split_once('/')?;
    let kind = Collection::ALL.into_iter().find(|c| c.kind() == kind)?;
    Some((kind, id))
}

/// Field boosts: the description ranks above tags and ids, which rank above the man page.
fn boosted_fields(fields: &Fields) -> [(Field, f32); 6] {
    [
        (fields.description, 3.0),
        (fields.tag, 2.0),
        (fields.id, 2.0),
        (fields.kind_type, 1.5),
        (fields.man_page, 1.0),
        (fields.meta, 0.5),
    ]
}

/// Checks the query text before it reaches the parser.
fn check_text(text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(Error::Query("the search text is empty: give at least one word".into()));
    }
    if text.len() > MAX_QUERY_LEN {
        return Err(Error::Query(format!(
            "the search text is {} bytes long; at most {MAX_QUERY_LEN} are accepted",
            text.len()
        )));
    }
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_QUERY_NESTING {
                    return Err(Error::Query(format!(
                        "the search text nests parentheses deeper than {MAX_QUERY_NESTING}: simplify it"
                    )));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// True when the text is only words (no operators, fields, quotes or groups): only then does a
/// typo-tolerant retry keep the query's meaning.
fn is_plain_words(text: &str) -> bool {
    let operators = ['"', ':', '(', ')', '[', ']', '{', '}', '+', '-', '^', '~', '*', '\\'];
    !text.contains(operators)
        && !text.split_whitespace().any(|w| matches!(w, "AND" | "OR" | "NOT" | "IN"))
}

/// A search that fails on a healthy index failed because of its query (`field:*` asks a
/// field that is not a fast field whether it exists, for one).
fn search_error(error: tantivy::TantivyError) -> Error {
    match error {
        tantivy::TantivyError::SchemaError(why) | tantivy::TantivyError::InvalidArgument(why) => {
            Error::Query(format!("the query cannot run: {}", why.to_lowercase()))
        }
        other => Error::Index(other),
    }
}

fn add_all<R: RegistryEntry>(store: &Store, fields: &Fields, writer: &IndexWriter) -> Result<()> {
    for record in store.live::<R>() {
        writer.add_document(document(fields, &record?))?;
    }
    Ok(())
}

/// Opens an existing index of exactly this schema; the error says why it cannot be used.
fn open_existing(
    dir: &Path,
    schema: &tantivy::schema::Schema,
) -> std::result::Result<Index, String> {
    if !dir.join("meta.json").exists() {
        return Err("no index yet".into());
    }
    let directory = MmapDirectory::open(dir).map_err(|e| e.to_string())?;
    let index = Index::open(directory).map_err(|e| e.to_string())?;
    if index.schema() != *schema {
        return Err("the index has another schema".into());
    }
    let (found, wanted) = (index.settings(), settings());
    if found.docstore_compression != wanted.docstore_compression
        || found.docstore_blocksize != wanted.docstore_blocksize
    {
        return Err("the index has other settings".into());
    }
    // Opening a reader opens every segment file that meta.json names.
    index.reader().map_err(|e| e.to_string())?;
    Ok(index)
}

fn create_fresh(dir: &Path, schema: &tantivy::schema::Schema) -> Result<Index> {
    let io = |source| Error::Io { path: dir.display().to_string(), source };
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    Ok(Index::builder().schema(schema.clone()).settings(settings()).create_in_dir(dir)?)
}

/// Stored documents are small and read back on every hit (its key, its prose for snippets):
/// small, uncompressed blocks make that a copy instead of a decompression.
fn settings() -> IndexSettings {
    IndexSettings {
        docstore_compression: Compressor::None,
        docstore_blocksize: DOCSTORE_BLOCK,
        ..IndexSettings::default()
    }
}

/// tantivy's parse errors, said for people.
fn query_error(text: &str, error: &tantivy::query::QueryParserError) -> Error {
    use tantivy::query::QueryParserError as E;
    let shown: String = text.chars().take(80).collect();
    let why = match error {
        E::SyntaxError(_) => "it is not valid query syntax: close every quote and parenthesis, \
                              put words around AND/OR, or escape special characters with \\"
            .to_string(),
        E::FieldDoesNotExist(field) => format!(
            "there is no field '{field}': use one of id, kind, tag, type, description, man_page, meta \
             (or put the text in quotes)"
        ),
        E::AllButQueryForbidden => {
            "it only excludes terms: add at least one word to look for".into()
        }
        other => other.to_string().to_lowercase(),
    };
    Error::Query(format!("invalid search query '{shown}': {why}"))
}

fn prefix(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
