//! §4.6: the lock holder processes a manual switchover or failover request.

use chrono::{DateTime, Utc};

use crate::decide::Cycle;
use crate::plan::{Action, DemoteMode, Plan, Question};
use crate::race::failover_possible;

/// What the leader does about the failover key.
#[derive(Debug)]
pub(crate) enum LeaderSide {
    /// Step down now with this plan.
    Demote(Plan),
    /// Carry on as leader, after these writes; wake at `wake_at` (a scheduled
    /// switchover is due); `note` explains a refused request.
    Continue {
        actions: Vec<Action>,
        wake_at: Option<DateTime<Utc>>,
        note: Option<String>,
    },
}

impl LeaderSide {
    fn carry_on() -> Self {
        Self::Continue {
            actions: Vec::new(),
            wake_at: None,
            note: None,
        }
    }

    fn refuse(c: &Cycle<'_>, note: String) -> Self {
        let version = c.cluster.failover.as_ref().and_then(|f| f.version.clone());
        Self::Continue {
            actions: vec![Action::ClearFailover { version }],
            wake_at: None,
            note: Some(note),
        }
    }
}

/// Process the failover key as the lock holder.
pub(crate) fn process_as_leader(c: &Cycle<'_>) -> Result<LeaderSide, Question> {
    let Some(f) = c.cluster.failover.as_ref().filter(|f| f.is_set()) else {
        return Ok(LeaderSide::carry_on());
    };
    if c.paused() && !c.acts_as_primary() {
        return Ok(LeaderSide::carry_on());
    }
    let me = c.me();
    let action = if f.leader.is_some() {
        "switchover"
    } else {
        "manual failover"
    };
    if let Some(at) = f.scheduled_at {
        let at = at.with_timezone(&Utc);
        if c.paused() {
            return Ok(LeaderSide::refuse(
                c,
                format!("scheduled {action} cancelled: the cluster is paused"),
            ));
        }
        let now = c.obs.now;
        let loop_wait = i64::from(c.obs.config.loop_wait);
        if now - at > chrono::Duration::milliseconds(loop_wait * 1500) {
            return Ok(LeaderSide::refuse(
                c,
                format!("found a stale {action} scheduled at {at}, removed it"),
            ));
        }
        if at > now {
            return Ok(LeaderSide::Continue {
                actions: Vec::new(),
                wake_at: Some(at),
                note: Some(format!("awaiting {action} at {at}")),
            });
        }
    }
    if f.leader.as_deref().is_some_and(|l| l != me) {
        return Ok(LeaderSide::refuse(
            c,
            format!(
                "leader name does not match: {} != {me}",
                f.leader.as_deref().unwrap_or_default()
            ),
        ));
    }
    match f.candidate.as_deref() {
        Some(candidate) if candidate == me => Ok(LeaderSide::refuse(
            c,
            format!("manual failover: I am already the leader, no need to {action}"),
        )),
        None if c.paused() => Ok(LeaderSide::refuse(
            c,
            format!("{action} refused: a candidate is required while the cluster is paused"),
        )),
        candidate => {
            if failover_possible(c, None, false)? {
                Ok(LeaderSide::Demote(
                    Plan::new(format!("{action}: demoting myself")).with(Action::Demote {
                        mode: DemoteMode::Graceful,
                        upstream: candidate.map(crate::Source::member),
                    }),
                ))
            } else {
                let whom = candidate.map_or_else(
                    || "no healthy members found".to_owned(),
                    |cand| format!("candidate {cand} is not healthy"),
                );
                Ok(LeaderSide::refuse(
                    c,
                    format!("{action} is not possible: {whom}"),
                ))
            }
        }
    }
}
