//! Field codecs that give one struct two faces: plain JSON for people, compact bincode on disk.
//!
//! Both check `is_human_readable()`: serde_json says yes, bincode says no.

/// JSON-valued fields: a JSON value through serde_json, JSON text through bincode (which cannot
/// decode `serde_json::Value`). Through serde_json, `null` reads as the empty value.
pub mod json_field {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            value.serialize(s)
        } else {
            let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
            s.serialize_str(&text)
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: DeserializeOwned + Default,
        D: Deserializer<'de>,
    {
        if d.is_human_readable() {
            Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(D::Error::custom)
        }
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
