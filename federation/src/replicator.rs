//! Everything between the store and the swarm: publishing this node's writes, checking and
//! merging what peers send, answering and running anti-entropy, collecting old tombstones, and
//! keeping the member bindings in step with the store. Store calls block, so they run on the
//! blocking pool; the swarm task is only ever sent commands. What peers send is handled by a
//! fixed number of workers over a bounded queue: a flood waits, or is dropped and counted,
//! and never spawns a task per message.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridnode_store::{Collection, Member, Merged, now_ms};
use libp2p::PeerId;
use libp2p::futures::StreamExt;
use libp2p::gossipsub::MessageAcceptance;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::authority;
use crate::rejections::{Reason, Rejection};
use crate::swarm::{Command, Inbound, Topic};
use crate::wire::{
    FETCH_REPLY_BYTES, Gossip, Key, MAX_FETCH_KEYS, MAX_GOSSIP_BYTES, MAX_GOSSIP_ITEMS,
    MAX_SUMMARY_BUCKETS, MAX_VERSION_BYTES, Summary, SyncRequest, SyncResponse, Version,
};
use crate::{Event, Shared, Stats};

/// Changes read from the feed per step.
const FEED_BATCH: usize = 1024;
/// Announced versions fetched at once, and how long one fetch may take.
pub(crate) const ANNOUNCE_FETCHES: usize = 4;
const ANNOUNCE_FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Messages from peers handled at once.
pub(crate) const INBOUND_WORKERS: usize = 8;
/// A sync request refused because the peer has not admitted us yet is tried again this often.
const NOT_ADMITTED_RETRY: Duration = Duration::from_millis(300);
/// The answer a node gives to a sync request from a peer it has not admitted.
pub(crate) const NOT_ADMITTED: &str = "not admitted";

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
            SyncResponse::Refused(reason) if reason == NOT_ADMITTED => Err(NOT_ADMITTED.into()),
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

/// What start-up does before the federation's tasks run (blocking: call it on the blocking
/// pool). Versions written before versions were signed (a store from an older release) are
/// signed, so they travel like every other; the member bindings are read; and this node binds
/// its id to its key if the store does not already.
pub(crate) fn prepare(shared: &Shared) -> gridnode_store::Result<()> {
    let done = shared.store.sign_unsigned()?;
    if done != gridnode_store::Resigned::default() {
        info!(
            "signed the versions held from before versions were signed: {} of this node's, \
             {} of other nodes' written again as this node's, {} node-local tools of other \
             nodes dropped (their nodes announce them again)",
            done.signed, done.restamped, done.dropped
        );
    }
    // This node's own binding first: a full table must not leave it out.
    bind_self(shared, None)?;
    let members = shared.store.live::<Member>().collect::<Result<Vec<_>, _>>()?;
    let mut bindings = shared.bindings_mut();
    for member in members.iter().filter(|m| m.node_id != shared.store.node_id()) {
        if !bindings.set(&member.node_id, Some(member)) {
            warn!("member '{}' is not bound: the member table is full", member.node_id);
        }
    }
    Ok(())
}

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
        let mut members = Vec::new();
        {
            let mut versions = shared.versions();
            for change in &changes {
                let key = Key { collection: change.collection, id: change.id.clone() };
                versions.set(key.clone(), &change.hlc, change.tombstone);
                if change.collection == Collection::Members as u8 {
                    members.push(change.id.clone());
                }
                if change.hlc.node == shared.store.node_id() {
                    own.push((key, change.hlc.clone()));
                }
            }
        }
        if !members.is_empty() {
            let rebinding = shared.clone();
            let rebound = tokio::task::spawn_blocking(move || {
                for node_id in members {
                    refresh_binding(&rebinding, &node_id)?;
                }
                bind_self(&rebinding, None)
            });
            if let Ok(Err(e)) = rebound.await {
                warn!("cannot read the member records: {e}");
            }
        }
        after = changes.last().map_or(after, |c| c.seq);
        if !own.is_empty() {
            publish(&shared, &client, own).await;
        }
        shared.stats.followed(after);
    }
}

