//! # The Citus MPP plugin
//!
//! Keel's reference MPP handler, with the behaviour of Patroni 4.1's Citus
//! handler, written against Citus's documented SQL surface only
//! (`pg_dist_node`, `pg_dist_authinfo`, `citus_add_node`, `citus_update_node`,
//! `citus_remove_node`, `citus_set_coordinator_host`), so it runs unchanged on
//! Citus 12 and 13.
//!
//! * every node: `citus` preloaded first, `max_prepared_transactions`,
//!   `wal_level = logical`, `citus.local_hostname` (module `gucs`); Citus's shard
//!   move/split slots are never dropped (module `slots`);
//! * a new primary: the Citus database, the extension, the superuser's
//!   credentials and, on the coordinator, its own row (module `bootstrap`);
//! * the coordinator's leader keeps `pg_dist_node` equal to the formation the DCS
//!   shows, one primary row per group and a secondary row per running replica,
//!   along the safe transitions of module `topology`;
//! * a worker switchover is transparent to clients of the coordinator: on
//!   `before-demote` the coordinator opens a transaction and points the worker's
//!   primary row at `<host>-demoted`, which makes writes to that worker's shards
//!   wait on Citus's metadata locks; `after-promote` points the row at the new
//!   primary and commits, and the waiting writes go there. If the worker never
//!   comes back, the transaction rolls back at its deadline (the worker's ttl).
//!
//! ## Patroni's worker thread, without a thread
//!
//! Patroni applies metadata changes from a dedicated thread: REST events and
//! the HA loop queue tasks, the thread applies them over one connection, and a
//! `before_demote` request blocks until the thread has applied it. A plugin
//! instance has no threads, and the host calls it one call at a time, so the
//! same state machine (module `worker`) is driven by the calls:
//!
//! * `handle-event` (a worker's `POST /citus`) = Patroni's `handle_event` plus one
//!   pass of the thread: the task is queued and everything that can be applied
//!   is applied before the call returns. So `before-demote` returns once the row
//!   points at `-demoted` inside the open transaction, as Patroni's blocking
//!   request does, unless another group's transaction is open: then the task
//!   waits in the queue (Patroni's request would block until that transaction
//!   ends or its ttl runs out; here the call returns at once and the task is
//!   applied by a later call).
//! * `sync-meta-data` (every HA cycle) = Patroni's `sync_meta_data` plus one pass.
//! * `tick` (about once a second) = the thread's wait timing out: an open
//!   transaction past its deadline is rolled back (warning "rolling back ..."),
//!   then queued tasks are applied. Patroni rolls back only once another task
//!   is pending, which the next HA cycle provides; here the deadline alone is
//!   enough.
//! * `on-demote` = Patroni's `on_demote`: the session closes (an open transaction
//!   rolls back), the cache and the queue are forgotten.
//!
//! The transaction lives in a [`keel_sdk::host::postgres::Connection`] kept in
//! the plugin's state between calls. A fresh instance (after a fault the host
//! discards the old one) has lost that connection, and the server has rolled
//! the transaction back: the safe outcome. Any failed statement closes the
//! session too, the call answers `failed(..)` saying what failed, and the cache
//! of `pg_dist_node` is read again before the next change.
//!
//! A worker's event names only the group's leader; the group's secondaries for
//! that task come from the last formation `sync-meta-data` was given. Events
//! that arrive before the first `sync-meta-data` of an instance are discarded,
//! as Patroni discards them before its thread starts.

mod bootstrap;
mod config;
mod formation;
mod gucs;
mod slots;
mod sql;
mod topology;
mod worker;

use std::time::Instant;

use keel_sdk::PluginInfo;
use keel_sdk::host::log;
use keel_sdk::mpp::{
    BootstrapContext, Event, EventKind, GroupView, MppError, MppPlugin, Parameter, Slot,
};

use config::Config;
use sql::Session;
use worker::{Failure, Worker, event_name};

