//! A MongoDB-style filter language over JSON documents.
//!
//! A filter is a JSON object. Each key is either a field path or a logical operator, and all keys
//! must hold (they are ANDed); `{}` matches every document.
//!
//! - **Field paths** are dotted (`tool_metadata.version`). A numeric segment indexes an array
//!   (`items.0`), and a path that meets an array continues into each of its object elements, so
//!   `items.name` sees the `name` of every element of `items`.
//! - **Conditions.** A plain value is an implicit equality (`{"tool_type": "extractor"}`). An object
//!   whose keys all start with `$` is an operator expression, whose operators must all hold:
//!   `$eq $ne $gt $gte $lt $lte $in $nin $exists $all $size $not $regex` (with an optional sibling
//!   `$options` holding regex flags from `imsx`). An object with no `$` keys is an equality against
//!   that whole object; mixing both kinds of key is an error.
//! - **Logical operators** `$and`, `$or` and `$nor` take a non-empty array of filter objects.
//!
//! Matching follows MongoDB: equality holds if the value equals the operand or is an array with an
//! element equal to it; equality with `null` also matches a missing field; `$ne` and `$nin` are the
//! negations of `$eq` and `$in`. Comparisons only relate numbers to numbers and strings to strings
//! (byte-wise); other pairings never match. Numbers are equal by value, so `1` equals `1.0`.
//!
//! Filters are parsed and validated once ([`Filter::parse`]) into a typed tree, regexes included,
//! and then evaluated against many documents ([`Filter::matches`]). Hostile input is bounded by the
//! limits below; `$where`, `$expr`, `$function`, `$text`, `$jsonSchema` and any other operator not
//! listed above are rejected by name.

mod eval;
mod parse;

use regex::Regex;
use serde_json::Value;

/// Deepest nesting of filter objects, operator expressions, `$not` and literal values.
pub const MAX_DEPTH: usize = 32;
/// Most conditions (field conditions, operators and logical branches) one filter may hold.
pub const MAX_NODES: usize = 1000;
/// Most elements in an `$in`, `$nin` or `$all` operand.
pub const MAX_LIST_LEN: usize = 1000;
/// Longest field path, in bytes.
pub const MAX_PATH_LEN: usize = 256;
/// Longest `$regex` pattern, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Most `$regex` conditions in one filter (each may take up to [`REGEX_SIZE_LIMIT`] twice).
pub const MAX_REGEXES: usize = 16;
/// Size limit, in bytes, for a compiled regex and for its lazy DFA cache.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A JSON value's kind as error messages say it: "a string", "an object", "null"…
pub fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A parsed, validated filter. Parsing never touches data.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
}

/// Why a filter was rejected; the message names the offending part and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub message: String,
}

impl QueryError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// One node of the filter tree; a filter object is an `And` of its entries.
#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Field { path: FieldPath, conds: Vec<Cond> },
}

#[derive(Debug, Clone)]
struct FieldPath {
    raw: String,
    segments: Vec<String>,
}

