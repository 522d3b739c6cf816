//! The order in which nodes hosting a tool are tried: this node first (no network hop), then
//! gridnode peers from the least to the most loaded by their heartbeats (calls in flight, then
//! CPU in steps of 10%), then nodes outside the federation (they report no load). Equals take
//! turns, so load spreads over them.
//!
//! [`plan`] turns the ordered candidates and the input into what execution dispatches: this
//! node, or the peers to try in failover order — without I/O, so it is tested on its own.

use gridnode_federation::Load;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::runtime::Input;
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

/// Where a cluster tool's call goes first.
#[derive(Debug)]
pub enum First {
    /// This node hosts it: run here, no hop, no failover.
    Here,
    /// Other nodes host it: try them in order.
    Peers(Failover),
}

/// The peers to try, in order, and the candidates left out, each with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    pub tool: String,
    /// Node ids, best first.
    pub nodes: Vec<String>,
    /// `"<node>: <why>"` for each candidate whose copy of the tool does not take this input.
    pub skipped: Vec<String>,
}

/// The plan of a call of `tool` over its ordered live candidates (`None` when there are none).
/// The best candidate's spec is the tool's: input it refuses is the caller's error (400); the
/// others are tried only if their copy of the tool takes the input too (a spec already passed
/// is not checked again).
pub fn plan(tool: &str, candidates: Vec<Candidate>, input: &Input) -> Result<Option<First>> {
    let Some(best) = candidates.first() else { return Ok(None) };
    match best.validator.as_ref() {
        Ok(validator) => validator
            .validate(input)
            .map_err(|why| Error::BadRequest(format!("invalid input for '{tool}': {why}")))?,
        Err(why) => {
            return Err(Error::Internal(format!(
                "the tool's registered input_spec does not compile: {why}"
            )));
        }
    }
    if best.local {
        return Ok(Some(First::Here));
    }
    let mut failover = Failover { tool: tool.to_owned(), nodes: Vec::new(), skipped: Vec::new() };
    for candidate in candidates {
        let fits = match candidate.validator.as_ref() {
            Ok(validator) => validator.validate(input),
            Err(why) => Err(format!("its input_spec does not compile: {why}")),
        };
        match fits {
            Ok(()) => failover.nodes.push(candidate.node_id().to_owned()),
            Err(why) => failover
                .skipped
                .push(format!("{}: the input does not fit its spec ({why})", candidate.node_id())),
        }
    }
    Ok(Some(First::Peers(failover)))
}

#[cfg(test)]
mod tests {
    use gridnode_store::ClusterLocalTool;

    use super::*;

    fn candidate(node: &str, local: bool, load: Option<(u32, f32)>) -> Candidate {
        with_spec(node, local, load, serde_json::json!({}))
    }

    fn with_spec(
        node: &str,
        local: bool,
        load: Option<(u32, f32)>,
        spec: serde_json::Value,
    ) -> Candidate {
        let spec = spec.as_object().cloned().unwrap_or_default();
        Candidate {
            hosted: HostedTool {
                record: ClusterLocalTool {
                    name: "t".into(),
                    node_id: node.into(),
                    ..ClusterLocalTool::default()
                },
                written_by: node.into(),
            },
            validator: Arc::new(InputValidator::compile(&spec)),
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

    #[test]
    fn the_plan_runs_here_or_fails_over_through_peers_that_take_the_input() {
        let text = serde_json::json!({"text": "string"});
        let number = serde_json::json!({"text": "number"});
        let input = || Input::from_json(serde_json::json!({"text": "hi"}));

        let here = vec![candidate("me", true, None), candidate("b", false, Some((0, 0.0)))];
        assert!(matches!(plan("t", here, &input()), Ok(Some(First::Here))));
        assert!(matches!(plan("t", Vec::new(), &input()), Ok(None)));

        let peers = vec![
            with_spec("b", false, Some((0, 0.0)), text.clone()),
            with_spec("c", false, Some((1, 0.0)), number.clone()),
            with_spec("d", false, None, text.clone()),
        ];
        let Ok(Some(First::Peers(failover))) = plan("t", peers, &input()) else {
            panic!("peers expected")
        };
        assert_eq!(failover.nodes, ["b", "d"]);
        assert_eq!(failover.skipped.len(), 1);
        assert!(failover.skipped[0].starts_with("c: the input does not fit"), "{failover:?}");

        // The best candidate's spec is the tool's: input it refuses is the caller's error.
        let refused = vec![with_spec("b", false, None, number), candidate("c", false, None)];
        let error = plan("t", refused, &input()).unwrap_err();
        assert_eq!(error.status(), 400, "{error}");
        let broken = vec![with_spec("b", false, None, serde_json::json!({"text": "strnig"}))];
        assert_eq!(plan("t", broken, &input()).unwrap_err().status(), 500);
    }
}
