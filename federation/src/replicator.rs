//! Everything between the store and the swarm: publishing this node's writes, merging what peers
//! send, answering and running anti-entropy, collecting old tombstones. Store calls block, so
//! they run on the blocking pool; the swarm task is only ever sent commands.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gridnode_store::{Header, Merged, decode_header, now_ms};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::authority;
use crate::swarm::{Command, Inbound, Topic};
use crate::wire::{
    FETCH_REPLY_BYTES, Gossip, Key, MAX_FETCH_KEYS, MAX_GOSSIP_BYTES, MAX_GOSSIP_ITEMS,
    MAX_SUMMARY_BUCKETS, Summary, SyncRequest, SyncResponse, Version,
};
use crate::{Event, Shared, Stats};

/// Changes read from the feed per step.
const FEED_BATCH: usize = 1024;

/// Talks to the swarm task.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub commands: mpsc::Sender<Command>,
}

impl Client {
    pub async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request { peer, request, reply })
            .await
            .map_err(|_| "the federation has stopped".to_string())?;
        match answer.await.map_err(|_| "the federation has stopped".to_string())?? {
            SyncResponse::Refused(reason) => Err(format!("peer {peer} refused: {reason}")),
            response => Ok(response),
        }
    }

    async fn send(&self, command: Command) {
        let _ = self.commands.send(command).await;
    }
}

/// Builds the version map from the store, then follows the feed: every change moves the map,
/// and this node's own writes are published.
/// Versions set in the version map per lock while loading it at start.
const LOAD_BATCH: usize = 4096;

