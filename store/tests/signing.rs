//! Signed versions: every write of a store with a signer carries its signature over
//! `signed_message`, a merged version keeps its author's, provenance says who wrote what, and
//! a store written before versions were signed is signed once, in place.

use std::sync::Arc;

use gridnode_store::{
    ClusterLocalTool, Collection, Envelope, Hlc, Merged, Provenance, Resigned, SignedVersion,
    Signer, Store, StoreConfig, ToolEntry, signed_message,
};

/// A stand-in signer: the "signature" is a keyed digest of the message, which the test can
/// recompute (the federation signs with ed25519; the store only carries the bytes).
#[derive(Debug)]
struct Tagged(&'static str);

impl Signer for Tagged {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut signature = self.0.as_bytes().to_vec();
        signature.extend_from_slice(gridnode_store::sha256_hex(message).as_bytes());
        signature
    }
}

fn tool(id: &str) -> ToolEntry {
    ToolEntry { tool_id: id.into(), ..ToolEntry::default() }
}

#[test]
fn every_write_is_signed_and_a_merge_keeps_the_authors_signature() {
    let a = Store::open(&StoreConfig::temporary("a").signed_by(Arc::new(Tagged("a")))).unwrap();
    let b = Store::open(&StoreConfig::temporary("b").signed_by(Arc::new(Tagged("b")))).unwrap();
    a.create(&tool("t")).unwrap();
    let version = a.signed_version(Collection::Tools, "t").unwrap().unwrap();
    let expected = Tagged("a").sign(&signed_message(Collection::Tools, "t", &version.envelope));
    assert_eq!(version.signature, expected);
    assert!(matches!(b.merge_encoded(Collection::Tools, "t", &version), Ok(Merged::Applied(_))));
    assert_eq!(b.signed_version(Collection::Tools, "t").unwrap().unwrap(), version);
    let provenance = b.provenance(Collection::Tools, "t").unwrap().unwrap();
    assert_eq!(provenance.author, "a");
    assert!(provenance.signed);
    // A tombstone is signed too; a store without a signer writes unsigned versions.
    a.delete::<ToolEntry>("t").unwrap();
    assert!(!a.signed_version(Collection::Tools, "t").unwrap().unwrap().signature.is_empty());
    let plain = Store::open(&StoreConfig::temporary("p")).unwrap();
    plain.create(&tool("u")).unwrap();
    assert!(plain.signed_version(Collection::Tools, "u").unwrap().unwrap().signature.is_empty());
    assert!(!plain.provenance(Collection::Tools, "u").unwrap().unwrap().signed);
    assert_eq!(plain.provenance(Collection::Tools, "nope").unwrap(), None);
}

