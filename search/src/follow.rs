//! The task that keeps the index following the store's change feed.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::SearchIndex;

/// Pause before retrying after a failed catch-up (a full disk, say).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Applies every commit to the index as it happens, batching whatever arrived while the last
/// batch was being indexed. Runs until aborted or until the store is gone.
pub fn follow(index: Arc<SearchIndex>, mut feed: tokio::sync::watch::Receiver<u64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            feed.borrow_and_update();
            let worker = index.clone();
            match tokio::task::spawn_blocking(move || worker.catch_up()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "search index could not catch up; retrying");
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
                Err(_) => return,
            }
            if feed.changed().await.is_err() {
                return;
            }
        }
    })
}
