//! The task that keeps the index following the store's change feed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::SearchIndex;

/// Pause before retrying after a failed catch-up (a full disk, say).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A running follower. [`Follower::stop`] waits for the batch in hand to commit.
#[derive(Debug)]
pub struct Follower {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Follower {
    /// Stops following once the current batch (if any) is committed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Applies every commit to the index as it happens, batching whatever arrived while the last
/// batch was being indexed. Runs until stopped or until the store is gone.
pub fn follow(index: Arc<SearchIndex>, mut feed: watch::Receiver<u64>) -> Follower {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            feed.borrow_and_update();
            let worker = index.clone();
            let pause = match tokio::task::spawn_blocking(move || worker.catch_up()).await {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => {
                    tracing::error!(%error, "search index could not catch up; retrying");
                    Some(RETRY_AFTER)
                }
                Err(error) if error.is_panic() => {
                    tracing::error!(%error, "search index catch-up panicked; retrying");
                    Some(RETRY_AFTER)
                }
                // The runtime is shutting down.
                Err(_) => return,
            };
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => {}
                changed = feed.changed(), if pause.is_none() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Follower { stop, task }
}