/// The handler's state inside one plugin instance.
#[derive(Debug)]
pub struct Citus {
    config: Config,
    worker: Worker,
    session: Session,
    /// The formation as the last `sync-meta-data` showed it; `None` until then.
    formation: Option<Vec<GroupView>>,
}

fn failed(failure: Failure) -> MppError {
    MppError::Failed(failure.to_string())
}

impl Citus {
    /// The handler for a validated config section.
    pub fn new(config: Config) -> Self {
        Self {
            session: Session::new(config.database.clone()),
            config,
            worker: Worker::default(),
            formation: None,
        }
    }

    /// Whether the metadata session has a transaction open.
    #[cfg(test)]
    fn session_in_transaction(&self) -> bool {
        self.session.in_transaction()
    }

    /// Enforce the deadline, queue `task` if any, and apply what can be applied.
    fn run(&mut self, task: Option<worker::Task>) -> Result<(), MppError> {
        let now = Instant::now();
        let deadline = self.worker.enforce_deadline(&mut self.session, now);
        if let Some(task) = task {
            self.worker.add(task, now);
        }
        let processed = self.worker.process(&mut self.session, now);
        deadline.and(processed).map_err(failed)
    }
}

impl MppPlugin for Citus {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "citus",
            env!("CARGO_PKG_VERSION"),
            "Citus: pg_dist_node kept equal to the formation, worker switchovers without failed writes",
        )
    }

    fn validate_config(config: String) -> Result<Self, MppError> {
        Config::parse(&config).map(Self::new)
    }

    fn group(&self) -> u32 {
        self.config.group
    }

    fn coordinator_group(&self) -> u32 {
        config::COORDINATOR_GROUP
    }

    fn adjust_gucs(&mut self, parameters: Vec<Parameter>) -> Vec<Parameter> {
        gucs::adjust(&parameters)
    }

    fn ignore_replication_slot(&self, slot: Slot) -> bool {
        slots::is_citus_slot(&slot, &self.config.database)
    }

    fn bootstrap(&mut self, context: BootstrapContext) -> Result<(), MppError> {
        bootstrap::run(&self.config, &context)
    }

    fn on_demote(&mut self) {
        self.worker.on_demote(&mut self.session);
    }

    fn handle_event(&mut self, event: Event) -> Result<(), MppError> {
        if !self.config.is_coordinator() {
            log::debug("ignoring an MPP event: only the coordinator handles them");
            return Ok(());
        }
        let name = event_name(event.kind);
        let Some(formation) = &self.formation else {
            log::info(&format!(
                "discarding {name} from group {}: pg_dist_node has not been synced yet",
                event.group
            ));
            return Ok(());
        };
        let task = formation::event_task(&event, formation);
        self.run(Some(task))?;
        if event.kind == EventKind::BeforeDemote && self.worker.is_queued(event.group) {
            log::info(&format!(
                "{name} from group {} waits until the open transaction of group {} ends",
                event.group,
                self.worker
                    .open_group()
                    .map_or_else(|| "?".to_owned(), |g| g.to_string())
            ));
        }
        Ok(())
    }

    fn sync_meta_data(&mut self, formation: Vec<GroupView>) -> Result<(), MppError> {
        if !self.config.is_coordinator() {
            return Ok(());
        }
        let now = Instant::now();
        let deadline = self.worker.enforce_deadline(&mut self.session, now);
        for task in formation::loop_tasks(&formation) {
            self.worker.add(task, now);
        }
        self.formation = Some(formation);
        let processed = self.worker.process(&mut self.session, now);
        deadline.and(processed).map_err(failed)
    }

    fn tick(&mut self) -> Result<(), MppError> {
        if !self.config.is_coordinator() || self.formation.is_none() {
            return Ok(());
        }
        self.run(None)
    }
}

keel_sdk::export_mpp_plugin!(Citus);

#[cfg(test)]
mod tests;
