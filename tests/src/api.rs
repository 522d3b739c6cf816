//! A thin HTTP client for a node's REST API that answers `(status, json body)`.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    /// A client for the node at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: impl Into<String>) -> Api {
        Api { base: base.into(), client: reqwest::Client::new() }
    }

    /// The same node, every request presenting `secret` as its bearer token.
    pub fn with_token(&self, secret: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {secret}").parse().expect("a header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let client = reqwest::Client::builder().default_headers(headers).build().expect("a client");
        Api { base: self.base.clone(), client }
    }

    /// Makes a token (with `admin`'s rights) holding `scopes`, bound to `org` if given: its
    /// secret.
    pub async fn token(&self, scopes: &[&str], org: Option<&str>) -> String {
        let mut body = serde_json::json!({ "description": "test", "scopes": scopes });
        if let Some(org) = org {
            body["org"] = org.into();
        }
        let (status, made) = self.post("/acl/tokens", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        made["secret"].as_str().expect("a secret").to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the node answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("the body arrives");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.client.put(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.delete(self.url(path))).await
    }

    /// Posts `zip` as the multipart part `file`.
    pub async fn upload(&self, path: &str, zip: Vec<u8>) -> (StatusCode, Value) {
        let form = Form::new().part("file", Part::bytes(zip).file_name("bundle.zip"));
        self.send(self.client.post(self.url(path)).multipart(form)).await
    }

    /// The raw bytes at a URL (blobs).
    pub async fn bytes(&self, url: &str) -> (StatusCode, Vec<u8>) {
        let response = self.client.get(url).send().await.expect("the node answers");
        let status = response.status();
        (status, response.bytes().await.expect("the body arrives").to_vec())
    }
}

/// The values of `field` in an array of records.
pub fn ids(body: &Value, field: &str) -> Vec<String> {
    body.as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"))
        .iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_owned())
        .collect()
}
