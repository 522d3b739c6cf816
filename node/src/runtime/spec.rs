//! Input validation (contract section 6): a tool's `input_spec` is JSON Schema (recognised by a
//! `$schema` key, or by `"type": "object"` together with `"properties"`) or the seed's shorthand
//! (`{"text": "string"}`, `{"x": {"type": "number", "min": 0, "max": 10}}`, `choices`,
//! `optional`, nested objects). A spec is compiled once; input that fails is refused before the
//! tool runs, the error naming the field.

use gridnode_store::JsonMap;
use gridnode_store::query::value_kind as kind_of;
use serde_json::Value;

use super::input::Input;

/// Deepest nesting of a shorthand spec.
const MAX_SPEC_DEPTH: usize = 16;

/// A compiled input spec, and its fingerprint: an input remembers the specs it has passed, so
/// the same spec met twice on one call path (a registry tool's and the cluster tool it runs, the
/// record's and the hosting runtime's) is checked once.
#[derive(Debug)]
pub struct InputValidator {
    rules: Rules,
    fingerprint: u64,
}

#[derive(Debug)]
enum Rules {
    /// No spec: any bytes are accepted (they need not be JSON).
    Any,
    Schema(Box<jsonschema::Validator>),
    Shorthand(Vec<FieldRule>),
}

/// One field of a shorthand spec.
#[derive(Debug)]
pub struct FieldRule {
    name: String,
    kind: Kind,
    optional: bool,
    min: Option<f64>,
    max: Option<f64>,
    choices: Option<Vec<Value>>,
    /// For `object` fields with `properties`.
    properties: Option<Vec<FieldRule>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    Any,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "string" | "str" => Kind::String,
            "number" | "float" => Kind::Number,
            "integer" | "int" => Kind::Integer,
            "boolean" | "bool" => Kind::Boolean,
            "array" | "list" => Kind::Array,
            "object" | "dict" => Kind::Object,
            "any" => Kind::Any,
            _ => return None,
        })
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Kind::String => value.is_string(),
            Kind::Number => value.is_number(),
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Boolean => value.is_boolean(),
            Kind::Array => value.is_array(),
            Kind::Object => value.is_object(),
            Kind::Any => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Integer => "an integer",
            Kind::Boolean => "a boolean",
            Kind::Array => "an array",
            Kind::Object => "an object",
            Kind::Any => "any value",
        }
    }
}

/// True when a spec is JSON Schema rather than the shorthand.
fn is_json_schema(spec: &JsonMap) -> bool {
    spec.contains_key("$schema")
        || (spec.get("type").and_then(Value::as_str) == Some("object")
            && spec.contains_key("properties"))
}

impl InputValidator {
    /// Compiles a spec; the error says what in the spec is wrong.
    pub fn compile(spec: &JsonMap) -> Result<InputValidator, String> {
        let rules = if spec.is_empty() {
            Rules::Any
        } else if is_json_schema(spec) {
            let schema = Value::Object(spec.clone());
            jsonschema::validator_for(&schema)
                .map(|v| Rules::Schema(Box::new(v)))
                .map_err(|e| format!("invalid json schema: {e}"))?
        } else {
            compile_fields(spec, "", 0).map(Rules::Shorthand)?
        };
        Ok(InputValidator { rules, fingerprint: fingerprint(spec) })
    }

    /// Whether the spec accepts any bytes.
    pub fn accepts_anything(&self) -> bool {
        matches!(self.rules, Rules::Any)
    }

    /// Checks the input against the spec, unless it has passed this spec already.
    pub fn validate(&self, input: &Input) -> Result<(), String> {
        if self.accepts_anything() || input.has_passed(self.fingerprint) {
            return Ok(());
        }
        let value = input.json()?;
        match &self.rules {
            Rules::Any => {}
            Rules::Schema(validator) => validator.validate(value).map_err(|e| {
                let path = e.instance_path().as_str().trim_start_matches('/').replace('/', ".");
                if path.is_empty() {
                    format!("invalid input: {e}")
                } else {
                    format!("field '{path}': {e}")
                }
            })?,
            Rules::Shorthand(rules) => match value {
                Value::Object(object) => check_fields(rules, object, "")?,
                other => {
                    return Err(format!("input must be a json object, not {}", kind_of(other)));
                }
            },
        }
        input.mark_passed(self.fingerprint);
        Ok(())
    }
}