/// A condition on the values a field path resolves to. `$ne` and `$nin` become `Not`.
#[derive(Debug, Clone)]
enum Cond {
    Eq(Value),
    Cmp(CmpOp, Value),
    In(Vec<Value>),
    Exists(bool),
    All(Vec<Value>),
    Size(usize),
    Regex(Regex),
    Not(Vec<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Filter {
    /// Parse a JSON filter. `{}` matches everything. The input must be a JSON object; else error.
    pub fn parse(filter: &Value) -> Result<Filter, QueryError> {
        parse::parse(filter).map(|root| Filter { root })
    }

    /// Evaluate against a document (a JSON object: one registry record serialised as JSON).
    pub fn matches(&self, doc: &Value) -> bool {
        self.root.matches(doc)
    }

    /// Top-level conditions every matching document must satisfy that are a plain equality of a
    /// field path to a scalar (string, bool or number): implicit `{"a": "x"}` and
    /// `{"a": {"$eq": "x"}}` at the top level, and inside a top-level `$and`. Used by the store to
    /// pick an index; the full filter is still evaluated on the candidates. Returns (path, value)
    /// pairs.
    pub fn equality_hints(&self) -> Vec<(&str, &Value)> {
        fn collect<'a>(node: &'a Node, out: &mut Vec<(&'a str, &'a Value)>) {
            match node {
                Node::And(children) => children.iter().for_each(|child| collect(child, out)),
                Node::Field { path, conds } => {
                    out.extend(conds.iter().filter_map(|cond| match cond {
                        Cond::Eq(
                            value @ (Value::String(_) | Value::Bool(_) | Value::Number(_)),
                        ) => Some((path.raw.as_str(), value)),
                        _ => None,
                    }))
                }
                Node::Or(_) | Node::Nor(_) => {}
            }
        }
        let mut hints = Vec::new();
        collect(&self.root, &mut hints);
        hints
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn matches(filter: Value, doc: Value) -> bool {
        Filter::parse(&filter)
            .unwrap_or_else(|e| panic!("{filter} should parse: {e}"))
            .matches(&doc)
    }

    fn error(filter: Value) -> String {
        match Filter::parse(&filter) {
            Ok(parsed) => panic!("{filter} should be rejected, parsed as {parsed:?}"),
            Err(e) => e.message,
        }
    }

    fn tool() -> Value {
        json!({
            "id": "t1",
            "tool_type": "extractor",
            "tool_tags": ["g1", "pdf"],
            "tool_metadata": {"version": 31, "score": 2.5, "owner": null},
            "items": [{"name": "a", "n": 1}, {"name": "b", "n": 5}],
            "matrix": [[1, 2], [3]],
            "enabled": true
        })
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(matches(json!({}), tool()));
        assert!(matches(json!({}), json!({})));
    }

    #[test]
    fn implicit_and_explicit_equality() {
        assert!(matches(json!({"tool_type": "extractor"}), tool()));
        assert!(!matches(json!({"tool_type": "monitor"}), tool()));
        assert!(matches(json!({"tool_type": {"$eq": "extractor"}}), tool()));
        assert!(matches(json!({"enabled": true, "id": "t1"}), tool()));
        assert!(!matches(json!({"enabled": true, "id": "t2"}), tool()));
        assert!(matches(json!({"tool_metadata.version": 31.0}), tool()));
        assert!(!matches(json!({"tool_metadata.version": "31"}), tool()));
    }

    #[test]
    fn equality_with_arrays_and_objects() {
        assert!(matches(json!({"tool_tags": "pdf"}), tool()));
        assert!(matches(json!({"tool_tags": ["g1", "pdf"]}), tool()));
        assert!(!matches(json!({"tool_tags": ["pdf", "g1"]}), tool()));
        assert!(!matches(json!({"tool_tags": "csv"}), tool()));
        assert!(matches(json!({"matrix": [3]}), tool()));
        let metadata = json!({"owner": null, "score": 2.5, "version": 31});
        assert!(matches(json!({"tool_metadata": metadata}), tool()));
        assert!(!matches(json!({"tool_metadata": {"version": 31}}), tool()));
        assert!(matches(json!({"items": {"name": "b", "n": 5}}), tool()));
    }

    #[test]
    fn dotted_paths_traverse_arrays() {
        assert!(matches(json!({"items.name": "b"}), tool()));
        assert!(!matches(json!({"items.name": "c"}), tool()));
        assert!(matches(json!({"items.1.name": "b"}), tool()));
        assert!(!matches(json!({"items.0.name": "b"}), tool()));
        assert!(matches(json!({"tool_tags.1": "pdf"}), tool()));
        assert!(matches(json!({"matrix.0": 2}), tool()));
        assert!(matches(json!({"items.n": {"$gt": 4}}), tool()));
        assert!(!matches(json!({"items.n": {"$gt": 5}}), tool()));
        let nested = json!({"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": {"c": 3}}]});
        assert!(matches(json!({"a.b.c": 3}), nested.clone()));
        assert!(matches(json!({"a.b.c": 2}), nested.clone()));
        assert!(matches(json!({"a.0.b.1.c": 2}), nested));
        assert!(matches(json!({"m.0": "x"}), json!({"m": {"0": "x"}})));
    }

