//! The member's one lease: granted with TTL = `ttl`, kept alive at most once per
//! `loop_wait` unless forced (the leader forces it every cycle), re-granted when
//! etcd no longer knows it.

use std::time::{Duration, Instant};

use keel_sdk::host::etcd::{self, EtcdError};

use crate::retry::with_retry;

/// The lease and when it was last refreshed.
#[derive(Debug)]
pub struct Lease {
    ttl: u32,
    loop_wait: u32,
    id: Option<i64>,
    refreshed_at: Option<Instant>,
}

impl Lease {
    /// No lease yet; the first use grants one.
    pub fn new(ttl: u32, loop_wait: u32) -> Self {
        Self {
            ttl,
            loop_wait,
            id: None,
            refreshed_at: None,
        }
    }

    /// The current lease, if one was granted.
    pub fn id(&self) -> Option<i64> {
        self.id
    }

    /// Seconds between HA cycles.
    pub fn loop_wait(&self) -> u32 {
        self.loop_wait
    }

    /// etcd lost the lease: the next use grants a new one.
    pub fn forget(&mut self) {
        self.id = None;
        self.refreshed_at = None;
    }

    /// A new TTL applies from the next grant; the old lease is dropped (its keys
    /// are re-attached by the next member write and leader renewal).
    pub fn set_ttl(&mut self, ttl: u32, loop_wait: u32) {
        if ttl != self.ttl {
            self.forget();
        }
        self.ttl = ttl;
        self.loop_wait = loop_wait;
    }

    fn due(&self) -> bool {
        self.refreshed_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(self.loop_wait.into()))
    }

    fn grant(&mut self, budget: Duration) -> Result<i64, EtcdError> {
        let ttl = i64::from(self.ttl.max(1));
        let id = with_retry(budget, || etcd::lease_grant(ttl))?;
        self.id = Some(id);
        self.refreshed_at = Some(Instant::now());
        Ok(id)
    }

    /// A usable lease id: granted if missing, kept alive when `force` or due.
    pub fn ensure(&mut self, budget: Duration, force: bool) -> Result<i64, EtcdError> {
        let Some(id) = self.id else {
            return self.grant(budget);
        };
        if !force && !self.due() {
            return Ok(id);
        }
        let remaining = with_retry(budget, || etcd::lease_keep_alive(id))?;
        if remaining <= 0 {
            keel_sdk::host::log::warn(&format!("etcd lease {id:x} expired; granting a new one"));
            return self.grant(budget);
        }
        self.refreshed_at = Some(Instant::now());
        Ok(id)
    }

    /// Keep an existing lease alive if a refresh is due; nothing without a lease.
    pub fn refresh_if_due(&mut self, budget: Duration) -> Result<(), EtcdError> {
        if self.id.is_some() && self.due() {
            self.ensure(budget, false)?;
        }
        Ok(())
    }
}