/// Sets `node_id`'s binding from the store's member record.
/// The store is read under the table's lock, so two workers cannot leave an older record bound.
/// A released id leaves the peer table too. Versions refused for good are remembered no longer
/// (a record a member could not write may be its to write now).
fn refresh_binding(shared: &Shared, node_id: &str) -> gridnode_store::Result<()> {
    {
        let mut bindings = shared.bindings_mut();
        let member = shared.store.try_get::<Member>(node_id)?;
        if member.is_none() {
            warn!("node id '{node_id}' was released: a new key may claim it");
            shared.peers_mut().forget(node_id);
        }
        if !bindings.set(node_id, member.as_ref()) {
            warn!("member '{node_id}' is not bound: its record names no key, or the table is full");
        }
    }
    shared.refused().clear();
    Ok(())
}

/// Writes this node's member record when the store does not bind its id to its key (the first
/// start), or when a peer sent a version of it newer than the one held (`seen`: an admin's
/// `cluster forget` of this node, another key's claim) — newer still, so the cluster binds the
/// id to this node's key again; and binds it here.
fn bind_self(shared: &Shared, seen: Option<&gridnode_store::Hlc>) -> gridnode_store::Result<()> {
    let node_id = shared.store.node_id();
    let member = Member { node_id: node_id.to_owned(), peer_id: shared.peer_id.to_string() };
    let held = shared.store.envelope::<Member>(node_id)?;
    let outdated = seen.filter(|seen| held.as_ref().is_none_or(|h| h.header.hlc < **seen));
    let bound = held.and_then(|h| h.into_live()).as_ref() == Some(&member);
    if !bound || outdated.is_some() {
        if let Some(seen) = outdated {
            shared.store.observe(seen);
            warn!("a peer released or claimed this node's id '{node_id}': binding it again");
        }
        shared.store.put(&member)?;
        info!("bound node id '{node_id}' to this node's key (peer {})", shared.peer_id);
    }
    shared.bindings_mut().set(node_id, Some(&member));
    Ok(())
}

/// Publishes this node's new versions: batched into messages of at most [`MAX_GOSSIP_BYTES`];
/// a version too large for one is announced by key, and peers fetch it.
async fn publish(shared: &Arc<Shared>, client: &Client, own: Vec<(Key, gridnode_store::Hlc)>) {
    let store = shared.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        own.into_iter()
            .filter_map(|(key, hlc)| {
                let signed = store.signed_version(key.collection()?, &key.id).ok()??;
                // A newer write of the same record follows in the feed; publish that one.
                let header =
                    gridnode_store::decode_header(key.collection()?, &signed.envelope).ok()?;
                let version =
                    Version { key, envelope: signed.envelope, signature: signed.signature };
                (header.hlc == hlc).then_some((version, header))
            })
            .collect::<Vec<_>>()
    });
    let Ok(versions) = read.await else { return };
    let mut batch: Vec<Version> = Vec::new();
    let mut batch_bytes = 0;
    let mut announce: Vec<Summary> = Vec::new();
    let budget = MAX_GOSSIP_BYTES - 1024;
    for (version, header) in versions {
        let size = version.envelope.len() + version.signature.len() + version.key.id.len() + 16;
        if version.envelope.len() > MAX_VERSION_BYTES {
            warn!("'{}' is over {MAX_VERSION_BYTES} bytes: it does not replicate", version.key.id);
            continue;
        }
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
                    data: shared.admission.seal(Gossip::Versions(full).encode()),
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
                data: shared.admission.seal(Gossip::Versions(batch).encode()),
            })
            .await;
    }
    for chunk in announce.chunks(MAX_GOSSIP_ITEMS) {
        Stats::add(&shared.stats.published_versions, chunk.len());
        client
            .send(Command::Publish {
                topic: Topic::Changes,
                data: shared.admission.seal(Gossip::Announce(chunk.to_vec()).encode()),
            })
            .await;
    }
}