    #[test]
    fn null_and_missing() {
        assert!(matches(json!({"nope": null}), tool()));
        assert!(matches(json!({"tool_metadata.owner": null}), tool()));
        assert!(!matches(json!({"tool_type": null}), tool()));
        assert!(matches(json!({"items.missing": null}), tool()));
        assert!(matches(json!({"tool_type": {"$ne": null}}), tool()));
        assert!(!matches(json!({"nope": {"$ne": null}}), tool()));
        assert!(matches(json!({"nope": {"$in": [null, 1]}}), tool()));
        assert!(!matches(json!({"nope": "x"}), tool()));
        assert!(!matches(json!({"tool_type.deeper": "x"}), tool()));
    }

    #[test]
    fn ne_negates_eq() {
        assert!(matches(json!({"tool_type": {"$ne": "monitor"}}), tool()));
        assert!(!matches(json!({"tool_type": {"$ne": "extractor"}}), tool()));
        assert!(!matches(json!({"tool_tags": {"$ne": "pdf"}}), tool()));
        assert!(matches(json!({"nope": {"$ne": "x"}}), tool()));
    }

    #[test]
    fn comparisons() {
        let doc = tool();
        for (filter, expected) in [
            (json!({"tool_metadata.version": {"$gt": 30}}), true),
            (json!({"tool_metadata.version": {"$gt": 31}}), false),
            (json!({"tool_metadata.version": {"$gte": 31}}), true),
            (json!({"tool_metadata.version": {"$lt": 31.5}}), true),
            (json!({"tool_metadata.version": {"$lte": 30.9}}), false),
            (json!({"tool_metadata.version": {"$gt": 30, "$lt": 32}}), true),
            (json!({"tool_metadata.score": {"$gt": 2}}), true),
            (json!({"tool_type": {"$gt": "e"}}), true),
            (json!({"tool_type": {"$lt": "e"}}), false),
            (json!({"tool_type": {"$gt": 1}}), false),
            (json!({"tool_metadata.version": {"$gt": "1"}}), false),
            (json!({"nope": {"$lt": 100}}), false),
            (json!({"tool_tags": {"$gte": "pdf"}}), true),
            (json!({"tool_tags": {"$gt": "pdf"}}), false),
        ] {
            assert_eq!(matches(filter.clone(), doc.clone()), expected, "{filter}");
        }
        let big = json!({"n": u64::MAX});
        assert!(matches(json!({"n": {"$gt": u64::MAX - 1}}), big.clone()));
        assert!(matches(json!({"n": {"$gt": -1}}), big));
    }

    #[test]
    fn membership_operators() {
        assert!(matches(json!({"tool_type": {"$in": ["monitor", "extractor"]}}), tool()));
        assert!(!matches(json!({"tool_type": {"$in": ["monitor"]}}), tool()));
        assert!(!matches(json!({"tool_type": {"$in": []}}), tool()));
        assert!(matches(json!({"tool_tags": {"$in": ["csv", "g1"]}}), tool()));
        assert!(matches(json!({"tool_type": {"$nin": ["monitor"]}}), tool()));
        assert!(!matches(json!({"tool_tags": {"$nin": ["pdf"]}}), tool()));
        assert!(matches(json!({"tool_tags": {"$all": ["pdf", "g1"]}}), tool()));
        assert!(!matches(json!({"tool_tags": {"$all": ["pdf", "csv"]}}), tool()));
        assert!(!matches(json!({"tool_tags": {"$all": []}}), tool()));
        assert!(!matches(json!({"tool_type": {"$all": ["extractor"]}}), tool()));
    }

    #[test]
    fn exists_and_size() {
        assert!(matches(json!({"tool_type": {"$exists": true}}), tool()));
        assert!(!matches(json!({"nope": {"$exists": true}}), tool()));
        assert!(matches(json!({"nope": {"$exists": false}}), tool()));
        assert!(matches(json!({"tool_metadata.owner": {"$exists": true}}), tool()));
        assert!(matches(json!({"items.name": {"$exists": true}}), tool()));
        assert!(matches(json!({"tool_tags": {"$size": 2}}), tool()));
        assert!(!matches(json!({"tool_tags": {"$size": 1}}), tool()));
        assert!(!matches(json!({"tool_type": {"$size": 9}}), tool()));
        assert!(matches(json!({"a": {"$size": 0}}), json!({"a": []})));
    }

