//! Field codecs that give one struct two faces: plain JSON for people, compact bincode on disk.
//!
//! Both check `is_human_readable()`: serde_json says yes, bincode says no.

/// JSON-object fields: a JSON object through serde_json (`null` reads as `{}`); through bincode,
/// which cannot decode a `serde_json::Value`, a compact tagged tree ([`BinRef`]), read back
/// with a nesting limit.
pub mod json_field {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{BinMap, MapSeed};
    use crate::record::JsonMap;

    pub fn serialize<S: Serializer>(map: &JsonMap, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            serde::Serialize::serialize(map, s)
        } else {
            serde::Serialize::serialize(&BinMap(map), s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JsonMap, D::Error> {
        if d.is_human_readable() {
            Ok(Option::<JsonMap>::deserialize(d)?.unwrap_or_default())
        } else {
            serde::de::DeserializeSeed::deserialize(MapSeed { depth: 0 }, d)
        }
    }
}

/// Write-only JSON-object fields (credentials, contract section 14): through serde_json every
/// value reads [`REDACTED`](write_only::REDACTED) — the keys stay, so a reader sees what is set —
/// and through bincode (the store, replication) the map itself, whose values the node keeps
/// sealed. Read as [`json_field`] reads.
pub mod write_only {
    use serde::Serializer;

    use super::BinMap;
    use crate::record::JsonMap;

    /// What every read shows in place of a write-only value.
    pub const REDACTED: &str = "<redacted>";

    pub fn serialize<S: Serializer>(map: &JsonMap, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            serde::Serialize::serialize(&redacted(map), s)
        } else {
            serde::Serialize::serialize(&BinMap(map), s)
        }
    }

    pub use super::json_field::deserialize;

    /// The map as reads show it: its keys, each with [`REDACTED`].
    pub fn redacted(map: &JsonMap) -> JsonMap {
        map.keys().map(|key| (key.clone(), serde_json::Value::from(REDACTED))).collect()
    }
}

/// A JSON object written as a sequence of `(key, value)` pairs.
struct BinMap<'a>(&'a serde_json::Map<String, serde_json::Value>);

impl serde::Serialize for BinMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (key, value) in self.0 {
            seq.serialize_element(&(key, BinRef(value)))?;
        }
        seq.end()
    }
}

/// A JSON value written as an enum: one tag byte, then the payload. No text to parse back.
struct BinRef<'a>(&'a serde_json::Value);

const VARIANTS: &[&str] = &["null", "bool", "u64", "i64", "f64", "string", "array", "object"];

impl serde::Serialize for BinRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::Value;
        match self.0 {
            Value::Null => s.serialize_unit_variant("Value", 0, "null"),
            Value::Bool(b) => s.serialize_newtype_variant("Value", 1, "bool", b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    s.serialize_newtype_variant("Value", 2, "u64", &u)
                } else if let Some(i) = n.as_i64() {
                    s.serialize_newtype_variant("Value", 3, "i64", &i)
                } else {
                    s.serialize_newtype_variant("Value", 4, "f64", &n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(text) => s.serialize_newtype_variant("Value", 5, "string", text),
            Value::Array(items) => {
                let items: Vec<BinRef<'_>> = items.iter().map(BinRef).collect();
                s.serialize_newtype_variant("Value", 6, "array", &items)
            }
            Value::Object(map) => s.serialize_newtype_variant("Value", 7, "object", &BinMap(map)),
        }
    }
}

// Reading the tree back: every level is a seed that knows its depth, so a tree nested past
// `MAX_JSON_DEPTH` is an error before it can exhaust the stack (the bytes may be a peer's).

/// Refuses to descend past the nesting limit.
fn deeper<E: serde::de::Error>(depth: usize) -> Result<usize, E> {
    if depth >= crate::codec::MAX_JSON_DEPTH {
        Err(E::custom(format!(
            "a json value nested deeper than {} levels",
            crate::codec::MAX_JSON_DEPTH
        )))
    } else {
        Ok(depth + 1)
    }
}

/// One JSON value at `depth`.
#[derive(Clone, Copy)]
struct ValueSeed {
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_enum("Value", VARIANTS, self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueSeed {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a tagged json value")
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        use serde::de::{Error, VariantAccess};
        use serde_json::{Number, Value};
        let (tag, variant): (u32, _) = data.variant()?;
        let value = match tag {
            0 => variant.unit_variant().map(|()| Value::Null)?,
            1 => Value::Bool(variant.newtype_variant()?),
            2 => Value::from(variant.newtype_variant::<u64>()?),
            3 => Value::from(variant.newtype_variant::<i64>()?),
            4 => Number::from_f64(variant.newtype_variant()?).map_or(Value::Null, Value::Number),
            5 => Value::String(variant.newtype_variant()?),
            6 => Value::Array(variant.newtype_variant_seed(ArraySeed { depth: self.depth })?),
            7 => Value::Object(variant.newtype_variant_seed(MapSeed { depth: self.depth })?),
            other => return Err(A::Error::custom(format!("unknown json value tag {other}"))),
        };
        Ok(value)
    }
}

/// A JSON array whose items sit one level below `depth`.
#[derive(Clone, Copy)]
struct ArraySeed {
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for ArraySeed {
    type Value = Vec<serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let depth = deeper(self.depth)?;
        d.deserialize_seq(ArraySeed { depth })
    }
}

impl<'de> serde::de::Visitor<'de> for ArraySeed {
    type Value = Vec<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of json values")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed { depth: self.depth })? {
            items.push(item);
        }
        Ok(items)
    }
}

/// A JSON object (a sequence of key-value pairs) whose values sit one level below `depth`.
/// Read straight into a map: no intermediate vector, no sort.
#[derive(Clone, Copy)]
struct MapSeed {
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for MapSeed {
    type Value = serde_json::Map<String, serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let depth = deeper(self.depth)?;
        d.deserialize_seq(MapSeed { depth })
    }
}

impl<'de> serde::de::Visitor<'de> for MapSeed {
    type Value = serde_json::Map<String, serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of key-value pairs")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut map = serde_json::Map::new();
        while let Some((key, value)) = seq.next_element_seed(PairSeed { depth: self.depth })? {
            map.insert(key, value);
        }
        Ok(map)
    }
}

/// One `(key, value)` pair of an object.
#[derive(Clone, Copy)]
struct PairSeed {
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for PairSeed {
    type Value = (String, serde_json::Value);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de> serde::de::Visitor<'de> for PairSeed {
    type Value = (String, serde_json::Value);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key-value pair")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let key =
            seq.next_element::<String>()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
        let value = seq
            .next_element_seed(ValueSeed { depth: self.depth })?
            .ok_or_else(|| A::Error::invalid_length(1, &self))?;
        Ok((key, value))
    }
}

/// Plain fields: through serde_json, `null` reads as the default (Python clients send `None`);
/// through bincode, the value itself.
pub mod lenient {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: Deserialize<'de> + Default,
        D: Deserializer<'de>,
    {
        if d.is_human_readable() {
            Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
        } else {
            T::deserialize(d)
        }
    }
}
