//! Who may write what: the checks every version from a peer passes before it is merged or
//! forwarded (contract section 13). A pure function of the version, the member bindings and
//! the clock.
//!
//! - The bytes decode within limits, the key names a known collection, the clock is not far
//!   in the future.
//! - This node's own member record comes only from this node: no peer can release or rebind
//!   this node's id here (the replicator answers a newer one by writing its record again).
//! - The signature verifies under the key bound to the clock's node (`hlc.node`): a version
//!   is its author's, wherever it was relayed from. A member record is signed by the key it
//!   binds, written by the node it names, and may not rebind a bound node id.
//! - A node-local tool record `<node_id>/<name>` of a bound member comes only from that member;
//!   records of nodes that are not members (registered over REST for, say, a Kubernetes node
//!   running the seed's SDK) may come from any member. This node's own come only from itself.

use gridnode_store::{
    ClusterLocalTool, Collection, Envelope, Header, Hlc, Member, decode_header, now_ms,
    signed_message,
};
use libp2p::PeerId;

use crate::identity::public_key;
use crate::members::Bindings;
use crate::rejections::{Reason, Rejection};
use crate::wire::{Key, MAX_CLOCK_AHEAD_MS, MAX_VERSION_BYTES, Summary, Version};

/// Checks a version from a peer; returns its header when it may be merged.
pub fn check(
    version: &Version,
    own_node_id: &str,
    bindings: &Bindings,
) -> Result<Header, Rejection> {
    let Some(collection) = version.key.collection() else {
        return Err(Rejection::new(
            Reason::Invalid,
            format!("unknown collection {}", version.key.collection),
        ));
    };
    if version.envelope.len() > MAX_VERSION_BYTES {
        return Err(Rejection::new(
            Reason::Oversize,
            format!("a version of {} bytes (at most {MAX_VERSION_BYTES})", version.envelope.len()),
        ));
    }
    let header = decode_header(collection, &version.envelope)
        .map_err(|e| Rejection::new(Reason::Undecodable, e.to_string()))?;
    check_clock(&version.key, &header.hlc)?;
    if collection == Collection::Members && version.key.id == own_node_id {
        return Err(Rejection::new(
            Reason::Authority,
            format!("a version of this node's own member record '{own_node_id}' from a peer"),
        ));
    }
    let message = || signed_message(collection, &version.key.id, &version.envelope);
    if collection == Collection::Members && !header.tombstone {
        // A member record vouches for itself: it must be signed by the key it binds.
        let member = Envelope::<Member>::decode(&version.envelope)
            .map_err(|e| Rejection::new(Reason::Undecodable, e.to_string()))?
            .into_live()
            .ok_or_else(|| {
                Rejection::new(Reason::Invalid, "a live member version without its record")
            })?;
        if member.node_id != version.key.id || header.hlc.node != member.node_id {
            return Err(Rejection::new(
                Reason::Authority,
                format!(
                    "a member record for '{}' written by '{}'",
                    version.key.id, header.hlc.node
                ),
            ));
        }
        let peer: PeerId = member
            .peer_id
            .parse()
            .map_err(|_| Rejection::new(Reason::Invalid, "a member record with a bad peer id"))?;
        let key = public_key(&peer).ok_or_else(|| {
            Rejection::new(Reason::Invalid, "a member record whose peer id carries no key")
        })?;
        if !key.verify(&message(), &version.signature) {
            return Err(Rejection::new(
                Reason::Signature,
                format!("member record '{}'", member.node_id),
            ));
        }
        bindings
            .check_claim(&member.node_id, &peer)
            .map_err(|e| Rejection::new(Reason::Unbound, e))?;
        return Ok(header);
    }
    let author = bindings.get(&header.hlc.node).ok_or_else(|| {
        Rejection::new(
            Reason::Unbound,
            format!("'{}' is written by '{}', not a bound member", version.key.id, header.hlc.node),
        )
    })?;
    if !author.key.verify(&message(), &version.signature) {
        return Err(Rejection::new(
            Reason::Signature,
            format!("'{}' is not signed by its author '{}'", version.key.id, header.hlc.node),
        ));
    }
    check_writer(&version.key, &header.hlc, own_node_id, bindings)?;
    Ok(header)
}

/// The checks a summary allows before its version is fetched: whether the version named could
/// pass [`check`] as far as its key and clock tell.
pub fn check_summary(
    summary: &Summary,
    own_node_id: &str,
    bindings: &Bindings,
) -> Result<(), Rejection> {
    if summary.key.collection().is_none() {
        return Err(Rejection::new(Reason::Invalid, "unknown collection"));
    }
    check_clock(&summary.key, &summary.hlc)?;
    let self_written_member = summary.key.collection() == Some(Collection::Members)
        && !summary.tombstone
        && summary.hlc.node == summary.key.id;
    if !self_written_member && bindings.get(&summary.hlc.node).is_none() {
        return Err(Rejection::new(
            Reason::Unbound,
            format!("'{}' is not a bound member", summary.hlc.node),
        ));
    }
    check_writer(&summary.key, &summary.hlc, own_node_id, bindings)
}

