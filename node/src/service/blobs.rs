//! Blobs (bundle code archives) by sha256: from this node's store, else from a peer that has
//! it. Blobs are not replicated eagerly — most nodes never run most bundles — so a node fetches
//! one the first time it needs it, checks it against its sha256, and keeps it.

use std::time::Duration;

use axum::body::Bytes;
use gridnode_store::{Store, sha256_hex};

use crate::error::{Error, Result};
use crate::service::cluster::Cluster;
use crate::service::remote::Remote;

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Store,
    cluster: Cluster,
    remote: Remote,
    /// How long a peer may take to send a blob.
    timeout: Duration,
    /// The largest blob fetched (the upload limit).
    max_bytes: usize,
    /// This node's base URL (never asked).
    me: String,
    /// Proves this node's fetches to peers that guard their blobs.
    member_proof: crate::grpc::MemberProof,
}

impl Blobs {
    pub fn new(
        store: Store,
        cluster: Cluster,
        remote: Remote,
        timeout: Duration,
        settings: &crate::service::Settings,
        member_proof: crate::grpc::MemberProof,
    ) -> Blobs {
        let max_bytes = settings.limits.max_upload_bytes as usize;
        let me = settings.advertise_http.clone();
        Blobs { store, cluster, remote, timeout, max_bytes, me, member_proof }
    }

    /// The blob if this node stores it.
    pub async fn local(&self, sha256: String) -> Result<Option<Bytes>> {
        crate::service::blocking(&self.store, move |store| Ok(store.get_blob(&sha256)?)).await
    }

    /// `GET /blobs/{sha256}`: with `local_only` (what peers ask each other, so no request goes
    /// round) from this node or 404; else also fetched from a peer, and kept.
    pub async fn get(&self, sha256: String, local_only: bool) -> Result<Bytes> {
        check_sha(&sha256)?;
        if !local_only {
            return self.fetch(&sha256, None).await;
        }
        match self.local(sha256.clone()).await? {
            Some(bytes) => Ok(bytes),
            None => Err(Error::NotFound(format!("blob '{sha256}' not found"))),
        }
    }

    /// The blob from this node's store, else from `origin` (the base URL of the node that
    /// handed out its link) and then every live peer; a fetched blob is checked against its
    /// sha256 and stored here. 404 when no one has it; the message lists what was tried.
    pub async fn fetch(&self, sha256: &str, origin: Option<&str>) -> Result<Bytes> {
        // It goes into URLs sent to peers: nothing but a sha256 may.
        check_sha(sha256)?;
        if let Some(bytes) = self.local(sha256.to_owned()).await? {
            return Ok(bytes);
        }
        let mut tried = Vec::new();
        // Peers with access control on let a member's fetch through on this proof.
        let me = self.cluster.node_id().to_owned();
        let proof = self.member_proof.sign(&me, BLOB_PROOF, sha256.as_bytes());
        let proof = proof.as_deref().map(|proof| (me.as_str(), proof));
        for (base, member) in self.sources(origin) {
            let url = format!("{base}/blobs/{sha256}?local=true");
            let max = self.max_bytes;
            // The proof goes to members' own addresses only: anyone else could replay it.
            let proof = proof.filter(|_| member);
            let bytes = match self.remote.get(&url, self.timeout, max, member, proof).await {
                Ok(bytes) => Bytes::from(bytes),
                Err(why) => {
                    tried.push(format!("{base}: {why}"));
                    continue;
                }
            };
            // Hashing megabytes is blocking work: it runs beside the store write.
            let (keep, expected) = (bytes.clone(), sha256.to_owned());
            let found = crate::service::blocking(&self.store, move |store| {
                let found = sha256_hex(&keep);
                if found == expected {
                    store.put_blob(&keep)?;
                }
                Ok(found)
            })
            .await?;
            if found == sha256 {
                tracing::info!(%sha256, %base, "blob fetched from a peer");
                return Ok(bytes);
            }
            tracing::warn!(%sha256, %base, "a peer sent a blob that does not match its sha256");
            tried.push(format!(
                "{base} sent {} bytes whose sha256 is {found}, refused",
                bytes.len()
            ));
        }
        Err(Error::NotFound(if tried.is_empty() {
            format!("blob '{sha256}' not found: it is not stored here and no peer is alive to ask")
        } else {
            format!("blob '{sha256}' not found here or on any peer ({})", tried.join("; "))
        }))
    }

    /// Where to ask: the origin first, then the live peers; never this node. Each with whether
    /// it is a live member's own advertised address (reached outside the egress rules); the
    /// origin, which a record's link names, is held to them unless it is one.
    fn sources(&self, origin: Option<&str>) -> Vec<(String, bool)> {
        let me_id = self.cluster.node_id().to_owned();
        let members: Vec<String> = self
            .cluster
            .peers()
            .into_iter()
            .filter(|p| p.alive && p.heartbeat.node_id != me_id && !p.heartbeat.http.is_empty())
            .map(|p| p.heartbeat.http.trim_end_matches('/').to_owned())
            .collect();
        let origin = origin.map(|base| (base.to_owned(), members.iter().any(|m| m == base)));
        let mut sources: Vec<(String, bool)> = origin.into_iter().collect();
        sources.extend(members.into_iter().map(|base| (base, true)));
        let mut seen = std::collections::HashSet::new();
        sources.retain(|(base, _)| *base != self.me && seen.insert(base.clone()));
        sources
    }
}

/// What a member's blob fetch proves it asks for, in place of a tool name: no tool can have it
/// (tool names are ids), so a blob proof is never a gRPC hop's.
pub const BLOB_PROOF: &str = "\0gridnode-blob";

fn check_sha(sha256: &str) -> Result<()> {
    if gridnode_store::is_sha256_hex(sha256) {
        return Ok(());
    }
    Err(Error::BadRequest(format!(
        "'{}' is not a sha256: blobs are named by 64 lowercase hex digits",
        sha256.chars().take(80).collect::<String>().escape_default()
    )))
}