#[test]
fn a_store_from_before_signatures_is_signed_once_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        // Written unsigned, as the release before signatures wrote it: this node's own
        // records, another node's tool, another node's node-local tool.
        let old = Store::open(&StoreConfig::new(&path, "me")).unwrap();
        old.create(&tool("mine")).unwrap();
        old.create(&tool("gone")).unwrap();
        old.delete::<ToolEntry>("gone").unwrap();
        let theirs =
            Envelope::live(Hlc { wall_ms: 5, counter: 0, node: "other".into() }, tool("theirs"));
        old.merge("theirs", theirs).unwrap();
        let hosted =
            ClusterLocalTool { name: "x".into(), node_id: "other".into(), ..Default::default() };
        let id = gridnode_store::Record::id(&hosted).into_owned();
        old.merge(
            &id,
            Envelope::live(Hlc { wall_ms: 5, counter: 0, node: "other".into() }, hosted),
        )
        .unwrap();
        old.sync().unwrap();
    }
    // A plain sled handle puts the schema back to 1, as that release left it.
    {
        let db = released(|| sled::open(&path));
        db.open_tree("meta").unwrap().insert("schema_version", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store =
        released(|| Store::open(&StoreConfig::new(&path, "me").signed_by(Arc::new(Tagged("me")))));
    let mine_before = store.provenance(Collection::Tools, "mine").unwrap().unwrap();
    assert!(!mine_before.signed);
    let done = store.sign_unsigned().unwrap();
    assert_eq!(done, Resigned { signed: 2, restamped: 1, dropped: 1 });
    let mine = store.provenance(Collection::Tools, "mine").unwrap().unwrap();
    assert_eq!(mine, Provenance { signed: true, ..mine_before }, "signed in place, same clock");
    let theirs = store.provenance(Collection::Tools, "theirs").unwrap().unwrap();
    assert_eq!((theirs.author.as_str(), theirs.signed), ("me", true), "written again as ours");
    assert_eq!(store.get::<ToolEntry>("theirs").unwrap(), tool("theirs"));
    assert!(store.envelope::<ToolEntry>("gone").unwrap().unwrap().header.tombstone);
    assert!(
        store.try_get::<ClusterLocalTool>("other/x").unwrap().is_none(),
        "its node announces it"
    );
    for (collection, id, _) in store.all_versions().unwrap() {
        let SignedVersion { envelope, signature } =
            store.signed_version(collection, &id).unwrap().unwrap();
        assert_eq!(
            signature,
            Tagged("me").sign(&signed_message(collection, &id, &envelope)),
            "{id}"
        );
    }
    // Once done, never again.
    assert_eq!(store.sign_unsigned().unwrap(), Resigned::default());
}

#[test]
fn a_json_tree_nested_past_the_limit_is_refused_not_a_stack_overflow() {
    let s = Store::open(&StoreConfig::temporary("n")).unwrap();
    let mut record = tool("deep");
    record.tool_metadata.insert("zzmarker".into(), serde_json::Value::Null);
    let hlc = Hlc { wall_ms: 1, counter: 0, node: "peer".into() };
    let envelope = Envelope::live(hlc, record).encode().unwrap();
    // The marker's null (tag 0) becomes `levels` nested one-item arrays (tag 6, length 1).
    let marker = b"\x08zzmarker\x00";
    let at = envelope.windows(marker.len()).position(|w| w == marker).unwrap() + marker.len() - 1;
    let nested = |levels: usize| {
        let mut bytes = envelope[..at].to_vec();
        bytes.extend(std::iter::repeat_n([6u8, 1], levels).flatten());
        bytes.push(0);
        bytes.extend_from_slice(&envelope[at + 1..]);
        SignedVersion { envelope: bytes, signature: vec![] }
    };
    let error = s.merge_encoded(Collection::Tools, "deep", &nested(100_000)).unwrap_err();
    assert!(error.to_string().contains("nested deeper"), "{error}");
    // 100 levels is fine.
    assert!(matches!(
        s.merge_encoded(Collection::Tools, "deep", &nested(100)),
        Ok(Merged::Applied(_))
    ));
    assert_eq!(s.last_seq(), 1);
}

#[test]
fn only_canonical_bytes_merge_and_an_oversized_record_is_refused_at_write() {
    let (a, b) = (
        Store::open(&StoreConfig::temporary("a")).unwrap(),
        Store::open(&StoreConfig::temporary("b")).unwrap(),
    );
    a.create(&tool("t")).unwrap();
    let mut version = a.signed_version(Collection::Tools, "t").unwrap().unwrap();
    // Trailing bytes would sit beside a signature that does not cover them.
    version.envelope.push(0);
    let error = b.merge_encoded(Collection::Tools, "t", &version).unwrap_err();
    assert!(error.to_string().contains("canonical"), "{error}");
    version.envelope.pop();
    assert!(matches!(b.merge_encoded(Collection::Tools, "t", &version), Ok(Merged::Applied(_))));
    // A record that could not replicate is refused when it is written (413 through REST).
    let big =
        ToolEntry { tool_id: "big".into(), tool_man_page_doc: "x".repeat(9 << 20), ..tool("big") };
    let error = a.create(&big).unwrap_err();
    assert!(matches!(error, gridnode_store::Error::TooLarge(_)), "{error}");
    assert!(a.try_get::<ToolEntry>("big").unwrap().is_none());
}

#[test]
fn a_released_members_tombstone_is_never_collected() {
    let s = Store::open(&StoreConfig::temporary("n")).unwrap();
    s.create(&gridnode_store::Member { node_id: "gone".into(), peer_id: "12D3KooWabc".into() })
        .unwrap();
    s.delete::<gridnode_store::Member>("gone").unwrap();
    s.create(&tool("t")).unwrap();
    s.delete::<ToolEntry>("t").unwrap();
    let removed = s.collect_tombstones(u64::MAX).unwrap();
    assert_eq!(removed.len(), 1, "only the tool's: {removed:?}");
    assert!(s.envelope::<gridnode_store::Member>("gone").unwrap().unwrap().header.tombstone);
}

#[test]
fn a_version_is_always_read_with_its_own_signature_while_it_is_rewritten() {
    let store = Store::open(&StoreConfig::temporary("w").signed_by(Arc::new(Tagged("w")))).unwrap();
    store.create(&tool("hot")).unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..2000 {
                let record = ToolEntry { tool_search_description: format!("v{i}"), ..tool("hot") };
                store.put_unsynced(&record).unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 100 {
        let version = store.signed_version(Collection::Tools, "hot").unwrap().unwrap();
        let expected =
            Tagged("w").sign(&signed_message(Collection::Tools, "hot", &version.envelope));
        assert_eq!(version.signature, expected, "a signature of another version (read {reads})");
        reads += 1;
    }
    writer.join().unwrap();
}

/// Opens a database whose previous handle was just dropped: sled's flusher thread lets go of the
/// file lock a moment after the handle goes, so the lock is waited for (at most 5 s).
fn released<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(error) if std::time::Instant::now() > deadline => {
                panic!("never released: {error:?}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}
