//! The order in which nodes hosting a tool are tried: this node first (no network hop), then
//! gridnode peers from the least to the most loaded by their heartbeats (calls in flight, then
//! CPU in steps of 10%), then nodes outside the federation (they report no load). Equals take
//! turns, so load spreads over them.

use gridnode_federation::Load;

use std::sync::Arc;

use crate::runtime::spec::InputValidator;
use crate::service::HostedTool;

/// CPU percentages closer than this count as equal (sampling noise is larger than that).
const CPU_STEP: f32 = 10.0;

/// A record's input spec, compiled once when the record is read (a spec that does not compile
/// is kept as its error: it fails the calls that reach it, not the lookup).
pub type Validator = Arc<std::result::Result<InputValidator, String>>;

/// A live node hosting the tool.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub hosted: HostedTool,
    pub validator: Validator,
    /// This node.
    pub local: bool,
    /// From the node's heartbeat; `None` outside the federation.
    pub load: Option<Load>,
}

impl Candidate {
    pub fn node_id(&self) -> &str {
        &self.hosted.record.node_id
    }

    fn rank(&self) -> (u8, u32, u32) {
        match (&self.local, &self.load) {
            (true, _) => (0, 0, 0),
            (false, Some(load)) => {
                let (in_flight, cpu) = load_rank(load);
                (1, in_flight, cpu)
            }
            (false, None) => (2, 0, 0),
        }
    }
}

/// How loaded a node is, as candidates are compared: calls in flight, then CPU in 10 % steps.
pub fn load_rank(load: &Load) -> (u32, u32) {
    (load.in_flight_calls, (load.cpu_percent.max(0.0) / CPU_STEP) as u32)
}

/// The candidates, best first; `turn` rotates each group of equals.
pub fn order(mut candidates: Vec<Candidate>, turn: usize) -> Vec<Candidate> {
    candidates.sort_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.node_id().cmp(b.node_id())));
    let mut start = 0;
    while start < candidates.len() {
        let rank = candidates[start].rank();
        let end = start + candidates[start..].iter().take_while(|c| c.rank() == rank).count();
        let group = &mut candidates[start..end];
        let len = group.len();
        group.rotate_left(turn % len);
        start = end;
    }
    candidates
}

#[cfg(test)]
mod tests {
    use gridnode_store::ClusterLocalTool;

    use super::*;

    fn candidate(node: &str, local: bool, load: Option<(u32, f32)>) -> Candidate {
        Candidate {
            hosted: HostedTool {
                record: ClusterLocalTool {
                    name: "t".into(),
                    node_id: node.into(),
                    ..ClusterLocalTool::default()
                },
                written_by: node.into(),
            },
            validator: Arc::new(InputValidator::compile(&Default::default())),
            local,
            load: load.map(|(in_flight_calls, cpu_percent)| Load {
                in_flight_calls,
                cpu_percent,
                ..Load::default()
            }),
        }
    }

    fn names(candidates: &[Candidate]) -> Vec<&str> {
        candidates.iter().map(Candidate::node_id).collect()
    }

    #[test]
    fn local_first_then_least_loaded_then_outside() {
        let all = vec![
            candidate("outside", false, None),
            candidate("busy", false, Some((5, 10.0))),
            candidate("hot", false, Some((0, 95.0))),
            candidate("idle", false, Some((0, 3.0))),
            candidate("me", true, None),
        ];
        assert_eq!(names(&order(all, 0)), ["me", "idle", "hot", "busy", "outside"]);
    }

    #[test]
    fn equals_take_turns() {
        let all = || {
            vec![
                candidate("b", false, Some((0, 12.0))),
                candidate("c", false, Some((0, 17.0))),
                candidate("d", false, Some((1, 0.0))),
            ]
        };
        let firsts: Vec<String> =
            (0..4).map(|turn| order(all(), turn)[0].node_id().to_owned()).collect();
        assert_eq!(firsts, ["b", "c", "b", "c"]);
        assert_eq!(order(all(), 1).last().unwrap().node_id(), "d");
        assert!(order(Vec::new(), 3).is_empty());
    }
}
