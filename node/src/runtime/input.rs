//! A tool's input as it travels one call path: the bytes the tool is handed, parsed as JSON at
//! most once, and the input specs it has already passed, so that no spec is checked twice on
//! the way from the edge (REST, gRPC) to the tool.

use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::Value;

/// The input of one call.
#[derive(Debug, Default)]
pub struct Input {
    bytes: Vec<u8>,
    json: OnceLock<Result<Value, String>>,
    /// Fingerprints of the specs this input has passed.
    passed: Mutex<Vec<u64>>,
}

impl Input {
    /// Input that arrived as bytes (gRPC): parsed only if a spec or a tool asks for JSON.
    pub fn from_bytes(bytes: Vec<u8>) -> Input {
        Input { bytes, ..Input::default() }
    }

    /// Input that arrived as JSON (REST, MCP): encoded once into the bytes a tool is sent, and
    /// kept parsed.
    pub fn from_json(value: Value) -> Input {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        Input { bytes, json: OnceLock::from(Ok(value)), passed: Mutex::default() }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The input as JSON, parsed on the first ask; the error says why it is not JSON.
    pub fn json(&self) -> Result<&Value, &str> {
        self.json
            .get_or_init(|| {
                serde_json::from_slice(&self.bytes).map_err(|e| {
                    format!("input is not valid json ({e}); this tool takes a json object")
                })
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Whether the input has passed the spec with this fingerprint.
    pub(crate) fn has_passed(&self, fingerprint: u64) -> bool {
        self.passed.lock().unwrap_or_else(PoisonError::into_inner).contains(&fingerprint)
    }

    pub(crate) fn mark_passed(&self, fingerprint: u64) {
        self.passed.lock().unwrap_or_else(PoisonError::into_inner).push(fingerprint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_parsed_once_and_bytes_need_not_be_json() {
        let input = Input::from_json(serde_json::json!({"text": "hi"}));
        assert_eq!(input.bytes(), br#"{"text":"hi"}"#);
        assert_eq!(input.json().unwrap()["text"], "hi");
        let raw = Input::from_bytes(b"not json".to_vec());
        assert_eq!(raw.bytes(), b"not json");
        assert!(raw.json().unwrap_err().contains("not valid json"));
        assert!(!raw.has_passed(7));
        raw.mark_passed(7);
        assert!(raw.has_passed(7));
    }
}
