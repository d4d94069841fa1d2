//! The queue of metadata changes and the one transaction that may be open.
//!
//! This is Patroni's Citus worker thread without the thread. Patroni queues a
//! task per group (from a worker's REST event or from the HA loop) and a thread
//! applies them over one dedicated connection: while a switchover holds a
//! transaction open for one group, tasks for other groups wait; once its
//! deadline passes it rolls back. Here the host's calls drive the same state
//! machine, one call at a time: each call first enforces the deadline, then
//! queues its task, then applies whatever can be applied now ([`Worker::process`]).
//!
//! SQL goes through the [`Metadata`] trait, so the scheduling rules are tested
//! natively against an in-memory table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_sdk::host::log;
use keel_sdk::mpp::EventKind;

use crate::config::COORDINATOR_GROUP;
use crate::topology::{Address, Change, Group, Node, Role, transition};

/// Citus's default `lock_cooldown`, milliseconds.
pub const DEFAULT_COOLDOWN_MS: u32 = 10_000;

/// A statement that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was being done (`citus_update_node(4, 'a-demoted', 5432)`).
    pub what: String,
    /// The server's or the client's message.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.what, self.message)
    }
}

/// One row of `pg_dist_node` as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `groupid`.
    pub group: u32,
    /// `nodename`.
    pub host: String,
    /// `nodeport`.
    pub port: u16,
    /// `noderole`.
    pub role: String,
    /// `nodeid`.
    pub nodeid: i32,
}

/// The SQL the worker needs, on one session in the Citus database.
pub trait Metadata {
    /// Every row of `pg_dist_node`.
    fn load(&mut self) -> Result<Vec<Row>, Failure>;
    /// `BEGIN`.
    fn begin(&mut self) -> Result<(), Failure>;
    /// `COMMIT`.
    fn commit(&mut self) -> Result<(), Failure>;
    /// `ROLLBACK`.
    fn rollback(&mut self) -> Result<(), Failure>;
    /// Make one call for `group`; an addition answers the new nodeid.
    fn apply(
        &mut self,
        group: u32,
        change: &Change,
        cooldown_ms: u32,
    ) -> Result<Option<i32>, Failure>;
    /// End the session; the server rolls back whatever it had open.
    fn close(&mut self);
}

/// What one group's rows should become, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The group.
    pub group: u32,
    /// Its rows.
    pub nodes: Group,
    /// What asked for it; the HA loop's tasks are `after-promote`.
    pub event: EventKind,
    /// How long a transaction it opens may stay open; `Some` only for a worker's event.
    pub timeout: Option<Duration>,
    /// `lock_cooldown` for `citus_update_node`, milliseconds.
    pub cooldown_ms: u32,
    /// When the transaction it opened must be rolled back.
    pub deadline: Option<Instant>,
}

impl Task {
    /// A task from the HA loop.
    pub fn from_loop(group: u32, nodes: Group) -> Self {
        Self {
            group,
            nodes,
            event: EventKind::AfterPromote,
            timeout: None,
            cooldown_ms: DEFAULT_COOLDOWN_MS,
            deadline: None,
        }
    }

    /// A task from a worker's event.
    pub fn from_event(
        group: u32,
        nodes: Group,
        event: EventKind,
        timeout: Duration,
        cooldown_ms: u32,
    ) -> Self {
        Self {
            timeout: Some(timeout),
            cooldown_ms: if cooldown_ms == 0 {
                DEFAULT_COOLDOWN_MS
            } else {
                cooldown_ms
            },
            event,
            ..Self::from_loop(group, nodes)
        }
    }

    fn is_from_event(&self) -> bool {
        self.timeout.is_some()
    }

    /// Same group, same event, same rows (nodeids aside).
    fn same_as(&self, other: &Self) -> bool {
        self.group == other.group && self.event == other.event && self.nodes.same_as(&other.nodes)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} for group {}: {}",
            event_name(self.event),
            self.group,
            self.nodes
        )
    }
}

