//! Which key speaks for which node id: the bindings of the replicated member records (contract
//! section 13). A pure table, kept in step with the store by the replicator; the swarm asks it
//! who may send a heartbeat, the checks ask it whose signature a version needs.

use std::collections::HashMap;

use gridnode_store::Member;
use libp2p::PeerId;
use libp2p::identity::PublicKey;

use crate::identity::public_key;

/// Most node ids a cluster binds: the bound on the member and peer tables, whatever peers claim.
pub const MAX_MEMBERS: usize = 4096;

/// A bound member's key.
#[derive(Debug, Clone)]
pub struct Bound {
    pub peer: PeerId,
    pub key: PublicKey,
}

/// Node id ↔ peer id, both ways.
#[derive(Debug, Default)]
pub struct Bindings {
    by_node: HashMap<String, Bound>,
    by_peer: HashMap<PeerId, String>,
}

impl Bindings {
    pub fn get(&self, node_id: &str) -> Option<&Bound> {
        self.by_node.get(node_id)
    }

    /// The node id `peer` is bound to.
    pub fn node_of(&self, peer: &PeerId) -> Option<&str> {
        self.by_peer.get(peer).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_node.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    /// Every binding, `(node_id, peer_id)`.
    pub fn list(&self) -> Vec<(String, PeerId)> {
        self.by_node.iter().map(|(node, bound)| (node.clone(), bound.peer)).collect()
    }

    /// Whether a member record binding `node_id` to `peer` may be taken: a bound node id keeps
    /// its key, a key speaks for one node id, and the table has room.
    pub fn check_claim(&self, node_id: &str, peer: &PeerId) -> Result<(), String> {
        if let Some(bound) = self.by_node.get(node_id) {
            return if bound.peer == *peer {
                Ok(())
            } else {
                Err(format!(
                    "node id '{node_id}' is bound to peer {}; peer {peer} may not claim it \
                     (an admin releases it with 'gridnode cluster forget {node_id}')",
                    bound.peer
                ))
            };
        }
        if let Some(other) = self.by_peer.get(peer) {
            return Err(format!("peer {peer} already speaks for node id '{other}'"));
        }
        if self.by_node.len() >= MAX_MEMBERS {
            return Err(format!("the cluster already binds {MAX_MEMBERS} node ids"));
        }
        Ok(())
    }

    /// Sets `node_id`'s binding from its live member record, or releases it (`None`). False when
    /// the record names no usable key, or the table is full: the id is then not bound.
    pub fn set(&mut self, node_id: &str, member: Option<&Member>) -> bool {
        if let Some(old) = self.by_node.remove(node_id) {
            self.by_peer.remove(&old.peer);
        }
        let Some(member) = member else { return true };
        let Ok(peer) = member.peer_id.parse::<PeerId>() else { return false };
        let Some(key) = public_key(&peer) else { return false };
        if self.by_node.len() >= MAX_MEMBERS {
            return false;
        }
        self.by_peer.insert(peer, node_id.to_owned());
        self.by_node.insert(node_id.to_owned(), Bound { peer, key });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn member(node: &str, peer: PeerId) -> Member {
        Member { node_id: node.into(), peer_id: peer.to_string() }
    }

    #[test]
    fn a_bound_node_id_keeps_its_key_until_released() {
        let (a, b) = (Identity::generate().peer_id(), Identity::generate().peer_id());
        let mut bindings = Bindings::default();
        assert!(bindings.check_claim("n1", &a).is_ok());
        bindings.set("n1", Some(&member("n1", a)));
        assert!(bindings.check_claim("n1", &a).is_ok(), "the same key again");
        assert!(bindings.check_claim("n1", &b).unwrap_err().contains("cluster forget"));
        assert!(bindings.check_claim("n2", &a).unwrap_err().contains("already speaks"));
        assert_eq!(bindings.node_of(&a), Some("n1"));
        bindings.set("n1", None);
        assert!(bindings.check_claim("n1", &b).is_ok());
        assert_eq!(bindings.node_of(&a), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut bindings = Bindings::default();
        for i in 0..MAX_MEMBERS {
            bindings.set(
                &format!("n{i}"),
                Some(&member(&format!("n{i}"), Identity::generate().peer_id())),
            );
        }
        assert_eq!(bindings.len(), MAX_MEMBERS);
        let late = Identity::generate().peer_id();
        assert!(bindings.check_claim("late", &late).unwrap_err().contains("already binds"));
        bindings.set("late", Some(&member("late", late)));
        assert_eq!(bindings.len(), MAX_MEMBERS);
    }
}
