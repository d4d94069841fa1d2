//! Keel's HA decision: Patroni 4.1's rules as a pure function.
//!
//! [`decide`] takes an [`Observation`] (the DCS view, the local PostgreSQL, the
//! settings, the clock, what the daemon remembers) and returns a [`Decision`]:
//! either a [`Question`] whose answer it needs first (race for the lock, ask the
//! peers for their WAL positions), or a [`Plan`] — the [`Action`]s to carry out
//! and the one sentence that explains them. No I/O, no clock, no async runtime:
//! the daemon and the simulation drive the same code.
//!
//! The rules follow `patroni-compat.md` §4 (and the 4.x delta) section by section:
//! `decide` is the cycle (§4.2), `race` the leader race (§4.3), `switchover` the
//! lock holder's failover processing (§4.6), `sync` synchronous replication (§4.7).
//!
//! # The executor's side of the contract
//!
//! Whoever carries out plans (keeld, the simulation) keeps these promises,
//! which the rules rely on:
//! * Steps run in order; the first failing step ends the plan (the next cycle
//!   decides again from what it then observes).
//! * A later [`Action::WriteSync`] in the same plan compares against the version
//!   the earlier one produced, not the version read at the start of the cycle.
//! * [`Memory`] is the executor's to maintain: `has_lock`/`lock_refreshed_at`
//!   after every lock answer and [`Action::ReleaseLock`]; `bootstrapped` set when a
//!   [`Action::Bootstrap`] succeeded and cleared once [`Action::TakeLock`] did;
//!   `just_started` set for the one cycle after a start finished, and for
//!   a new daemon's first cycle that finds PostgreSQL running (Patroni's `on_start`,
//!   which re-arms the rewind check the old daemon may have lost); `rewind_check`
//!   set by [`Action::TriggerRewindCheck`] and every demotion, cleared once the
//!   divergence was found to be none or a rewind succeeded; `previous_members`
//!   from the last view that had a leader; `last_failsafe` from every successful
//!   read and every successful [`Action::WriteFailsafe`] (the members just written
//!   are the ones a failsafe leader must reach; Patroni's `_last_failsafe`);
//!   `ssn_changed_at_lsn` = the primary's flush LSN when
//!   [`Action::SetSynchronousStandbyNames`] changed the value.
//! * [`Postgres::divergence`] is computed (against the leader) whenever
//!   `rewind_check` is set and another member holds the leader key.
//! * A [`Action::Demote`] while a long action runs aborts that action first.
//! * The watchdog is activated when `decide` asks
//!   ([`Question::ActivateWatchdog`], before this node promotes or while it runs
//!   as a primary without one), `watchdog_active` then says whether a device runs;
//!   it is kept alive after every `Held` lock answer (and every
//!   [`FailsafeAnswer::AllAccepted`]), and disabled (with `watchdog_active`
//!   cleared) when the node loses or releases the key, demotes, or the cluster is
//!   paused.
#![deny(missing_docs)]

mod decide;
pub mod manual;
mod members;
mod observation;
mod plan;
pub mod quorum;
mod race;
pub mod standby_names;
mod switchover;
mod sync;
#[cfg(test)]
mod testing;

pub use decide::decide;
pub use members::tags_of;
pub use observation::{
    Answers, DataDir, DcsUnreachable, Divergence, FailsafeAnswer, FailsafeLeader, LockAnswer, Me,
    Memory, Observation, PeerStatus, PgRole, Postgres, PreviousMember, Process, ReplicationRow,
    RunningAction,
};
pub use plan::{Action, Decision, DemoteMode, PeerRequest, Plan, Question, Source};
