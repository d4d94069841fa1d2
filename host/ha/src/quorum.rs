//! Quorum commit (`synchronous_mode: quorum`): the ordered steps that take
//! `synchronous_standby_names` and `/sync` from any state to the wanted one.
//!
//! Two "ANY n of set" statements describe the state. PostgreSQL's
//! `synchronous_standby_names = ANY numsync (sync…)` says how many standbys
//! must confirm a commit; `/sync` `{leader, quorum, sync_standby: voters}` says
//! how many of `{leader} ∪ voters` a node must see, none of them ahead of it,
//! to win a leader race. No acknowledged commit is lost as long as every set
//! that can confirm a commit overlaps every set that can elect a leader:
//! `|voters ∪ {leader} ∪ sync ∪ {leader_wanted}| <= quorum + numsync + 1`, with
//! one of the two sets contained in the other while they are changed one after
//! the other.
//!
//! The target for the streaming, eligible standbys `active` is
//! `sync = voters = active`, `numsync = min(synchronous_node_count, |active|)`,
//! `quorum = |active| - numsync`. Getting there keeps the invariant after every
//! single step: a number is raised on one side before the other side's is
//! lowered, a node enters the side that makes the sets safer first, and a step
//! that would break the invariant is never emitted. These are Patroni 4.1's
//! rules (its `QuorumStateResolver`), so a Keel primary and a Patroni one leave
//! `/sync` in states the other reads the same way.

use std::collections::BTreeMap;
use std::fmt;

/// A set of member names compared case-insensitively (PostgreSQL folds
/// `application_name` matching the same way Patroni does), iterated in order
/// of the folded name.
#[derive(Debug, Clone, Default)]
pub struct NameSet(BTreeMap<String, String>);

impl PartialEq for NameSet {
    fn eq(&self, other: &Self) -> bool {
        self.0.keys().eq(other.0.keys())
    }
}

impl Eq for NameSet {}

