//! Time for the in-memory backend, injectable.
//!
//! Leases expire after `ttl` and `watch` times out, so the backend needs a clock.
//! Tests and the deterministic simulation must control it, which is why the
//! backend never reads the system clock directly: [`TokioClock`] follows tokio's
//! clock (so `tokio::time::pause` works too), [`ManualClock`] only moves when told
//! to and wakes every sleeper it passes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

/// A monotonic clock measured from an arbitrary origin.
pub trait Clock: Send + Sync {
    /// The time elapsed since the clock's origin.
    fn now(&self) -> Duration;
    /// A future that completes once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()>;
}

/// Tokio's clock, with the origin at creation.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(self.origin + deadline))
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it. Clones share
/// the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Duration>>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self {
            now: Arc::new(watch::Sender::new(Duration::ZERO)),
        }
    }

    /// Move time forward by `by`, waking every sleeper whose deadline passed.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone, so time can never reach the deadline.
                    futures::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_it_passes() {
        let clock = ManualClock::new();
        let sleeper = tokio::spawn(clock.sleep_until(Duration::from_secs(5)));
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(clock.now(), Duration::from_secs(3));
        clock.sleep_until(Duration::from_secs(10)).await;
        assert!(clock.now() >= Duration::from_secs(10));
    }
}
