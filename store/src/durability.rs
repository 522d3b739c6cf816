//! Group commit: a write is acknowledged only after a flush that started after it, and many
//! concurrent writers share one flush.
//!
//! The first writer to find no flush running becomes the flusher; writers that arrive while a
//! flush runs wait for the next one, which one of them starts for all of them.

use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct State {
    started: u64,
    finished: u64,
    flushing: bool,
}

#[derive(Debug, Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupCommit {
    /// Returns once a flush that began after this call has completed. `flush` does the I/O.
    pub fn sync<E>(&self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let target = state.started + 1;
        while state.finished < target {
            if state.flushing {
                state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.flushing = true;
            state.started += 1;
            let generation = state.started;
            drop(state);
            // Clears `flushing` and wakes the waiters even if `flush` panics.
            let mut guard = FlushGuard { group: self, finished: None };
            let result = flush();
            if result.is_ok() {
                guard.finished = Some(generation);
            }
            drop(guard);
            result?;
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        }
        Ok(())
    }
}

struct FlushGuard<'a> {
    group: &'a GroupCommit,
    finished: Option<u64>,
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.group.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.flushing = false;
        if let Some(generation) = self.finished {
            state.finished = generation;
        }
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn concurrent_writers_share_flushes() {
        let group = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (group, flushes) = (group.clone(), flushes.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        group
                            .sync(|| {
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                flushes.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, ()>(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let flushes = flushes.load(Ordering::SeqCst);
        assert!((1..800).contains(&flushes), "{flushes} flushes for 800 syncs");
    }

    #[test]
    fn a_failed_flush_is_reported_and_retried_by_the_next_caller() {
        let group = GroupCommit::default();
        assert_eq!(group.sync(|| Err("disk full")), Err("disk full"));
        assert_eq!(group.sync(|| Ok::<_, &str>(())), Ok(()));
    }
}
