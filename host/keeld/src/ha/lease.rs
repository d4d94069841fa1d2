//! The leader's local lease deadline.
//!
//! The leader key lives as long as the lease the last successful renewal extended: `ttl` from
//! the moment the renewal was *sent* (etcd starts counting later, so this errs on the safe
//! side). The HA loop normally renews long before that, or demotes when the DCS stays
//! unreachable. But a loop stuck in a slow call (a DCS that hangs instead of refusing, a plugin
//! call running to its deadline) could still be primary when the key expires and another member
//! promotes. This guard closes that window without polling: it sleeps until just before the
//! lease can end and, unless a renewal moved the deadline, stops PostgreSQL immediately.
//! Pause and failsafe mode, where Patroni keeps a primary without a lease, disarm it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use keel_postgres::{Postgres, StopMode};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long before the lease can end the guard acts: an immediate stop takes well under a
/// second, and a quarter of a short ttl leaves the loop most of it to renew.
pub(crate) fn margin(ttl: Duration) -> Duration {
    (ttl / 4).min(Duration::from_secs(1))
}

/// The handle the loop moves; the guard task lives until the handle is dropped.
pub(crate) struct LeaseGuard {
    deadline: watch::Sender<Option<Instant>>,
}

impl LeaseGuard {
    /// Starts the guard for `pg`, disarmed.
    pub(crate) fn start(pg: Arc<Postgres>) -> Self {
        Self::start_with(move || {
            let pg = Arc::clone(&pg);
            Box::pin(async move {
                if let Err(e) = pg.stop(StopMode::Immediate).await {
                    tracing::error!("stopping PostgreSQL at the lease deadline failed: {e}");
                }
            })
        })
    }

    /// Starts a guard that runs `expire` when a lease runs out unrenewed.
    fn start_with(expire: impl Fn() -> BoxFuture<'static, ()> + Send + 'static) -> Self {
        let (deadline, rx) = watch::channel(None);
        tokio::spawn(guard(expire, rx));
        Self { deadline }
    }

    /// A renewal sent at `sent` succeeded: the lease runs until `sent + ttl`.
    pub(crate) fn renewed(&self, sent: Instant, ttl: Duration) {
        let at = sent + ttl.saturating_sub(margin(ttl));
        self.deadline.send_replace(Some(at));
    }

    /// No lease to guard: not the leader, or a mode in which the primary runs without one.
    pub(crate) fn disarm(&self) {
        self.deadline.send_replace(None);
    }
}

async fn guard(
    expire: impl Fn() -> BoxFuture<'static, ()>,
    mut rx: watch::Receiver<Option<Instant>>,
) {
    loop {
        let armed = *rx.borrow_and_update();
        match armed {
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {
                        if *rx.borrow() != Some(at) {
                            continue;
                        }
                        tracing::error!(
                            "the leader lease is about to end and the loop has not renewed it: \
                             stopping PostgreSQL (immediate) before another member can be \
                             promoted"
                        );
                        expire().await;
                        // Re-armed only by the next renewal.
                        let _ = rx.wait_for(|d| *d != Some(at)).await;
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting_guard() -> (LeaseGuard, Arc<AtomicUsize>) {
        let fired = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&fired);
        let guard = LeaseGuard::start_with(move || {
            let count = Arc::clone(&count);
            Box::pin(async move {
                count.fetch_add(1, Ordering::SeqCst);
            })
        });
        (guard, fired)
    }

    #[tokio::test]
    async fn an_unrenewed_lease_stops_postgres_once_and_renewals_keep_it_running() {
        let ttl = Duration::from_secs(2);
        let (guard, fired) = counting_guard();
        // Renewed every 100 ms for three ttl-margins: never fires.
        for _ in 0..30 {
            guard.renewed(Instant::now(), ttl);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(fired.load(Ordering::SeqCst), 0);
        // No more renewals: it fires once, at ttl - margin, and stays quiet after.
        tokio::time::sleep(ttl * 2).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        // A renewal re-arms it.
        guard.renewed(Instant::now(), Duration::from_millis(400));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_disarmed_guard_never_fires() {
        let (guard, fired) = counting_guard();
        guard.renewed(Instant::now(), Duration::from_millis(400));
        guard.disarm();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_guard_acts_a_little_before_the_lease_ends() {
        assert_eq!(margin(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(margin(Duration::from_secs(2)), Duration::from_millis(500));
    }
}
