//! Waiting for something asynchronous, bounded in time.

use std::time::Duration;

/// Polls `probe` every 20 ms until it yields `Some`, and returns that; panics after `within`
/// saying `what` never happened. The one way tests wait for something asynchronous: a fixed
/// sleep is either too short on a busy machine or slower than needed.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    try_eventually(within, probe)
        .await
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting until {what}"))
}

/// [`eventually`] that answers `None` after `within` instead of panicking, for a test that
/// says itself what went wrong.
pub async fn try_eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(done) = probe().await {
            return Some(done);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a plain condition.
pub async fn eventually_true(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    eventually(within, what, || {
        std::future::ready(condition().then_some(()))
    })
    .await
}
