//! The replication merge rule: last writer wins by hybrid logical clock (ties by node id),
//! deletes as tombstones. Whatever the order and however often versions arrive, every store
//! converges to the same state.

use std::collections::BTreeMap;

use gridnode_store::{
    ClusterLocalTool, Collection, Envelope, Error, Hlc, Merged, Page, Record, SignedVersion, Store,
    StoreConfig, ToolEntry,
};
use proptest::prelude::*;
use serde_json::json;

fn store(node: &str) -> Store {
    Store::open(&StoreConfig::temporary(node)).unwrap()
}

fn hlc(wall_ms: u64, counter: u32, node: &str) -> Hlc {
    Hlc { wall_ms, counter, node: node.into() }
}

fn version(id: &str, hlc: Hlc, tag: Option<&str>) -> Envelope<ToolEntry> {
    match tag {
        Some(tag) => Envelope::live(
            hlc,
            ToolEntry { tool_id: id.into(), tool_tags: vec![tag.into()], ..ToolEntry::default() },
        ),
        None => Envelope::tombstone(hlc),
    }
}

#[test]
fn newer_versions_win_and_older_ones_are_ignored() {
    let s = store("local");
    let first = version("t", hlc(10, 0, "a"), Some("one"));
    assert!(matches!(s.merge("t", first.clone()).unwrap(), Merged::Applied(_)));
    assert_eq!(s.merge("t", first).unwrap(), Merged::Ignored, "idempotent");
    assert_eq!(s.merge("t", version("t", hlc(9, 5, "z"), Some("old"))).unwrap(), Merged::Ignored);
    // Same instant: the higher node id wins.
    assert!(matches!(
        s.merge("t", version("t", hlc(10, 0, "b"), Some("two"))).unwrap(),
        Merged::Applied(_)
    ));
    assert_eq!(s.get::<ToolEntry>("t").unwrap().tool_tags, ["two"]);
    assert_eq!(s.find::<ToolEntry>("tool_tags", &json!("one"), Page::ALL).unwrap().len(), 0);
    assert_eq!(s.find::<ToolEntry>("tool_tags", &json!("two"), Page::ALL).unwrap().len(), 1);
    // A tombstone deletes, and the index lets go.
    s.merge("t", version("t", hlc(11, 0, "a"), None)).unwrap();
    assert!(matches!(s.get::<ToolEntry>("t"), Err(Error::NotFound { .. })));
    assert_eq!(s.find::<ToolEntry>("tool_tags", &json!("two"), Page::ALL).unwrap().len(), 0);
    // Every applied version is in the feed, with its own clock.
    let feed = s.changes_since(0, 10).unwrap();
    assert_eq!(feed.len(), 3);
    assert_eq!(feed[2].hlc, hlc(11, 0, "a"));
    // The local clock moved past what it saw: a local write now wins.
    let local = s.create(&ToolEntry { tool_id: "t".into(), ..ToolEntry::default() }).unwrap();
    assert!(local.hlc > hlc(11, 0, "a"));
}

