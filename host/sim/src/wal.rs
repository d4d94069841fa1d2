//! A node's WAL, as the simulation's ground truth and as PostgreSQL sees it.
//!
//! PostgreSQL only knows timeline numbers and switch points, and two promotions
//! from the same parent can pick the same timeline number, so those cannot tell
//! two histories apart. Every stretch of WAL written by one primary incarnation
//! (a bootstrap, a promotion, a restart as primary) therefore gets a unique
//! segment id: two WALs hold the same bytes up to a position exactly when they
//! have the same segments up to it. The invariants use the ids; the simulated
//! PostgreSQL (streaming, the pg_rewind check) uses only what the real one sees.

/// One stretch of WAL written by one primary incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    /// Unique in the whole run.
    uid: u32,
    /// The PostgreSQL timeline it belongs to.
    tli: u32,
    /// Where it starts; it runs to the next segment's start, or to the end.
    start: u64,
}

/// The WAL of one data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wal {
    segments: Vec<Segment>,
    end: u64,
}

impl Wal {
    /// A fresh cluster (initdb) on timeline 1.
    pub(crate) fn initdb(uid: u32, end: u64) -> Self {
        Self {
            segments: vec![Segment {
                uid,
                tli: 1,
                start: 0,
            }],
            end,
        }
    }

    /// The current timeline.
    pub(crate) fn timeline(&self) -> u32 {
        self.segments.last().map_or(0, |s| s.tli)
    }

    /// The highest timeline in this history.
    pub(crate) fn max_timeline(&self) -> u32 {
        self.segments.iter().map(|s| s.tli).max().unwrap_or(0)
    }

    /// The end of the WAL (flush LSN on a primary, received on a replica).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// The id of the segment being written.
    pub(crate) fn last_uid(&self) -> u32 {
        self.segments.last().map_or(0, |s| s.uid)
    }

    /// Write `bytes` of WAL.
    pub(crate) fn append(&mut self, bytes: u64) {
        self.end += bytes;
    }

    /// A new primary incarnation starts writing: a new segment on the same
    /// timeline (restart as primary, `new_timeline` = `None`) or on a new one
    /// (promotion): PostgreSQL picks the highest timeline it knows of (its own
    /// history and, given here, the archive's) plus one.
    pub(crate) fn new_writer(&mut self, uid: u32, new_timeline: Option<u32>) {
        let tli = match new_timeline {
            Some(archived) => self.max_timeline().max(archived) + 1,
            None => self.timeline(),
        };
        if self.segments.last().is_some_and(|s| s.start == self.end) {
            self.segments.pop();
        }
        self.segments.push(Segment {
            uid,
            tli,
            start: self.end,
        });
    }

    /// The timeline history file: (ended timeline, switch point), oldest first.
    pub(crate) fn history(&self) -> Vec<(u32, u64)> {
        let mut out: Vec<(u32, u64)> = Vec::new();
        for pair in self.segments.windows(2) {
            if pair[0].tli != pair[1].tli {
                out.push((pair[0].tli, pair[1].start));
            }
        }
        out
    }

    /// Ground truth: how far the two WALs hold the same bytes.
    pub(crate) fn common_prefix(&self, other: &Wal) -> u64 {
        let limit = self.end.min(other.end);
        let (mut i, mut j, mut pos) = (0, 0, 0);
        loop {
            let (Some(a), Some(b)) = (self.segments.get(i), other.segments.get(j)) else {
                return pos.min(limit);
            };
            if a.uid != b.uid {
                return pos.min(limit);
            }
            let next_a = self.segments.get(i + 1).map_or(u64::MAX, |s| s.start);
            let next_b = other.segments.get(j + 1).map_or(u64::MAX, |s| s.start);
            let next = next_a.min(next_b);
            if next >= limit {
                return limit;
            }
            pos = next;
            if next_a == next {
                i += 1;
            }
            if next_b == next {
                j += 1;
            }
        }
    }

    /// Ground truth: `self` holds everything `other` holds.
    pub(crate) fn extends(&self, other: &Wal) -> bool {
        self.common_prefix(other) == other.end
    }

    /// Ground truth: a commit that ended at `lsn` on segment `uid` is in this WAL.
    pub(crate) fn contains(&self, uid: u32, lsn: u64) -> bool {
        let Some(i) = self.segments.iter().position(|s| s.uid == uid) else {
            return false;
        };
        let covered_to = self.segments.get(i + 1).map_or(self.end, |s| s.start);
        lsn <= covered_to
    }

