//! The HA loop of every node, as keeld runs it: read the DCS, call the real
//! [`keel_ha::decide`], answer its questions (lock, initialize race, peers,
//! failsafe), carry out the plan, publish the member key, sleep `loop_wait`
//! (or until the leader key changes).
//!
//! A cycle may span steps: a DCS operation that cannot reach the store is
//! retried until `retry_timeout` before it fails, and peer requests to a node
//! that does not answer take the 2 s timeout. Meanwhile time goes on for
//! everyone else, which is what makes lease expiry races real.

use chrono::{DateTime, Duration, Utc};
use keel_ha::{
    Answers, DcsUnreachable, Decision, Divergence, FailsafeAnswer, LockAnswer, Observation,
    Question,
};
use keel_model::{Cluster, Role, Status};

use crate::Ms;
use crate::node::{DcsOp, InFlight, Wait};
use crate::pg::Proc;
use crate::sim::{Failure, World};

/// `decide` may ask this many questions in one cycle; more is a bug.
const MAX_ROUNDS: u32 = 8;
/// Patroni's timeout for `GET /patroni` and `POST /failsafe` to peers.
const PEER_TIMEOUT: Ms = 2_000;
/// Virtual time 0 on the wall clock the rules see (2025-01-01T00:00:00Z).
const EPOCH_MS: i64 = 1_735_689_600_000;

