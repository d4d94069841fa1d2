//! Whether a replica's copies of the primary's logical slots are safe to use after a
//! failover (Patroni 4's `check_logical_slots_readiness`).
//!
//! A copy carries the primary slot's `catalog_xmin`: decoding from it needs the catalog rows
//! of transactions since then. Only this replica's `hot_standby_feedback`, through its
//! physical slot on the primary, stops the primary's vacuum from removing them, and that
//! protection starts only once the feedback includes the copy. So a copy counts as ready
//! when the physical slot's `catalog_xmin` on the primary has caught up with what the
//! primary's logical slot needed when the physical slot first had one, while not being newer
//! than the copy's own. Until then a promotion may hand consumers a slot whose catalog rows
//! are gone; the daemon warns about it when promoting.
//!
//! The check starts over whenever PostgreSQL restarts (a copy also restarts it) or the leader
//! changes: while the feedback was off, the primary may have removed rows.
//! Pure state: the daemon supplies what it read.

use std::collections::BTreeMap;

use keel_postgres::{ReplicationSlot, SlotKind};

/// What the check is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Epoch {
    /// `pg_postmaster_start_time()` of this replica.
    pub(super) postmaster_start: String,
    /// The cluster's leader, whose slots the check reads.
    pub(super) leader: String,
}

/// The copies not yet known to be safe after a failover.
#[derive(Debug, Default)]
pub(crate) struct CopyReadiness {
    epoch: Option<Epoch>,
    /// Copy name → the primary slot's `catalog_xmin` when this replica's physical slot first
    /// had one (`None` until then).
    pending: BTreeMap<String, Option<u32>>,
    /// The last reason the check could not progress, so it is logged once, not every cycle.
    last_stall: Option<String>,
}

impl CopyReadiness {
    /// Starts the check over for every logical slot this replica has when `epoch` is new.
    pub(super) fn begin(&mut self, epoch: Epoch, local: &[ReplicationSlot]) {
        if self.epoch.as_ref() == Some(&epoch) {
            return;
        }
        self.epoch = Some(epoch);
        self.last_stall = None;
        self.pending = local
            .iter()
            .filter(|s| is_logical(s))
            .map(|s| (s.name.clone(), None))
            .collect();
    }

    /// Forgets everything (this node is the primary now, or keeps no copies).
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Copies still to be judged.
    pub(super) fn unready(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    /// The copies among `local` not known to be safe for the PostgreSQL started at
    /// `postmaster_start`: all of them when the check has not run since it started (no
    /// leader to check against since then).
    pub(super) fn unready_now(
        &self,
        postmaster_start: &str,
        local: &[ReplicationSlot],
    ) -> Vec<String> {
        let checked = self
            .epoch
            .as_ref()
            .is_some_and(|e| e.postmaster_start == postmaster_start);
        local
            .iter()
            .filter(|s| is_logical(s) && (!checked || self.pending.contains_key(&s.name)))
            .map(|s| s.name.clone())
            .collect()
    }

    /// The primary's slots the next [`CopyReadiness::settle`] needs: the pending copies whose
    /// primary `catalog_xmin` is not known yet.
    pub(super) fn awaiting_primary(&self) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(_, xmin)| xmin.is_none())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// One check: `physical_xmin` is the `catalog_xmin` of this replica's physical slot on
    /// the primary, `primary` the primary's rows for [`CopyReadiness::awaiting_primary`],
    /// `local` this replica's slots. Returns the copies that became ready; copies that no
    /// longer exist here are dropped from the check.
    pub(super) fn settle(
        &mut self,
        physical_xmin: u32,
        primary: &[ReplicationSlot],
        local: &[ReplicationSlot],
    ) -> Vec<String> {
        for slot in primary.iter().filter(|s| is_logical(s)) {
            if let (Some(entry @ None), Some(xmin)) =
                (self.pending.get_mut(&slot.name), slot.catalog_xmin)
            {
                *entry = Some(xmin);
            }
        }
        let mut ready = Vec::new();
        self.pending.retain(|name, primary_xmin| {
            let Some(copy) = local.iter().find(|s| &s.name == name && is_logical(s)) else {
                return false;
            };
            let safe = matches!(
                (*primary_xmin, copy.catalog_xmin),
                (Some(needed), Some(copy_xmin))
                    if xid_precedes_or_equals(needed, physical_xmin)
                        && xid_precedes_or_equals(physical_xmin, copy_xmin)
            );
            if safe {
                ready.push(name.clone());
            }
            !safe
        });
        self.last_stall = None;
        ready
    }

    /// True when `reason` differs from the last one noted: log it then.
    pub(super) fn note_stall(&mut self, reason: &str) -> bool {
        if self.last_stall.as_deref() == Some(reason) {
            return false;
        }
        self.last_stall = Some(reason.to_owned());
        true
    }
}

fn is_logical(slot: &ReplicationSlot) -> bool {
    matches!(slot.kind, SlotKind::Logical { .. })
}

