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

/// How often an idle-but-busy connection is pinged, and how long the pong may take.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
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
    /// Signs each call as a member's hop.
    proof: crate::grpc::MemberProof,
    /// Peers are called over TLS when this node serves TLS.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Pool {
    pub fn new(
        connect_timeout: Duration,
        max_output_bytes: usize,
        proof: crate::grpc::MemberProof,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Pool {
        Pool {
            channels: RwLock::default(),
            connect_timeout,
            max_response_bytes: max_output_bytes.saturating_add(1024 * 1024),
            proof,
            tls,
        }
    }

    /// Calls `ToolExecutor/CallFunction` at `endpoint` (`host:port`), waiting at most `timeout`.
    /// Calls `endpoint` as the member hop of a plan made by node `origin` (the request says
    /// so in its [`HOP`](crate::grpc::HOP) metadata, proven by [`MemberProof`](crate::grpc::MemberProof)).
    pub async fn call(
        &self,
        endpoint: &str,
        request: CallFunctionRequest,
        origin: &str,
        timeout: Duration,
    ) -> Result<CallFunctionResponse, CallError> {
        let proof = self.proof.sign(origin, &request.tool_name, &request.input);
        let mut request = tonic::Request::new(request);
        if let Ok(origin) = origin.parse() {
            request.metadata_mut().insert(crate::grpc::HOP, origin);
        }
        if let Some(Ok(proof)) = proof.map(|p| p.parse()) {
            request.metadata_mut().insert(crate::grpc::PROOF, proof);
        }
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
        let unusable = |e: &dyn std::fmt::Display| {
            CallError::Unreached(format!("'{endpoint}' is not a usable endpoint: {e}"))
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut channel =
            Endpoint::from_shared(format!("{scheme}://{endpoint}")).map_err(|e| unusable(&e))?;
        if let Some(tls) = &self.tls {
            channel = channel.tls_config(tls.clone()).map_err(|e| unusable(&e))?;
        }
        let channel = channel
            .connect_timeout(self.connect_timeout)
            // A connection whose peer vanished (half-open) fails within seconds, not a call
            // timeout later.
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use gridnode_proto::{ToolExecutor, ToolExecutorServer};

    use super::*;

    /// A ToolExecutor that returns its input, and says whether the call was a member hop.
    struct Echo;

    #[tonic::async_trait]
    impl ToolExecutor for Echo {
        async fn call_function(
            &self,
            request: tonic::Request<CallFunctionRequest>,
        ) -> Result<tonic::Response<CallFunctionResponse>, tonic::Status> {
            let hop = request.metadata().get(crate::grpc::HOP).is_some();
            Ok(tonic::Response::new(CallFunctionResponse {
                success: hop,
                output: request.into_inner().input,
                ..CallFunctionResponse::default()
            }))
        }
    }

    /// A ToolExecutor behind a forwarder that counts the TCP connections made to it.
    async fn counted_runtime() -> (String, Arc<AtomicUsize>) {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(server);
        let service = ToolExecutorServer::new(Echo);
        tokio::spawn(
            tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming),
        );
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = front.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = front.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        (endpoint, connections)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_share_one_connection_per_endpoint() {
        let (endpoint, connections) = counted_runtime().await;
        let pool =
            Arc::new(Pool::new(Duration::from_secs(2), 1024 * 1024, Default::default(), None));
        let call = |pool: Arc<Pool>, endpoint: String, i: usize| async move {
            let request = CallFunctionRequest { tool_name: "echo".into(), input: vec![i as u8] };
            pool.call(&endpoint, request, "origin", Duration::from_secs(5)).await
        };
        for i in 0..10 {
            let response = call(pool.clone(), endpoint.clone(), i).await.unwrap();
            assert_eq!(response.output, vec![i as u8]);
            assert!(response.success, "the call says it is a member hop");
        }
        let concurrent: Vec<_> =
            (0..32).map(|i| tokio::spawn(call(pool.clone(), endpoint.clone(), i))).collect();
        for (i, call) in concurrent.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().unwrap().output, vec![i as u8]);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1, "42 calls, one connection");
        assert_eq!(pool.len(), 1);
        // After an eviction the next call connects afresh.
        pool.evict(&endpoint);
        call(pool.clone(), endpoint.clone(), 0).await.unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreached_and_the_channel_is_reused_until_evicted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Pool::new(Duration::from_secs(2), 1024, Default::default(), None);
        let request = || CallFunctionRequest { tool_name: "echo".into(), input: vec![] };
        let err =
            pool.call(&endpoint, request(), "origin", Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, CallError::Unreached(_)), "{err:?}");
        assert_eq!(pool.len(), 1);
        let _ = pool.call(&endpoint, request(), "origin", Duration::from_secs(5)).await;
        assert_eq!(pool.len(), 1, "one channel per endpoint");
        pool.evict(&endpoint);
        assert!(pool.is_empty());
        let err = pool
            .call("bad endpoint", request(), "origin", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Unreached(_)), "{err:?}");
    }
}