type Syncing = Arc<std::sync::Mutex<HashSet<PeerId>>>;

/// Handles what the swarm passes on, [`INBOUND_WORKERS`] messages at a time, and runs
/// anti-entropy and tombstone collection on their timers.
pub(crate) async fn serve(shared: Arc<Shared>, client: Client, inbound: mpsc::Receiver<Inbound>) {
    let syncing: Syncing = Arc::default();
    let mut ready = shared.ready.subscribe();
    let _ = ready.wait_for(|ready| *ready).await;
    let messages = libp2p::futures::stream::unfold(inbound, |mut inbound| async move {
        inbound.recv().await.map(|message| (message, inbound))
    });
    let handle = messages.for_each_concurrent(INBOUND_WORKERS, |message| {
        handle(&shared, &client, &syncing, message)
    });
    tokio::select! {
        () = handle => {}
        () = timers(&shared, &client, &syncing) => {}
    }
}

async fn handle(shared: &Arc<Shared>, client: &Client, syncing: &Syncing, message: Inbound) {
    match message {
        Inbound::Versions { via, message, versions } => {
            let merged = merge(shared, versions, via).await;
            client.send(Command::Validated { message, via, acceptance: merged.verdict }).await;
            // An author we have not bound yet (its member record has not reached us): the peer
            // that passed the versions on knows it; a sync brings both now, not next round.
            if merged.unbound {
                start_sync(shared, client, syncing, via);
            }
        }
        Inbound::Announce { origin, via, message, summaries } => {
            // Announced versions are fetched before the message is forwarded, off the workers
            // (a peer that never answers must not hold them) and a few at a time; past that the
            // message is dropped and anti-entropy brings the versions.
            let Ok(slot) = shared.announce_fetches.clone().try_acquire_owned() else {
                let acceptance = MessageAcceptance::Ignore;
                client.send(Command::Validated { message, via, acceptance }).await;
                return;
            };
            let (wanted, _) = wanted(shared, summaries);
            let from = if shared.is_admitted(&origin) { origin } else { via };
            let (shared, client) = (shared.clone(), client.clone());
            tokio::spawn(async move {
                let fetched = tokio::time::timeout(
                    ANNOUNCE_FETCH_TIMEOUT,
                    fetch(&shared, &client, from, wanted),
                );
                let acceptance = match fetched.await {
                    Ok(Ok(_)) => MessageAcceptance::Accept,
                    Ok(Err(e)) => {
                        debug!("cannot fetch announced versions from {from}: {e}");
                        MessageAcceptance::Ignore
                    }
                    Err(_) => MessageAcceptance::Ignore,
                };
                client.send(Command::Validated { message, via, acceptance }).await;
                drop(slot);
            });
        }
        Inbound::Request { peer, request, channel } => {
            let response = answer(shared, request).await;
            debug!("answering a sync request from {peer}");
            client.send(Command::Respond { channel, response }).await;
        }
        Inbound::Admitted(peer) => start_sync(shared, client, syncing, peer),
    }
}

async fn timers(shared: &Arc<Shared>, client: &Client, syncing: &Syncing) {
    let mut rounds = tokio::time::interval(shared.anti_entropy_interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collect = tokio::time::interval(
        shared.tombstone_ttl.clamp(Duration::from_secs(1), Duration::from_secs(3600)),
    );
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = rounds.tick() => {
                for peer in shared.connected_peers() {
                    start_sync(shared, client, syncing, peer);
                }
            }
            _ = collect.tick() => collect_tombstones(shared).await,
        }
    }
}

