//! Bounded retries of etcd requests, as Patroni's etcd3 client does: retry only
//! what may succeed on another attempt (the store was unreachable), back off
//! from 100 ms up to 1 s, and give up when the retry budget is spent.

use std::time::{Duration, Instant};

use keel_sdk::dcs::DcsError;
use keel_sdk::host::etcd::EtcdError;

/// Retry `op` while it fails with `Unavailable`, for at most `budget`.
pub fn with_retry<T>(
    budget: Duration,
    mut op: impl FnMut() -> Result<T, EtcdError>,
) -> Result<T, EtcdError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match op() {
            Err(EtcdError::Unavailable(reason)) => {
                if started.elapsed() + delay >= budget {
                    return Err(EtcdError::Unavailable(reason));
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// An etcd failure as the HA loop must see it.
pub fn dcs_error(operation: &str, error: EtcdError) -> DcsError {
    match error {
        EtcdError::Unavailable(reason) => {
            DcsError::Unavailable(format!("etcd {operation}: {reason}"))
        }
        EtcdError::NotGranted(reason) => DcsError::InvalidConfig(reason),
        EtcdError::PermissionDenied(reason) => {
            DcsError::Failed(format!("etcd {operation}: permission denied: {reason}"))
        }
        EtcdError::LeaseNotFound => DcsError::Failed(format!("etcd {operation}: lease not found")),
        EtcdError::Compacted => DcsError::Failed(format!("etcd {operation}: revision compacted")),
        EtcdError::Rejected(reason) => DcsError::Failed(format!("etcd {operation}: {reason}")),
    }
}
