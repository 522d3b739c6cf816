//! The versions this node holds, by digest bucket: what anti-entropy compares. Kept in memory,
//! built from the store at start and moved forward by its change feed.

use std::collections::BTreeMap;

use gridnode_store::Hlc;

use crate::digest::{BUCKETS, Digest, bucket_of};
use crate::wire::{Key, Summary};

/// Every version held, bucketed, with the digest kept current.
#[derive(Debug, Clone)]
pub struct VersionMap {
    buckets: Vec<BTreeMap<Key, (Hlc, bool)>>,
    digest: Digest,
}

impl Default for VersionMap {
    fn default() -> Self {
        VersionMap { buckets: vec![BTreeMap::new(); BUCKETS], digest: Digest::default() }
    }
}

impl VersionMap {
    /// Records that `key` is at version `hlc`, unless a newer version is already recorded (the
    /// feed and the initial scan may both report a write).
    pub fn set(&mut self, key: Key, hlc: &Hlc, tombstone: bool) {
        let bucket = &mut self.buckets[bucket_of(key.collection, &key.id)];
        if let Some((old, _)) = bucket.get(&key) {
            if old >= hlc {
                return;
            }
            self.digest.add(key.collection, &key.id, old);
        }
        self.digest.add(key.collection, &key.id, hlc);
        bucket.insert(key, (hlc.clone(), tombstone));
    }

    /// Forgets `key` if it is still at version `hlc` (a collected tombstone).
    pub fn remove(&mut self, key: &Key, hlc: &Hlc) {
        let bucket = &mut self.buckets[bucket_of(key.collection, &key.id)];
        if bucket.get(key).is_some_and(|(held, _)| held == hlc) {
            bucket.remove(key);
            self.digest.add(key.collection, &key.id, hlc);
        }
    }

    /// The version held for `key`.
    pub fn get(&self, key: &Key) -> Option<&Hlc> {
        self.buckets[bucket_of(key.collection, &key.id)].get(key).map(|(hlc, _)| hlc)
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The versions in one bucket.
    pub fn summaries(&self, bucket: usize) -> Vec<Summary> {
        self.buckets
            .get(bucket)
            .into_iter()
            .flatten()
            .map(|(key, (hlc, tombstone))| Summary {
                key: key.clone(),
                hlc: hlc.clone(),
                tombstone: *tombstone,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use gridnode_store::Collection;

    use super::*;

    fn hlc(wall_ms: u64) -> Hlc {
        Hlc { wall_ms, counter: 0, node: "n".into() }
    }

    #[test]
    fn the_digest_follows_the_newest_versions() {
        let key = Key::new(Collection::Tools, "t");
        let mut map = VersionMap::default();
        map.set(key.clone(), &hlc(2), false);
        map.set(key.clone(), &hlc(1), false); // older: ignored
        let mut direct = VersionMap::default();
        direct.set(key.clone(), &hlc(2), false);
        assert_eq!(map.digest(), direct.digest());
        assert_eq!(map.get(&key), Some(&hlc(2)));
        map.set(key.clone(), &hlc(3), true);
        assert_ne!(map.digest(), direct.digest());
        let summaries = map.summaries(bucket_of(key.collection, &key.id));
        assert_eq!(summaries, [Summary { key: key.clone(), hlc: hlc(3), tombstone: true }]);
        map.remove(&key, &hlc(2)); // not the held version: kept
        assert_eq!(map.len(), 1);
        map.remove(&key, &hlc(3));
        assert!(map.is_empty());
        assert_eq!(map.digest(), &Digest::default());
    }
}
