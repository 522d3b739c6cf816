//! Waiting for what a node does in the background: one poll loop for every test.

use std::time::{Duration, Instant};

/// How long a test waits for something a node does in the background.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// Polls `probe` every 25 ms until it gives a value, for at most `patience`; then fails the test
/// naming `what` and the probe's last word (`Err`).
pub async fn until<T, E: std::fmt::Debug>(
    what: &str,
    patience: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + patience;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {patience:?} waiting for {what}; last: {last:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}