    /// Take the upstream's WAL up to `upto` (the two agree up to our end).
    pub(crate) fn receive(&mut self, upstream: &Wal, upto: u64) {
        let upto = upto.min(upstream.end);
        if upto <= self.end {
            return;
        }
        let k = self.segments.len();
        let aligned = k > 0 && upstream.segments.get(k - 1).map(|s| s.uid) == Some(self.last_uid());
        if aligned {
            let more = upstream.segments[k..].iter().filter(|s| s.start < upto);
            self.segments.extend(more);
        } else {
            self.segments = upstream
                .segments
                .iter()
                .copied()
                .filter(|s| s.start < upto)
                .collect();
        }
        self.end = upto;
    }

    /// PostgreSQL's view (walreceiver): can a replica at this WAL stream from
    /// `upstream` now? A replica ahead on the same timeline waits.
    pub(crate) fn can_stream_from(&self, upstream: &Wal) -> bool {
        let (mine, theirs) = (self.timeline(), upstream.timeline());
        if theirs < mine {
            return false;
        }
        if theirs == mine {
            return self.end <= upstream.end;
        }
        upstream
            .history()
            .iter()
            .find(|(tli, _)| *tli == mine)
            .is_some_and(|(_, switch)| self.end <= *switch)
    }

    /// Patroni's pg_rewind check (§5.4): does this WAL need a rewind to follow
    /// a leader with `leader`'s WAL? Timelines and switch points only.
    pub(crate) fn diverged_from(&self, leader: &Wal) -> bool {
        let (mine, theirs) = (self.timeline(), leader.timeline());
        if mine > theirs {
            return true;
        }
        if mine == theirs {
            return false;
        }
        for (tli, switch) in leader.history() {
            if tli == mine {
                return self.end > switch;
            }
            if tli > mine {
                return true;
            }
        }
        true
    }

    /// The number of segments (for the report).
    pub(crate) fn segments(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_forks_and_followers_see_it() {
        let mut a = Wal::initdb(1, 100);
        let mut b = a.clone();
        a.append(50);
        b.new_writer(2, Some(0));
        b.append(10);
        assert_eq!(b.timeline(), 2);
        assert_eq!(b.history(), [(1, 100)]);
        assert_eq!(a.common_prefix(&b), 100);
        assert!(!a.extends(&b) && !b.extends(&a));
        // a went past the switch point: it must rewind, and cannot stream.
        assert!(a.diverged_from(&b));
        assert!(!a.can_stream_from(&b));
        let mut c = Wal::initdb(1, 100);
        c.end = 90;
        assert!(!c.diverged_from(&b));
        assert!(c.can_stream_from(&b));
        c.receive(&b, u64::MAX);
        assert_eq!(c, b);
        assert!(c.contains(2, 110) && c.contains(1, 100) && !c.contains(1, 101));
    }

    #[test]
    fn same_timeline_number_different_history() {
        let base = Wal::initdb(1, 100);
        let (mut a, mut b) = (base.clone(), base);
        a.new_writer(2, Some(0));
        a.append(10);
        b.new_writer(3, Some(0));
        b.append(20);
        // PostgreSQL cannot tell them apart; the segment ids can.
        assert_eq!(a.timeline(), b.timeline());
        // With the first history file archived the second promotion moves on.
        let mut c = Wal::initdb(1, 100);
        c.new_writer(4, Some(a.timeline()));
        assert_eq!(c.timeline(), 3);
        assert!(c.diverged_from(&a) && a.diverged_from(&c));
        assert!(!a.diverged_from(&b));
        assert!(a.can_stream_from(&b));
        assert_eq!(a.common_prefix(&b), 100);
    }

    #[test]
    fn restart_as_primary_keeps_the_timeline() {
        let mut a = Wal::initdb(1, 100);
        a.new_writer(2, None);
        a.append(5);
        assert_eq!(a.timeline(), 1);
        assert!(a.history().is_empty());
        let mut r = Wal::initdb(1, 100);
        r.receive(&a, u64::MAX);
        assert_eq!(r, a);
        assert!(r.contains(1, 100) && r.contains(2, 105));
    }
}
