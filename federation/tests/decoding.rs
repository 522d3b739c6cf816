//! Property tests of the one door peer bytes come through: arbitrary bytes, truncations and
//! length-prefix mutations of valid envelopes, gossip messages and sync messages never panic,
//! never abort, and never allocate more than the decoder's limit. The test binary's allocator
//! (`cap`) is capped while the decoders run: an allocation past the bound fails, which aborts
//! the test process, so a passing run is proof that none was tried.

use std::alloc::System;
use std::sync::Arc;

use cap::Cap;
use gridnode_federation::admission::{Answer, Challenge};
use gridnode_federation::authority;
use gridnode_federation::members::Bindings;
use gridnode_federation::wire::{
    Gossip, Key, MAX_REQUEST_BYTES, SyncRequest, SyncResponse, Version, decode_message,
};
use gridnode_federation::{Heartbeat, Identity, Load};
use gridnode_store::{
    Collection, Envelope, Hlc, Member, SignedVersion, Signer, Store, StoreConfig, ToolEntry,
    now_ms, signed_message,
};
use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// What one decode of an input under 64 KiB may allocate (the codec's claim limit for that
/// size, 2 MiB, with room for the test's own bookkeeping).
const SMALL_INPUT_BOUND: usize = 8 << 20;

/// A valid envelope of a record with every kind of field filled.
fn envelope() -> Vec<u8> {
    let mut record = ToolEntry {
        tool_id: "t".into(),
        tool_tags: vec!["a".into(), "b".into()],
        tool_search_description: "a tool".into(),
        ..ToolEntry::default()
    };
    record.tool_metadata = serde_json::json!({"n": 1, "s": "x", "l": [1, 2, {"k": null}]})
        .as_object()
        .unwrap()
        .clone();
    Envelope::live(Hlc { wall_ms: now_ms(), counter: 0, node: "a".into() }, record)
        .encode()
        .unwrap()
}

fn gossip() -> Vec<u8> {
    let version = Version {
        key: Key::new(Collection::Tools, "t"),
        envelope: envelope(),
        signature: vec![9; 64],
    };
    Gossip::Versions(vec![version]).encode()
}

fn heartbeat() -> Vec<u8> {
    Gossip::Heartbeat(Heartbeat {
        node_id: "a".into(),
        peer_id: "p".into(),
        grpc: "127.0.0.1:1".into(),
        http: "http://127.0.0.1:2".into(),
        version: "0.1.0".into(),
        load: Load::default(),
        p2p: vec!["/ip4/127.0.0.1/tcp/1".into()],
    })
    .encode()
}

fn sync_messages() -> Vec<Vec<u8>> {
    let key = Key::new(Collection::Tools, "t");
    [
        gridnode_store::encode(&SyncRequest::Fetch(vec![key.clone(); 3])).unwrap(),
        gridnode_store::encode(&SyncRequest::Digest(vec![7; 256])).unwrap(),
        gridnode_store::encode(&SyncResponse::Versions(vec![Version {
            key,
            envelope: envelope(),
            signature: vec![1; 64],
        }]))
        .unwrap(),
        gridnode_store::encode(&Answer::Proof(vec![3; 32])).unwrap(),
    ]
    .into()
}

/// The cap is global: the tests of this binary take turns.
static CAPPED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every decoder a peer's bytes reach, run on `bytes` with the allocator capped at what is
/// allocated now plus [`SMALL_INPUT_BOUND`]. Only errors come back, never a panic.
fn decode_everything(store: &Store, bindings: &Bindings, bytes: &[u8]) {
    decode_everything_within(store, bindings, bytes, SMALL_INPUT_BOUND);
}

/// [`decode_everything`] with the cap at `bound` more than what is allocated now.
fn decode_everything_within(store: &Store, bindings: &Bindings, bytes: &[u8], bound: usize) {
    let _turn = CAPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let version = Version {
        key: Key::new(Collection::Tools, "t"),
        envelope: bytes.to_vec(),
        signature: vec![],
    };
    let signed = SignedVersion { envelope: bytes.to_vec(), signature: vec![] };
    let before = ALLOCATOR.allocated();
    ALLOCATOR.set_limit(before + bound).unwrap();
    let _ = Gossip::decode(bytes);
    let _ = decode_message::<SyncRequest>(bytes, MAX_REQUEST_BYTES);
    let _ = decode_message::<SyncResponse>(bytes, MAX_REQUEST_BYTES);
    let _ = decode_message::<Challenge>(bytes, 256);
    let _ = decode_message::<Answer>(bytes, 256);
    let _ = authority::check(&version, "me", bindings);
    for collection in Collection::ALL {
        let _ = store.merge_encoded(collection, "t", &signed);
    }
    ALLOCATOR.set_limit(usize::MAX).unwrap();
}