/// Starts an anti-entropy session with `peer` unless one is running.
fn start_sync(shared: &Arc<Shared>, client: &Client, syncing: &Syncing, peer: PeerId) {
    if !syncing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(peer) {
        return;
    }
    let (shared, client, syncing) = (shared.clone(), client.clone(), syncing.clone());
    // One session per admitted peer at most: bounded by the connection limits.
    tokio::spawn(async move {
        let mut outcome = sync_with(&shared, &client, peer).await;
        // Admission runs both ways at once: the peer may not have admitted us yet.
        for _ in 0..5 {
            if !matches!(&outcome, Err(e) if e == NOT_ADMITTED) {
                break;
            }
            tokio::time::sleep(NOT_ADMITTED_RETRY).await;
            outcome = sync_with(&shared, &client, peer).await;
        }
        match outcome {
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
///
/// A version whose author is not bound yet is left for later; when the session itself bound new
/// members (their records sit in other buckets), it runs once more to take their versions now.
async fn sync_with(shared: &Arc<Shared>, client: &Client, peer: PeerId) -> Result<usize, String> {
    let mut merged = 0;
    for _pass in 0..2 {
        let members_before = shared.bindings().len();
        let digest = shared.versions().digest().buckets().to_vec();
        let differing = match client.request(peer, SyncRequest::Digest(digest)).await? {
            SyncResponse::Differing(buckets) => buckets,
            other => return Err(format!("unexpected answer to a digest: {}", name(&other))),
        };
        let mut left_unbound = false;
        for chunk in differing.chunks(MAX_SUMMARY_BUCKETS / 2) {
            let request = SyncRequest::Summaries(chunk.to_vec());
            let summaries = match client.request(peer, request).await? {
                SyncResponse::Summaries(summaries) => summaries,
                other => return Err(format!("unexpected answer to summaries: {}", name(&other))),
            };
            let (keys, unbound) = wanted(shared, summaries);
            left_unbound |= unbound;
            merged += fetch(shared, client, peer, keys).await?;
        }
        if !left_unbound || shared.bindings().len() == members_before {
            break;
        }
    }
    Ok(merged)
}

/// The keys among `summaries` that the peer holds newer versions of, and that we would take from
/// it: not refused for good before, and passing the checks a summary allows. Also whether any
/// was left out only because its author is not bound (yet).
fn wanted(shared: &Shared, summaries: Vec<Summary>) -> (Vec<Key>, bool) {
    let horizon = now_ms().saturating_sub(shared.tombstone_ttl.as_millis() as u64);
    let versions = shared.versions();
    let bindings = shared.bindings();
    let refused = shared.refused();
    let own = shared.store.node_id();
    let mut unbound = false;
    let keys = summaries
        .into_iter()
        .filter(|s| versions.get(&s.key).is_none_or(|held| held < &s.hlc))
        // A tombstone past the horizon for a record we never had: it is being collected.
        .filter(|s| !(s.tombstone && s.hlc.wall_ms < horizon && versions.get(&s.key).is_none()))
        .filter(|s| !refused.contains(&(s.key.clone(), s.hlc.clone())))
        .filter(|s| match authority::check_summary(s, own, &bindings) {
            Ok(()) => true,
            Err(rejection) => {
                unbound |= rejection.reason == Reason::Unbound;
                false
            }
        })
        .map(|s| s.key)
        .collect();
    (keys, unbound)
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
        merged += merge(shared, versions, peer).await.applied;
        keys = rest;
        if got < asked {
            // The answer was cut at its size limit; what was left is asked for next round.
            break;
        }
    }
    Ok(merged)
}

/// What merging a lot of versions did.
struct MergeOutcome {
    /// How many changed the store.
    applied: usize,
    /// Whether the lot may be forwarded: every version passed its checks.
    verdict: MessageAcceptance,
    /// Whether any was refused because its author is not bound here.
    unbound: bool,
}

/// Checks and merges versions from `from` (the peer that passed them on).
async fn merge(shared: &Arc<Shared>, versions: Vec<Version>, from: PeerId) -> MergeOutcome {
    let task_shared = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let shared = task_shared;
        let (mut applied, mut rejected) = (Vec::new(), Vec::new());
        // Member records first: a batch may bind the author of the versions that follow.
        let (members, others): (Vec<_>, Vec<_>) =
            versions.into_iter().partition(|v| v.key.collection() == Some(Collection::Members));
        for version in members.into_iter().chain(others) {
            match merge_one(&shared, &version) {
                Ok(true) => applied.push(version.key),
                Ok(false) => {}
                Err(rejection) => rejected.push(rejection),
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
    let Ok((applied, rejected)) = outcome else {
        return MergeOutcome { applied: 0, verdict: MessageAcceptance::Ignore, unbound: false };
    };
    Stats::add(&shared.stats.merged_versions, applied.len());
    let verdict =
        if rejected.is_empty() { MessageAcceptance::Accept } else { MessageAcceptance::Reject };
    let unbound = rejected.iter().any(|r| r.reason == Reason::Unbound);
    for rejection in rejected {
        shared.reject(from, rejection);
    }
    let count = applied.len();
    for key in applied {
        let _ = shared.events.send(Event::Merged { key, from });
    }
    MergeOutcome { applied: count, verdict, unbound }
}

/// Checks and merges one version: `Ok(true)` when it changed the store. A version its author
/// signed that the store still refuses (an invalid record, one too large) is remembered, so
/// anti-entropy does not fetch it again; a version refused before its signature was checked is
/// not (a relay could otherwise poison the memory for a version it never had).
fn merge_one(shared: &Shared, version: &Version) -> Result<bool, Rejection> {
    let own = shared.store.node_id();
    let collection = version.key.collection();
    if collection == Some(Collection::Members)
        && version.key.id == own
        && let Ok(header) = gridnode_store::decode_header(Collection::Members, &version.envelope)
        && let Err(e) = bind_self(shared, Some(&header.hlc))
    {
        warn!("cannot bind this node's id again: {e}");
    }
    let header = authority::check(version, own, &shared.bindings())?;
    let collection = collection.unwrap_or(Collection::Tools);
    // An admin forgets gone nodes: a member heard from now cannot be released by another.
    if collection == Collection::Members
        && header.tombstone
        && header.hlc.node != version.key.id
        && shared.peers().is_alive(&version.key.id, Instant::now())
    {
        return Err(Rejection::new(
            Reason::Authority,
            format!("'{}' released member '{}', which is alive", header.hlc.node, version.key.id),
        ));
    }
    let signed = gridnode_store::SignedVersion {
        envelope: version.envelope.clone(),
        signature: version.signature.clone(),
    };
    match shared.store.merge_encoded(collection, &version.key.id, &signed) {
        Ok(Merged::Applied(_)) => {
            if collection == Collection::Members {
                // Bound now, not when the feed gets here: the versions that follow need it.
                refresh_binding(shared, &version.key.id)
                    .map_err(|e| Rejection::new(Reason::Invalid, e.to_string()))?;
            }
            Ok(true)
        }
        Ok(Merged::Ignored) => Ok(false),
        Err(e) => {
            shared.refused().insert(version.key.clone(), header.hlc);
            Err(Rejection::new(Reason::Invalid, format!("'{}': {e}", version.key.id)))
        }
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
                    let Ok(Some(signed)) = store.signed_version(collection, &key.id) else {
                        continue;
                    };
                    // Unsigned or oversized versions would be refused: they are not served.
                    if signed.signature.is_empty() || signed.envelope.len() > MAX_VERSION_BYTES {
                        continue;
                    }
                    bytes += signed.envelope.len() + signed.signature.len() + key.id.len();
                    if bytes > FETCH_REPLY_BYTES && !found.is_empty() {
                        break;
                    }
                    let (envelope, signature) = (signed.envelope, signed.signature);
                    found.push(Version { key, envelope, signature });
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