pub(crate) async fn follow_feed(shared: Arc<Shared>, client: Client) {
    let mut wake = shared.store.subscribe();
    let start = shared.store.last_seq();
    // Older changes reach peers through anti-entropy: the backlog starts here.
    shared.stats.followed(start);
    // Every version into the version map as the store is read, a batch per lock, so the store
    // is never held twice in memory and merges are not kept waiting.
    let loading = shared.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(LOAD_BATCH);
        let mut items = loading.store.each_version().peekable();
        while items.peek().is_some() {
            for item in items.by_ref().take(LOAD_BATCH) {
                batch.push(item?);
            }
            let mut versions = loading.versions();
            for (collection, id, header) in batch.drain(..) {
                versions.set(Key::new(collection, id), &header.hlc, header.tombstone);
            }
        }
        Ok::<_, gridnode_store::Error>(())
    })
    .await;
    match loaded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return warn!("federation cannot read the store: {e}"),
        Err(_) => return,
    }
    shared.ready.send_replace(true);
    let mut after = start;
    loop {
        let store = shared.store.clone();
        let changes =
            match tokio::task::spawn_blocking(move || store.changes_since(after, FEED_BATCH)).await
            {
                Ok(Ok(changes)) => changes,
                Ok(Err(e)) => {
                    warn!("federation cannot read the change feed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            };
        if changes.is_empty() {
            shared.stats.followed(after);
            if wake.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut own = Vec::new();
        {
            let mut versions = shared.versions();
            for change in &changes {
                let key = Key { collection: change.collection, id: change.id.clone() };
                versions.set(key.clone(), &change.hlc, change.tombstone);
                if change.hlc.node == shared.store.node_id() {
                    own.push((key, change.hlc.clone()));
                }
            }
        }
        after = changes.last().map_or(after, |c| c.seq);
        if !own.is_empty() {
            publish(&shared, &client, own).await;
        }
        shared.stats.followed(after);
    }
}

/// Publishes this node's new versions: batched into messages of at most [`MAX_GOSSIP_BYTES`];
/// a version too large for one is announced by key, and peers fetch it.
async fn publish(shared: &Arc<Shared>, client: &Client, own: Vec<(Key, gridnode_store::Hlc)>) {
    let store = shared.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        own.into_iter()
            .filter_map(|(key, hlc)| {
                let bytes = store.encoded_version(key.collection()?, &key.id).ok()??;
                // A newer write of the same record follows in the feed; publish that one.
                let header = decode_header(key.collection()?, &bytes).ok()?;
                (header.hlc == hlc).then_some((Version { key, envelope: bytes }, header))
            })
            .collect::<Vec<_>>()
    });
    let Ok(versions) = read.await else { return };
    let mut batch: Vec<Version> = Vec::new();
    let mut batch_bytes = 0;
    let mut announce: Vec<Summary> = Vec::new();
    let budget = MAX_GOSSIP_BYTES - 1024;
    for (version, header) in versions {
        let size = version.envelope.len() + version.key.id.len() + 16;
        if size > budget {
            announce.push(Summary {
                key: version.key,
                hlc: header.hlc,
                tombstone: header.tombstone,
            });
            continue;
        }
        if batch_bytes + size > budget || batch.len() == MAX_GOSSIP_ITEMS {
            let full = std::mem::take(&mut batch);
            client
                .send(Command::Publish {
                    topic: Topic::Changes,
                    data: Gossip::Versions(full).encode(),
                })
                .await;
            batch_bytes = 0;
        }
        batch_bytes += size;
        Stats::add(&shared.stats.published_versions, 1);
        batch.push(version);
    }
    if !batch.is_empty() {
        client
            .send(Command::Publish {
                topic: Topic::Changes,
                data: Gossip::Versions(batch).encode(),
            })
            .await;
    }
    for chunk in announce.chunks(MAX_GOSSIP_ITEMS) {
        Stats::add(&shared.stats.published_versions, chunk.len());
        client
            .send(Command::Publish {
                topic: Topic::Changes,
                data: Gossip::Announce(chunk.to_vec()).encode(),
            })
            .await;
    }
}

/// Handles what the swarm passes on, and runs anti-entropy on its timer.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    client: Client,
    mut inbound: mpsc::Receiver<Inbound>,
) {
    let syncing: Arc<std::sync::Mutex<HashSet<PeerId>>> = Arc::default();
    let mut rounds = tokio::time::interval(shared.anti_entropy_interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collect = tokio::time::interval(
        shared.tombstone_ttl.clamp(Duration::from_secs(1), Duration::from_secs(3600)),
    );
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ready = shared.ready.subscribe();
    let _ = ready.wait_for(|ready| *ready).await;
    loop {
        tokio::select! {
            message = inbound.recv() => match message {
                None => return,
                Some(Inbound::Gossip { source, gossip: Gossip::Versions(versions) }) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { merge(&shared, versions, source).await });
                }
                Some(Inbound::Gossip { source, gossip: Gossip::Announce(summaries) }) => {
                    let (shared, client) = (shared.clone(), client.clone());
                    tokio::spawn(async move {
                        let wanted = wanted(&shared, summaries, source);
                        if let Err(e) = fetch(&shared, &client, source, wanted).await {
                            debug!("cannot fetch announced versions from {source}: {e}");
                        }
                    });
                }
                Some(Inbound::Gossip { .. }) => {}
                Some(Inbound::Request { peer, request, channel }) => {
                    let (shared, client) = (shared.clone(), client.clone());
                    tokio::spawn(async move {
                        let response = answer(&shared, request).await;
                        debug!("answering a sync request from {peer}");
                        client.send(Command::Respond { channel, response }).await;
                    });
                }
                Some(Inbound::Subscribed(peer)) => start_sync(&shared, &client, &syncing, peer),
            },
            _ = rounds.tick() => {
                for peer in shared.connected_peers() {
                    start_sync(&shared, &client, &syncing, peer);
                }
            }
            _ = collect.tick() => collect_tombstones(&shared).await,
        }
    }
}