/// Patroni's name of an event.
pub fn event_name(event: EventKind) -> &'static str {
    match event {
        EventKind::BeforeDemote => "before_demote",
        EventKind::BeforePromote => "before_promote",
        EventKind::AfterPromote => "after_promote",
    }
}

/// The queue, the open transaction and the cache of `pg_dist_node`.
#[derive(Debug)]
pub struct Worker {
    /// `pg_dist_node` as last read or committed, by group.
    cache: BTreeMap<u32, Task>,
    /// Waiting tasks, oldest first, at most one per group.
    tasks: Vec<Task>,
    /// The task whose transaction is open.
    in_flight: Option<Task>,
    /// The cache must be read again before it is trusted.
    reload: bool,
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            cache: BTreeMap::new(),
            tasks: Vec::new(),
            in_flight: None,
            reload: true,
        }
    }
}

impl Worker {
    /// Queue `task` unless it would change nothing (Patroni's rules); true when queued.
    ///
    /// A task from the HA loop never replaces one from an event, and is refused
    /// for a group whose event transaction is open and before its deadline: the
    /// DCS may not show the switchover yet. A newer task for a queued group
    /// replaces the queued one in its place.
    pub fn add(&mut self, task: Task, now: Instant) -> bool {
        let queued = self.tasks.iter().position(|t| t.group == task.group);
        if !task.is_from_event() {
            if queued.is_some_and(|i| self.tasks[i].is_from_event()) {
                return false;
            }
            if self.in_flight.as_ref().is_some_and(|open| {
                open.group == task.group
                    && open.is_from_event()
                    && open.deadline.is_some_and(|d| d > now)
            }) {
                return false;
            }
        }
        if let Some(i) = queued {
            if self.tasks[i].same_as(&task) {
                return false;
            }
            log::debug(&format!("replacing queued {} with {task}", self.tasks[i]));
            self.tasks[i] = task;
            return true;
        }
        let differs = self.reload
            || self
                .cache
                .get(&task.group)
                .is_none_or(|cached| !cached.same_as(&task))
            || self
                .in_flight
                .as_ref()
                .is_some_and(|open| open.group == task.group);
        if differs {
            log::debug(&format!("queueing {task}"));
            self.tasks.push(task);
        }
        differs
    }

    /// Roll back an open transaction whose deadline has passed.
    pub fn enforce_deadline(&mut self, db: &mut dyn Metadata, now: Instant) -> Result<(), Failure> {
        let expired = self
            .in_flight
            .as_ref()
            .is_some_and(|open| open.deadline.is_none_or(|d| d <= now));
        if !expired {
            return Ok(());
        }
        if let Some(open) = self.in_flight.take() {
            log::warn(&format!(
                "rolling back the open transaction on pg_dist_node: its deadline passed \
                 ({open}); traffic to group {} resumes on its previous primary",
                open.group
            ));
        }
        db.rollback().inspect_err(|_| {
            // Ending the session rolls back all the same.
            db.close();
            self.reload = true;
        })
    }

