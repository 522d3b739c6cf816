//! Evaluation of a parsed filter tree against one JSON document.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{CmpOp, Cond, Node};

impl Node {
    pub(super) fn matches(&self, doc: &Value) -> bool {
        match self {
            Node::And(nodes) => nodes.iter().all(|node| node.matches(doc)),
            Node::Or(nodes) => nodes.iter().any(|node| node.matches(doc)),
            Node::Nor(nodes) => !nodes.iter().any(|node| node.matches(doc)),
            Node::Field { path, conds } => {
                let mut found = Vec::new();
                resolve(doc, &path.segments, &mut found);
                conds.iter().all(|cond| cond.matches(&found))
            }
        }
    }
}

impl Cond {
    /// `found` holds what the path reached along each branch; `None` where a branch was missing.
    fn matches(&self, found: &[Option<&Value>]) -> bool {
        match self {
            Cond::Eq(operand) => found.iter().any(|value| equals(*value, operand)),
            Cond::In(operands) => {
                operands.iter().any(|operand| found.iter().any(|value| equals(*value, operand)))
            }
            Cond::Cmp(op, operand) => found.iter().flatten().any(|value| {
                any_element(value, |v| compare(v, operand).is_some_and(|ord| op.accepts(ord)))
            }),
            Cond::Exists(wanted) => found.iter().any(Option::is_some) == *wanted,
            Cond::All(operands) => {
                !operands.is_empty()
                    && found.iter().flatten().any(|value| match value {
                        Value::Array(items) => operands
                            .iter()
                            .all(|operand| items.iter().any(|item| json_eq(item, operand))),
                        _ => false,
                    })
            }
            Cond::Size(len) => found
                .iter()
                .flatten()
                .any(|value| value.as_array().is_some_and(|items| items.len() == *len)),
            Cond::Regex(regex) => found
                .iter()
                .flatten()
                .any(|value| any_element(value, |v| v.as_str().is_some_and(|s| regex.is_match(s)))),
            Cond::Not(conds) => !conds.iter().all(|cond| cond.matches(found)),
        }
    }
}

impl CmpOp {
    fn accepts(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Gte => ord != Ordering::Less,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Lte => ord != Ordering::Greater,
        }
    }
}

/// Follows `path` from `value`, fanning out over arrays: a numeric segment indexes the array, and
/// any segment also continues into each object element. A branch that ends early yields `None`.
fn resolve<'a>(value: &'a Value, path: &[String], found: &mut Vec<Option<&'a Value>>) {
    let Some((head, rest)) = path.split_first() else {
        found.push(Some(value));
        return;
    };
    match value {
        Value::Object(entries) => match entries.get(head) {
            Some(child) => resolve(child, rest, found),
            None => found.push(None),
        },
        Value::Array(items) => {
            let before = found.len();
            if let Some(item) = head.parse::<usize>().ok().and_then(|i| items.get(i)) {
                resolve(item, rest, found);
            }
            for item in items.iter().filter(|item| item.is_object()) {
                resolve(item, path, found);
            }
            if found.len() == before {
                found.push(None);
            }
        }
        _ => found.push(None),
    }
}

/// Equality as a query sees it: a missing value equals `null`, and an array equals an operand it
/// contains as well as one equal to the whole array.
fn equals(value: Option<&Value>, operand: &Value) -> bool {
    match value {
        None => operand.is_null(),
        Some(value) => any_element(value, |v| json_eq(v, operand)),
    }
}

/// `test` holds for the value itself or, when it is an array, for one of its elements.
fn any_element(value: &Value, test: impl Fn(&Value) -> bool) -> bool {
    test(value) || value.as_array().is_some_and(|items| items.iter().any(&test))
}

/// Structural JSON equality in which numbers compare by value (`1 == 1.0`) and key order is
/// irrelevant.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Orders numbers with numbers and strings with strings; any other pairing is incomparable.
fn compare(value: &Value, operand: &Value) -> Option<Ordering> {
    match (value, operand) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Integers compare exactly; anything involving a float compares as `f64`.
fn compare_numbers(x: &Number, y: &Number) -> Option<Ordering> {
    let integer = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (integer(x), integer(y)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}
