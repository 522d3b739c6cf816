//! Federation: replicating the registry to every peer over libp2p, and gossiping each node's
//! liveness and load.
//!
//! What is here so far are the pure parts, with no I/O: [`digest`] (order-independent summaries
//! of which versions a node holds, for anti-entropy) and [`liveness`] (heartbeats and the
//! "silent for three intervals" rule). The swarm task that drives them — QUIC and TCP, gossipsub,
//! identify, kademlia, mDNS, request-response — is the federation issue's remaining work. It will
//! follow the store's change feed (`Store::changes_since`, `Store::subscribe`) to publish local
//! writes and hand received versions to `Store::merge` (last writer wins by HLC, ties by node id;
//! tombstones). It must never write to the store except through that merge, and never serve HTTP.

#![forbid(unsafe_code)]

pub mod digest;
pub mod liveness;
