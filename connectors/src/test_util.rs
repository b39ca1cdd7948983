//! What the crate's async tests share.

use std::time::Duration;

/// Polls `done` every few milliseconds until it holds or `within` has passed; whether it
/// held. A bounded wait for a state the code under test reaches on its own.
pub(crate) async fn poll_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