fn mutations(valid: &[u8], at: usize, byte: u8) -> Vec<Vec<u8>> {
    let at = at % valid.len().max(1);
    let mut out = vec![valid[..at].to_vec()];
    // A length prefix (or any byte) replaced by a varint marker that declares a huge length.
    for marker in [byte, 0xfb, 0xfc, 0xfd, 0xfe, 0xff] {
        let mut changed = valid.to_vec();
        if let Some(b) = changed.get_mut(at) {
            *b = marker;
        }
        out.push(changed);
    }
    // 1 TiB declared right there.
    let mut tib = valid[..at].to_vec();
    tib.push(0xfd);
    tib.extend_from_slice(&(1u64 << 40).to_le_bytes());
    tib.extend_from_slice(&valid[at..]);
    out.push(tib);
    out
}

fn store() -> Store {
    Store::open(&StoreConfig::temporary("me")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_allocate_past_the_bound(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (store, bindings) = (store(), Bindings::default());
        decode_everything(&store, &bindings, &bytes);
        prop_assert_eq!(store.last_seq(), 0, "garbage merged");
    }

    #[test]
    fn truncated_and_mutated_messages_never_panic_nor_allocate_past_the_bound(at in 0usize..4096, byte in any::<u8>()) {
        let (store, bindings) = (store(), Bindings::default());
        let mut valid = vec![envelope(), gossip(), heartbeat()];
        valid.extend(sync_messages());
        for message in valid {
            for bytes in mutations(&message, at, byte) {
                decode_everything(&store, &bindings, &bytes);
            }
        }
    }
}

#[test]
fn large_inputs_are_bounded_by_their_size_tier() {
    // Past 64 KiB the claim limit is 32 MiB, past 1 MiB 256 MiB (the codec's tiers): a length
    // prefix anywhere in a large message still cannot make a decoder allocate past them.
    let (store, bindings) = (store(), Bindings::default());
    for (size, bound) in [(200 << 10, 48 << 20), (2 << 20, 300 << 20)] {
        let record = ToolEntry {
            tool_id: "t".into(),
            tool_man_page_doc: "m".repeat(size),
            ..ToolEntry::default()
        };
        let valid = Envelope::live(Hlc { wall_ms: 1, counter: 0, node: "a".into() }, record)
            .encode()
            .unwrap();
        for at in [0, 1, 5, 9, 17, 40, valid.len() / 2, valid.len() - 1] {
            for bytes in mutations(&valid, at, 0xfd) {
                decode_everything_within(&store, &bindings, &bytes, bound);
            }
        }
    }
}

#[test]
fn the_cap_is_real() {
    // A 64 MiB allocation under the cap fails (checked without aborting: try_reserve).
    let _turn = CAPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    ALLOCATOR.set_limit(ALLOCATOR.allocated() + SMALL_INPUT_BOUND).unwrap();
    let mut big: Vec<u8> = Vec::new();
    let refused = big.try_reserve_exact(64 << 20).is_err();
    ALLOCATOR.set_limit(usize::MAX).unwrap();
    assert!(refused);
}

#[test]
fn the_valid_messages_do_decode() {
    assert!(Gossip::decode(&gossip()).is_ok());
    assert!(Gossip::decode(&heartbeat()).is_ok());
    let messages = sync_messages();
    assert!(decode_message::<SyncRequest>(&messages[0], MAX_REQUEST_BYTES).is_ok());
    assert!(decode_message::<SyncRequest>(&messages[1], MAX_REQUEST_BYTES).is_ok());
    assert!(decode_message::<SyncResponse>(&messages[2], 1 << 20).is_ok());
    assert!(decode_message::<Answer>(&messages[3], 256).is_ok());
    // A signed envelope from a bound author passes the checks and merges.
    let identity = Identity::generate();
    let mut bindings = Bindings::default();
    bindings
        .set("a", Some(&Member { node_id: "a".into(), peer_id: identity.peer_id().to_string() }));
    let envelope = envelope();
    let signature = identity.sign(&signed_message(Collection::Tools, "t", &envelope));
    let version = Version {
        key: Key::new(Collection::Tools, "t"),
        envelope: envelope.clone(),
        signature: signature.clone(),
    };
    assert!(authority::check(&version, "me", &bindings).is_ok());
    let store = store();
    assert!(
        store.merge_encoded(Collection::Tools, "t", &SignedVersion { envelope, signature }).is_ok()
    );
    let _: Arc<dyn Signer> = Arc::new(identity);
}
