//! Federation: replicating the registry to every peer over libp2p, and gossiping each node's
//! liveness and load.
//!
//! Not built yet (a documented skeleton). What it will do, and the store pieces it will use:
//! one task owns the libp2p swarm (QUIC and TCP, gossipsub, identify, kademlia, mDNS,
//! request-response); it follows the store's change feed (`Store::changes_since`,
//! `Store::subscribe`) to publish local writes, and hands received envelopes to the store's merge
//! rule (last writer wins by the envelope's hybrid logical clock, ties by node id; deletes as
//! tombstones). It must never write to the store except through that merge, and never serve HTTP.

#![forbid(unsafe_code)]
