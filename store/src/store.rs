//! The store: typed collections over sled, with secondary indexes, a change feed and blobs.
//!
//! Every record write is one sled transaction over the collection, the index, the feed and the
//! meta tree, so an index never disagrees with its records and every write has a feed entry.
//! sled serialises transactions, so feed sequence numbers follow commit order. Public write
//! methods return only after a group-committed flush: an acknowledged write survives a crash.
//!
//! Every version this store writes is signed by its [`Signer`] (the node's identity key) in the
//! same transaction, and a merged version keeps its author's signature, so the store can hand
//! any version on with the signature that vouches for it. The store never checks signatures:
//! the federation does, before it merges.
//!
//! All methods block (sled does I/O): call them from `spawn_blocking` in async code.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use tokio::sync::watch;

use crate::codec::{decode, encode};
use crate::durability::GroupCommit;
use crate::envelope::{Envelope, Header, decode_header};
use crate::feed::Change;
use crate::hlc::{Clock, Hlc, now_ms};
use crate::query::Filter;
use crate::record::{
    AclToken, Action, AllowList, ClusterLocalTool, Collection, FunctionEntry, Member, Record,
    ToolEntry,
};
use crate::{Error, Result, index};

/// The store schema this build writes and reads. Bump it with a migration in [`Store::open`].
/// 2: versions are signed (a `signatures` tree beside the records; the member records).
pub const SCHEMA_VERSION: u32 = 2;

/// Default bound on sled's page cache (sled's own default is 1 GiB, too much for an edge box).
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

/// Most results any one query returns.
pub const MAX_RESULTS: usize = 1000;

/// Largest encoded version a record may have: every version must fit one replication answer, so
/// a larger record is refused when it is written (and when a peer sends one).
pub const MAX_VERSION_BYTES: usize = 8 << 20;

const META_SCHEMA: &[u8] = b"schema_version";
const META_SEQ: &[u8] = b"feed_seq";
/// Set once every version held is signed ([`Store::sign_unsigned`] ran to the end).
const META_SIGNED: &[u8] = b"versions_signed";

/// Signs the versions this store writes: the node's identity key.
pub trait Signer: Send + Sync + std::fmt::Debug {
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

/// The bytes a version's signature covers: its collection, key and encoded envelope (clock,
/// tombstone flag and record), under a domain tag of their own.
pub fn signed_message(collection: Collection, id: &str, envelope: &[u8]) -> Vec<u8> {
    const DOMAIN: &[u8] = b"gridnode/version/1\0";
    let mut message = Vec::with_capacity(DOMAIN.len() + 5 + id.len() + envelope.len());
    message.extend_from_slice(DOMAIN);
    message.push(collection as u8);
    message.extend_from_slice(&(id.len() as u32).to_be_bytes());
    message.extend_from_slice(id.as_bytes());
    message.extend_from_slice(envelope);
    message
}

/// One stored version as it travels: the encoded envelope and its author's signature (empty
/// for a version written before versions were signed, or by a store without a signer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVersion {
    pub envelope: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Who wrote the version of a record held here, as `?provenance=true` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The node whose clock stamped the version (its author).
    pub author: String,
    /// Whether the version carries its author's signature.
    pub signed: bool,
    /// When it was written (the clock's wall time, ms since the epoch).
    pub at_ms: u64,
}

/// What [`Store::sign_unsigned`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resigned {
    /// This node's own versions, signed in place (same clock).
    pub signed: usize,
    /// Other nodes' versions written again as this node's (new clock, same content).
    pub restamped: usize,
    /// Other nodes' node-local tool records dropped (their node announces them again).
    pub dropped: usize,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The sled directory; `None` for a temporary store removed on drop (tests).
    pub path: Option<PathBuf>,
    /// Bound on sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// This node's id: it stamps every version this store makes.
    pub node_id: String,
    /// Signs every version this store makes; `None` leaves them unsigned (peers refuse those).
    pub signer: Option<Arc<dyn Signer>>,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>, node_id: impl Into<String>) -> Self {
        StoreConfig {
            path: Some(path.into()),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            node_id: node_id.into(),
            signer: None,
        }
    }

    /// The same config, signing with `signer`.
    pub fn signed_by(self, signer: Arc<dyn Signer>) -> Self {
        StoreConfig { signer: Some(signer), ..self }
    }

    pub fn temporary(node_id: impl Into<String>) -> Self {
        StoreConfig {
            path: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            node_id: node_id.into(),
            signer: None,
        }
    }
}

/// A window of results: skip `offset`, return at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Page {
    pub const ALL: Page = Page { offset: 0, limit: MAX_RESULTS };

    pub fn new(offset: usize, limit: usize) -> Page {
        Page { offset, limit: limit.min(MAX_RESULTS) }
    }
}

/// A cheap, cloneable handle on one open store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("node_id", &self.inner.node_id).finish_non_exhaustive()
    }
}

