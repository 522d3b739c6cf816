//! Registry records as their JSON answers, rendered once per record version. A read of a tool
//! or function answers from here when the store has committed nothing since the answer was
//! rendered; when it has, one header read (no decode of the record) tells whether this record's
//! version is still the one rendered. Only a new version is decoded and rendered again, so a
//! popular tool costs neither a decode nor a render per read.
//!
//! Each registry keeps at most [`MAX_BYTES`] of answers; past that, entries not confirmed at the
//! store's current sequence go first, then all.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use gridnode_store::{Collection, Hlc, RegistryEntry, Store};

use crate::error::{Error, Result};

/// Rendered answers kept at most, in bytes.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug)]
struct Entry {
    /// The version rendered.
    hlc: Hlc,
    /// The store's sequence when the version was last confirmed.
    seq: u64,
    json: Bytes,
}

#[derive(Debug, Default)]
struct Answers {
    by_id: HashMap<String, Entry>,
    bytes: usize,
}

/// The rendered answers of both registries.
#[derive(Debug, Default)]
pub struct Rendered {
    tools: Mutex<Answers>,
    functions: Mutex<Answers>,
}

impl Rendered {
    /// Record `id` as JSON, from the cache when its version is the one rendered.
    pub fn get<R: RegistryEntry>(&self, store: &Store, id: &str) -> Result<Bytes> {
        let Some(answers) = self.answers(R::COLLECTION) else {
            return render(&store.get::<R>(id)?);
        };
        // The sequence first: a write racing this read makes the entry stale at once.
        let seq = store.last_seq();
        let rendered = {
            let answers = lock(answers);
            answers.by_id.get(id).map(|entry| (entry.seq == seq, entry.hlc.clone()))
        };
        let current = match rendered {
            Some((true, hlc)) => confirmed(answers, id, Some(hlc), seq),
            Some((false, hlc)) => {
                let header = store.header::<R>(id)?;
                if header.is_some_and(|header| !header.tombstone && header.hlc == hlc) {
                    confirmed(answers, id, Some(hlc), seq)
                } else {
                    None
                }
            }
            None => None,
        };
        if let Some(json) = current {
            return Ok(json);
        }
        let envelope = store.envelope::<R>(id)?;
        let Some((hlc, record)) = envelope
            .filter(|envelope| !envelope.header.tombstone)
            .and_then(|envelope| Some((envelope.header.hlc, envelope.record?)))
        else {
            lock(answers).remove(id);
            return Err(Error::Store(gridnode_store::Error::NotFound {
                kind: R::COLLECTION.kind(),
                id: id.to_owned(),
            }));
        };
        let json = render(&record)?;
        lock(answers).insert(id.to_owned(), Entry { hlc, seq, json: json.clone() }, seq);
        Ok(json)
    }

    fn answers(&self, collection: Collection) -> Option<&Mutex<Answers>> {
        match collection {
            Collection::Tools => Some(&self.tools),
            Collection::Functions => Some(&self.functions),
            _ => None,
        }
    }
}

impl Answers {
    fn insert(&mut self, id: String, entry: Entry, seq: u64) {
        // A slow reader's older version never replaces a newer one another reader kept.
        if self.by_id.get(&id).is_some_and(|kept| kept.hlc > entry.hlc) {
            return;
        }
        if self.bytes + entry.json.len() > MAX_BYTES {
            self.by_id.retain(|_, kept| kept.seq == seq);
            self.bytes = self.by_id.values().map(|kept| kept.json.len()).sum();
            if self.bytes + entry.json.len() > MAX_BYTES {
                self.by_id.clear();
                self.bytes = 0;
            }
        }
        self.bytes += entry.json.len();
        if let Some(old) = self.by_id.insert(id, entry) {
            self.bytes -= old.json.len();
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            self.bytes -= old.json.len();
        }
    }
}

/// The answer of an entry found current (at `seq`, or of version `hlc`), marked current at
/// `seq`; `None` when another call replaced it in between (the caller reads the record).
fn confirmed(answers: &Mutex<Answers>, id: &str, hlc: Option<Hlc>, seq: u64) -> Option<Bytes> {
    let mut answers = lock(answers);
    let entry = answers.by_id.get_mut(id)?;
    if hlc.is_some_and(|hlc| entry.hlc != hlc) {
        return None;
    }
    entry.seq = entry.seq.max(seq);
    Some(entry.json.clone())
}

fn lock(answers: &Mutex<Answers>) -> std::sync::MutexGuard<'_, Answers> {
    answers.lock().unwrap_or_else(PoisonError::into_inner)
}

fn render(record: &impl serde::Serialize) -> Result<Bytes> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot render a record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(wall_ms: u64, seq: u64, json: &'static str) -> Entry {
        let hlc = Hlc { wall_ms, counter: 0, node: "n".into() };
        Entry { hlc, seq, json: Bytes::from_static(json.as_bytes()) }
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one_and_confirming_checks_the_version() {
        let answers = Mutex::new(Answers::default());
        lock(&answers).insert("t".into(), entry(2, 5, "v2"), 5);
        // A slow reader of v1 (read at sequence 4) comes back late.
        lock(&answers).insert("t".into(), entry(1, 4, "v1"), 4);
        let v2 = Hlc { wall_ms: 2, counter: 0, node: "n".into() };
        let v1 = Hlc { wall_ms: 1, ..v2.clone() };
        assert_eq!(confirmed(&answers, "t", Some(v2), 5).as_deref(), Some(&b"v2"[..]));
        assert_eq!(confirmed(&answers, "t", Some(v1), 6), None, "another version: read again");
        assert_eq!(lock(&answers).bytes, 2);
    }

    #[test]
    fn the_answers_stay_within_their_budget() {
        let mut answers = Answers::default();
        let big: &'static str = Box::leak("x".repeat(MAX_BYTES / 3).into_boxed_str());
        for (i, seq) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
            answers.insert(format!("t{i}"), entry(1, seq, big), seq);
            assert!(answers.bytes <= MAX_BYTES, "{}", answers.bytes);
        }
        assert_eq!(answers.by_id.len(), 2, "entries of older sequences went first");
        assert!(answers.by_id.contains_key("t2") && answers.by_id.contains_key("t3"));
    }
}
