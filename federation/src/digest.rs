//! Anti-entropy digests: a compact, order-independent summary of which versions a node holds, so
//! two peers find what differs by comparing a few hundred numbers instead of every record.
//!
//! Every version `(collection, key, hlc)` hashes to one of [`BUCKETS`] buckets (by its key) and is
//! XORed into that bucket's value. Equal sets of versions give equal digests whatever the order;
//! a bucket whose values differ names the keys worth comparing one by one.

use gridnode_store::Hlc;

/// Buckets per digest: 256 × 8 bytes = 2 KiB per exchange.
pub const BUCKETS: usize = 256;

/// A digest of one node's versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    buckets: Vec<u64>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest { buckets: vec![0; BUCKETS] }
    }
}

impl Digest {
    /// The digest of a set of versions.
    pub fn of<'a>(versions: impl IntoIterator<Item = (u8, &'a str, &'a Hlc)>) -> Digest {
        let mut digest = Digest::default();
        for (collection, key, hlc) in versions {
            digest.add(collection, key, hlc);
        }
        digest
    }

    /// Adds (or, added twice, removes) one version.
    pub fn add(&mut self, collection: u8, key: &str, hlc: &Hlc) {
        self.buckets[bucket_of(collection, key)] ^= version_hash(collection, key, hlc);
    }

    /// The buckets in which two digests disagree.
    pub fn differing(&self, other: &Digest) -> Vec<usize> {
        (0..BUCKETS).filter(|&i| self.buckets.get(i) != other.buckets.get(i)).collect()
    }

    /// The raw bucket values, for the wire.
    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    /// A digest from the wire; `None` unless it has exactly [`BUCKETS`] buckets.
    pub fn from_buckets(buckets: Vec<u64>) -> Option<Digest> {
        (buckets.len() == BUCKETS).then_some(Digest { buckets })
    }
}

/// The bucket a record falls in: by its key only, so every version of it lands in the same one.
pub fn bucket_of(collection: u8, key: &str) -> usize {
    (fnv1a(&[&[collection], key.as_bytes()]) % BUCKETS as u64) as usize
}

fn version_hash(collection: u8, key: &str, hlc: &Hlc) -> u64 {
    fnv1a(&[
        &[collection],
        key.as_bytes(),
        &[0xff],
        &hlc.wall_ms.to_be_bytes(),
        &hlc.counter.to_be_bytes(),
        hlc.node.as_bytes(),
    ])
}

/// FNV-1a over several byte strings: stable across builds and machines (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hlc(wall_ms: u64, node: &str) -> Hlc {
        Hlc { wall_ms, counter: 0, node: node.into() }
    }

    #[test]
    fn a_changed_version_shows_in_exactly_its_bucket() {
        let a = [
            (1u8, "x".to_string(), hlc(1, "n")),
            (1, "y".into(), hlc(2, "n")),
            (2, "x".into(), hlc(3, "n")),
        ];
        let mut b = a.clone();
        b[1].2 = hlc(5, "m");
        let da = Digest::of(a.iter().map(|(c, k, h)| (*c, k.as_str(), h)));
        let db = Digest::of(b.iter().map(|(c, k, h)| (*c, k.as_str(), h)));
        assert_eq!(da.differing(&db), vec![bucket_of(1, "y")]);
        assert!(da.differing(&da.clone()).is_empty());
        assert!(Digest::from_buckets(vec![0; 3]).is_none());
        assert_eq!(Digest::from_buckets(da.buckets().to_vec()), Some(da));
    }

    proptest! {
        /// The digest is a property of the set, not of the order.
        #[test]
        fn order_does_not_matter(mut versions in prop::collection::vec((0u8..3, "[a-z]{1,6}", 0u64..100, "[a-c]"), 0..40), seed in any::<u64>()) {
            versions.sort();
            versions.dedup();
            let hlcs: Vec<Hlc> = versions.iter().map(|(_, _, w, n)| hlc(*w, n)).collect();
            let forward = Digest::of(versions.iter().zip(&hlcs).map(|((c, k, _, _), h)| (*c, k.as_str(), h)));
            let mut order: Vec<usize> = (0..versions.len()).collect();
            let mut state = seed;
            for i in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                order.swap(i, (state >> 33) as usize % (i + 1));
            }
            let shuffled = Digest::of(order.iter().map(|&i| (versions[i].0, versions[i].1.as_str(), &hlcs[i])));
            prop_assert_eq!(forward, shuffled);
        }
    }
}