impl World {
    /// The wall-clock time the rules see.
    pub(crate) fn clock(&self) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(EPOCH_MS + self.now as i64)
    }

    /// Virtual time of a wall-clock instant (clamped to the run).
    pub(crate) fn virtual_ms(&self, at: DateTime<Utc>) -> Ms {
        let ms = (at - DateTime::<Utc>::UNIX_EPOCH).num_milliseconds() - EPOCH_MS;
        ms.max(0) as Ms
    }

    /// Run (or continue) the cycles that are due.
    pub(crate) fn run_daemons(&mut self) -> Result<(), Failure> {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if !node.daemon_active() || node.stalled_until > self.now {
                continue;
            }
            if node.inflight.is_none() && node.next_cycle > self.now {
                continue;
            }
            self.run_cycle(i)?;
        }
        Ok(())
    }

    fn retry_ms(&self, i: usize) -> Ms {
        u64::from(self.nodes[i].config.1.retry_timeout) * 1000
    }

    fn run_cycle(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let mut fl = match self.nodes[i].inflight.take() {
            Some(fl) => fl,
            None => {
                self.report.cycles += 1;
                let node = &mut self.nodes[i];
                if std::mem::take(&mut node.fresh) && node.pg.running() {
                    // Patroni's `on_start` on a new daemon's first cycle.
                    node.memory.just_started = true;
                }
                InFlight {
                    started: now,
                    cluster: None,
                    answers: Answers::default(),
                    rounds: 0,
                    wait: Wait::Dcs {
                        op: DcsOp::Read,
                        deadline: now + self.retry_ms(i),
                    },
                    asked: Vec::new(),
                }
            }
        };
        loop {
            match fl.wait {
                Wait::Ready => {}
                Wait::Until(at) if now < at => {
                    self.nodes[i].inflight = Some(fl);
                    return Ok(());
                }
                Wait::Until(_) => fl.wait = Wait::Ready,
                Wait::Dcs { op, deadline } => {
                    if self.dcs_ok(i) {
                        self.dcs_op(i, op, &mut fl);
                    } else if now >= deadline {
                        dcs_failed(op, &mut fl);
                    } else {
                        self.nodes[i].inflight = Some(fl);
                        return Ok(());
                    }
                    fl.wait = Wait::Ready;
                }
            }
            let obs = self.observe(i, &fl);
            match keel_ha::decide(&obs) {
                Decision::Ask(question) => {
                    fl.rounds += 1;
                    if fl.rounds > MAX_ROUNDS {
                        return Err(Failure(format!(
                            "{}: decide asked more than {MAX_ROUNDS} questions in one cycle \
                             (last: {question:?})",
                            self.nodes[i].name
                        )));
                    }
                    self.ask(i, &question, &mut fl)?;
                }
                Decision::Act(plan) => return self.conclude(i, fl.started, &obs, &plan),
            }
        }
    }

    /// Carry out a DCS operation that reaches the store.
    fn dcs_op(&mut self, i: usize, op: DcsOp, fl: &mut InFlight) {
        let name = self.nodes[i].name.clone();
        match op {
            DcsOp::Read => {
                let cluster = Cluster::from_entries(&self.dcs.entries());
                let node = &mut self.nodes[i];
                if let Some(c) = cluster.config.as_ref().filter(|c| c.is_usable())
                    && node.config.0.as_deref() != Some(c.version.as_str())
                {
                    let parsed = keel_config::DynamicConfig::from_json_lenient(&c.raw).0;
                    node.config = (Some(c.version.clone()), parsed);
                }
                node.memory.remember_view(&cluster);
                fl.cluster = Some(Ok(cluster));
            }
            DcsOp::Acquire => {
                let lease = self.keepalive(i);
                let won = self.dcs.create("leader", name.clone(), Some(lease));
                if won {
                    self.trace.push(self.now, &name, "acquired the leader key");
                }
                let answer = if won {
                    LockAnswer::Held
                } else {
                    LockAnswer::NotHeld
                };
                self.note_lock(i, &answer);
                fl.answers.acquire = Some(answer);
            }
            DcsOp::Refresh => {
                let lease = self.keepalive(i);
                let answer = if self.dcs.value("leader") == Some(name.as_str()) {
                    if self.dcs.get("leader").and_then(|k| k.lease) != Some(lease) {
                        self.dcs.put("leader", name.clone(), Some(lease));
                    }
                    let pg = &self.nodes[i].pg;
                    if let (true, Some(wal)) = (pg.is_primary(), pg.wal()) {
                        let status = Status::with_optime(wal.end()).render();
                        self.dcs.put("status", status, None);
                    }
                    LockAnswer::Held
                } else {
                    LockAnswer::NotHeld
                };
                self.note_lock(i, &answer);
                fl.answers.refresh = Some(answer);
            }
            DcsOp::Initialize => {
                let won = self.dcs.create("initialize", String::new(), None);
                fl.answers.initialize = Some(Ok(won));
            }
        }
    }

    /// Keep node `i`'s lease alive (a new one if it expired); returns it.
    pub(crate) fn keepalive(&mut self, i: usize) -> u64 {
        let ttl = self.ttl_ms(i);
        let lease = self.dcs.keepalive(self.nodes[i].lease, self.now, ttl);
        self.nodes[i].lease = Some(lease);
        lease
    }

    /// Memory after a lock answer (the executor's side of the contract).
    pub(crate) fn note_lock(&mut self, i: usize, answer: &LockAnswer) {
        let now = self.clock();
        let memory = &mut self.nodes[i].memory;
        match answer {
            LockAnswer::Held => {
                memory.has_lock = true;
                memory.lock_refreshed_at = Some(now);
            }
            LockAnswer::NotHeld => memory.has_lock = false,
            LockAnswer::Failed(_) => {}
        }
    }

    fn ask(&mut self, i: usize, question: &Question, fl: &mut InFlight) -> Result<(), Failure> {
        let key = match question {
            Question::AcquireLock => "acquire",
            Question::RefreshLock => "refresh",
            Question::Initialize => "initialize",
            Question::Peers(_) => "peers",
            Question::Failsafe(_) => "failsafe",
            Question::ActivateWatchdog => "watchdog",
        };
        if fl.asked.contains(&key) {
            return Err(Failure(format!(
                "{}: decide asked `{key}` twice in one cycle",
                self.nodes[i].name
            )));
        }
        fl.asked.push(key);
        let deadline = self.now + self.retry_ms(i);
        let dcs = |op| Wait::Dcs { op, deadline };
        fl.wait = match question {
            Question::AcquireLock => dcs(DcsOp::Acquire),
            Question::RefreshLock => dcs(DcsOp::Refresh),
            Question::Initialize => dcs(DcsOp::Initialize),
            Question::Peers(requests) => {
                let statuses = self.peer_statuses(i, requests);
                let all = statuses.iter().all(|s| s.reachable);
                fl.answers.peers = Some(statuses);
                self.wait_for_peers(all)
            }
            Question::Failsafe(requests) => {
                let (answer, all) = self.failsafe_round(i, requests);
                fl.answers.failsafe = Some(answer);
                self.wait_for_peers(all)
            }
            // Simulated members run without a watchdog (`watchdog_enabled` is off), so
            // this is never asked; a watchdog that activates changes nothing they model.
            Question::ActivateWatchdog => {
                fl.answers.watchdog = Some(true);
                Wait::Ready
            }
        };
        Ok(())
    }

    fn wait_for_peers(&self, all_answered: bool) -> Wait {
        if all_answered {
            Wait::Ready
        } else {
            Wait::Until(self.now + PEER_TIMEOUT)
        }
    }

    /// The end of a cycle: carry out the plan, publish, schedule the next one.
    fn conclude(
        &mut self,
        i: usize,
        started: Ms,
        obs: &Observation,
        plan: &keel_ha::Plan,
    ) -> Result<(), Failure> {
        self.check_plan(i, obs, plan)?;
        let node = &mut self.nodes[i];
        node.memory.just_started = false;
        if obs.postgres.divergence == Divergence::None {
            node.memory.rewind_check = false;
        }
        self.log_plan(i, plan);
        self.execute(i, plan, obs)?;
        if plan.publish && obs.cluster.is_ok() && self.dcs_ok(i) {
            self.publish(i);
        }
        self.watchdog_after(i, obs, plan);
        let loop_wait = u64::from(obs.config.loop_wait) * 1000;
        let mut next = started + loop_wait;
        if let Some(at) = plan.wake_at {
            next = next.min(self.virtual_ms(at));
        }
        self.nodes[i].next_cycle = next.max(self.now + 1);
        Ok(())
    }

    fn log_plan(&mut self, i: usize, plan: &keel_ha::Plan) {
        let node = &mut self.nodes[i];
        if plan.actions.is_empty() && plan.message == node.last_message && !self.cfg.trace_all {
            return;
        }
        node.last_message.clone_from(&plan.message);
        let mut line = plan.message.clone();
        if !plan.actions.is_empty() {
            let actions: Vec<String> = plan.actions.iter().map(crate::execute::short).collect();
            line = format!("{line} [{}]", actions.join(", "));
        }
        let name = node.name.clone();
        self.trace.push(self.now, &name, line);
    }

    /// Write node `i`'s member key (bound to its lease), as `touch_member` does.
    fn publish(&mut self, i: usize) {
        let lease = self.keepalive(i);
        let streaming = self.streams_from(i).is_some();
        let node = &self.nodes[i];
        let pg = &node.pg;
        let state = match (node.running.as_ref().map(|r| r.action.kind()), pg.proc) {
            (Some(keel_ha::RunningAction::Clone | keel_ha::RunningAction::Reinitialize), _) => {
                "creating replica"
            }
            (Some(keel_ha::RunningAction::Bootstrap), _) => "initializing new cluster",
            (_, Proc::Running) => "running",
            (_, Proc::Starting) => "starting",
            (_, Proc::Stopped { crashed: true }) => "crashed",
            (_, Proc::Stopped { crashed: false }) => "stopped",
        };
        let role = match (&pg.data, pg.role) {
            (None, _) => Role::Uninitialized,
            (Some(_), keel_ha::PgRole::Primary) => Role::Primary,
            (Some(_), keel_ha::PgRole::Replica) => Role::Replica,
        };
        let data = keel_model::MemberData {
            conn_url: Some(node.conn_url()),
            api_url: Some(node.api_url()),
            state: Some(state.to_owned()),
            role: Some(role),
            version: Some("4.1.0".to_owned()),
            xlog_location: pg.wal().map(|w| w.end()),
            timeline: pg.wal().map(|w| w.timeline()),
            replication_state: streaming.then(|| "streaming".to_owned()),
            pause: node.config.1.pause,
            ..keel_model::MemberData::default()
        };
        let key = format!("members/{}", node.name);
        self.dcs.put(&key, data.render(), Some(lease));
    }

    /// The watchdog is kept alive by a primary that holds the lock (§4.11) and
    /// disabled when paused or when PostgreSQL is not running.
    fn watchdog_after(&mut self, i: usize, obs: &Observation, plan: &keel_ha::Plan) {
        let now = self.now;
        let a = &obs.answers;
        let kept = a.refresh == Some(LockAnswer::Held)
            || a.acquire == Some(LockAnswer::Held)
            || a.failsafe == Some(FailsafeAnswer::AllAccepted)
            || plan.actions.contains(&keel_ha::Action::TakeLock);
        let node = &mut self.nodes[i];
        let promoting = node
            .running
            .as_ref()
            .is_some_and(|r| r.action == crate::node::Long::Promote);
        // Armed as soon as PostgreSQL starts as a primary, not only once it
        // runs: a host frozen right after the start must still be reset.
        let leading = (node.pg.role == keel_ha::PgRole::Primary
            && !matches!(node.pg.proc, Proc::Stopped { .. }))
            || promoting;
        if obs.config.pause || matches!(node.pg.proc, Proc::Stopped { .. }) {
            node.watchdog.active = false;
        } else if kept && leading {
            node.watchdog.active = true;
            node.watchdog.last_keepalive = now;
        }
    }

    /// The contract checks on a plan: no promotion while paused unless this
    /// node is the requested candidate.
    fn check_plan(&self, i: usize, obs: &Observation, plan: &keel_ha::Plan) -> Result<(), Failure> {
        if obs.config.pause && plan.actions.contains(&keel_ha::Action::Promote) {
            let name = &self.nodes[i].name;
            let candidate = obs
                .cluster
                .as_ref()
                .ok()
                .and_then(|c| c.failover.as_ref())
                .and_then(|f| f.candidate.as_deref());
            if candidate != Some(name.as_str()) {
                return Err(Failure(format!(
                    "{name} promotes itself while the cluster is paused without being the \
                     requested candidate: {}",
                    plan.message
                )));
            }
        }
        Ok(())
    }
}

/// A DCS operation that could not reach the store within `retry_timeout`.
fn dcs_failed(op: DcsOp, fl: &mut InFlight) {
    let why = "DCS unreachable (retry_timeout exceeded)".to_owned();
    match op {
        DcsOp::Read => fl.cluster = Some(Err(DcsUnreachable(why))),
        DcsOp::Acquire => fl.answers.acquire = Some(LockAnswer::Failed(why)),
        DcsOp::Refresh => fl.answers.refresh = Some(LockAnswer::Failed(why)),
        DcsOp::Initialize => fl.answers.initialize = Some(Err(why)),
    }
}
