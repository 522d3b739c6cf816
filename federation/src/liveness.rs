//! Peer liveness from heartbeats: a node silent for [`MISSED_BEATS`] intervals is not alive. A
//! pure table — the swarm task feeds it heartbeats and the time; nothing here does I/O.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Heartbeats a node may miss before it counts as gone.
pub const MISSED_BEATS: u32 = 3;

/// What every node gossips about itself each interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: String,
    pub peer_id: String,
    /// The gRPC endpoint other nodes are told to call (`host:port`).
    pub grpc: String,
    /// The base URL of the node's REST API.
    pub http: String,
    pub version: String,
    pub load: Load,
    /// The node's libp2p listen addresses, so peers that hear of it can dial it directly.
    #[serde(default)]
    pub p2p: Vec<String>,
}

/// A node's load, as its heartbeat reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub in_flight_calls: u32,
}

/// One known peer, as `GET /peers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerView {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    pub alive: bool,
    pub last_seen_ms: u64,
}

/// The peers heard from, by node id.
#[derive(Debug, Clone)]
pub struct Peers {
    interval: Duration,
    seen: BTreeMap<String, (Heartbeat, Instant)>,
}

impl Peers {
    /// A table for heartbeats sent every `interval`.
    pub fn new(interval: Duration) -> Peers {
        Peers { interval, seen: BTreeMap::new() }
    }

    /// Records a heartbeat received at `now` from `source` (the peer that signed it). A node id
    /// is held by one peer at a time: a heartbeat claiming a node id whose holder is still
    /// alive is refused (a node cannot pose as another). A holder silent for three intervals
    /// gives its id up, so a node that lost its key can rejoin under its old id.
    pub fn admit(
        &mut self,
        heartbeat: Heartbeat,
        source: &str,
        now: Instant,
    ) -> Result<(), String> {
        if heartbeat.peer_id != source {
            return Err(format!(
                "a heartbeat for peer {} signed by peer {source}",
                heartbeat.peer_id
            ));
        }
        if let Some(holder) = self.holder(&heartbeat.node_id)
            && holder != source
            && self.is_alive(&heartbeat.node_id, now)
        {
            return Err(format!(
                "peer {source} claims node id '{}', held by live peer {holder}",
                heartbeat.node_id
            ));
        }
        self.observe(heartbeat, now);
        Ok(())
    }

    /// Records a heartbeat received at `now` without checks (this node's own). A node's latest
    /// heartbeat replaces its earlier one.
    pub fn observe(&mut self, heartbeat: Heartbeat, now: Instant) {
        self.seen.insert(heartbeat.node_id.clone(), (heartbeat, now));
    }

    /// Forgets `node_id` (its binding was released): the table holds bound members only.
    pub fn forget(&mut self, node_id: &str) {
        self.seen.remove(node_id);
    }

    /// The peer id that speaks for `node_id`, if it is a gridnode node heard from.
    pub fn holder(&self, node_id: &str) -> Option<&str> {
        self.seen.get(node_id).map(|(heartbeat, _)| heartbeat.peer_id.as_str())
    }

    /// Whether `node_id` was heard from within the last [`MISSED_BEATS`] intervals.
    pub fn is_alive(&self, node_id: &str, now: Instant) -> bool {
        self.seen
            .get(node_id)
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < self.silence())
    }

    /// Every known peer with its liveness, by node id.
    pub fn snapshot(&self, now: Instant) -> Vec<PeerView> {
        self.seen.values().map(|(heartbeat, at)| self.view_of(heartbeat, *at, now)).collect()
    }

    /// One known peer with its liveness.
    pub fn view(&self, node_id: &str, now: Instant) -> Option<PeerView> {
        self.seen.get(node_id).map(|(heartbeat, at)| self.view_of(heartbeat, *at, now))
    }

    fn view_of(&self, heartbeat: &Heartbeat, at: Instant, now: Instant) -> PeerView {
        let since = now.saturating_duration_since(at);
        PeerView {
            heartbeat: heartbeat.clone(),
            alive: since < self.silence(),
            last_seen_ms: since.as_millis() as u64,
        }
    }

    fn silence(&self) -> Duration {
        self.interval * MISSED_BEATS
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn beat(node: &str) -> Heartbeat {
        loaded(node, 0.0)
    }

    fn loaded(node: &str, cpu: f32) -> Heartbeat {
        Heartbeat {
            node_id: node.into(),
            peer_id: format!("peer-{node}"),
            grpc: "127.0.0.1:1".into(),
            http: "http://127.0.0.1:2".into(),
            version: "0.1.0".into(),
            load: Load { cpu_percent: cpu, ..Load::default() },
            p2p: vec![],
        }
    }

    #[test]
    fn a_node_id_belongs_to_its_live_holder() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut peers = Peers::new(second);
        assert!(peers.admit(beat("a"), "peer-x", start).is_err(), "signed by another peer");
        peers.admit(beat("a"), "peer-a", start).unwrap();
        let mut impostor = beat("a");
        impostor.peer_id = "peer-x".into();
        assert!(peers.admit(impostor.clone(), "peer-x", start + second).is_err());
        assert_eq!(peers.holder("a"), Some("peer-a"));
        // Once the holder has been silent for three intervals, the id is free again.
        peers.admit(impostor, "peer-x", start + second * 3).unwrap();
        assert_eq!(peers.holder("a"), Some("peer-x"));
    }

    #[test]
    fn a_node_silent_for_three_intervals_is_not_alive() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut peers = Peers::new(second);
        peers.observe(loaded("a", 10.0), start);
        assert!(peers.is_alive("a", start + second * 2));
        assert!(!peers.is_alive("a", start + second * 3));
        assert!(!peers.is_alive("never-heard", start));
        // A new heartbeat revives it and replaces its load.
        peers.observe(loaded("a", 50.0), start + second * 4);
        let view = peers.snapshot(start + second * 4 + Duration::from_millis(250));
        assert_eq!(view.len(), 1);
        assert!(view[0].alive);
        assert_eq!(view[0].last_seen_ms, 250);
        assert_eq!(view[0].heartbeat.load.cpu_percent, 50.0);
    }

    #[test]
    fn a_clock_that_seems_to_go_back_does_not_panic() {
        let later = Instant::now() + Duration::from_secs(5);
        let mut peers = Peers::new(Duration::from_secs(1));
        peers.observe(beat("a"), later);
        assert!(peers.is_alive("a", Instant::now()));
        assert_eq!(peers.snapshot(Instant::now())[0].last_seen_ms, 0);
    }
}