/// Starts an anti-entropy session with `peer` unless one is running.
fn start_sync(
    shared: &Arc<Shared>,
    client: &Client,
    syncing: &Arc<std::sync::Mutex<HashSet<PeerId>>>,
    peer: PeerId,
) {
    if !syncing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(peer) {
        return;
    }
    let (shared, client, syncing) = (shared.clone(), client.clone(), syncing.clone());
    tokio::spawn(async move {
        match sync_with(&shared, &client, peer).await {
            Ok(0) => {}
            Ok(fetched) => {
                info!("anti-entropy with {peer}: merged {fetched} versions");
                let _ = shared.events.send(Event::Synced { peer, fetched });
            }
            Err(e) => debug!("anti-entropy with {peer}: {e}"),
        }
        syncing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&peer);
    });
}

/// One anti-entropy session: compare digests, list the differing buckets, pull what is newer
/// there. Returns how many versions were merged.
async fn sync_with(shared: &Arc<Shared>, client: &Client, peer: PeerId) -> Result<usize, String> {
    let digest = shared.versions().digest().buckets().to_vec();
    let differing = match client.request(peer, SyncRequest::Digest(digest)).await? {
        SyncResponse::Differing(buckets) => buckets,
        other => return Err(format!("unexpected answer to a digest: {}", name(&other))),
    };
    let mut merged = 0;
    for chunk in differing.chunks(MAX_SUMMARY_BUCKETS / 2) {
        let summaries = match client.request(peer, SyncRequest::Summaries(chunk.to_vec())).await? {
            SyncResponse::Summaries(summaries) => summaries,
            other => return Err(format!("unexpected answer to summaries: {}", name(&other))),
        };
        let keys = wanted(shared, summaries, peer);
        merged += fetch(shared, client, peer, keys).await?;
    }
    Ok(merged)
}

/// The keys among `summaries` that `peer` holds newer versions of, and that we would take from it.
fn wanted(shared: &Shared, summaries: Vec<Summary>, peer: PeerId) -> Vec<Key> {
    let horizon = now_ms().saturating_sub(shared.tombstone_ttl.as_millis() as u64);
    let versions = shared.versions();
    let peers = shared.peers();
    let from = peer.to_string();
    summaries
        .into_iter()
        .filter(|s| versions.get(&s.key).is_none_or(|held| held < &s.hlc))
        // A tombstone past the horizon for a record we never had: it is being collected.
        .filter(|s| !(s.tombstone && s.hlc.wall_ms < horizon && versions.get(&s.key).is_none()))
        .filter(|s| authority::admit(&s.key, &s.hlc, &from, shared.store.node_id(), &peers).is_ok())
        .map(|s| s.key)
        .collect()
}

/// Fetches `keys` from `peer` and merges them; returns how many were applied.
async fn fetch(
    shared: &Arc<Shared>,
    client: &Client,
    peer: PeerId,
    mut keys: Vec<Key>,
) -> Result<usize, String> {
    let mut merged = 0;
    while !keys.is_empty() {
        let rest = keys.split_off(keys.len().min(MAX_FETCH_KEYS / 2));
        let asked = keys.len();
        let versions = match client.request(peer, SyncRequest::Fetch(keys)).await? {
            SyncResponse::Versions(versions) => versions,
            other => return Err(format!("unexpected answer to a fetch: {}", name(&other))),
        };
        if versions.is_empty() {
            break;
        }
        let got = versions.len();
        merged += merge(shared, versions, peer).await;
        keys = rest;
        if got < asked {
            // The answer was cut at its size limit; what was left is asked for next round.
            break;
        }
    }
    Ok(merged)
}