fn check_clock(key: &Key, hlc: &Hlc) -> Result<(), Rejection> {
    let now = now_ms();
    if hlc.wall_ms > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
        return Err(Rejection::new(
            Reason::Clock,
            format!("version of '{}' is stamped {} ms in the future", key.id, hlc.wall_ms - now),
        ));
    }
    Ok(())
}

/// Node-local tool records: only their node writes them, when it is a member.
fn check_writer(
    key: &Key,
    hlc: &Hlc,
    own_node_id: &str,
    bindings: &Bindings,
) -> Result<(), Rejection> {
    if key.collection() != Some(Collection::ClusterTools) {
        return Ok(());
    }
    let Some((node_id, _)) = ClusterLocalTool::split_key(&key.id) else {
        return Err(Rejection::new(
            Reason::Invalid,
            format!("malformed node-local tool key '{}'", key.id),
        ));
    };
    if node_id == own_node_id {
        return Err(Rejection::new(
            Reason::Authority,
            format!("'{}' is this node's own tool: only this node writes it", key.id),
        ));
    }
    if bindings.get(node_id).is_some() && hlc.node != node_id {
        return Err(Rejection::new(
            Reason::Authority,
            format!("'{}' belongs to member '{node_id}'; '{}' may not write it", key.id, hlc.node),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gridnode_store::{Signer, ToolEntry, encode};

    use super::*;
    use crate::identity::Identity;

    fn signed<R: gridnode_store::Record>(
        author: &Identity,
        node: &str,
        id: &str,
        record: Option<R>,
        wall_ms: u64,
    ) -> Version {
        let hlc = Hlc { wall_ms, counter: 0, node: node.into() };
        let header = Header { hlc, tombstone: record.is_none() };
        let envelope = encode(&(&header, &record)).unwrap();
        let signature = author.sign(&signed_message(R::COLLECTION, id, &envelope));
        Version { key: Key::new(R::COLLECTION, id), envelope, signature }
    }

    fn tool(id: &str) -> Option<ToolEntry> {
        Some(ToolEntry { tool_id: id.into(), ..ToolEntry::default() })
    }

    #[test]
    fn a_version_needs_its_bound_authors_signature() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let mut bindings = Bindings::default();
        bindings.set("a", Some(&Member { node_id: "a".into(), peer_id: a.peer_id().to_string() }));
        let now = now_ms();
        assert!(check(&signed(&a, "a", "t", tool("t"), now), "me", &bindings).is_ok());
        let forged = check(&signed(&b, "a", "t", tool("t"), now), "me", &bindings).unwrap_err();
        assert_eq!(forged.reason, Reason::Signature, "b signs as a");
        let unbound = check(&signed(&b, "b", "t", tool("t"), now), "me", &bindings).unwrap_err();
        assert_eq!(unbound.reason, Reason::Unbound);
        let future =
            check(&signed(&a, "a", "t", tool("t"), now + 600_000), "me", &bindings).unwrap_err();
        assert_eq!(future.reason, Reason::Clock);
        let mut tampered = signed(&a, "a", "t", tool("t"), now);
        tampered.key.id = "u".into();
        assert_eq!(check(&tampered, "me", &bindings).unwrap_err().reason, Reason::Signature);
        let garbage = Version {
            key: Key::new(Collection::Tools, "t"),
            envelope: vec![0xff; 9],
            signature: vec![],
        };
        assert_eq!(check(&garbage, "me", &bindings).unwrap_err().reason, Reason::Undecodable);
    }

    #[test]
    fn member_records_bind_once_and_node_tools_come_from_their_node() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let mut bindings = Bindings::default();
        let member = |who: &Identity, node: &str| {
            Some(Member { node_id: node.into(), peer_id: who.peer_id().to_string() })
        };
        let now = now_ms();
        let claim = signed(&a, "a", "a", member(&a, "a"), now);
        assert!(check(&claim, "me", &bindings).is_ok());
        bindings.set("a", member(&a, "a").as_ref());
        // b claims a's id with its own key: refused while a is bound.
        let squat = signed(&b, "a", "a", member(&b, "a"), now + 1);
        assert_eq!(check(&squat, "me", &bindings).unwrap_err().reason, Reason::Unbound);
        // A record naming b but signed by a is refused too.
        let wrong_key = signed(&a, "a", "a", member(&b, "a"), now + 1);
        assert_eq!(check(&wrong_key, "me", &bindings).unwrap_err().reason, Reason::Signature);
        bindings.set("b", member(&b, "b").as_ref());
        let tool = |node: &str| {
            Some(ClusterLocalTool { node_id: node.into(), name: "x".into(), ..Default::default() })
        };
        assert!(check(&signed(&a, "a", "a/x", tool("a"), now), "me", &bindings).is_ok());
        let foreign = check(&signed(&b, "b", "a/x", tool("a"), now), "me", &bindings).unwrap_err();
        assert_eq!(foreign.reason, Reason::Authority);
        assert!(check(&signed(&b, "b", "k8s-1/x", tool("k8s-1"), now), "me", &bindings).is_ok());
        let ours = check(&signed(&b, "b", "me/x", tool("me"), now), "me", &bindings).unwrap_err();
        assert_eq!(ours.reason, Reason::Authority);
    }
}
