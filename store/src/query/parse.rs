//! JSON → filter tree, with every check and limit applied before anything is evaluated.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::{
    CmpOp, Cond, FieldPath, MAX_DEPTH, MAX_LIST_LEN, MAX_NODES, MAX_PATH_LEN, MAX_REGEX_LEN,
    MAX_REGEXES, Node, QueryError, REGEX_SIZE_LIMIT, value_kind,
};

type Result<T> = std::result::Result<T, QueryError>;

const LOGICAL_OPERATORS: &str = "$and, $or, $nor";
const FIELD_OPERATORS: &[&str] = &[
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$all", "$size", "$not",
    "$regex", "$options",
];

pub(super) fn parse(filter: &Value) -> Result<Node> {
    let Value::Object(entries) = filter else {
        return Err(QueryError::new(format!(
            "a filter must be a json object, not {}; use {{}} to match everything",
            value_kind(filter)
        )));
    };
    Parser { nodes: 0, regexes: 0 }.filter(entries, 1)
}

/// Counts conditions across the whole filter so that wide input is bounded as well as deep.
struct Parser {
    nodes: usize,
    regexes: usize,
}

impl Parser {
    fn count(&mut self) -> Result<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(QueryError::new(format!(
                "filter has too many conditions: at most {MAX_NODES} are allowed; simplify the filter"
            )));
        }
        Ok(())
    }

    /// A filter object: each entry is a logical operator or a field condition, all ANDed.
    fn filter(&mut self, entries: &Map<String, Value>, depth: usize) -> Result<Node> {
        check_depth(depth)?;
        let nodes = entries
            .iter()
            .map(|(key, value)| self.entry(key, value, depth))
            .collect::<Result<_>>()?;
        Ok(Node::And(nodes))
    }

    fn entry(&mut self, key: &str, value: &Value, depth: usize) -> Result<Node> {
        self.count()?;
        match key {
            "$and" => Ok(Node::And(self.branches(key, value, depth)?)),
            "$or" => Ok(Node::Or(self.branches(key, value, depth)?)),
            "$nor" => Ok(Node::Nor(self.branches(key, value, depth)?)),
            op if FIELD_OPERATORS.contains(&op) => Err(QueryError::new(format!(
                "'{op}' cannot stand at the top level of a filter; put it in a field condition \
                 such as {{\"field\": {{\"{op}\": ...}}}}"
            ))),
            op if op.starts_with('$') => Err(unsupported(op)),
            _ => Ok(Node::Field {
                path: field_path(key)?,
                conds: self.condition(key, value, depth)?,
            }),
        }
    }

    fn branches(&mut self, op: &str, value: &Value, depth: usize) -> Result<Vec<Node>> {
        let invalid = || {
            QueryError::new(format!(
                "'{op}' needs a non-empty array of filter objects, e.g. {{\"{op}\": [{{\"a\": 1}}, {{\"b\": 2}}]}}"
            ))
        };
        match value {
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Value::Object(entries) => self.filter(entries, depth + 1),
                    _ => Err(invalid()),
                })
                .collect(),
            _ => Err(invalid()),
        }
    }

    /// A field's condition: an operator expression if any key starts with `$`, else a literal.
    fn condition(&mut self, path: &str, value: &Value, depth: usize) -> Result<Vec<Cond>> {
        match value {
            Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                if let Some(plain) = ops.keys().find(|k| !k.starts_with('$')) {
                    return Err(QueryError::new(format!(
                        "the condition on '{path}' mixes operators with the plain key '{plain}'; \
                         use only $-operators, or only plain keys to match a whole object"
                    )));
                }
                self.operators(ops, depth + 1)
            }
            _ => Ok(vec![Cond::Eq(literal(value, depth + 1)?)]),
        }
    }

    fn operators(&mut self, ops: &Map<String, Value>, depth: usize) -> Result<Vec<Cond>> {
        check_depth(depth)?;
        let mut conds = Vec::with_capacity(ops.len());
        for (op, operand) in ops {
            self.count()?;
            let cond = match op.as_str() {
                "$eq" => Cond::Eq(literal(operand, depth + 1)?),
                "$ne" => Cond::Not(vec![Cond::Eq(literal(operand, depth + 1)?)]),
                "$gt" => comparison(op, CmpOp::Gt, operand)?,
                "$gte" => comparison(op, CmpOp::Gte, operand)?,
                "$lt" => comparison(op, CmpOp::Lt, operand)?,
                "$lte" => comparison(op, CmpOp::Lte, operand)?,
                "$in" => Cond::In(list(op, operand, depth)?),
                "$nin" => Cond::Not(vec![Cond::In(list(op, operand, depth)?)]),
                "$all" => Cond::All(list(op, operand, depth)?),
                "$exists" => Cond::Exists(operand.as_bool().ok_or_else(|| {
                    QueryError::new(format!(
                        "'$exists' needs true or false, not {}",
                        value_kind(operand)
                    ))
                })?),
                "$size" => Cond::Size(
                    operand.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                        QueryError::new(format!(
                            "'$size' needs a non-negative integer array length, not {operand}"
                        ))
                    })?,
                ),
                "$not" => match operand {
                    Value::Object(inner)
                        if !inner.is_empty() && inner.keys().all(|k| k.starts_with('$')) =>
                    {
                        Cond::Not(self.operators(inner, depth + 1)?)
                    }
                    _ => {
                        return Err(QueryError::new(
                            "'$not' needs an operator expression such as {\"$not\": {\"$gt\": 5}} \
                             or {\"$not\": {\"$regex\": \"^a\"}}; use $ne to negate a plain value",
                        ));
                    }
                },
                "$regex" => {
                    self.regexes += 1;
                    if self.regexes > MAX_REGEXES {
                        return Err(QueryError::new(format!(
                            "filter has more than {MAX_REGEXES} '$regex' conditions; combine them into fewer patterns"
                        )));
                    }
                    Cond::Regex(regex(operand, ops.get("$options"))?)
                }
                "$options" if ops.contains_key("$regex") => continue,
                "$options" => {
                    return Err(QueryError::new(
                        "'$options' is only valid next to '$regex', e.g. {\"$regex\": \"^a\", \"$options\": \"i\"}",
                    ));
                }
                "$and" | "$or" | "$nor" => {
                    return Err(QueryError::new(format!(
                        "'{op}' cannot be used inside a field condition; use it at the top level, \
                         e.g. {{\"{op}\": [{{\"a\": 1}}, {{\"b\": 2}}]}}"
                    )));
                }
                other => return Err(unsupported(other)),
            };
            conds.push(cond);
        }
        Ok(conds)
    }
}

