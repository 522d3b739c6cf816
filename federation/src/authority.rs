//! Who may write what. Tools and functions are anyone's to write (last writer wins). A
//! node-local tool record of a gridnode node may only come from that node: a version of
//! `<node_id>/<name>` is accepted from a peer only if no other peer holds `node_id` — a node
//! id is held by the peer whose signed heartbeats claim it (see [`crate::liveness::Peers`]).
//! Records of nodes that are not gridnode peers (registered over REST for, say, a Kubernetes
//! node running the seed's SDK) replicate from anyone.

use gridnode_store::{ClusterLocalTool, Collection, Hlc, now_ms};

use crate::liveness::Peers;
use crate::wire::{Key, MAX_CLOCK_AHEAD_MS};

/// Why a version from a peer is not merged, or `Ok` when it may be.
pub fn admit(
    key: &Key,
    hlc: &Hlc,
    from_peer: &str,
    own_node_id: &str,
    peers: &Peers,
) -> Result<(), String> {
    let Some(collection) = key.collection() else {
        return Err(format!("unknown collection {}", key.collection));
    };
    if hlc.wall_ms > now_ms().saturating_add(MAX_CLOCK_AHEAD_MS) {
        return Err(format!(
            "version of '{}' is stamped {} ms in the future",
            key.id,
            hlc.wall_ms - now_ms()
        ));
    }
    if collection != Collection::ClusterTools {
        return Ok(());
    }
    let Some((node_id, _)) = ClusterLocalTool::split_key(&key.id) else {
        return Err(format!("malformed node-local tool key '{}'", key.id));
    };
    if node_id == own_node_id {
        return Err(format!("'{}' is this node's own tool: only this node writes it", key.id));
    }
    match peers.holder(node_id) {
        Some(holder) if holder != from_peer => Err(format!(
            "'{}' belongs to node '{node_id}' (peer {holder}); peer {from_peer} may not write it",
            key.id
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::liveness::tests::beat;

    #[test]
    fn only_the_holder_of_a_node_id_writes_its_tools() {
        let mut peers = Peers::new(Duration::from_secs(1));
        peers.admit(beat("b"), "peer-b", Instant::now()).unwrap();
        let now = Hlc { wall_ms: now_ms(), counter: 0, node: "x".into() };
        let tool = |id: &str| Key::new(Collection::ClusterTools, id);
        assert!(admit(&tool("b/t"), &now, "peer-b", "a", &peers).is_ok());
        assert!(admit(&tool("b/t"), &now, "peer-c", "a", &peers).is_err());
        assert!(admit(&tool("a/t"), &now, "peer-b", "a", &peers).is_err(), "our own");
        assert!(admit(&tool("k8s-1/t"), &now, "peer-c", "a", &peers).is_ok(), "not a peer");
        assert!(admit(&tool("no-slash"), &now, "peer-b", "a", &peers).is_err());
        assert!(admit(&Key::new(Collection::Tools, "b/t"), &now, "peer-c", "a", &peers).is_ok());
        assert!(
            admit(&Key { collection: 9, id: "t".into() }, &now, "peer-b", "a", &peers).is_err()
        );
        let future = Hlc { wall_ms: now_ms() + 3_600_000, ..now };
        assert!(admit(&Key::new(Collection::Tools, "t"), &future, "peer-b", "a", &peers).is_err());
    }
}