    /// Apply every task that can be applied now: while a transaction is open,
    /// only its group's; otherwise the coordinator's first, then the oldest.
    /// A failed statement ends the session (rolling back an open transaction),
    /// drops its task and schedules a reload of the cache; the others go on.
    pub fn process(&mut self, db: &mut dyn Metadata, now: Instant) -> Result<(), Failure> {
        let mut first_failure = None;
        while !self.tasks.is_empty() {
            if self.in_flight.is_none() && self.reload {
                match db.load() {
                    Ok(rows) => {
                        self.cache = cache_of(rows);
                        self.reload = false;
                    }
                    Err(failure) => {
                        self.failed(db);
                        return Err(first_failure.unwrap_or(failure));
                    }
                }
            }
            let Some(i) = self.pick() else {
                break;
            };
            let mut task = self.tasks.remove(i);
            let outcome = self.process_task(db, &mut task, now);
            // What stays known is what has a row (Patroni also keeps wanted rows
            // a failover could not add, and then never adds them).
            task.nodes.nodes.retain(|n| n.nodeid.is_some());
            match outcome {
                Ok(true) => {
                    self.in_flight = None;
                    self.cache.insert(task.group, task);
                }
                Ok(false) => self.in_flight = Some(task),
                Err(failure) => {
                    log::error(&format!("{task} not applied: {failure}"));
                    self.failed(db);
                    first_failure.get_or_insert(failure);
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// This member stops being primary: forget everything, end the session.
    pub fn on_demote(&mut self, db: &mut dyn Metadata) {
        db.close();
        *self = Self::default();
    }

    /// Whether a task for `group` waits in the queue.
    pub fn is_queued(&self, group: u32) -> bool {
        self.tasks.iter().any(|t| t.group == group)
    }

    /// The group whose transaction is open.
    pub fn open_group(&self) -> Option<u32> {
        self.in_flight.as_ref().map(|t| t.group)
    }

    fn failed(&mut self, db: &mut dyn Metadata) {
        db.close();
        self.in_flight = None;
        self.reload = true;
    }

    /// The index of the next task to apply; drops tasks the cache already matches.
    fn pick(&mut self) -> Option<usize> {
        if let Some(open) = &self.in_flight {
            return self.tasks.iter().position(|t| t.group == open.group);
        }
        loop {
            let i = self
                .tasks
                .iter()
                .position(|t| t.group == COORDINATOR_GROUP)
                .or_else(|| (!self.tasks.is_empty()).then_some(0))?;
            let task = &self.tasks[i];
            if self
                .cache
                .get(&task.group)
                .is_some_and(|cached| cached.same_as(task))
            {
                self.tasks.remove(i);
                continue;
            }
            return Some(i);
        }
    }

    /// Apply one task. `Ok(true)`: done and committed (the cache takes it);
    /// `Ok(false)`: its transaction stays open.
    fn process_task(
        &mut self,
        db: &mut dyn Metadata,
        task: &mut Task,
        now: Instant,
    ) -> Result<bool, Failure> {
        if task.event == EventKind::AfterPromote {
            let open = self.in_flight.is_some();
            self.update_group(db, task, open)?;
            if open {
                db.commit()?;
                log::info(&format!("committed {task}"));
            }
            task.nodes.failover = false;
            return Ok(true);
        }
        task.deadline = task.timeout.map(|t| now + t);
        if self.in_flight.is_none() {
            db.begin()?;
        }
        self.update_group(db, task, true)?;
        Ok(false)
    }

    /// Make the calls that take the group from what is registered to `task`.
    fn update_group(
        &self,
        db: &mut dyn Metadata,
        task: &mut Task,
        in_transaction: bool,
    ) -> Result<(), Failure> {
        let current = self
            .in_flight
            .as_ref()
            .or_else(|| self.cache.get(&task.group))
            .map(|t| t.nodes.clone())
            .unwrap_or_default();
        let changes = transition(&mut task.nodes, &current);
        let wrap = !in_transaction && changes.len() > 1;
        if wrap {
            db.begin()?;
        }
        for change in &changes {
            log::info(&format!("pg_dist_node group {}: {change}", task.group));
            if let Some(nodeid) = db.apply(task.group, change, task.cooldown_ms)?
                && let Change::Add { host, port, .. } = change
            {
                let address: Address = (host.clone(), *port);
                task.nodes.set_nodeid(&address, nodeid);
            }
        }
        if wrap {
            task.nodes.failover = false;
            db.commit()?;
        }
        Ok(())
    }
}

/// The cache from the rows of `pg_dist_node`.
fn cache_of(rows: Vec<Row>) -> BTreeMap<u32, Task> {
    let mut cache: BTreeMap<u32, Task> = BTreeMap::new();
    for row in rows {
        let task = cache
            .entry(row.group)
            .or_insert_with(|| Task::from_loop(row.group, Group::default()));
        let mut node = Node::new(row.host, row.port, Role::from_noderole(&row.role));
        node.nodeid = Some(row.nodeid);
        task.nodes.insert(node);
    }
    cache
}

#[cfg(test)]
mod tests;
