//! What was refused from peers, counted by reason (`gridnode_peer_rejected_total{reason}`) and
//! logged at a bounded rate: a hostile peer can send a refusal's worth of bytes as fast as the
//! link goes, and must not fill the disk with log lines.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

/// At most one log line per reason this often (with how many were not logged since).
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Why something from a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The peer did not prove it holds the cluster key.
    Admission,
    /// The peer sent something before it was admitted.
    Unadmitted,
    /// Bytes that do not decode (or decrypt) within the limits.
    Undecodable,
    /// Over a size or count limit.
    Oversize,
    /// Decoded, but not a valid record, key or message.
    Invalid,
    /// A clock too far in the future.
    Clock,
    /// An author (or heartbeat sender) that is not a bound member, or a binding conflict.
    Unbound,
    /// A signature that does not verify.
    Signature,
    /// A record its author may not write (another node's node-local tools).
    Authority,
    /// This node was too busy to take it (anti-entropy brings it later).
    Busy,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Admission,
        Reason::Unadmitted,
        Reason::Undecodable,
        Reason::Oversize,
        Reason::Invalid,
        Reason::Clock,
        Reason::Unbound,
        Reason::Signature,
        Reason::Authority,
        Reason::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Admission => "admission",
            Reason::Unadmitted => "unadmitted",
            Reason::Undecodable => "undecodable",
            Reason::Oversize => "oversize",
            Reason::Invalid => "invalid",
            Reason::Clock => "clock",
            Reason::Unbound => "unbound",
            Reason::Signature => "signature",
            Reason::Authority => "authority",
            Reason::Busy => "busy",
        }
    }

    /// What gossipsub is told of a message holding something refused for this reason: `Reject`
    /// for what no honest node would send, `Ignore` for what may only be early (an author not
    /// bound here yet, a clock a little ahead) or was dropped for load.
    pub fn acceptance(self) -> libp2p::gossipsub::MessageAcceptance {
        use libp2p::gossipsub::MessageAcceptance::{Ignore, Reject};
        match self {
            Reason::Unbound | Reason::Clock | Reason::Busy | Reason::Unadmitted => Ignore,
            _ => Reject,
        }
    }
}

/// A refusal: why, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection { reason, detail: detail.into() }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason.as_str())
    }
}

/// The counters and the log limiter.
#[derive(Debug, Default)]
pub struct Rejections {
    counts: [AtomicU64; Reason::ALL.len()],
    logged: Mutex<[Option<(Instant, u64)>; Reason::ALL.len()]>,
}

impl Rejections {
    /// Counts a refusal and logs it unless one of its reason was logged within [`LOG_EVERY`].
    pub fn record(&self, from: &dyn std::fmt::Display, rejection: &Rejection) {
        let index = rejection.reason as usize;
        let total = self.counts[index].fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match logged[index] {
            Some((at, _)) if now.duration_since(at) < LOG_EVERY => {}
            previous => {
                let quiet = previous.map_or(0, |(_, count)| total - 1 - count);
                warn!(
                    "refused from peer {from}: {rejection}{}",
                    if quiet > 0 {
                        format!(" ({quiet} more of these not logged)")
                    } else {
                        String::new()
                    }
                );
                logged[index] = Some((now, total));
            }
        }
    }

    /// `(reason, count)` for every reason.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        Reason::ALL
            .iter()
            .map(|r| (r.as_str(), self.counts[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use libp2p::gossipsub::MessageAcceptance;

    use super::*;

    #[test]
    fn every_refusal_is_counted_by_reason_and_each_reason_is_listed() {
        let rejections = Rejections::default();
        for _ in 0..1000 {
            rejections.record(&"peer", &Rejection::new(Reason::Signature, "forged"));
        }
        rejections.record(&"peer", &Rejection::new(Reason::Busy, "full"));
        let counts = rejections.counts();
        assert_eq!(counts.len(), Reason::ALL.len());
        assert!(counts.contains(&("signature", 1000)));
        assert!(counts.contains(&("busy", 1)));
        assert!(counts.contains(&("admission", 0)));
        assert_eq!(rejections.total(), 1001);
        // One log line for the thousand: the second of them fell inside the quiet window.
        let logged = rejections.logged.lock().unwrap()[Reason::Signature as usize];
        assert_eq!(logged.map(|(_, at_count)| at_count), Some(1));
    }

    #[test]
    fn only_what_may_be_early_is_ignored_rather_than_rejected() {
        assert_eq!(Reason::Unbound.acceptance(), MessageAcceptance::Ignore);
        assert_eq!(Reason::Clock.acceptance(), MessageAcceptance::Ignore);
        assert_eq!(Reason::Signature.acceptance(), MessageAcceptance::Reject);
        assert_eq!(Reason::Undecodable.acceptance(), MessageAcceptance::Reject);
    }
}
