//! A registry record as an index document.

use gridnode_store::{Collection, RegistryEntry};
use serde_json::Value;
use tantivy::TantivyDocument;
use tantivy::schema::Term;

use crate::schema::Fields;

/// Deepest metadata nesting whose values are indexed.
const MAX_METADATA_DEPTH: usize = 8;

/// The unique key of a record in the index.
pub fn key(collection: Collection, id: &str) -> String {
    format!("{}/{id}", collection.kind())
}

pub fn key_term(fields: &Fields, collection: Collection, id: &str) -> Term {
    Term::from_field_text(fields.key, &key(collection, id))
}

pub fn document<R: RegistryEntry>(fields: &Fields, record: &R) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.key, key(R::COLLECTION, &record.id()));
    doc.add_text(fields.kind, R::COLLECTION.kind());
    doc.add_text(fields.id, record.id().as_ref());
    doc.add_text(fields.description, record.search_description());
    doc.add_text(fields.man_page, record.man_page());
    for tag in record.tags() {
        doc.add_text(fields.tag, tag);
    }
    doc.add_text(fields.kind_type, record.record_type());
    let mut meta = String::new();
    for value in record.metadata().values() {
        flatten(value, &mut meta, 0);
    }
    doc.add_text(fields.meta, meta);
    doc
}

/// Appends the strings, numbers and booleans inside a JSON value, space-separated.
fn flatten(value: &Value, out: &mut String, depth: usize) {
    if depth > MAX_METADATA_DEPTH {
        return;
    }
    match value {
        Value::String(text) => push(out, text),
        Value::Number(n) => push(out, &n.to_string()),
        Value::Bool(b) => push(out, if *b { "true" } else { "false" }),
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out, depth + 1)),
        Value::Object(map) => map.values().for_each(|v| flatten(v, out, depth + 1)),
        Value::Null => {}
    }
}

fn push(out: &mut String, text: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(text);
}