fn check_depth(depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(QueryError::new(format!(
            "filter is nested too deeply: at most {MAX_DEPTH} levels of objects, arrays, \
             $and/$or/$nor and $not are allowed; flatten the filter"
        )));
    }
    Ok(())
}

fn unsupported(op: &str) -> QueryError {
    QueryError::new(format!(
        "unsupported query operator '{op}' (supported: {LOGICAL_OPERATORS} at the top level; {} \
         in a field condition)",
        FIELD_OPERATORS.join(", ")
    ))
}

fn field_path(raw: &str) -> Result<FieldPath> {
    if raw.is_empty() {
        return Err(QueryError::new(
            "empty field path; name a field such as \"tool_type\" or \"tool_metadata.version\"",
        ));
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(QueryError::new(format!(
            "field path is {} bytes long; at most {MAX_PATH_LEN} are allowed",
            raw.len()
        )));
    }
    if raw.split('.').any(str::is_empty) {
        return Err(QueryError::new(format!(
            "field path '{raw}' has an empty segment; separate field names with single dots, \
             without a leading or trailing dot"
        )));
    }
    Ok(FieldPath { raw: raw.to_owned(), segments: raw.split('.').map(str::to_owned).collect() })
}

/// A literal operand, cloned after checking (without recursion) how deep its arrays and objects
/// nest.
fn literal(value: &Value, depth: usize) -> Result<Value> {
    let mut stack = vec![(value, depth)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) => {
                check_depth(depth)?;
                stack.extend(items.iter().map(|item| (item, depth + 1)));
            }
            Value::Object(entries) => {
                check_depth(depth)?;
                stack.extend(entries.values().map(|item| (item, depth + 1)));
            }
            _ => {}
        }
    }
    Ok(value.clone())
}

fn comparison(op: &str, cmp: CmpOp, operand: &Value) -> Result<Cond> {
    match operand {
        Value::Number(_) | Value::String(_) => Ok(Cond::Cmp(cmp, operand.clone())),
        _ => Err(QueryError::new(format!(
            "'{op}' compares numbers or strings; got {}",
            value_kind(operand)
        ))),
    }
}

fn list(op: &str, operand: &Value, depth: usize) -> Result<Vec<Value>> {
    let Value::Array(items) = operand else {
        return Err(QueryError::new(format!(
            "'{op}' needs an array of values, e.g. {{\"{op}\": [\"a\", \"b\"]}}; got {}",
            value_kind(operand)
        )));
    };
    if items.len() > MAX_LIST_LEN {
        return Err(QueryError::new(format!(
            "'{op}' has {} values; at most {MAX_LIST_LEN} are allowed",
            items.len()
        )));
    }
    items.iter().map(|item| literal(item, depth + 1)).collect()
}

fn regex(pattern: &Value, options: Option<&Value>) -> Result<Regex> {
    let Value::String(pattern) = pattern else {
        return Err(QueryError::new(format!(
            "'$regex' needs a pattern string, not {}",
            value_kind(pattern)
        )));
    };
    if pattern.len() > MAX_REGEX_LEN {
        return Err(QueryError::new(format!(
            "'$regex' pattern is {} bytes long; at most {MAX_REGEX_LEN} are allowed",
            pattern.len()
        )));
    }
    let mut builder = RegexBuilder::new(pattern);
    builder.size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT);
    match options {
        None => {}
        Some(Value::String(flags)) => {
            for flag in flags.chars() {
                match flag {
                    'i' => builder.case_insensitive(true),
                    'm' => builder.multi_line(true),
                    's' => builder.dot_matches_new_line(true),
                    'x' => builder.ignore_whitespace(true),
                    other => {
                        return Err(QueryError::new(format!(
                            "unsupported '$options' flag '{other}'; use any of i, m, s, x"
                        )));
                    }
                };
            }
        }
        Some(other) => {
            return Err(QueryError::new(format!(
                "'$options' needs a string of flags from i, m, s, x, not {}",
                value_kind(other)
            )));
        }
    }
    builder.build().map_err(|error| match error {
        regex::Error::CompiledTooBig(limit) => QueryError::new(format!(
            "'$regex' pattern is too large: once compiled it exceeds the {limit}-byte size limit; \
             simplify the pattern or use fewer repetitions"
        )),
        error => QueryError::new(format!("invalid '$regex' pattern: {error}")),
    })
}