impl NameSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name` (a name already present under another case is kept).
    pub fn insert(&mut self, name: &str) {
        self.0
            .entry(name.to_lowercase())
            .or_insert_with(|| name.to_owned());
    }

    /// Whether `name` is in the set, in any case.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(&name.to_lowercase())
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No names.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in order of their folded form.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.values().map(String::as_str)
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &Self) -> Self {
        let mut out = self.clone();
        for (k, v) in &other.0 {
            out.0.entry(k.clone()).or_insert_with(|| v.clone());
        }
        out
    }

    /// `self − other`.
    pub fn minus(&self, other: &Self) -> Self {
        self.filter(|k| !other.0.contains_key(k))
    }

    /// `self ∩ other`.
    pub fn and(&self, other: &Self) -> Self {
        self.filter(|k| other.0.contains_key(k))
    }

    /// Every name of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.keys().all(|k| other.0.contains_key(k))
    }

    /// `self ⊂ other` and not equal.
    fn is_strict_subset(&self, other: &Self) -> bool {
        self.len() < other.len() && self.is_subset(other)
    }

    fn with(&self, name: &str) -> Self {
        let mut out = self.clone();
        out.insert(name);
        out
    }

    fn without(&self, name: &str) -> Self {
        let mut out = self.clone();
        out.0.remove(&name.to_lowercase());
        out
    }

    fn filter(&self, keep: impl Fn(&str) -> bool) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// The first `n` names, or the last `n` when `from_end`.
    fn take(&self, n: usize, from_end: bool) -> Self {
        let pick = |it: &mut dyn Iterator<Item = (&String, &String)>| {
            it.take(n).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Self(if from_end {
            pick(&mut self.0.iter().rev())
        } else {
            pick(&mut self.0.iter())
        })
    }
}

impl<S: AsRef<str>> FromIterator<S> for NameSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = Self::new();
        for name in iter {
            out.insert(name.as_ref());
        }
        out
    }
}

impl fmt::Display for NameSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().collect();
        write!(f, "[{}]", names.join(", "))
    }
}

/// What the primary knows when it runs the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInput {
    /// `/sync` `leader`.
    pub leader: String,
    /// `/sync` `quorum`.
    pub quorum: usize,
    /// `/sync` `sync_standby`.
    pub voters: NameSet,
    /// The number in the running `synchronous_standby_names`.
    pub numsync: usize,
    /// The names in the running `synchronous_standby_names` (`*` counts as none).
    pub sync: NameSet,
    /// Members of `sync` known to have reached the primary's flush position of
    /// the moment `synchronous_standby_names` last changed, as quorum standbys.
    pub numsync_confirmed: usize,
    /// Streaming standbys eligible to be synchronous.
    pub active: NameSet,
    /// `synchronous_node_count`.
    pub sync_wanted: usize,
    /// This node (differs from `leader` right after a failover).
    pub leader_wanted: String,
}

/// One change, to be applied in order; each keeps the invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumStep {
    /// Write `/sync` (compare-and-set).
    WriteSync {
        /// `leader`.
        leader: String,
        /// `quorum`.
        quorum: usize,
        /// `sync_standby`.
        voters: NameSet,
    },
    /// Set `synchronous_standby_names` to `ANY num (names)`.
    SetStandbys {
        /// How many must confirm a commit.
        num: usize,
        /// Who may.
        names: NameSet,
    },
    /// Nothing more until PostgreSQL has confirmed standbys: run again soon.
    RunAgainSoon,
}

impl QuorumStep {
    fn same_kind(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// The two sides cannot be reconciled from here (the caller keeps its state and
/// logs this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumError(pub String);

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QuorumError {}

/// What [`resolve`] found to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The steps, in order.
    pub steps: Vec<QuorumStep>,
    /// The state read broke the invariant; the steps start by resetting `/sync`
    /// to the running `synchronous_standby_names`.
    pub repaired: Option<QuorumError>,
}

/// The steps from `input` towards the wanted state, consecutive steps of one
/// kind merged (skipping an intermediate state nobody observed is safe), cut
/// after [`QuorumStep::RunAgainSoon`]. An error means nothing is to be applied.
///
/// When the steps from a state would break the invariant half-way, the run
/// starts again with `/sync` reset to the running `synchronous_standby_names`
/// (voters = its names, the quorum it needs): that write is always safe, as it
/// can only make a leader race harder to win, and the next steps start from a
/// state with both sides equal.
pub fn resolve(input: &QuorumInput) -> Result<Resolution, QuorumError> {
    let mut r = Resolver::new(input);
    if let Err(e) = r.run(false) {
        r = Resolver::new(input);
        r.run(true)?;
        r.repaired.get_or_insert(e);
    }
    let mut steps: Vec<QuorumStep> = Vec::new();
    for (i, step) in r.steps.iter().enumerate() {
        if r.steps.get(i + 1).is_some_and(|next| next.same_kind(step)) {
            continue;
        }
        steps.push(step.clone());
        if *step == QuorumStep::RunAgainSoon {
            break;
        }
    }
    Ok(Resolution {
        steps,
        repaired: r.repaired,
    })
}

struct Resolver {
    leader: String,
    quorum: usize,
    voters: NameSet,
    numsync: usize,
    sync: NameSet,
    confirmed: usize,
    active: NameSet,
    wanted: usize,
    leader_wanted: String,
    steps: Vec<QuorumStep>,
    repaired: Option<QuorumError>,
}

/// A `/sync` write request; `leader` set only by a failover.
struct DcsChange {
    quorum: i64,
    voters: NameSet,
    leader: Option<String>,
    /// Raise the quorum by the standbys not yet confirmed, so the race still
    /// finds one that has every acknowledged commit.
    adjust: bool,
}

impl DcsChange {
    fn new(quorum: i64, voters: NameSet) -> Self {
        Self {
            quorum,
            voters,
            leader: None,
            adjust: true,
        }
    }

    fn adjust(mut self, adjust: bool) -> Self {
        self.adjust = adjust;
        self
    }
}

fn count(set: &NameSet) -> i64 {
    i64::try_from(set.len()).unwrap_or(i64::MAX)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Resolver {
    fn new(input: &QuorumInput) -> Self {
        Self {
            leader: input.leader.clone(),
            quorum: input.quorum,
            voters: input.voters.clone(),
            // More than listed cannot confirm anything.
            numsync: input.numsync.min(input.sync.len()),
            sync: input.sync.clone(),
            confirmed: input.numsync_confirmed,
            active: input.active.clone(),
            wanted: input.sync_wanted,
            leader_wanted: input.leader_wanted.clone(),
            steps: Vec::new(),
            repaired: None,
        }
    }

    fn check(&self) -> Result<(), QuorumError> {
        let voting = self.voters.with(&self.leader);
        let confirming = self.sync.with(&self.leader_wanted);
        let nodes = voting.union(&confirming).len();
        if !self.voters.is_empty() && nodes > self.quorum + self.numsync + 1 {
            return Err(QuorumError(format!(
                "quorum and synchronous standbys are not guaranteed to overlap: {nodes} nodes > \
                 quorum {} + numsync {} + 1",
                self.quorum, self.numsync
            )));
        }
        if !(voting.is_subset(&confirming) || confirming.is_subset(&voting)) {
            return Err(QuorumError(format!(
                "mismatched sets: only voters {}, only synchronous {}",
                voting.minus(&confirming),
                confirming.minus(&voting)
            )));
        }
        Ok(())
    }

    fn write_dcs(&mut self, change: DcsChange) -> Result<(), QuorumError> {
        let DcsChange {
            mut quorum,
            mut voters,
            leader,
            adjust,
        } = change;
        if quorum < 0 {
            return Err(QuorumError(format!("quorum {quorum} < 0 of {voters}")));
        }
        if quorum > 0 && quorum >= count(&voters) {
            return Err(QuorumError(format!("quorum {quorum} >= size of {voters}")));
        }
        let old_leader = self.leader.clone();
        if let Some(leader) = leader {
            self.leader = leader;
        } else if self.confirmed == 0 && self.voters.is_empty() {
            // Nobody is known to have caught up: keep the race open to the leader only.
            quorum = 0;
            voters = NameSet::new();
        } else if adjust {
            quorum += (to_i64(self.numsync) - to_i64(self.confirmed)).max(0);
        }
        let quorum = usize::try_from(quorum).unwrap_or(0);
        if self.leader == old_leader && quorum == self.quorum && voters == self.voters {
            if !self.voters.is_empty() {
                return Ok(());
            }
            // Still nobody confirmed: look again once PostgreSQL had a moment.
            self.steps.push(QuorumStep::RunAgainSoon);
        }
        self.quorum = quorum;
        self.voters = voters;
        self.check()?;
        self.steps.push(QuorumStep::WriteSync {
            leader: self.leader.clone(),
            quorum: self.quorum,
            voters: self.voters.clone(),
        });
        Ok(())
    }

    fn set_standbys(&mut self, numsync: i64, sync: NameSet) -> Result<(), QuorumError> {
        if numsync < 0 {
            return Err(QuorumError(format!("numsync {numsync} < 0 of {sync}")));
        }
        if numsync > count(&sync) {
            return Err(QuorumError(format!("numsync {numsync} > size of {sync}")));
        }
        self.numsync = usize::try_from(numsync).unwrap_or(0);
        self.sync = sync;
        self.check()?;
        self.steps.push(QuorumStep::SetStandbys {
            num: self.numsync,
            names: self.sync.clone(),
        });
        Ok(())
    }

    /// `/sync` as the running `synchronous_standby_names` needs it.
    fn reset_to_standbys(&mut self) -> Result<(), QuorumError> {
        let reset = DcsChange::new(count(&self.sync) - to_i64(self.numsync), self.sync.clone());
        self.write_dcs(reset)
    }

    fn run(&mut self, reset: bool) -> Result<(), QuorumError> {
        match self.take_over() {
            Ok(true) => return Ok(()),
            Ok(false) if reset => self.reset_to_standbys()?,
            Ok(false) => {}
            Err(e) => {
                self.repaired = Some(e);
                self.reset_to_standbys()?;
            }
        }
        if !self.leader.eq_ignore_ascii_case(&self.leader_wanted) {
            return Err(QuorumError(format!(
                "/sync still names {} as leader, not {}",
                self.leader, self.leader_wanted
            )));
        }
        // After a restart or failover nothing is confirmed yet: estimate from the quorum.
        let streaming = self.sync.and(&self.active).len();
        if self.confirmed == 0 && streaming > 0 {
            self.confirmed = streaming.min(self.voters.len().saturating_sub(self.quorum));
        }
        self.finish_interrupted()?;
        self.remove_gone()?;
        self.add_new()?;
        self.apply_wanted_count()
    }

    /// Right after a failover `/sync` still names the old leader: it becomes a
    /// voter and this node the leader. `Ok(true)`: stop here, the standbys have
    /// not reconnected yet.
    fn take_over(&mut self) -> Result<bool, QuorumError> {
        if self.leader.eq_ignore_ascii_case(&self.leader_wanted) {
            self.check()?;
            return Ok(false);
        }
        let voters = self.voters.without(&self.leader_wanted).with(&self.leader);
        if self.sync.is_empty() {
            self.set_standbys(count(&voters) - to_i64(self.quorum), voters.clone())?;
        }
        let mut change = DcsChange::new(to_i64(self.quorum), voters);
        change.leader = Some(self.leader_wanted.clone());
        self.write_dcs(change)?;
        Ok(self.sync.and(&self.active).is_empty())
    }

    /// A previous run stopped half-way: one side has names the other lacks, or a
    /// number was raised on one side and not yet lowered on the other.
    fn finish_interrupted(&mut self) -> Result<(), QuorumError> {
        if self.sync.is_strict_subset(&self.voters) {
            // Voters were being changed: drop the dead ones, sync to the live ones.
            let dead = self.voters.minus(&self.sync.union(&self.active));
            if !dead.is_empty() {
                let all_sync_alive = self.sync.minus(&self.active).is_empty();
                let change = DcsChange::new(
                    count(&self.voters) - count(&dead) - to_i64(self.numsync),
                    self.voters.minus(&dead),
                )
                .adjust(all_sync_alive);
                self.write_dcs(change)?;
            }
            let missing = self.voters.and(&self.active).minus(&self.sync);
            if !missing.is_empty() {
                self.set_standbys(to_i64(self.numsync), self.sync.union(&missing))?;
            }
        } else if self.voters.is_strict_subset(&self.sync) {
            // The replication factor was being changed.
            let dead = self.sync.minus(&self.active);
            let alive = self.sync.minus(&dead);
            // Dropping the dead must leave both sides something in common.
            if !dead.is_empty()
                && !alive.is_empty()
                && (self.voters.is_empty() || !alive.and(&self.voters).is_empty())
            {
                let num = self.numsync.min(self.sync.len() - dead.len());
                self.set_standbys(to_i64(num), alive)?;
            }
            let new_voters = self.sync.minus(&self.voters).and(&self.active);
            if !new_voters.is_empty() {
                let voters = self.voters.union(&new_voters);
                let quorum = count(&voters) - to_i64(self.numsync);
                self.write_dcs(DcsChange::new(quorum, voters))?;
            }
            let not_voting = self.sync.minus(&self.voters);
            if !not_voting.is_empty() {
                let num = self.numsync.min(self.sync.len() - not_voting.len());
                self.set_standbys(to_i64(num), self.sync.minus(&not_voting))?;
            }
        }
        if self.voters != self.sync {
            return Err(QuorumError(format!(
                "voters {} and synchronous standbys {} still differ",
                self.voters, self.sync
            )));
        }
        let nodes = count(&self.voters.union(&self.sync));
        let margin = to_i64(self.quorum) + to_i64(self.numsync.min(self.confirmed)) - nodes;
        if margin > 0 {
            if self.numsync > self.wanted {
                let num = self
                    .wanted
                    .max(self.voters.len().saturating_sub(self.quorum));
                self.set_standbys(to_i64(num), self.sync.clone())?;
            } else {
                let quorum = count(&self.sync) - to_i64(self.numsync);
                self.write_dcs(DcsChange::new(quorum, self.voters.clone()))?;
            }
        } else {
            let margin = to_i64(self.quorum) + to_i64(self.numsync) - nodes;
            if self.numsync == self.wanted && margin > 0 && self.numsync > self.confirmed {
                let quorum = count(&self.sync) - to_i64(self.numsync);
                self.write_dcs(DcsChange::new(quorum, self.voters.clone()))?;
            }
        }
        Ok(())
    }

    /// Standbys that stopped streaming leave both sides.
    fn remove_gone(&mut self) -> Result<(), QuorumError> {
        let mut gone = self.sync.minus(&self.active);
        if gone.is_empty() {
            return Ok(());
        }
        if gone == self.sync {
            self.write_dcs(DcsChange::new(0, NameSet::new()).adjust(false))?;
            return self.set_standbys(0, NameSet::new());
        }
        if self.quorum > 0 {
            // Lowering the quorum first is cheapest: it needs no new confirmation.
            let remove = gone.take(self.quorum, true);
            let sync = self.sync.minus(&remove);
            let num = if self.wanted > self.numsync {
                self.wanted
            } else {
                self.numsync
            }
            .min(sync.len());
            self.set_standbys(to_i64(num), sync)?;
            let voters = self.voters.minus(&remove);
            gone = gone.and(&self.sync);
            let quorum = count(&voters) - to_i64(self.numsync);
            self.write_dcs(DcsChange::new(quorum, voters).adjust(gone.is_empty()))?;
        }
        if !gone.is_empty() {
            if self.quorum != 0 {
                return Err(QuorumError(format!(
                    "quorum {} left while removing {gone}",
                    self.quorum
                )));
            }
            let numsync = to_i64(self.numsync) - count(&gone);
            let sync = self.sync.minus(&gone);
            let voters = self.voters.minus(&gone);
            let decrease = numsync - to_i64(self.wanted.min(sync.len()));
            let quorum = if decrease != 0 {
                decrease.min(count(&voters) - 1)
            } else {
                0
            };
            self.write_dcs(DcsChange::new(quorum, voters).adjust(false))?;
            self.set_standbys(numsync, sync)?;
        }
        Ok(())
    }

    /// Standbys that started streaming join both sides.
    fn add_new(&mut self) -> Result<(), QuorumError> {
        let mut new = self.active.minus(&self.sync);
        if new.is_empty() {
            return Ok(());
        }
        let wanted = self.wanted.min(self.sync.union(&new).len());
        if wanted > self.numsync {
            let (add, by) = if self.sync.is_empty() {
                // Only the leader confirms today: any number of names is safe at once.
                (new.clone(), wanted - self.numsync)
            } else {
                let add = new.take(wanted - self.numsync, false);
                let by = add.len();
                (add, by)
            };
            self.set_standbys(to_i64(self.numsync + by), self.sync.union(&add))?;
            let voters = self.voters.union(&add);
            // The number reached, not the one wanted: with fewer new names than
            // the raise, a quorum sized for `wanted` would break the invariant
            // (Patroni raises an error there and retries it forever).
            let quorum = count(&voters) - to_i64(self.numsync);
            self.write_dcs(DcsChange::new(quorum, voters))?;
            new = new.minus(&self.sync);
        }
        if !new.is_empty() {
            let voters = self.voters.union(&new);
            let quorum = count(&voters) - to_i64(wanted);
            self.write_dcs(DcsChange::new(quorum, voters).adjust(wanted > self.confirmed))?;
            self.set_standbys(to_i64(wanted), self.sync.union(&new))?;
        }
        Ok(())
    }

    /// `synchronous_node_count` changed.
    fn apply_wanted_count(&mut self) -> Result<(), QuorumError> {
        let increase = to_i64(self.wanted.min(self.sync.len())) - to_i64(self.numsync);
        if increase > 0 {
            self.set_standbys(to_i64(self.numsync) + increase, self.sync.clone())?;
            let quorum = count(&self.voters) - to_i64(self.numsync);
            self.write_dcs(DcsChange::new(quorum, self.voters.clone()))?;
        } else if increase < 0 {
            if to_i64(self.quorum) - increase < count(&self.voters) {
                let quorum = count(&self.voters) - to_i64(self.numsync) - increase;
                let adjust = self.wanted > self.confirmed;
                self.write_dcs(DcsChange::new(quorum, self.voters.clone()).adjust(adjust))?;
            }
            self.set_standbys(to_i64(self.numsync) + increase, self.sync.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> NameSet {
        list.split(',').filter(|s| !s.is_empty()).collect()
    }

    struct State {
        leader: &'static str,
        quorum: usize,
        voters: &'static str,
        numsync: usize,
        sync: &'static str,
    }

    fn input(s: &State, confirmed: usize, active: &str, wanted: usize, me: &str) -> QuorumInput {
        QuorumInput {
            leader: s.leader.into(),
            quorum: s.quorum,
            voters: names(s.voters),
            numsync: s.numsync,
            sync: names(s.sync),
            numsync_confirmed: confirmed,
            active: names(active),
            sync_wanted: wanted,
            leader_wanted: me.into(),
        }
    }

    fn dcs(leader: &str, quorum: usize, voters: &str) -> QuorumStep {
        QuorumStep::WriteSync {
            leader: leader.into(),
            quorum,
            voters: names(voters),
        }
    }

    fn ssn(num: usize, list: &str) -> QuorumStep {
        QuorumStep::SetStandbys {
            num,
            names: names(list),
        }
    }

    fn steps(i: &QuorumInput) -> Vec<QuorumStep> {
        resolve(i).expect("resolvable").steps
    }

    #[test]
    fn standbys_join_postgres_first_and_the_race_once_confirmed() {
        let fresh = State {
            leader: "p",
            quorum: 0,
            voters: "",
            numsync: 0,
            sync: "",
        };
        assert_eq!(
            steps(&input(&fresh, 0, "a,b", 1, "p")),
            [ssn(1, "a,b"), QuorumStep::RunAgainSoon]
        );
        let listed = State {
            numsync: 1,
            sync: "a,b",
            ..fresh
        };
        // Not confirmed yet: nothing may enter /sync.
        assert_eq!(
            steps(&input(&listed, 0, "a,b", 1, "p")),
            [QuorumStep::RunAgainSoon]
        );
        assert_eq!(
            steps(&input(&listed, 2, "a,b", 1, "p")),
            [dcs("p", 1, "a,b")]
        );
        let steady = State {
            quorum: 1,
            voters: "a,b",
            ..listed
        };
        assert_eq!(steps(&input(&steady, 2, "a,b", 1, "p")), []);
    }

    #[test]
    fn a_lost_standby_leaves_postgres_first_then_the_quorum() {
        let steady = State {
            leader: "p",
            quorum: 1,
            voters: "a,b",
            numsync: 1,
            sync: "a,b",
        };
        assert_eq!(
            steps(&input(&steady, 1, "b", 1, "p")),
            [ssn(1, "b"), dcs("p", 0, "b")]
        );
        // The last one: the race goes back to the leader alone before commits stop waiting.
        let one = State {
            quorum: 0,
            voters: "b",
            sync: "b",
            ..steady
        };
        assert_eq!(
            steps(&input(&one, 1, "", 1, "p")),
            [dcs("p", 0, ""), ssn(0, "")]
        );
    }

    #[test]
    fn a_new_leader_takes_over_and_drops_the_old_one_once_standbys_stream() {
        // b won with the votes of c; before promoting it listed {a,c} (ANY 1).
        let after_promote = State {
            leader: "a",
            quorum: 1,
            voters: "b,c",
            numsync: 1,
            sync: "a,c",
        };
        assert_eq!(
            steps(&input(&after_promote, 0, "", 1, "b")),
            [dcs("b", 1, "a,c")],
            "nobody streams yet: only the leader changes"
        );
        assert_eq!(
            steps(&input(&after_promote, 0, "c", 1, "b")),
            [dcs("b", 1, "a,c"), ssn(1, "c"), dcs("b", 0, "c")]
        );
    }

    #[test]
    fn raising_the_count_raises_postgres_first_and_lowering_lowers_it_last() {
        let three = State {
            leader: "p",
            quorum: 2,
            voters: "a,b,c",
            numsync: 1,
            sync: "a,b,c",
        };
        assert_eq!(
            steps(&input(&three, 3, "a,b,c", 2, "p")),
            [ssn(2, "a,b,c"), dcs("p", 1, "a,b,c")]
        );
        let two = State {
            quorum: 1,
            numsync: 2,
            ..three
        };
        assert_eq!(
            steps(&input(&two, 3, "a,b,c", 1, "p")),
            [dcs("p", 2, "a,b,c"), ssn(1, "a,b,c")]
        );
    }

    #[test]
    fn a_state_breaking_the_invariant_is_reset_to_what_postgres_runs() {
        // Quorum 0 over two voters with one synchronous standby: a race could
        // elect the standby that did not confirm.
        let broken = State {
            leader: "p",
            quorum: 0,
            voters: "a,b",
            numsync: 1,
            sync: "a,b",
        };
        let r = resolve(&input(&broken, 2, "a,b", 1, "p")).unwrap();
        assert!(r.repaired.is_some());
        assert_eq!(r.steps, [dcs("p", 1, "a,b")]);
    }

    #[test]
    fn names_compare_without_case() {
        let steady = State {
            leader: "p",
            quorum: 1,
            voters: "A,b",
            numsync: 1,
            sync: "a,B",
        };
        assert_eq!(steps(&input(&steady, 2, "a,b", 1, "P")), []);
    }

    /// The state both sides hold, as a primary applying the steps sees it.
    #[derive(Debug, Clone)]
    struct World {
        leader: String,
        quorum: usize,
        voters: NameSet,
        numsync: usize,
        sync: NameSet,
        /// Listed standbys that have caught up since they were listed.
        caught_up: NameSet,
    }

    impl World {
        fn apply(&mut self, step: &QuorumStep) {
            match step {
                QuorumStep::WriteSync {
                    leader,
                    quorum,
                    voters,
                } => {
                    self.leader = leader.clone();
                    self.quorum = *quorum;
                    self.voters = voters.clone();
                }
                QuorumStep::SetStandbys { num, names } => {
                    self.caught_up = self.caught_up.and(names);
                    self.numsync = *num;
                    self.sync = names.clone();
                }
                QuorumStep::RunAgainSoon => {}
            }
        }

        /// No acknowledged commit can be lost: a node can win a race when it
        /// sees `quorum` voters, so the nodes outside any such view (the ones
        /// it may not see) must be fewer than the standbys a commit waits for.
        fn assert_safe(&self, me: &str, context: &str) {
            if self.voters.is_empty() {
                return;
            }
            let all = self.voters.with(&self.leader).union(&self.sync.with(me));
            assert!(
                all.len() <= self.quorum + self.numsync + 1,
                "{context}: {self:?} (me {me})"
            );
        }
    }

    /// Random membership changes, count changes, failovers and interrupted
    /// runs: every single applied step keeps the invariant, and a quiet cluster
    /// reaches the target state.
    #[test]
    fn every_step_of_random_histories_keeps_acknowledged_commits_safe() {
        let pool = ["a", "b", "c", "d", "e"];
        let mut errors = 0;
        for seed in 0..300_u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut me = "p".to_owned();
            let mut w = World {
                leader: me.clone(),
                quorum: 0,
                voters: NameSet::new(),
                numsync: 0,
                sync: NameSet::new(),
                caught_up: NameSet::new(),
            };
            let mut wanted = rng.usize(1..=3);
            for round in 0..40 {
                let context = format!("seed {seed} round {round}");
                let mut active: NameSet = pool
                    .iter()
                    .filter(|n| **n != me && rng.u8(0..4) != 0)
                    .copied()
                    .collect();
                if rng.u8(0..10) == 0 {
                    wanted = rng.usize(1..=3);
                }
                // A voter can win a race (the leader gone) only with `quorum` other voters.
                if rng.u8(0..15) == 0 && w.quorum < w.voters.len() {
                    // Failover: a voter wins and lists the rest, as before a promotion.
                    let winner = w.voters.iter().nth(rng.usize(0..w.voters.len())).unwrap();
                    let winner = winner.to_owned();
                    let members = w.voters.with(&w.leader);
                    w.sync = members.without(&winner);
                    w.numsync = members.len() - w.quorum - 1;
                    w.caught_up = NameSet::new();
                    me = winner;
                    active = active.without(&me);
                }
                let quiet = round >= 30;
                if quiet {
                    active = pool.iter().filter(|n| **n != me).copied().collect();
                }
                for _ in 0..3 {
                    let confirmed = w.caught_up.and(&active).len();
                    let input = QuorumInput {
                        leader: w.leader.clone(),
                        quorum: w.quorum,
                        voters: w.voters.clone(),
                        numsync: w.numsync,
                        sync: w.sync.clone(),
                        numsync_confirmed: confirmed,
                        active: active.clone(),
                        sync_wanted: wanted,
                        leader_wanted: me.clone(),
                    };
                    let resolution = match resolve(&input) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("{context}: {e} from {input:?}");
                            errors += 1;
                            break;
                        }
                    };
                    let cut = if quiet {
                        usize::MAX
                    } else {
                        rng.usize(0..=resolution.steps.len())
                    };
                    for step in resolution.steps.iter().take(cut) {
                        w.apply(step);
                        w.assert_safe(&me, &context);
                    }
                    // Standbys listed and streaming catch up between runs.
                    w.caught_up = w.caught_up.union(&w.sync.and(&active));
                }
            }
            let standbys: NameSet = pool.iter().filter(|n| **n != me).copied().collect();
            let numsync = wanted.min(standbys.len());
            assert_eq!(w.leader, me, "seed {seed}");
            assert_eq!(w.sync, standbys, "seed {seed}: {w:?}");
            assert_eq!(w.voters, w.sync, "seed {seed}: {w:?}");
            assert_eq!(w.numsync, numsync, "seed {seed}: {w:?}");
            assert_eq!(w.quorum, standbys.len() - numsync, "seed {seed}: {w:?}");
        }
        assert_eq!(errors, 0, "runs that could not be resolved");
    }
}
