//! Waiting for a condition with a deadline instead of sleeping a fixed time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Interval between two checks of the condition in [`wait_until`] and [`wait_for`].
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `condition` every 50 ms until it returns true or `timeout` passes;
/// returns whether it held. The condition is checked once more at the
/// deadline, so a timeout of zero checks it once.
///
/// ```no_run
/// # async fn example(path: &std::path::Path) {
/// use std::time::Duration;
///
/// let written = akira_testkit::wait_until(Duration::from_secs(10), || async {
///     path.exists()
/// })
/// .await;
/// assert!(written, "{} was not written within 10s", path.display());
/// # }
/// ```
pub async fn wait_until<F, Fut>(timeout: Duration, condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_every(POLL_INTERVAL, timeout, condition).await
}

/// Polls `condition` every `interval` until it returns true or `timeout`
/// passes; returns whether it held. For conditions whose cadence matters,
/// such as one that restarts an exited worker the way systemd's
/// `RestartSec=` does.
pub async fn wait_until_every<F, Fut>(
    interval: Duration,
    timeout: Duration,
    mut condition: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls `condition` like [`wait_until`] and fails the test when it does not
/// hold within `timeout`.
///
/// # Panics
///
/// Panics with a message that names `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let met = wait_until(timeout, condition).await;
    assert!(met, "timed out after {timeout:?} waiting for {what}");
}
