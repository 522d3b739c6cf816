//! A cache whose entries are valid while the store has committed nothing since they were read:
//! each entry records the store's feed sequence at its read, and is used only while that is still
//! the store's last sequence. Nothing has to invalidate it, and it is never stale. Read the
//! sequence before the values it guards, so that a write racing the read makes the entry stale
//! at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// At most `capacity` entries; past it, entries of older sequences go first, then all.
#[derive(Debug)]
pub struct Fresh<K, V> {
    entries: Mutex<HashMap<K, (u64, V)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Fresh<K, V> {
    pub fn new(capacity: usize) -> Fresh<K, V> {
        Fresh { entries: Mutex::default(), capacity }
    }

    /// The value of `key` read at sequence `seq`, if there is one.
    pub fn get(&self, key: &K, seq: u64) -> Option<V> {
        self.entries().get(key).filter(|(at, _)| *at == seq).map(|(_, value)| value.clone())
    }

    /// Keeps `value`, read at sequence `seq`.
    pub fn insert(&self, key: K, seq: u64, value: V) {
        let mut entries = self.entries();
        if entries.len() >= self.capacity {
            entries.retain(|_, (at, _)| *at == seq);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (seq, value));
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (u64, V)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hold_only_at_their_sequence_and_stay_bounded() {
        let cache = Fresh::new(2);
        cache.insert("a", 1, 10);
        assert_eq!(cache.get(&"a", 1), Some(10));
        assert_eq!(cache.get(&"a", 2), None, "the store moved on");
        cache.insert("b", 2, 20);
        cache.insert("c", 2, 30);
        assert_eq!(cache.get(&"a", 1), None, "older entries go first past the capacity");
        assert_eq!((cache.get(&"b", 2), cache.get(&"c", 2)), (Some(20), Some(30)));
    }
}