/// A spec's fingerprint: a keyed hash (the key random per process, so no one can make two
/// specs collide on purpose) of its canonical text.
fn fingerprint(spec: &JsonMap) -> u64 {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let text = serde_json::to_string(spec).unwrap_or_default();
    KEY.get_or_init(std::hash::RandomState::new).hash_one(text)
}

fn compile_fields(spec: &JsonMap, prefix: &str, depth: usize) -> Result<Vec<FieldRule>, String> {
    if depth > MAX_SPEC_DEPTH {
        return Err(format!("input spec nests deeper than {MAX_SPEC_DEPTH} levels"));
    }
    spec.iter().map(|(name, rule)| compile_field(name, rule, prefix, depth)).collect()
}

fn compile_field(
    name: &str,
    rule: &Value,
    prefix: &str,
    depth: usize,
) -> Result<FieldRule, String> {
    let path = format!("{prefix}{name}");
    let bad = |why: &str| format!("input spec for field '{path}': {why}");
    let kind_of =
        |text: &str| {
            Kind::parse(text).ok_or_else(|| bad(&format!(
        "unknown type '{text}' (use string, number, integer, boolean, array, object or any)"
    )))
        };
    let mut field = FieldRule {
        name: name.to_owned(),
        kind: Kind::Any,
        optional: false,
        min: None,
        max: None,
        choices: None,
        properties: None,
    };
    match rule {
        Value::String(text) => field.kind = kind_of(text)?,
        Value::Object(options) => {
            field.kind = match options.get("type") {
                Some(Value::String(text)) => kind_of(text)?,
                None => Kind::Any,
                Some(_) => return Err(bad("'type' must be a string")),
            };
            field.optional = match options.get("optional") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad("'optional' must be true or false")),
            };
            let number = |key: &str| match options.get(key) {
                None => Ok(None),
                Some(v) => {
                    v.as_f64().map(Some).ok_or_else(|| bad(&format!("'{key}' must be a number")))
                }
            };
            field.min = number("min")?;
            field.max = number("max")?;
            field.choices = match options.get("choices") {
                None => None,
                Some(Value::Array(items)) => Some(items.clone()),
                Some(_) => return Err(bad("'choices' must be an array")),
            };
            field.properties = match options.get("properties") {
                None => None,
                Some(Value::Object(nested)) => {
                    Some(compile_fields(nested, &format!("{path}."), depth + 1)?)
                }
                Some(_) => return Err(bad("'properties' must be an object")),
            };
        }
        _ => return Err(bad("use a type name or an object with 'type'")),
    }
    Ok(field)
}