    #[test]
    fn not_and_regex() {
        assert!(matches(json!({"tool_type": {"$regex": "^ext"}}), tool()));
        assert!(!matches(json!({"tool_type": {"$regex": "^EXT"}}), tool()));
        assert!(matches(json!({"tool_type": {"$regex": "^EXT", "$options": "i"}}), tool()));
        assert!(matches(json!({"tool_tags": {"$regex": "^p"}}), tool()));
        assert!(!matches(json!({"enabled": {"$regex": "true"}}), tool()));
        assert!(matches(json!({"s": {"$regex": "^b$", "$options": "m"}}), json!({"s": "a\nb"})));
        assert!(matches(json!({"s": {"$regex": "a.b", "$options": "s"}}), json!({"s": "a\nb"})));
        assert!(matches(json!({"s": {"$regex": "a b", "$options": "x"}}), json!({"s": "ab"})));
        assert!(matches(json!({"tool_type": {"$not": {"$regex": "^mon"}}}), tool()));
        assert!(!matches(json!({"tool_metadata.version": {"$not": {"$gt": 30}}}), tool()));
        assert!(matches(json!({"nope": {"$not": {"$gt": 30}}}), tool()));
        assert!(matches(json!({"tool_tags": {"$not": {"$size": 3}}}), tool()));
    }

