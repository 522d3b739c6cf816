//! Hybrid logical clocks: versions that order writes across nodes without synchronised clocks.
//!
//! A version is `(wall_ms, counter, node)`, compared in that order, so two writes never tie:
//! the last writer wins, ties broken by node id. The clock is a pure state machine; the caller
//! passes in the wall time.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One version stamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (physical part).
    pub wall_ms: u64,
    /// Logical counter within one millisecond.
    pub counter: u32,
    /// The node that made the write.
    pub node: String,
}

/// The clock of one node.
#[derive(Debug, Clone)]
pub struct Clock {
    node: String,
    last_wall: u64,
    last_counter: u32,
}

impl Clock {
    pub fn new(node: impl Into<String>) -> Clock {
        Clock { node: node.into(), last_wall: 0, last_counter: 0 }
    }

    /// A new version, greater than every version this clock has made or observed.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.last_wall {
            self.last_wall = now_ms;
            self.last_counter = 0;
        } else {
            self.bump_counter();
        }
        self.current()
    }

    /// Moves the clock past a version seen from elsewhere (a peer's write, or the last version
    /// stored before a restart).
    pub fn observe(&mut self, seen: &Hlc) {
        if (seen.wall_ms, seen.counter) > (self.last_wall, self.last_counter) {
            self.last_wall = seen.wall_ms;
            self.last_counter = seen.counter;
        }
    }

    fn bump_counter(&mut self) {
        match self.last_counter.checked_add(1) {
            Some(next) => self.last_counter = next,
            // 4 billion writes in one millisecond: borrow the next millisecond.
            None => {
                self.last_wall += 1;
                self.last_counter = 0;
            }
        }
    }

    fn current(&self) -> Hlc {
        Hlc { wall_ms: self.last_wall, counter: self.last_counter, node: self.node.clone() }
    }
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ties_break_by_node() {
        let a = Hlc { wall_ms: 5, counter: 1, node: "a".into() };
        let b = Hlc { wall_ms: 5, counter: 1, node: "b".into() };
        assert!(a < b);
    }

    #[test]
    fn counter_overflow_moves_to_next_millisecond() {
        let mut clock = Clock::new("n");
        clock.observe(&Hlc { wall_ms: 10, counter: u32::MAX, node: "x".into() });
        let next = clock.tick(3);
        assert_eq!((next.wall_ms, next.counter), (11, 0));
    }

    proptest! {
        /// Whatever the wall clock does (jumps back, stands still) and whatever is observed,
        /// every tick is greater than everything before it.
        #[test]
        fn ticks_strictly_increase(steps in prop::collection::vec((0u64..1000, prop::option::of((0u64..1000, 0u32..5))), 1..200)) {
            let mut clock = Clock::new("n");
            let mut last: Option<Hlc> = None;
            for (now, seen) in steps {
                if let Some((wall_ms, counter)) = seen {
                    let seen = Hlc { wall_ms, counter, node: "peer".into() };
                    clock.observe(&seen);
                    let t = clock.tick(now);
                    prop_assert!((t.wall_ms, t.counter) > (seen.wall_ms, seen.counter));
                }
                let t = clock.tick(now);
                if let Some(prev) = &last {
                    prop_assert!(&t > prev);
                }
                last = Some(t);
            }
        }
    }
}