/// PostgreSQL's `TransactionIdPrecedesOrEquals` for normal ids: 32-bit ids compare modulo
/// 2^32, so the check keeps working across a wraparound.
pub(super) fn xid_precedes_or_equals(a: u32, b: u32) -> bool {
    a.wrapping_sub(b).cast_signed() <= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(name: &str, catalog_xmin: Option<u32>) -> ReplicationSlot {
        ReplicationSlot {
            name: name.into(),
            kind: SlotKind::Logical {
                database: "app".into(),
                plugin: "pgoutput".into(),
            },
            temporary: false,
            active: false,
            restart_lsn: None,
            confirmed_flush_lsn: None,
            catalog_xmin,
        }
    }

    fn epoch(start: &str, leader: &str) -> Epoch {
        Epoch {
            postmaster_start: start.into(),
            leader: leader.into(),
        }
    }

    #[test]
    fn xids_compare_across_wraparound() {
        assert!(xid_precedes_or_equals(100, 100));
        assert!(xid_precedes_or_equals(100, 101));
        assert!(!xid_precedes_or_equals(101, 100));
        assert!(
            xid_precedes_or_equals(u32::MAX - 5, 10),
            "10 is after the wrap"
        );
        assert!(!xid_precedes_or_equals(10, u32::MAX - 5));
    }

    /// Patroni's rule: ready once the physical slot's catalog_xmin covers what the primary's
    /// slot needed, and is not newer than the copy's own.
    #[test]
    fn a_copy_is_ready_once_the_feedback_covers_it() {
        let mut r = CopyReadiness::default();
        let local = [logical("cdc", Some(700)), logical("other", Some(650))];
        r.begin(epoch("t1", "a"), &local);
        assert_eq!(r.awaiting_primary(), ["cdc", "other"]);

        // The primary's slots needed 690 and 640; the feedback is still behind them.
        let primary = [logical("cdc", Some(690)), logical("other", Some(640))];
        assert!(r.settle(600, &primary, &local).is_empty());
        assert!(r.awaiting_primary().is_empty(), "remembered once");

        // The feedback reaches 645: `other` is covered, `cdc` (needs 690) is not.
        assert_eq!(r.settle(645, &[], &local), ["other"]);
        // Past the copy's own catalog_xmin the feedback no longer includes the copy.
        assert!(r.settle(701, &[], &local).is_empty());
        assert_eq!(r.settle(695, &[], &local), ["cdc"]);
        assert!(r.unready().is_empty());
    }

    #[test]
    fn a_restart_or_a_new_leader_starts_the_check_over() {
        let mut r = CopyReadiness::default();
        let local = [logical("cdc", Some(700))];
        r.begin(epoch("t1", "a"), &local);
        assert_eq!(r.settle(700, &[logical("cdc", Some(700))], &local), ["cdc"]);
        r.begin(epoch("t1", "a"), &local);
        assert!(r.unready().is_empty(), "same epoch: still ready");
        r.begin(epoch("t2", "a"), &local);
        assert_eq!(r.unready(), ["cdc"], "PostgreSQL restarted");
        assert_eq!(r.settle(700, &[logical("cdc", Some(700))], &local), ["cdc"]);
        r.begin(epoch("t2", "b"), &local);
        assert_eq!(r.unready(), ["cdc"], "another leader");
    }

    #[test]
    fn unchecked_copies_count_as_unready_at_promotion() {
        let mut r = CopyReadiness::default();
        let local = [logical("cdc", Some(700)), logical("other", Some(700))];
        assert_eq!(
            r.unready_now("t1", &local),
            ["cdc", "other"],
            "never checked"
        );
        r.begin(epoch("t1", "a"), &local);
        r.settle(700, &[logical("other", Some(700))], &local);
        assert_eq!(r.unready_now("t1", &local), ["cdc"]);
        assert_eq!(
            r.unready_now("t2", &local),
            ["cdc", "other"],
            "PostgreSQL restarted since the check"
        );
    }

    #[test]
    fn copies_gone_here_or_missing_on_the_primary() {
        let mut r = CopyReadiness::default();
        r.begin(
            epoch("t1", "a"),
            &[logical("cdc", Some(700)), logical("gone", Some(700))],
        );
        let local = [logical("cdc", Some(700))];
        // The primary has no `cdc` (yet): it stays pending, asked for again.
        assert!(r.settle(700, &[], &local).is_empty());
        assert_eq!(r.unready(), ["cdc"], "`gone` was dropped here");
        assert_eq!(r.awaiting_primary(), ["cdc"]);
        // A copy without catalog_xmin is never ready.
        let no_xmin = [logical("cdc", None)];
        assert!(
            r.settle(700, &[logical("cdc", Some(700))], &no_xmin)
                .is_empty()
        );
    }

    #[test]
    fn a_stall_is_noted_once() {
        let mut r = CopyReadiness::default();
        assert!(r.note_stall("no feedback"));
        assert!(!r.note_stall("no feedback"));
        assert!(r.note_stall("no physical slot"));
        r.settle(1, &[], &[]);
        assert!(r.note_stall("no physical slot"), "after progress");
    }
}