fn check_fields(rules: &[FieldRule], object: &JsonMap, prefix: &str) -> Result<(), String> {
    for rule in rules {
        let path = format!("{prefix}{}", rule.name);
        let Some(value) = object.get(&rule.name).filter(|v| !v.is_null()) else {
            if rule.optional {
                continue;
            }
            return Err(format!("field '{path}' is required ({})", rule.kind.name()));
        };
        if !rule.kind.accepts(value) {
            return Err(format!(
                "field '{path}' must be {}, not {}",
                rule.kind.name(),
                kind_of(value)
            ));
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = rule.min.filter(|min| n < *min) {
                return Err(format!("field '{path}' must be at least {min}, got {n}"));
            }
            if let Some(max) = rule.max.filter(|max| n > *max) {
                return Err(format!("field '{path}' must be at most {max}, got {n}"));
            }
        }
        if let Some(choices) = &rule.choices
            && !choices.contains(value)
        {
            let listed: Vec<String> = choices.iter().map(Value::to_string).collect();
            return Err(format!(
                "field '{path}' must be one of {}, got {value}",
                listed.join(", ")
            ));
        }
        if let (Some(nested), Value::Object(inner)) = (&rule.properties, value) {
            check_fields(nested, inner, &format!("{path}."))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(spec: Value) -> InputValidator {
        InputValidator::compile(spec.as_object().unwrap()).unwrap()
    }

    fn check(v: &InputValidator, input: Value) -> Result<(), String> {
        v.validate(&Input::from_bytes(input.to_string().into_bytes()))
    }

    #[test]
    fn shorthand_types_ranges_choices_optional_and_nesting() {
        let v = compile(json!({
            "text": "string",
            "x": {"type": "number", "min": 0, "max": 10},
            "mode": {"type": "string", "choices": ["a", "b"]},
            "n": {"type": "integer", "optional": true},
            "cfg": {"type": "object", "properties": {"depth": "integer"}},
            "anything": "any",
        }));
        let ok = json!({"text": "hi", "x": 5, "mode": "a", "cfg": {"depth": 2}, "anything": [1]});
        assert_eq!(check(&v, ok), Ok(()));
        let cases = [
            (
                json!({"x": 5, "mode": "a", "cfg": {"depth": 1}, "anything": 1}),
                "field 'text' is required",
            ),
            (
                json!({"text": 1, "x": 5, "mode": "a", "cfg": {"depth": 1}, "anything": 1}),
                "field 'text' must be a string",
            ),
            (
                json!({"text": "t", "x": 11, "mode": "a", "cfg": {"depth": 1}, "anything": 1}),
                "field 'x' must be at most 10",
            ),
            (
                json!({"text": "t", "x": -1, "mode": "a", "cfg": {"depth": 1}, "anything": 1}),
                "field 'x' must be at least 0",
            ),
            (
                json!({"text": "t", "x": 1, "mode": "c", "cfg": {"depth": 1}, "anything": 1}),
                "field 'mode' must be one of",
            ),
            (
                json!({"text": "t", "x": 1, "mode": "a", "n": 1.5, "cfg": {"depth": 1}, "anything": 1}),
                "field 'n' must be an integer",
            ),
            (
                json!({"text": "t", "x": 1, "mode": "a", "cfg": {"depth": "deep"}, "anything": 1}),
                "field 'cfg.depth' must be an integer",
            ),
        ];
        for (input, needle) in cases {
            let err = check(&v, input.clone()).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
        assert!(
            v.validate(&Input::from_bytes(b"not json".to_vec()))
                .unwrap_err()
                .contains("not valid json")
        );
        assert!(check(&v, json!([1])).unwrap_err().contains("json object"));
    }

    #[test]
    fn json_schema_is_recognised_and_names_the_field() {
        let v = compile(json!({
            "type": "object",
            "properties": {"text": {"type": "string"}, "n": {"type": "integer", "minimum": 1}},
            "required": ["text"],
        }));
        assert!(matches!(v.rules, Rules::Schema(_)));
        assert_eq!(check(&v, json!({"text": "a", "n": 2})), Ok(()));
        let err = check(&v, json!({"text": "a", "n": 0})).unwrap_err();
        assert!(err.starts_with("field 'n'"), "{err}");
        assert!(check(&v, json!({"n": 2})).unwrap_err().contains("text"));
        let with_dollar = compile(
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string"}),
        );
        assert!(check(&with_dollar, json!(5)).is_err());
    }

    #[test]
    fn bad_specs_are_refused_with_the_field() {
        for spec in [
            json!({"x": "strnig"}),
            json!({"x": {"type": 5}}),
            json!({"x": {"min": "a"}}),
            json!({"x": 5}),
        ] {
            let err = InputValidator::compile(spec.as_object().unwrap()).unwrap_err();
            assert!(err.contains("field 'x'"), "{spec}: {err}");
        }
        assert!(InputValidator::compile(&JsonMap::new()).unwrap().accepts_anything());
    }

    #[test]
    fn a_spec_passed_once_is_not_checked_again_on_the_same_path() {
        let spec = json!({"text": "string"});
        let (first, again) = (compile(spec.clone()), compile(spec));
        let stricter = compile(json!({"text": {"type": "string", "choices": ["x"]}}));
        let input = Input::from_json(json!({"text": "y"}));
        assert_eq!(first.validate(&input), Ok(()));
        assert!(input.has_passed(again.fingerprint), "one spec compiled twice: one fingerprint");
        assert!(stricter.validate(&input).unwrap_err().contains("text"), "another spec is checked");
    }
}
