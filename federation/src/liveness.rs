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

    /// Records a heartbeat received at `now`. A node's latest heartbeat replaces its earlier one.
    pub fn observe(&mut self, heartbeat: Heartbeat, now: Instant) {
        self.seen.insert(heartbeat.node_id.clone(), (heartbeat, now));
    }

    /// Whether `node_id` was heard from within the last [`MISSED_BEATS`] intervals.
    pub fn is_alive(&self, node_id: &str, now: Instant) -> bool {
        self.seen
            .get(node_id)
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < self.silence())
    }

    /// Every known peer with its liveness, by node id.
    pub fn snapshot(&self, now: Instant) -> Vec<PeerView> {
        self.seen
            .values()
            .map(|(heartbeat, at)| {
                let since = now.saturating_duration_since(*at);
                PeerView {
                    heartbeat: heartbeat.clone(),
                    alive: since < self.silence(),
                    last_seen_ms: since.as_millis() as u64,
                }
            })
            .collect()
    }

    fn silence(&self) -> Duration {
        self.interval * MISSED_BEATS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(node: &str, cpu: f32) -> Heartbeat {
        Heartbeat {
            node_id: node.into(),
            peer_id: format!("peer-{node}"),
            grpc: "127.0.0.1:1".into(),
            http: "http://127.0.0.1:2".into(),
            version: "0.1.0".into(),
            load: Load { cpu_percent: cpu, ..Load::default() },
        }
    }

    #[test]
    fn a_node_silent_for_three_intervals_is_not_alive() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut peers = Peers::new(second);
        peers.observe(beat("a", 10.0), start);
        assert!(peers.is_alive("a", start + second * 2));
        assert!(!peers.is_alive("a", start + second * 3));
        assert!(!peers.is_alive("never-heard", start));
        // A new heartbeat revives it and replaces its load.
        peers.observe(beat("a", 50.0), start + second * 4);
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
        peers.observe(beat("a", 0.0), later);
        assert!(peers.is_alive("a", Instant::now()));
        assert_eq!(peers.snapshot(Instant::now())[0].last_seen_ms, 0);
    }
}