/// Merges versions from `from` after checking each one; returns how many were applied.
async fn merge(shared: &Arc<Shared>, versions: Vec<Version>, from: PeerId) -> usize {
    let task_shared = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let shared = task_shared;
        let from_text = from.to_string();
        let (mut applied, mut rejected) = (Vec::new(), Vec::new());
        for version in versions {
            match merge_one(&shared, &version, &from_text) {
                Ok(true) => applied.push(version.key),
                Ok(false) => {}
                Err(reason) => rejected.push(reason),
            }
        }
        if !applied.is_empty()
            && let Err(e) = shared.store.sync()
        {
            warn!("cannot flush merged versions: {e}");
        }
        (applied, rejected)
    })
    .await;
    let Ok((applied, rejected)) = outcome else { return 0 };
    Stats::add(&shared.stats.merged_versions, applied.len());
    Stats::add(&shared.stats.rejected, rejected.len());
    for reason in rejected {
        warn!("dropped a version from peer {from}: {reason}");
        let _ = shared.events.send(Event::Rejected { from, reason });
    }
    let count = applied.len();
    for key in applied {
        let _ = shared.events.send(Event::Merged { key, from });
    }
    count
}

/// Checks and merges one version: `Ok(true)` when it changed the store.
fn merge_one(shared: &Shared, version: &Version, from: &str) -> Result<bool, String> {
    let collection = version
        .key
        .collection()
        .ok_or_else(|| format!("unknown collection {}", version.key.collection))?;
    let Header { hlc, .. } =
        decode_header(collection, &version.envelope).map_err(|e| e.to_string())?;
    authority::admit(&version.key, &hlc, from, shared.store.node_id(), &shared.peers())?;
    match shared.store.merge_encoded(collection, &version.key.id, &version.envelope) {
        Ok(Merged::Applied(_)) => Ok(true),
        Ok(Merged::Ignored) => Ok(false),
        Err(e) => Err(format!("'{}': {e}", version.key.id)),
    }
}

/// Serves one anti-entropy request.
async fn answer(shared: &Arc<Shared>, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Digest(buckets) => {
            let Some(theirs) = crate::digest::Digest::from_buckets(buckets) else {
                return SyncResponse::Refused("a digest of the wrong size".into());
            };
            let differing = shared.versions().digest().differing(&theirs);
            SyncResponse::Differing(differing.into_iter().map(|b| b as u16).collect())
        }
        SyncRequest::Summaries(buckets) => {
            let versions = shared.versions();
            SyncResponse::Summaries(
                buckets.into_iter().flat_map(|b| versions.summaries(usize::from(b))).collect(),
            )
        }
        SyncRequest::Fetch(keys) => {
            let store = shared.store.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut found = Vec::new();
                let mut bytes = 0;
                for key in keys {
                    let Some(collection) = key.collection() else { continue };
                    let Ok(Some(envelope)) = store.encoded_version(collection, &key.id) else {
                        continue;
                    };
                    bytes += envelope.len() + key.id.len();
                    if bytes > FETCH_REPLY_BYTES && !found.is_empty() {
                        break;
                    }
                    found.push(Version { key, envelope });
                }
                found
            });
            match read.await {
                Ok(found) => {
                    Stats::add(
                        &shared.stats.sync_served_bytes,
                        found.iter().map(|v| v.envelope.len()).sum(),
                    );
                    SyncResponse::Versions(found)
                }
                Err(_) => SyncResponse::Refused("internal error".into()),
            }
        }
    }
}

/// Removes tombstones older than the configured time to live, and forgets them.
async fn collect_tombstones(shared: &Arc<Shared>) {
    let before = now_ms().saturating_sub(shared.tombstone_ttl.as_millis() as u64);
    let store = shared.store.clone();
    let Ok(result) = tokio::task::spawn_blocking(move || store.collect_tombstones(before)).await
    else {
        return;
    };
    match result {
        Ok(removed) if !removed.is_empty() => {
            info!("collected {} tombstones", removed.len());
            let mut versions = shared.versions();
            for (collection, id, hlc) in removed {
                versions.remove(&Key::new(collection, id), &hlc);
            }
        }
        Ok(_) => {}
        Err(e) => warn!("cannot collect tombstones: {e}"),
    }
}

fn name(response: &SyncResponse) -> &'static str {
    match response {
        SyncResponse::Differing(_) => "differing",
        SyncResponse::Summaries(_) => "summaries",
        SyncResponse::Versions(_) => "versions",
        SyncResponse::Refused(_) => "refused",
    }
}