#[test]
fn versions_list_live_records_and_tombstones() {
    let s = store("local");
    s.merge("a", version("a", hlc(1, 0, "n"), Some("t0"))).unwrap();
    s.merge("b", version("b", hlc(2, 0, "n"), None)).unwrap();
    let versions: Vec<(String, bool, Hlc)> = s
        .versions::<ToolEntry>()
        .map(|v| v.map(|(id, header)| (id, header.tombstone, header.hlc)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, [("a".into(), false, hlc(1, 0, "n")), ("b".into(), true, hlc(2, 0, "n"))]);
}

#[test]
fn malformed_versions_are_refused() {
    let s = store("local");
    let wrong_id = version("other", hlc(1, 0, "a"), Some("x"));
    assert!(matches!(s.merge("t", wrong_id), Err(Error::Invalid(_))));
    let bad_id = version("../x", hlc(1, 0, "a"), Some("x"));
    assert!(matches!(s.merge("../x", bad_id), Err(Error::Invalid(_))));
    let mut inconsistent = version("t", hlc(1, 0, "a"), Some("x"));
    inconsistent.header.tombstone = true;
    assert!(matches!(s.merge("t", inconsistent), Err(Error::Invalid(_))));
    let bad_tombstone = version("x", hlc(1, 0, "a"), None);
    assert!(matches!(s.merge("../x", bad_tombstone), Err(Error::Invalid(_))));
    let no_node = Envelope::<ClusterLocalTool>::tombstone(hlc(1, 0, "a"));
    assert!(matches!(s.merge("just-a-name", no_node), Err(Error::Invalid(_))));
    // Bytes from a peer that are not an envelope.
    for garbage in [&b""[..], b"\xff\xff\xff\xff\xff\xff\xff\xff\xff", &[7; 64]] {
        let version = SignedVersion { envelope: garbage.to_vec(), signature: vec![] };
        assert!(s.merge_encoded(Collection::Tools, "t", &version).is_err());
    }
    assert_eq!(s.last_seq(), 0);
}

#[test]
fn encoded_versions_travel_between_stores() {
    let (a, b) = (store("a"), store("b"));
    a.create(&ToolEntry { tool_id: "t".into(), ..ToolEntry::default() }).unwrap();
    a.create(&ClusterLocalTool { name: "x".into(), node_id: "a".into(), ..Default::default() })
        .unwrap();
    a.delete::<ToolEntry>("t").unwrap();
    for (collection, id, header) in a.all_versions().unwrap() {
        let version = a.signed_version(collection, &id).unwrap().unwrap();
        assert!(
            matches!(b.merge_encoded(collection, &id, &version), Ok(Merged::Applied(w)) if w.hlc == header.hlc)
        );
    }
    assert_eq!(a.all_versions().unwrap(), b.all_versions().unwrap());
    assert!(b.envelope::<ToolEntry>("t").unwrap().unwrap().header.tombstone);
    assert_eq!(b.get::<ClusterLocalTool>("a/x").unwrap().node_id, "a");
}

#[test]
fn old_tombstones_are_collected_and_newer_versions_stay() {
    let s = store("local");
    s.merge("old", version("old", hlc(10, 0, "n"), None)).unwrap();
    s.merge("new", version("new", hlc(30, 0, "n"), None)).unwrap();
    s.merge("live", version("live", hlc(5, 0, "n"), Some("x"))).unwrap();
    let removed = s.collect_tombstones(20).unwrap();
    assert_eq!(removed, [(Collection::Tools, "old".to_string(), hlc(10, 0, "n"))]);
    let left: Vec<String> = s.all_versions().unwrap().into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(left, ["live", "new"]);
    assert!(s.collect_tombstones(20).unwrap().is_empty());
}

/// Each id's version and live record.
type Records = BTreeMap<String, (Hlc, Option<ToolEntry>)>;
/// How many records each tag's index entry finds.
type TagCounts = Vec<(String, usize)>;

/// One node's view: each id's envelope header and live record, and the tag index.
fn state(s: &Store) -> (Records, TagCounts) {
    let mut records = BTreeMap::new();
    for id in ["a", "b", "c"] {
        if let Some(envelope) = s.envelope::<ToolEntry>(id).unwrap() {
            records.insert(id.to_owned(), (envelope.header.hlc.clone(), envelope.into_live()));
        }
    }
    let tags = ["t0", "t1", "t2"]
        .iter()
        .map(|t| {
            (t.to_string(), s.find::<ToolEntry>("tool_tags", &json!(t), Page::ALL).unwrap().len())
        })
        .collect();
    (records, tags)
}

fn versions() -> impl Strategy<Value = Vec<(String, Envelope<ToolEntry>)>> {
    let one = (0usize..3, 0u64..4, 0u32..3, 0usize..3, prop::option::of(0usize..3)).prop_map(
        |(id, wall, counter, node, tag)| {
            let id = ["a", "b", "c"][id].to_owned();
            let tag = tag.map(|t| format!("t{t}"));
            let envelope =
                version(&id, hlc(wall, counter, ["n1", "n2", "n3"][node]), tag.as_deref());
            (id, envelope)
        },
    );
    // A version stamp names one write: every generated stamp is used once.
    prop::collection::vec(one, 1..24).prop_map(|all| {
        let mut seen = std::collections::HashSet::new();
        all.into_iter().filter(|(_, e)| seen.insert(e.header.hlc.clone())).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Commutative, associative, idempotent: two stores that receive the same versions in
    /// different orders, some twice, end in the same state — the newest version of each record.
    #[test]
    fn any_order_converges(versions in versions(), seed in any::<u64>()) {
        let first = store("x");
        for (id, envelope) in &versions {
            first.merge(id, envelope.clone()).unwrap();
        }
        let mut shuffled = versions.clone();
        let mut state_rng = seed;
        for i in (1..shuffled.len()).rev() {
            state_rng = state_rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state_rng >> 33) as usize % (i + 1));
        }
        let second = store("y");
        for (id, envelope) in shuffled.iter().chain(versions.iter().take(3)) {
            second.merge(id, envelope.clone()).unwrap();
        }
        prop_assert_eq!(state(&first), state(&second));
        // And the state is the newest version of each id.
        for (id, (hlc, record)) in state(&first).0 {
            let newest = versions.iter().filter(|(i, _)| *i == id).map(|(_, e)| e).max_by(|a, b| a.header.hlc.cmp(&b.header.hlc)).unwrap();
            prop_assert_eq!(&hlc, &newest.header.hlc);
            prop_assert_eq!(record.as_ref().map(|r| r.id().into_owned()), newest.record.as_ref().map(|r| r.id().into_owned()));
        }
    }
}