    #[test]
    fn evil_regex_is_linear() {
        let text = format!("{}b", "a".repeat(100_000));
        let start = std::time::Instant::now();
        assert!(!matches(json!({"s": {"$regex": "^(a+)+$"}}), json!({"s": text})));
        assert!(matches(json!({"s": {"$regex": "(a+)+b$"}}), json!({"s": text})));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn logical_operators() {
        let or = json!({"$or": [{"tool_type": "monitor"}, {"tool_tags": "pdf"}]});
        assert!(matches(or, tool()));
        assert!(!matches(json!({"$or": [{"tool_type": "monitor"}, {"id": "t9"}]}), tool()));
        assert!(matches(json!({"$and": [{"tool_type": "extractor"}, {"id": "t1"}]}), tool()));
        assert!(!matches(json!({"$and": [{"tool_type": "extractor"}, {"id": "t9"}]}), tool()));
        assert!(matches(json!({"$nor": [{"tool_type": "monitor"}, {"id": "t9"}]}), tool()));
        assert!(!matches(json!({"$nor": [{"tool_type": "extractor"}]}), tool()));
        let nested = json!({"$or": [{"$and": [{"id": "t1"}, {"$nor": [{"enabled": false}]}]}]});
        assert!(matches(nested, tool()));
    }

    #[test]
    fn unsupported_operators_are_named() {
        for op in ["$where", "$expr", "$function", "$text", "$jsonSchema", "$bogus"] {
            let message = error(json!({op: "x"}));
            assert!(message.contains(&format!("unsupported query operator '{op}'")), "{message}");
            assert!(message.contains("$regex"), "{message}");
            let message = error(json!({"a": {op: 1}}));
            assert!(message.contains(&format!("'{op}'")), "{message}");
        }
        assert!(error(json!({"$eq": 1})).contains("'$eq'"));
        assert!(error(json!({"a": {"$or": [{"b": 1}]}})).contains("'$or'"));
    }

    #[test]
    fn malformed_operands_are_rejected() {
        for (filter, needle) in [
            (json!([]), "json object"),
            (json!("x"), "json object"),
            (json!({"a": {"$in": "x"}}), "'$in'"),
            (json!({"a": {"$nin": {}}}), "'$nin'"),
            (json!({"a": {"$all": 1}}), "'$all'"),
            (json!({"a": {"$size": -1}}), "'$size'"),
            (json!({"a": {"$size": 1.5}}), "'$size'"),
            (json!({"a": {"$exists": 1}}), "'$exists'"),
            (json!({"a": {"$gt": true}}), "'$gt'"),
            (json!({"a": {"$lte": null}}), "'$lte'"),
            (json!({"a": {"$not": 5}}), "'$not'"),
            (json!({"a": {"$not": {}}}), "'$not'"),
            (json!({"a": {"$not": {"b": 1}}}), "'$not'"),
            (json!({"a": {"$regex": 5}}), "'$regex'"),
            (json!({"a": {"$regex": "("}}), "invalid '$regex'"),
            (json!({"a": {"$regex": "a", "$options": "g"}}), "'g'"),
            (json!({"a": {"$regex": "a", "$options": 1}}), "'$options'"),
            (json!({"a": {"$options": "i"}}), "'$options'"),
            (json!({"$and": []}), "'$and'"),
            (json!({"$or": {}}), "'$or'"),
            (json!({"$nor": [1]}), "'$nor'"),
            (json!({"a": {"$eq": 1, "b": 2}}), "'b'"),
            (json!({"": 1}), "empty field path"),
            (json!({"a..b": 1}), "empty segment"),
            (json!({".a": 1}), "empty segment"),
        ] {
            let message = error(filter.clone());
            assert!(message.contains(needle), "{filter}: {message}");
            assert_eq!(message, message.to_lowercase(), "{filter}: {message}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let path = "a".repeat(MAX_PATH_LEN + 1);
        assert!(error(json!({path: 1})).contains("field path"));
        let many: Vec<_> = (0..=MAX_LIST_LEN).collect();
        assert!(error(json!({"a": {"$in": many}})).contains("at most 1000"));
        let branches: Vec<_> = (0..=MAX_NODES).map(|i| json!({"a": i})).collect();
        assert!(error(json!({"$or": branches})).contains("too many conditions"));
        let long = "a".repeat(MAX_REGEX_LEN + 1);
        assert!(error(json!({"a": {"$regex": long}})).contains("1024"));
        assert!(error(json!({"a": {"$regex": "\\w{1000}{1000}"}})).contains("too large"));
        let mut literal = json!(1);
        for _ in 0..MAX_DEPTH {
            literal = json!([literal]);
        }
        assert!(error(json!({"a": literal})).contains("nested too deeply"));
    }

    /// Wraps `base` in `levels` single-key objects `{key: wrap(inner)}`, built by hand because
    /// `json!` would serialise (recursively) any value interpolated into it.
    fn deep(levels: usize, base: Value, key: &str, wrap: impl Fn(Value) -> Value) -> Value {
        (0..levels).fold(base, |inner, _| {
            Value::Object([(key.to_owned(), wrap(inner))].into_iter().collect())
        })
    }

    /// Drops a value without recursing, as serde_json's own drop would overflow the stack.
    fn dismantle(mut value: Value) {
        let mut stack = vec![];
        loop {
            match &mut value {
                Value::Array(items) => stack.append(items),
                Value::Object(entries) => {
                    stack.extend(std::mem::take(entries).into_iter().map(|(_, v)| v));
                }
                _ => {}
            }
            match stack.pop() {
                Some(next) => value = next,
                None => break,
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let and = deep(10_000, json!({"a": 1}), "$and", |inner| Value::Array(vec![inner]));
        let nor = deep(10_000, json!({"a": 1}), "$nor", |inner| {
            Value::Array(vec![json!({"b": 2}), inner])
        });
        let not = deep(10_000, json!({"$eq": 1}), "$not", |inner| inner);
        let not = Value::Object([("a".to_owned(), not)].into_iter().collect());
        let mut messages = Vec::new();
        for filter in [and, nor, not] {
            messages.push(Filter::parse(&filter).map(|_| ()).unwrap_err().message);
            dismantle(filter);
        }
        for message in messages {
            assert!(message.contains("nested too deeply"), "{message}");
        }
        let depth_ok =
            deep(MAX_DEPTH - 1, json!({"a": 1}), "$and", |inner| Value::Array(vec![inner]));
        assert!(matches(depth_ok, json!({"a": 1})));
        let nots = |levels| {
            let not = deep(levels, json!({"$eq": 1}), "$not", |inner| inner);
            Value::Object([("a".to_owned(), not)].into_iter().collect())
        };
        assert!(matches(nots(MAX_DEPTH - 2), json!({"a": 1})));
        assert!(!matches(nots(MAX_DEPTH - 3), json!({"a": 1})));
        assert!(error(nots(MAX_DEPTH - 1)).contains("nested too deeply"));
    }

    #[test]
    fn equality_hints_cover_top_level_and_and() {
        let filter = Filter::parse(&json!({
            "tool_type": "extractor",
            "tool_metadata.version": {"$eq": 3, "$lt": 9},
            "flag": true,
            "obj": {"x": 1},
            "nothing": null,
            "tags": {"$in": ["a"]},
            "neg": {"$ne": "x"},
            "$and": [{"owner": "me"}, {"$and": [{"deep": 1.5}]}],
            "$or": [{"alt": "no"}],
            "$nor": [{"never": "no"}]
        }))
        .unwrap();
        let mut hints = filter.equality_hints();
        hints.sort_by_key(|(path, _)| *path);
        assert_eq!(
            hints,
            [
                ("deep", &json!(1.5)),
                ("flag", &json!(true)),
                ("owner", &json!("me")),
                ("tool_metadata.version", &json!(3)),
                ("tool_type", &json!("extractor")),
            ]
        );
        assert!(Filter::parse(&json!({})).unwrap().equality_hints().is_empty());
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            (-3.0f64..3.0).prop_map(Value::from),
            "[xyz]{0,2}".prop_map(Value::from),
        ]
    }

    fn document() -> impl Strategy<Value = Value> {
        let value = scalar().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[abc]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map("[abc]", value, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    fn simple_filter() -> impl Strategy<Value = Value> {
        let field = prop_oneof![Just("a"), Just("b"), Just("c"), Just("a.b"), Just("b.0")];
        let op = prop_oneof![
            scalar(),
            scalar().prop_map(|v| json!({"$eq": v})),
            scalar().prop_map(|v| json!({"$ne": v})),
            (-3i64..3).prop_map(|v| json!({"$gt": v})),
            "[xyz]{0,2}".prop_map(|v| json!({"$lte": v})),
            prop::collection::vec(scalar(), 0..3).prop_map(|v| json!({"$in": v})),
            prop::collection::vec(scalar(), 0..3).prop_map(|v| json!({"$nin": v})),
            any::<bool>().prop_map(|v| json!({"$exists": v})),
            (0usize..3).prop_map(|v| json!({"$size": v})),
            "[xyz]{0,2}".prop_map(|v| json!({"$not": {"$regex": v}})),
        ];
        prop::collection::vec((field, op), 0..3).prop_map(|conds| {
            Value::Object(conds.into_iter().map(|(f, c)| (f.to_owned(), c)).collect())
        })
    }

    proptest! {
        #[test]
        fn prop_empty_filter_matches_any_document(doc in document()) {
            let everything = Filter::parse(&json!({})).unwrap();
            prop_assert!(everything.matches(&doc));
        }

        #[test]
        fn prop_logical_operators_compose(f in simple_filter(), g in simple_filter(), doc in document()) {
            let (pf, pg) = (Filter::parse(&f).unwrap(), Filter::parse(&g).unwrap());
            let (mf, mg) = (pf.matches(&doc), pg.matches(&doc));
            let check = |filter: Value| Filter::parse(&filter).unwrap().matches(&doc);
            prop_assert_eq!(check(json!({"$nor": [f.clone()]})), !mf);
            prop_assert_eq!(check(json!({"$or": [f.clone(), g.clone()]})), mf || mg);
            prop_assert_eq!(check(json!({"$and": [f, g]})), mf && mg);
        }

        #[test]
        fn prop_string_equality(
            field in prop_oneof![
                "[xyz]{0,3}".prop_map(Value::from),
                prop::collection::vec("[xyz]{0,3}", 0..4).prop_map(Value::from),
            ],
            wanted in "[xyz]{0,3}",
            mut doc in document(),
        ) {
            let expected = match &field {
                Value::String(s) => *s == wanted,
                Value::Array(items) => items.iter().any(|item| *item == json!(wanted)),
                _ => unreachable!(),
            };
            doc["f"] = field;
            prop_assert_eq!(matches(json!({"f": wanted}), doc), expected);
        }
    }
}
