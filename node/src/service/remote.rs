//! HTTP calls the node makes on a user's behalf: remote tools and functions (their input POSTed
//! as JSON to a URL of their record) and bundle fetches from peers. A pooled client under the
//! node's egress rules (see [`egress`](crate::service::egress)), a timeout on every call, and a
//! bound on every answer's size. Admitted members' own advertised addresses are reached through
//! a second client, outside the rules (a cluster on a private network fetches blobs from its
//! members whatever `deny_private` says).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::runtime::CallOutcome;
use crate::service::egress::{self, Egress};

/// Most of a failed answer's body kept for the error message.
const ERROR_BODY_KEPT: usize = 4096;

/// The client. Cheap to clone (reqwest pools connections behind it).
#[derive(Debug, Clone)]
pub struct Remote {
    /// Under the egress rules.
    client: reqwest::Client,
    /// For admitted members' advertised addresses only.
    members: reqwest::Client,
    egress: Egress,
    timeout: Duration,
    max_bytes: usize,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum Fetch {
    /// The server could not be reached, or broke off.
    Unreached(String),
    /// It answered with a status other than 2xx.
    Status(u16, String),
    /// It answered more than the limit.
    TooLarge,
    /// The egress rules do not let the node connect there.
    Refused(egress::Refused),
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetch::Unreached(why) => write!(f, "{why}"),
            Fetch::Status(status, body) if body.is_empty() => write!(f, "answered {status}"),
            Fetch::Status(status, body) => write!(f, "answered {status}: {body}"),
            Fetch::TooLarge => write!(f, "answered more bytes than the limit"),
            Fetch::Refused(refused) => write!(f, "{refused}"),
        }
    }
}

impl Remote {
    /// `timeout` bounds each call; `max_bytes` each answer; `egress` says where calls may go.
    pub fn new(
        timeout: Duration,
        connect_timeout: Duration,
        max_bytes: usize,
        egress: Egress,
        tls: Option<&crate::tls::Tls>,
    ) -> Result<Remote> {
        let builder = || {
            let builder = reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none());
            // The cluster's CA is trusted, and peers that ask see this node's certificate.
            match tls {
                Some(tls) => tls.http_client(builder),
                None => Ok(builder),
            }
        };
        let built = |builder: reqwest::ClientBuilder| {
            builder
                .build()
                .map_err(|e| Error::Internal(format!("cannot build the http client: {e}")))
        };
        let client = built(builder()?.dns_resolver(egress.resolver()))?;
        let members = built(builder()?)?;
        Ok(Remote { client, members, egress, timeout, max_bytes })
    }

    /// The rules' verdict on a URL whose host is a literal address (names are checked as they
    /// resolve, on the address connected to).
    fn check_egress(&self, url: &str) -> std::result::Result<(), egress::Refused> {
        match reqwest::Url::parse(url) {
            Ok(url) => self.egress.check_url(&url),
            Err(_) => Ok(()),
        }
    }

    /// POSTs `input` (JSON bytes) to `url` and reads the answer: 2xx is success with the body as
    /// output; another status is the tool's failure; no answer is a 502.
    pub async fn call(&self, what: &str, url: &str, input: &[u8]) -> Result<CallOutcome> {
        check_url(what, url)?;
        self.check_egress(url).map_err(|refused| Error::Forbidden(refused.to_string()))?;
        let started = Instant::now();
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(input.to_vec());
        let answer = self.read(request, self.timeout, self.max_bytes).await;
        let mut metadata = BTreeMap::new();
        metadata.insert("runtime".to_owned(), "remote".to_owned());
        metadata.insert("duration_ms".to_owned(), started.elapsed().as_millis().to_string());
        match answer {
            Ok(body) => {
                Ok(CallOutcome { success: true, output: body, error: String::new(), metadata })
            }
            Err(Fetch::Unreached(why)) => {
                Err(Error::Unreachable(format!("{what} at {url} could not be reached: {why}")))
            }
            Err(Fetch::TooLarge) => Ok(failed(
                format!("{what} answered more than {} bytes, the limit", self.max_bytes),
                metadata,
            )),
            Err(status @ Fetch::Status(..)) => Ok(failed(format!("{what} {status}"), metadata)),
            Err(Fetch::Refused(refused)) => Err(Error::Forbidden(refused.to_string())),
        }
    }

    /// GETs `url`, at most `max_bytes` of it, within `timeout`; `member` when `url` is an
    /// admitted member's own advertised address (outside the egress rules).
    pub async fn get(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
        member: bool,
        proof: Option<(&str, &str)>,
    ) -> Result<Vec<u8>, Fetch> {
        let prove = |request: reqwest::RequestBuilder| match proof {
            Some((origin, proof)) => {
                request.header(crate::grpc::HOP, origin).header(crate::grpc::PROOF, proof)
            }
            None => request,
        };
        if member {
            return self.read(prove(self.members.get(url)), timeout, max_bytes).await;
        }
        self.check_egress(url).map_err(Fetch::Refused)?;
        self.read(prove(self.client.get(url)), timeout, max_bytes).await
    }

    async fn read(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Vec<u8>, Fetch> {
        let reading = async {
            let mut response = request.send().await.map_err(unreached)?;
            let status = response.status();
            if let Some(length) = response.content_length()
                && length > max_bytes as u64
                && status.is_success()
            {
                return Err(Fetch::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) =
                response.chunk().await.map_err(|e| Fetch::Unreached(without_url(e)))?
            {
                if body.len() + chunk.len() > max_bytes {
                    if status.is_success() {
                        return Err(Fetch::TooLarge);
                    }
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                body.truncate(ERROR_BODY_KEPT);
                let text = String::from_utf8_lossy(&body).trim().to_owned();
                return Err(Fetch::Status(status.as_u16(), text));
            }
            Ok(body)
        };
        match tokio::time::timeout(timeout, reading).await {
            Ok(answer) => answer,
            Err(_) => Err(Fetch::Unreached(format!("no answer within {} ms", timeout.as_millis()))),
        }
    }
}

fn failed(error: String, metadata: BTreeMap<String, String>) -> CallOutcome {
    CallOutcome { success: false, output: Vec::new(), error, metadata }
}

/// Only http(s) URLs are called.
pub fn check_url(what: &str, url: &str) -> Result<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{what} has no usable URL ('{}'): it must be an http:// or https:// URL",
            url.chars().take(200).collect::<String>()
        )))
    }
}

/// Why a request got no answer: the egress rules, or the network.
fn unreached(error: reqwest::Error) -> Fetch {
    match egress::refusal(&error) {
        Some(refused) => Fetch::Refused(refused),
        None => Fetch::Unreached(without_url(error)),
    }
}

/// reqwest's message with the URL left out (the caller names it once).
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