struct Inner {
    db: sled::Db,
    node_id: String,
    tools: sled::Tree,
    functions: sled::Tree,
    cluster_tools: sled::Tree,
    actions: sled::Tree,
    allow_lists: sled::Tree,
    members: sled::Tree,
    acl_tokens: sled::Tree,
    /// A version's signature, by `[collection] ++ id`, written with the version.
    signatures: sled::Tree,
    signer: Option<Arc<dyn Signer>>,
    index: sled::Tree,
    feed: sled::Tree,
    meta: sled::Tree,
    blobs: sled::Tree,
    audit: sled::Tree,
    /// The audit log's first held and next sequence numbers.
    audit_span: crate::audit::Span,
    clock: Mutex<Clock>,
    commit: GroupCommit,
    feed_tx: watch::Sender<u64>,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The version was newer and is now the local state.
    Applied(Written),
    /// The local version is as new or newer: nothing changed.
    Ignored,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub seq: u64,
    pub hlc: Hlc,
}

impl Store {
    /// Opens (or creates) a store, checking its schema version.
    pub fn open(config: &StoreConfig) -> Result<Store> {
        let sled_config = match &config.path {
            Some(path) => sled::Config::new().path(path),
            None => sled::Config::new().temporary(true),
        };
        let db = open_locked(&sled_config.cache_capacity(config.cache_capacity))?;
        let meta = db.open_tree("meta")?;
        match meta.get(META_SCHEMA)? {
            None => {
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(bytes) => {
                let found = decode_u32(&bytes)?;
                if found > SCHEMA_VERSION {
                    return Err(Error::Schema { found, supported: SCHEMA_VERSION });
                }
                // Older schemas migrate here, one version at a time. 1 → 2: the signatures
                // and members trees start empty; the versions already held are signed by
                // `sign_unsigned` when the node first starts with its key.
                if found < SCHEMA_VERSION {
                    meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                }
            }
        }
        // The clock restarts past the last version written: the newest feed entry's.
        let feed = db.open_tree("feed")?;
        let mut clock = Clock::new(config.node_id.clone());
        if let Some((_, bytes)) = feed.last()? {
            clock.observe(&decode::<Change>(&bytes)?.hlc);
        }
        let last_seq = meta.get(META_SEQ)?.map(|b| decode_u64(&b)).transpose()?.unwrap_or(0);
        let (feed_tx, _) = watch::channel(last_seq);
        let audit = db.open_tree("audit")?;
        let inner = Inner {
            node_id: config.node_id.clone(),
            tools: db.open_tree(Collection::Tools.tree_name())?,
            functions: db.open_tree(Collection::Functions.tree_name())?,
            cluster_tools: db.open_tree(Collection::ClusterTools.tree_name())?,
            actions: db.open_tree(Collection::Actions.tree_name())?,
            allow_lists: db.open_tree(Collection::AllowLists.tree_name())?,
            members: db.open_tree(Collection::Members.tree_name())?,
            acl_tokens: db.open_tree(Collection::AclTokens.tree_name())?,
            signatures: db.open_tree("signatures")?,
            signer: config.signer.clone(),
            index: db.open_tree("index")?,
            feed,
            blobs: db.open_tree("blobs")?,
            audit_span: crate::audit::Span::of(&audit)?,
            audit,
            meta,
            db,
            clock: Mutex::new(clock),
            commit: GroupCommit::default(),
            feed_tx,
        };
        Ok(Store { inner: Arc::new(inner) })
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    // ---- reads -------------------------------------------------------------------------

    /// The live record with this id.
    pub fn get<R: Record>(&self, id: &str) -> Result<R> {
        self.try_get(id)?.ok_or_else(|| not_found::<R>(id))
    }

    /// The live record with this id, if there is one.
    pub fn try_get<R: Record>(&self, id: &str) -> Result<Option<R>> {
        match self.tree(R::COLLECTION).get(id.as_bytes())? {
            Some(bytes) => Ok(Envelope::<R>::decode(&bytes)?.into_live()),
            None => Ok(None),
        }
    }

    /// The envelope stored under this id, tombstones included (for replication and tests).
    pub fn envelope<R: Record>(&self, id: &str) -> Result<Option<Envelope<R>>> {
        self.tree(R::COLLECTION).get(id.as_bytes())?.map(|b| Envelope::decode(&b)).transpose()
    }

    /// The version and tombstone flag stored under this id, without decoding the record (for
    /// replication digests: which side is newer).
    pub fn header<R: Record>(&self, id: &str) -> Result<Option<Header>> {
        self.tree(R::COLLECTION)
            .get(id.as_bytes())?
            .map(|bytes| decode_header(R::COLLECTION, &bytes))
            .transpose()
    }

    /// Every version held — live records and tombstones — as `(id, header)`, in id order,
    /// without decoding the records (for anti-entropy digests).
    pub fn versions<R: Record>(&self) -> impl Iterator<Item = Result<(String, Header)>> + use<R> {
        self.versions_in(R::COLLECTION)
    }

    fn versions_in(
        &self,
        collection: Collection,
    ) -> impl Iterator<Item = Result<(String, Header)>> + use<> {
        self.tree(collection).iter().map(move |item| {
            let (key, bytes) = item?;
            Ok((utf8_key(&key)?, decode_header(collection, &bytes)?))
        })
    }

    /// The envelope stored under this id as its encoded bytes, tombstones included, with its
    /// signature (what replication ships; [`Store::merge_encoded`] takes it on the other side).
    /// Both are read in one transaction, so they always belong together.
    pub fn signed_version(
        &self,
        collection: Collection,
        id: &str,
    ) -> Result<Option<SignedVersion>> {
        // First two plain reads, not a transaction (sled runs those one at a time, writers
        // included: anti-entropy serving thousands of versions would queue behind them). A
        // signature row names the clock of the version it signs, so a write landing between the
        // two reads shows as a mismatch; the pair is then read in a transaction.
        let key = signature_key(collection, id);
        let (records, signatures) = (self.tree(collection), &self.inner.signatures);
        let Some(envelope) = records.get(id.as_bytes())? else { return Ok(None) };
        let row = signatures.get(&key)?;
        if let Some(signed) = matching(collection, &envelope, row.as_deref())? {
            return Ok(Some(signed));
        }
        let read = (records, signatures).transaction(|(records, sigs)| {
            let Some(envelope) = records.get(id.as_bytes())? else { return Ok(None) };
            Ok::<_, ConflictableTransactionError<Error>>(Some((envelope, sigs.get(&key)?)))
        })?;
        let Some((envelope, row)) = read else { return Ok(None) };
        matching(collection, &envelope, row.as_deref())?.map(Some).ok_or_else(|| {
            Error::Corrupt(format!(
                "the signature of {} '{}' is not its version's",
                collection.kind(),
                crate::record::truncate(id, 64)
            ))
        })
    }

    /// Who wrote the version held under this id (tombstones included), if there is one.
    pub fn provenance(&self, collection: Collection, id: &str) -> Result<Option<Provenance>> {
        let Some(bytes) = self.tree(collection).get(id.as_bytes())? else { return Ok(None) };
        let header = decode_header(collection, &bytes)?;
        let signed = self.inner.signatures.contains_key(signature_key(collection, id))?;
        Ok(Some(Provenance { author: header.hlc.node, signed, at_ms: header.hlc.wall_ms }))
    }

    /// Every version of every replicated collection, as `(collection, id, header)`, read as
    /// the iterator goes (a caller that folds them into its own table holds them once).
    pub fn each_version(&self) -> impl Iterator<Item = Result<(Collection, String, Header)>> + '_ {
        Collection::ALL.into_iter().flat_map(move |collection| {
            self.versions_in(collection).map(move |item| item.map(|(id, h)| (collection, id, h)))
        })
    }

    /// [`Store::each_version`], collected.
    pub fn all_versions(&self) -> Result<Vec<(Collection, String, Header)>> {
        self.each_version().collect()
    }

    /// Removes tombstones written before `before_wall_ms` and returns what it removed. A
    /// tombstone replaced by a newer version in the meantime stays.
    pub fn collect_tombstones(
        &self,
        before_wall_ms: u64,
    ) -> Result<Vec<(Collection, String, Hlc)>> {
        let mut removed = Vec::new();
        // A member's tombstone is a released binding: collected, a node away for longer could
        // bind the released key again. There are few; they stay.
        for collection in Collection::ALL.into_iter().filter(|c| *c != Collection::Members) {
            let tree = self.tree(collection);
            for item in tree.iter() {
                let (key, bytes) = item?;
                let header = decode_header(collection, &bytes)?;
                if !header.tombstone || header.hlc.wall_ms >= before_wall_ms {
                    continue;
                }
                // In a transaction, so a merge of a newer version racing this one wins.
                let signature = signature_key(collection, &utf8_key(&key)?);
                let gone = (tree, &self.inner.signatures).transaction(|(t, sigs)| {
                    let still = t.get(&key)?.is_some_and(|now| now == bytes);
                    if still {
                        t.remove(&key)?;
                        sigs.remove(signature.as_slice())?;
                    }
                    Ok::<_, ConflictableTransactionError<Error>>(still)
                })?;
                if gone {
                    removed.push((collection, utf8_key(&key)?, header.hlc));
                }
            }
        }
        if !removed.is_empty() {
            self.sync()?;
        }
        Ok(removed)
    }

    /// Live records in id order.
    pub fn list<R: Record>(&self, page: Page) -> Result<Vec<R>> {
        self.live::<R>().skip(page.offset).take(page.limit).collect()
    }

    /// Every live record in id order, decoded lazily.
    pub fn live<R: Record>(&self) -> impl Iterator<Item = Result<R>> + use<R> {
        self.tree(R::COLLECTION).iter().filter_map(|item| {
            let decoded = item
                .map_err(Error::from)
                .and_then(|(_, bytes)| Envelope::<R>::decode(&bytes))
                .map(Envelope::into_live);
            decoded.transpose()
        })
    }

    /// Number of live records.
    pub fn count<R: Record>(&self) -> Result<usize> {
        let mut count = 0;
        for item in self.tree(R::COLLECTION).iter() {
            let (_, bytes) = item?;
            if !decode_header(R::COLLECTION, &bytes)?.tombstone {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Live records whose indexed `field` holds `value` (a list field: contains it), in id
    /// order. One prefix scan of the index; no record is read that does not match.
    pub fn find<R: Record>(&self, field: &str, value: &Value, page: Page) -> Result<Vec<R>> {
        if !R::INDEXED_FIELDS.contains(&field) {
            return Err(Error::Invalid(format!(
                "'{field}' has no index (indexed: {})",
                R::INDEXED_FIELDS.join(", ")
            )));
        }
        self.index_ids::<R>(field, value)
            .filter_map(|id| id.and_then(|id| self.try_get::<R>(&id)).transpose())
            .skip(page.offset)
            .take(page.limit)
            .collect()
    }

    /// Live records matching a filter (contract section 7). A top-level equality on an indexed
    /// field narrows the candidates through the index; the whole filter is then checked on each.
    pub fn query<R: Record>(&self, filter: &Filter, page: Page) -> Result<Vec<R>> {
        let keep = |record: &R| -> Result<bool> {
            let doc = serde_json::to_value(record)
                .map_err(|e| Error::Corrupt(format!("cannot render a record as json: {e}")))?;
            Ok(filter.matches(&doc))
        };
        let hint = filter
            .equality_hints()
            .into_iter()
            .find(|(path, value)| R::INDEXED_FIELDS.contains(path) && indexable(value));
        let candidates: Box<dyn Iterator<Item = Result<R>>> = match hint {
            Some((field, value)) => Box::new(
                self.index_ids::<R>(field, value)
                    .filter_map(|id| id.and_then(|id| self.try_get::<R>(&id)).transpose()),
            ),
            None => Box::new(self.live::<R>()),
        };
        let mut matched = candidates.filter_map(|record| match record {
            Ok(record) => match keep(&record) {
                Ok(true) => Some(Ok(record)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            },
            Err(e) => Some(Err(e)),
        });
        matched.by_ref().skip(page.offset).take(page.limit).collect()
    }

    /// The ids of the live records whose indexed `field` holds `value` (a string or a bool),
    /// without reading the records: an index prefix scan.
    pub fn ids_where<R: Record>(&self, field: &str, value: &Value) -> Result<Vec<String>> {
        if !R::INDEXED_FIELDS.contains(&field) || !indexable(value) {
            return Err(Error::Invalid(format!(
                "'{field}' is not an indexed field of a {}",
                R::COLLECTION.kind()
            )));
        }
        self.index_ids::<R>(field, value).collect()
    }

    fn index_ids<R: Record>(
        &self,
        field: &str,
        value: &Value,
    ) -> impl Iterator<Item = Result<String>> + use<R> {
        let prefix = index::prefix(R::COLLECTION, field, value);
        let skip = prefix.len();
        self.inner.index.scan_prefix(&prefix).keys().map(move |key| {
            let key = key?;
            String::from_utf8(key[skip..].to_vec())
                .map_err(|_| Error::Corrupt("index entry with a non-utf8 id".into()))
        })
    }

    // ---- writes ------------------------------------------------------------------------

    /// Inserts a new record; 409 if a live one has its id. A tombstone may be overwritten.
    pub fn create<R: Record>(&self, record: &R) -> Result<Written> {
        self.create_with_blob(record, None)
    }

    /// Inserts a new record and, in the same transaction, a blob: both or neither.
    ///
    /// The blob is taken by value: it becomes sled's buffer as it is (one move, no copy is kept
    /// beside it), so a large upload is in memory once while it is written.
    pub fn create_with_blob<R: Record>(
        &self,
        record: &R,
        blob: Option<Vec<u8>>,
    ) -> Result<Written> {
        record.validate()?;
        let blob = blob.map(|bytes| (sha256_hex(&bytes), sled::IVec::from(bytes)));
        let id = record.id();
        let written = self.commit::<R>(
            &id,
            |current| match current {
                Some(_) => Err(Error::Conflict { kind: R::COLLECTION.kind(), id: id.to_string() }),
                None => Ok(Some(record.clone())),
            },
            blob.as_ref().map(|(sha, bytes)| (sha.as_str(), bytes)),
        )?;
        self.sync()?;
        Ok(written)
    }

    /// Inserts or replaces a record.
    pub fn put<R: Record>(&self, record: &R) -> Result<Written> {
        record.validate()?;
        let written = self.commit::<R>(&record.id(), |_| Ok(Some(record.clone())), None)?;
        self.sync()?;
        Ok(written)
    }

    /// Replaces the live record `id` with `change(current)`; 404 if there is none. `change`
    /// may run more than once and must not change the id.
    pub fn update<R: Record>(&self, id: &str, change: impl Fn(R) -> Result<R>) -> Result<R> {
        let updated = std::cell::RefCell::new(None);
        self.commit::<R>(
            id,
            |current| {
                let current = current.ok_or_else(|| not_found::<R>(id))?;
                let next = change(current)?;
                next.validate()?;
                if next.id() != id {
                    return Err(Error::Invalid(format!(
                        "{} is immutable: it cannot change from '{id}'",
                        R::ID_FIELD
                    )));
                }
                *updated.borrow_mut() = Some(next.clone());
                Ok(Some(next))
            },
            None,
        )?;
        self.sync()?;
        updated
            .into_inner()
            .ok_or_else(|| Error::Corrupt("update committed without a record".into()))
    }

    /// Deletes the live record `id` (a tombstone stays, for replication); 404 if there is none.
    pub fn delete<R: Record>(&self, id: &str) -> Result<Written> {
        let written = self.commit::<R>(
            id,
            |current| current.map(|_| None).ok_or_else(|| not_found::<R>(id)),
            None,
        )?;
        self.sync()?;
        Ok(written)
    }

    /// Inserts or replaces many records with one flush at the end: bulk loading.
    pub fn import<R: Record>(&self, records: &[R]) -> Result<usize> {
        for record in records {
            record.validate()?;
        }
        for record in records {
            self.commit::<R>(&record.id(), |_| Ok(Some(record.clone())), None)?;
        }
        self.sync()?;
        Ok(records.len())
    }

    /// Signs every version held that has no signature, once: the upgrade from a store written
    /// before versions were signed. This node's own versions are signed in place, with the
    /// clock they have. Another node's versions are written again as this node's, with the
    /// same wall time and counter (only their author could sign them as they are, and it may
    /// be gone): every node re-stamps the same version to the same time, so a newer version
    /// held elsewhere still wins and the copies of one version converge by node id, whatever
    /// order the nodes upgrade in. Another node's node-local tool records are dropped: only that
    /// node may write them, and it announces them again when it starts. Does nothing without a
    /// signer, or once it has run to the end.
    pub fn sign_unsigned(&self) -> Result<Resigned> {
        let mut done = Resigned::default();
        let Some(signer) = self.inner.signer.clone() else { return Ok(done) };
        if self.inner.meta.contains_key(META_SIGNED)? {
            return Ok(done);
        }
        for collection in Collection::ALL {
            let signer = &*signer;
            match collection {
                Collection::Tools => self.sign_unsigned_in::<ToolEntry>(signer, &mut done)?,
                Collection::Functions => {
                    self.sign_unsigned_in::<FunctionEntry>(signer, &mut done)?
                }
                Collection::ClusterTools => {
                    self.sign_unsigned_in::<ClusterLocalTool>(signer, &mut done)?
                }
                Collection::Actions => self.sign_unsigned_in::<Action>(signer, &mut done)?,
                Collection::AllowLists => self.sign_unsigned_in::<AllowList>(signer, &mut done)?,
                Collection::Members => self.sign_unsigned_in::<Member>(signer, &mut done)?,
                Collection::AclTokens => self.sign_unsigned_in::<AclToken>(signer, &mut done)?,
            }
        }
        self.inner.meta.insert(META_SIGNED, &[1])?;
        self.sync()?;
        Ok(done)
    }

    /// Whether the one-time step `name` (a migration the node runs at start) has run to the end
    /// on this store.
    pub fn step_done(&self, name: &str) -> Result<bool> {
        Ok(self.inner.meta.contains_key(format!("step:{name}"))?)
    }

    /// Records that the one-time step `name` has run to the end (flushed).
    pub fn finish_step(&self, name: &str) -> Result<()> {
        self.inner.meta.insert(format!("step:{name}"), &[1])?;
        self.sync()
    }

    fn sign_unsigned_in<R: Record>(&self, signer: &dyn Signer, done: &mut Resigned) -> Result<()> {
        let tree = self.tree(R::COLLECTION);
        let signatures = &self.inner.signatures;
        for item in tree.iter() {
            let (key, bytes) = item?;
            let id = utf8_key(&key)?;
            let signature_key = signature_key(R::COLLECTION, &id);
            if signatures.contains_key(&signature_key)? {
                continue;
            }
            let header = decode_header(R::COLLECTION, &bytes)?;
            if header.hlc.node == self.inner.node_id {
                let signature = signer.sign(&signed_message(R::COLLECTION, &id, &bytes));
                let row = signature_row_of(&header.hlc, &signature)?;
                // Only if the version is still the one signed.
                let signed = (tree, signatures).transaction(|(records, sigs)| {
                    let still = records.get(&key)?.is_some_and(|now| now == bytes);
                    if still {
                        sigs.insert(signature_key.as_slice(), row.as_slice())?;
                    }
                    Ok::<_, ConflictableTransactionError<Error>>(still)
                })?;
                done.signed += usize::from(signed);
            } else if R::COLLECTION == Collection::ClusterTools {
                let old = Envelope::<R>::decode(&bytes)?.into_live();
                (tree, &self.inner.index).transaction(|(records, index)| {
                    if records.get(&key)?.is_some_and(|now| now == bytes) {
                        records.remove(&key)?;
                        if let Some(old) = &old {
                            update_index(index, old, false)?;
                        }
                    }
                    Ok(())
                })?;
                done.dropped += 1;
            } else {
                let envelope = Envelope::<R>::decode(&bytes)?;
                let mut restamped = envelope.clone();
                restamped.header.hlc.node = self.inner.node_id.clone();
                let old = envelope.into_live();
                let inner = &*self.inner;
                let trees = (tree, &inner.index, &inner.feed, &inner.meta, &inner.signatures);
                let written = trees.transaction(|(records, index, feed, meta, sigs)| {
                    if records.get(&key)?.is_none_or(|now| now != bytes) {
                        return Ok(None);
                    }
                    let trees = (records, index, feed, meta, sigs);
                    let signing = Signing::Own(Some(signer));
                    write_version(trees, &id, old.as_ref(), &restamped, signing).map(Some)
                })?;
                if let Some(seq) = written {
                    self.observe(&restamped.header.hlc);
                    self.notify(seq);
                    done.restamped += 1;
                }
            }
        }
        Ok(())
    }

    /// Inserts or replaces a record without waiting for the disk: the write is committed and
    /// visible, but survives a crash only after the next [`Store::sync`]. For callers that
    /// batch many writes under one sync.
    pub fn put_unsynced<R: Record>(&self, record: &R) -> Result<Written> {
        record.validate()?;
        self.commit::<R>(&record.id(), |_| Ok(Some(record.clone())), None)
    }

    /// Merges a version of a record written elsewhere (a peer): it replaces the local one only
    /// when its version is newer — last writer wins by hybrid logical clock, ties broken by node
    /// id — so applying the same versions in any order, any number of times, converges to the
    /// same state on every node. An applied version keeps its clock, gets a feed entry (so the
    /// search index follows it like a local write) and moves this node's clock past it.
    pub fn merge<R: Record>(&self, id: &str, remote: Envelope<R>) -> Result<Merged> {
        let merged = self.merge_unsynced(id, remote, Signing::Peer(&[]))?;
        if merged != Merged::Ignored {
            self.sync()?;
        }
        Ok(merged)
    }

    /// [`Store::merge`] of an encoded envelope and its signature (as [`Store::signed_version`]
    /// returns them), by collection, without the flush: a replicator merges a batch, then
    /// calls [`Store::sync`]. The bytes come from a peer: they are decoded with the codec's
    /// limits and the record is validated first; the caller has checked the signature.
    pub fn merge_encoded(
        &self,
        collection: Collection,
        id: &str,
        version: &SignedVersion,
    ) -> Result<Merged> {
        let (bytes, signature) = (&version.envelope[..], &version.signature[..]);
        match collection {
            Collection::Tools => self.merge_signed::<ToolEntry>(id, bytes, signature),
            Collection::Functions => self.merge_signed::<FunctionEntry>(id, bytes, signature),
            Collection::ClusterTools => self.merge_signed::<ClusterLocalTool>(id, bytes, signature),
            Collection::Actions => self.merge_signed::<Action>(id, bytes, signature),
            Collection::AllowLists => self.merge_signed::<AllowList>(id, bytes, signature),
            Collection::Members => self.merge_signed::<Member>(id, bytes, signature),
            Collection::AclTokens => self.merge_signed::<AclToken>(id, bytes, signature),
        }
    }

    /// The bytes must be the canonical encoding of what they decode to: what is stored is then
    /// byte for byte what the author signed (trailing bytes or another encoding of the same
    /// values would leave a signature beside bytes it does not cover).
    fn merge_signed<R: Record>(&self, id: &str, bytes: &[u8], signature: &[u8]) -> Result<Merged> {
        let envelope = Envelope::<R>::decode(bytes)?;
        if envelope.encode()? != bytes {
            return Err(Error::Invalid(format!(
                "a {} version for '{}' that is not in canonical form",
                R::COLLECTION.kind(),
                crate::record::truncate(id, 64)
            )));
        }
        self.merge_unsynced(id, envelope, Signing::Peer(signature))
    }

    /// Moves this node's clock past `hlc` (a version seen but not merged), so its next write
    /// is newer.
    pub fn observe(&self, hlc: &Hlc) {
        self.inner.clock.lock().unwrap_or_else(PoisonError::into_inner).observe(hlc);
    }

    fn merge_unsynced<R: Record>(
        &self,
        id: &str,
        remote: Envelope<R>,
        signing: Signing<'_>,
    ) -> Result<Merged> {
        match (&remote.record, remote.header.tombstone) {
            (Some(record), false) => {
                record.validate()?;
                if record.id() != id {
                    return Err(Error::Invalid(format!(
                        "a {} version for '{id}' carries the record '{}'",
                        R::COLLECTION.kind(),
                        record.id()
                    )));
                }
            }
            (None, true) => R::validate_key(id)?,
            _ => {
                return Err(Error::Invalid(
                    "a version must carry its record, or be a tombstone without one".into(),
                ));
            }
        }
        let inner = &*self.inner;
        let trees =
            (self.tree(R::COLLECTION), &inner.index, &inner.feed, &inner.meta, &inner.signatures);
        let outcome = trees.transaction(|(records, index, feed, meta, signatures)| {
            let current = match records.get(id.as_bytes())? {
                Some(bytes) => Some(Envelope::<R>::decode(&bytes).map_err(abort)?),
                None => None,
            };
            if current.as_ref().is_some_and(|c| c.header.hlc >= remote.header.hlc) {
                return Ok(None);
            }
            let old = current.and_then(Envelope::into_live);
            let trees = (records, index, feed, meta, signatures);
            let seq = write_version(trees, id, old.as_ref(), &remote, signing)?;
            Ok(Some(Written { seq, hlc: remote.header.hlc.clone() }))
        })?;
        let Some(written) = outcome else { return Ok(Merged::Ignored) };
        self.inner.clock.lock().unwrap_or_else(PoisonError::into_inner).observe(&written.hlc);
        self.notify(written.seq);
        Ok(Merged::Applied(written))
    }

    /// One write: `decide(current live record)` returns the new record, or `None` to delete,
    /// or an error that aborts the transaction.
    fn commit<R: Record>(
        &self,
        id: &str,
        decide: impl Fn(Option<R>) -> Result<Option<R>>,
        blob: Option<(&str, &sled::IVec)>,
    ) -> Result<Written> {
        let inner = &*self.inner;
        let trees = (
            self.tree(R::COLLECTION),
            &inner.index,
            &inner.feed,
            &inner.meta,
            &inner.blobs,
            &inner.signatures,
        );
        let signing = Signing::Own(inner.signer.as_deref());
        // sled runs one transaction at a time (a global lock held across this closure), so
        // versions ticked in here rise in commit order, and past the version being replaced.
        let written = trees.transaction(|(records, index, feed, meta, blobs, signatures)| {
            let current = match records.get(id.as_bytes())? {
                Some(bytes) => Some(Envelope::<R>::decode(&bytes).map_err(abort)?),
                None => None,
            };
            let hlc = {
                let mut clock = inner.clock.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(current) = &current {
                    clock.observe(&current.header.hlc);
                }
                clock.tick(now_ms())
            };
            let current = current.and_then(Envelope::into_live);
            let envelope = match decide(current.clone()).map_err(abort)? {
                Some(record) => Envelope::live(hlc.clone(), record),
                None => Envelope::tombstone(hlc.clone()),
            };
            let trees = (records, index, feed, meta, signatures);
            let seq = write_version(trees, id, current.as_ref(), &envelope, signing)?;
            if let Some((sha, bytes)) = blob {
                // A clone of the buffer's handle, not of its bytes.
                blobs.insert(sha.as_bytes(), bytes.clone())?;
            }
            Ok(Written { seq, hlc: hlc.clone() })
        })?;
        self.notify(written.seq);
        Ok(written)
    }

    /// Wakes feed followers. Commits are ordered, their notifications are not: the channel keeps
    /// the highest sequence number.
    fn notify(&self, seq: u64) {
        self.inner.feed_tx.send_if_modified(|last| {
            let newer = seq > *last;
            if newer {
                *last = seq;
            }
            newer
        });
    }

    /// Makes every write so far durable. Concurrent callers share one flush.
    pub fn sync(&self) -> Result<()> {
        self.inner.commit.sync(|| self.inner.db.flush().map(|_| ()).map_err(Error::from))
    }

    // ---- change feed -------------------------------------------------------------------

    /// The sequence number of the last committed change (0 when there is none).
    pub fn last_seq(&self) -> u64 {
        *self.inner.feed_tx.borrow()
    }

    /// Changes after `after`, oldest first, at most `limit`.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let start = after.saturating_add(1).to_be_bytes();
        self.inner.feed.range(start..).values().take(limit).map(|bytes| decode(&bytes?)).collect()
    }

    /// A receiver that wakes with the last sequence number after every commit.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.feed_tx.subscribe()
    }

    // ---- blobs -------------------------------------------------------------------------

    /// Stores a blob under its sha256 (hex) and returns it. Idempotent.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let sha = sha256_hex(bytes);
        self.inner.blobs.insert(sha.as_bytes(), bytes)?;
        self.sync()?;
        Ok(sha)
    }

    /// The blob with this sha256 (64 lowercase hex digits), if stored here.
    /// The bytes are shared with sled's cache, not copied.
    pub fn get_blob(&self, sha256: &str) -> Result<Option<Bytes>> {
        if !is_sha256_hex(sha256) {
            return Err(Error::Invalid(format!(
                "'{}' is not a sha256: expected 64 lowercase hex digits",
                crate::record::truncate(sha256, 80)
            )));
        }
        Ok(self.inner.blobs.get(sha256.as_bytes())?.map(Bytes::from_owner))
    }

    // ---- audit log (see crate::audit) ---------------------------------------------------

    pub(crate) fn audit_tree(&self) -> &sled::Tree {
        &self.inner.audit
    }

    pub(crate) fn audit_span(&self) -> &crate::audit::Span {
        &self.inner.audit_span
    }

    // ---- lifecycle ---------------------------------------------------------------------

    fn tree(&self, collection: Collection) -> &sled::Tree {
        match collection {
            Collection::Tools => &self.inner.tools,
            Collection::Functions => &self.inner.functions,
            Collection::ClusterTools => &self.inner.cluster_tools,
            Collection::Actions => &self.inner.actions,
            Collection::AllowLists => &self.inner.allow_lists,
            Collection::Members => &self.inner.members,
            Collection::AclTokens => &self.inner.acl_tokens,
        }
    }
}

/// Where a version's signature comes from.
#[derive(Clone, Copy)]
enum Signing<'a> {
    /// A write of this node's: signed here, when the store has a signer.
    Own(Option<&'a dyn Signer>),
    /// A peer's version: its author's signature (empty: none).
    Peer(&'a [u8]),
}

/// A signatures-tree row: the signed version's clock, then the signature. The clock lets a
/// reader tell the row from one of another version of the same record.
fn signature_row_of(hlc: &Hlc, signature: &[u8]) -> Result<Vec<u8>> {
    let mut row = encode(hlc)?;
    row.extend_from_slice(signature);
    Ok(row)
}

/// `envelope` with the signature of `row`, unless the row signs another version (`None`).
fn matching(
    collection: Collection,
    envelope: &[u8],
    row: Option<&[u8]>,
) -> Result<Option<SignedVersion>> {
    let signature = match row {
        None => Vec::new(),
        Some(row) => {
            let (hlc, signature) = signature_row(row)?;
            if decode_header(collection, envelope)?.hlc != hlc {
                return Ok(None);
            }
            signature.to_vec()
        }
    };
    Ok(Some(SignedVersion { envelope: envelope.to_vec(), signature }))
}

/// A signatures-tree row read back: `(clock, signature)`.
fn signature_row(row: &[u8]) -> Result<(Hlc, &[u8])> {
    let (hlc, used) = crate::codec::decode_counted::<Hlc>(row)?;
    Ok((hlc, &row[used..]))
}

/// The signatures tree's key of a version.
fn signature_key(collection: Collection, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(collection as u8);
    key.extend_from_slice(id.as_bytes());
    key
}

type VersionTrees<'a> = (
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
);

/// Writes `envelope` as the version of `id` in one transaction: the index entries of the `old`
/// live record out and the new record's in, the envelope with its signature, and its
/// change-feed entry. Returns the change's sequence number.
fn write_version<R: Record>(
    (records, index, feed, meta, signatures): VersionTrees<'_>,
    id: &str,
    old: Option<&R>,
    envelope: &Envelope<R>,
    signing: Signing<'_>,
) -> std::result::Result<u64, ConflictableTransactionError<Error>> {
    if let Some(old) = old {
        update_index(index, old, false)?;
    }
    if let Some(new) = &envelope.record {
        update_index(index, new, true)?;
    }
    let bytes = envelope.encode().map_err(abort)?;
    if bytes.len() > MAX_VERSION_BYTES {
        return Err(abort(Error::TooLarge(format!(
            "the {} '{}' would be {} bytes encoded; a record is at most {MAX_VERSION_BYTES} \
             (make its manual or metadata smaller)",
            R::COLLECTION.kind(),
            crate::record::truncate(id, 64),
            bytes.len()
        ))));
    }
    let signature = match signing {
        Signing::Own(Some(signer)) => signer.sign(&signed_message(R::COLLECTION, id, &bytes)),
        Signing::Own(None) => Vec::new(),
        Signing::Peer(signature) => signature.to_vec(),
    };
    let key = signature_key(R::COLLECTION, id);
    if signature.is_empty() {
        signatures.remove(key)?;
    } else {
        let row = signature_row_of(&envelope.header.hlc, &signature).map_err(abort)?;
        signatures.insert(key, row)?;
    }
    records.insert(id.as_bytes(), bytes)?;
    let seq = next_seq(meta)?;
    let change = Change {
        seq,
        collection: R::COLLECTION as u8,
        id: id.to_owned(),
        hlc: envelope.header.hlc.clone(),
        tombstone: envelope.header.tombstone,
    };
    feed.insert(&seq.to_be_bytes(), encode(&change).map_err(abort)?)?;
    meta.insert(META_SEQ, &seq.to_be_bytes())?;
    Ok(seq)
}

fn update_index<R: Record>(
    index: &TransactionalTree,
    record: &R,
    insert: bool,
) -> std::result::Result<(), ConflictableTransactionError<Error>> {
    let mut result = Ok(());
    let id = record.id();
    record.index_entries(&mut |field, value| {
        if result.is_err() {
            return;
        }
        let key = index::entry(R::COLLECTION, field, &value, &id);
        result =
            if insert { index.insert(key, &[]).map(drop) } else { index.remove(key).map(drop) };
    });
    result.map_err(ConflictableTransactionError::from)
}

/// The next feed sequence number, counted in the meta tree inside the transaction.
fn next_seq(
    meta: &TransactionalTree,
) -> std::result::Result<u64, ConflictableTransactionError<Error>> {
    match meta.get(META_SEQ)? {
        Some(bytes) => Ok(decode_u64(&bytes).map_err(abort)? + 1),
        None => Ok(1),
    }
}

fn indexable(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Bool(_))
}

fn not_found<R: Record>(id: &str) -> Error {
    Error::NotFound { kind: R::COLLECTION.kind(), id: id.to_owned() }
}

fn abort(error: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(error)
}

/// Opens sled, waiting a moment for its file lock: right after a store in this process is
/// dropped, sled's flusher thread may still hold the previous handle's lock (a restart in
/// place, as tests and a node's reopen do). Another process holding it fails after the wait.
fn open_locked(config: &sled::Config) -> Result<sled::Db> {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(3);
    let started = std::time::Instant::now();
    loop {
        match config.open() {
            Err(sled::Error::Io(error))
                if error.to_string().starts_with("could not acquire lock")
                    && started.elapsed() < WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return Ok(opened?),
        }
    }
}

/// The sha256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from_digit((byte >> 4) as u32, 16).unwrap_or('0'));
        hex.push(char::from_digit((byte & 0xf) as u32, 16).unwrap_or('0'));
    }
    hex
}

/// True for 64 lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn utf8_key(key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec())
        .map_err(|_| Error::Corrupt("a record key that is not utf-8".into()))
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    bytes.try_into().map(u64::from_be_bytes).map_err(|_| Error::Corrupt("bad counter".into()))
}

fn decode_u32(bytes: &[u8]) -> Result<u32> {
    bytes
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| Error::Corrupt("bad schema version".into()))
}
