//! Waiting for an effect instead of sleeping: [`eventually`] polls a check until it holds or a
//! deadline passes, so a test is as fast as the code under test and fails with its own message.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] checks again: short, since the checks are cheap reads.
const POLL: Duration = Duration::from_millis(2);

/// Polls `ok` until it holds (`true`) or `within` passes (`false`, for the caller's assertion).
///
/// On tokio's clock, so tests with a paused clock work too. A check that needs no `await` is
/// written `|| std::future::ready(cond)`.
pub async fn eventually<F, Fut>(within: Duration, mut ok: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if ok().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_at_once_or_gives_up_at_the_deadline() {
        assert!(eventually(Duration::ZERO, || std::future::ready(true)).await);
        let started = Instant::now();
        assert!(!eventually(Duration::from_secs(1), || std::future::ready(false)).await);
        assert!(started.elapsed() >= Duration::from_secs(1));
        let mut calls = 0;
        let third = eventually(Duration::from_secs(1), || {
            calls += 1;
            std::future::ready(calls == 3)
        });
        assert!(third.await);
        assert_eq!(calls, 3);
    }
}
