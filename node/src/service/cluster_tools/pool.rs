//! One gRPC channel per endpoint, reused by every call to it (HTTP/2 multiplexes concurrent
//! calls on its one connection). A channel connects on first use, within the connect timeout;
//! one that failed is dropped, so the next call connects afresh.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use gridnode_proto::{CallFunctionRequest, CallFunctionResponse, ToolExecutorClient};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// Channels kept at most (one per node called; past this the pool starts over).
const MAX_CHANNELS: usize = 4096;

/// Why a call did not return the tool's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The request never reached a ToolExecutor there: trying another node is safe.
    Unreached(String),
    /// The request reached the node and may have run: not retried.
    Failed(String),
}

#[derive(Debug)]
pub struct Pool {
    channels: RwLock<HashMap<String, Channel>>,
    connect_timeout: Duration,
    /// Largest response accepted (the tool output limit, plus room for the envelope).
    max_response_bytes: usize,
}

impl Pool {
    pub fn new(connect_timeout: Duration, max_output_bytes: usize) -> Pool {
        Pool {
            channels: RwLock::default(),
            connect_timeout,
            max_response_bytes: max_output_bytes.saturating_add(1024 * 1024),
        }
    }

    /// Calls `ToolExecutor/CallFunction` at `endpoint` (`host:port`), waiting at most `timeout`.
    pub async fn call(
        &self,
        endpoint: &str,
        request: CallFunctionRequest,
        timeout: Duration,
    ) -> Result<CallFunctionResponse, CallError> {
        let channel = self.channel(endpoint)?;
        let mut client = ToolExecutorClient::new(channel)
            .max_decoding_message_size(self.max_response_bytes)
            .max_encoding_message_size(usize::MAX);
        match tokio::time::timeout(timeout, client.call_function(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(classify(&status)),
            Err(_) => {
                Err(CallError::Failed(format!("no answer within {} ms", timeout.as_millis())))
            }
        }
    }

    /// Forgets the channel to `endpoint` (after a failed call).
    pub fn evict(&self, endpoint: &str) {
        self.channels.write().unwrap_or_else(PoisonError::into_inner).remove(endpoint);
    }

    /// Channels open (or opening) now.
    pub fn len(&self) -> usize {
        self.channels.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, CallError> {
        if let Some(channel) =
            self.channels.read().unwrap_or_else(PoisonError::into_inner).get(endpoint)
        {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| {
                CallError::Unreached(format!("'{endpoint}' is not a usable endpoint: {e}"))
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        let mut channels = self.channels.write().unwrap_or_else(PoisonError::into_inner);
        if channels.len() >= MAX_CHANNELS {
            channels.clear();
        }
        Ok(channels.entry(endpoint.to_owned()).or_insert(channel).clone())
    }
}

/// Connection failures, and an endpoint that is not a ToolExecutor, never ran the tool.
fn classify(status: &tonic::Status) -> CallError {
    let mut why = status.message().to_owned();
    let mut source = status.source();
    while let Some(cause) = source {
        why = format!("{why}: {cause}");
        source = cause.source();
    }
    match status.code() {
        Code::Unavailable => CallError::Unreached(why),
        Code::Unimplemented => {
            CallError::Unreached(format!("not a toolrpc.ToolExecutor endpoint ({why})"))
        }
        code => CallError::Failed(format!("{code:?}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_unreached_and_the_channel_is_reused_until_evicted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Pool::new(Duration::from_secs(2), 1024);
        let request = || CallFunctionRequest { tool_name: "echo".into(), input: vec![] };
        let err = pool.call(&endpoint, request(), Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, CallError::Unreached(_)), "{err:?}");
        assert_eq!(pool.len(), 1);
        let _ = pool.call(&endpoint, request(), Duration::from_secs(5)).await;
        assert_eq!(pool.len(), 1, "one channel per endpoint");
        pool.evict(&endpoint);
        assert!(pool.is_empty());
        let err = pool.call("bad endpoint", request(), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, CallError::Unreached(_)), "{err:?}");
    }
}
