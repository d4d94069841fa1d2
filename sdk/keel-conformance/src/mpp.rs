//! The MPP conformance suite.
//!
//! It drives the plugin through [`keel_runtime::MppPlugin`], the typed handle keeld
//! uses, so it checks the component itself. Every case that needs a database gets
//! an environment of its own from the harness (a fresh server, typically), so cases
//! cannot see each other's metadata. The suite shows the plugin a formation of a
//! coordinator (this server) and two worker groups of two members each, and
//! checks effects from SQL sessions of its own through two statements the harness
//! provides: where a group's primary points, as committed, and what a client
//! writing to a group runs (which must wait while the group is paused).

use std::time::Duration;

use futures::future::BoxFuture;
use keel_runtime::{
    BootstrapContext, GroupView, MemberView, MppError, MppEvent, MppEventKind, MppPlugin,
    Parameter, SlotInfo,
};

/// What the suite needs from the plugin under test.
pub trait MppHarness: Send + Sync {
    /// A fresh handle on the plugin, not yet configured, for the cases that run no
    /// SQL (config, parameters, slots); it need not be granted a database.
    fn plugin(&self) -> BoxFuture<'_, Result<MppPlugin, String>>;
    /// A fresh server for one case, and the plugin on it.
    fn environment(&self) -> BoxFuture<'_, Result<Box<dyn MppEnvironment>, String>>;
    /// A config section the plugin accepts for a member of `group`.
    fn config(&self, group: u32) -> String;
    /// Sections the plugin must refuse, each with the config key (`citus.group`)
    /// its message must name.
    fn bad_configs(&self) -> Vec<(String, String)>;
    /// Replication slots the plugin owns and Keel must never drop.
    fn own_slots(&self) -> Vec<SlotInfo>;
    /// Slots that are not the plugin's.
    fn foreign_slots(&self) -> Vec<SlotInfo>;
    /// A query, `$1` a group number (int4), answering the host (text) and port
    /// (int4) of the group's primary as committed in the plugin's metadata.
    fn primary_sql(&self) -> &str;
    /// A statement, `$1` a group number (int4), that a client writing to the group
    /// runs; it must wait while the group is paused and complete otherwise.
    fn write_sql(&self) -> &str;
    /// The address of member `member` (1 or 2) of worker group `group` in the
    /// formation the suite shows the plugin. Loopback addresses by default.
    fn worker_address(&self, group: u32, member: u32) -> (String, u16) {
        (format!("127.0.{group}.{member}"), 5432)
    }
}

/// One case's server with the plugin on it; dropping it cleans up.
pub trait MppEnvironment: Send + Sync {
    /// The plugin, with the grants keeld gives it, not yet configured.
    fn plugin(&self) -> &MppPlugin;
    /// What `bootstrap` gets on this server as the coordinator's new primary.
    fn bootstrap_context(&self) -> BootstrapContext;
    /// A new session on the plugin's metadata database.
    fn session(&self) -> BoxFuture<'_, Result<tokio_postgres::Client, String>>;
}

type Run = for<'a> fn(&'a dyn MppHarness) -> BoxFuture<'a, Result<(), String>>;

/// One property every MPP plugin must have.
pub struct Case {
    /// The case's name (a Rust identifier).
    pub name: &'static str,
    /// What passing it proves, in one sentence.
    pub proves: &'static str,
    run: Run,
}

/// The outcome of every case.
#[derive(Debug)]
pub struct Report {
    /// `(case name, Ok or the failure)`, in suite order.
    pub outcomes: Vec<(&'static str, Result<(), String>)>,
}

impl Report {
    /// The failed cases.
    pub fn failures(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter_map(|(name, outcome)| outcome.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect()
    }

    /// Panic listing every failed case, if any.
    pub fn assert_passed(&self) {
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "MPP conformance failures:\n  {}",
            failures.join("\n  ")
        );
    }
}

macro_rules! case {
    ($run:ident, $proves:literal) => {
        Case {
            name: stringify!($run),
            proves: $proves,
            run: |h| Box::pin($run(h)),
        }
    };
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            bad_config_is_refused_naming_the_key,
            "a wrong config section is refused as invalid config, and the message names the key"
        ),
        case!(
            good_config_is_accepted_with_its_group,
            "a right section is accepted and the plugin reports the group it names"
        ),
        case!(
            adjust_gucs_is_idempotent_and_keeps_unrelated_parameters,
            "the parameter adjustment applied to its own output changes nothing, and leaves other parameters and preloaded libraries alone"
        ),
        case!(
            own_slots_are_kept_and_others_are_not,
            "Keel never drops the plugin's replication slots, and still manages everyone else's"
        ),
        case!(
            before_demote_pauses_and_after_promote_commits,
            "writes to a group wait from the moment before-demote returns until after-promote, then reach the new primary"
        ),
        case!(
            events_for_another_group_wait_for_the_open_pause,
            "an event for another group is not applied while a pause is open, and is applied once it commits"
        ),
        case!(
            a_pause_past_its_deadline_rolls_back_on_tick,
            "a pause whose worker never comes back ends at its deadline on tick, back to the old primary"
        ),
        case!(
            on_demote_ends_the_pause,
            "a coordinator that stops being primary leaves no pause behind"
        ),
    ]
}

/// Run every case against `harness`.
pub async fn check(harness: &dyn MppHarness) -> Report {
    let mut outcomes = Vec::new();
    for case in cases() {
        let outcome = (case.run)(harness)
            .await
            .map_err(|e| format!("{e} (proves: {})", case.proves));
        outcomes.push((case.name, outcome));
    }
    Report { outcomes }
}

fn describe(context: &str, error: &MppError) -> String {
    format!("{context}: {error}")
}

async fn bad_config_is_refused_naming_the_key(h: &dyn MppHarness) -> Result<(), String> {
    for (section, key) in h.bad_configs() {
        match h.plugin().await?.validate_config(&section).await {
            Err(MppError::InvalidConfig { reason, .. }) if reason.contains(&key) => {}
            Err(MppError::InvalidConfig { reason, .. }) => {
                return Err(format!("{section} refused without naming {key}: {reason}"));
            }
            Err(other) => {
                return Err(describe(
                    &format!("{section} not refused as invalid config"),
                    &other,
                ));
            }
            Ok(()) => return Err(format!("{section} accepted")),
        }
    }
    Ok(())
}

async fn good_config_is_accepted_with_its_group(h: &dyn MppHarness) -> Result<(), String> {
    for group in [0, 2] {
        let plugin = h.plugin().await?;
        plugin
            .validate_config(&h.config(group))
            .await
            .map_err(|e| describe("a good section", &e))?;
        let reported = plugin.group().await.map_err(|e| describe("group", &e))?;
        let coordinator = plugin
            .coordinator_group()
            .await
            .map_err(|e| describe("coordinator-group", &e))?;
        if (reported, coordinator) != (group, 0) {
            return Err(format!(
                "section for group {group}: group {reported}, coordinator group {coordinator}"
            ));
        }
    }
    Ok(())
}

fn parameter(name: &str, value: &str) -> Parameter {
    Parameter {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// `base` with `changes` applied, as the host merges them.
fn merged(base: &[Parameter], changes: &[Parameter]) -> Vec<Parameter> {
    let mut out: Vec<Parameter> = base
        .iter()
        .filter(|p| !changes.iter().any(|c| c.name == p.name))
        .cloned()
        .collect();
    out.extend(changes.iter().cloned());
    out
}

async fn adjust_gucs_is_idempotent_and_keeps_unrelated_parameters(
    h: &dyn MppHarness,
) -> Result<(), String> {
    const SENTINEL: &str = "keel_conformance.sentinel";
    let plugin = h.plugin().await?;
    plugin
        .validate_config(&h.config(1))
        .await
        .map_err(|e| describe("config", &e))?;
    let inputs = [
        vec![
            parameter(
                "shared_preload_libraries",
                "pg_stat_statements,auto_explain",
            ),
            parameter("max_connections", "100"),
            parameter("listen_addresses", "*"),
            parameter("work_mem", "4MB"),
            parameter(SENTINEL, "untouched"),
        ],
        vec![parameter(SENTINEL, "untouched")],
    ];
    for input in inputs {
        let first = plugin
            .adjust_gucs(&input)
            .await
            .map_err(|e| describe("adjust-gucs", &e))?;
        if let Some(p) = first
            .iter()
            .find(|p| p.name == SENTINEL || p.name == "work_mem")
        {
            return Err(format!("changed an unrelated parameter: {p:?}"));
        }
        let applied = merged(&input, &first);
        let libraries = |params: &[Parameter]| {
            params
                .iter()
                .find(|p| p.name == "shared_preload_libraries")
                .map(|p| {
                    p.value
                        .split(',')
                        .map(|l| l.trim().to_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let kept = libraries(&applied);
        if let Some(lost) = libraries(&input).iter().find(|l| !kept.contains(l)) {
            return Err(format!("dropped {lost} from shared_preload_libraries"));
        }
        let second = plugin
            .adjust_gucs(&applied)
            .await
            .map_err(|e| describe("adjust-gucs again", &e))?;
        if merged(&applied, &second) != applied {
            return Err(format!(
                "not idempotent: {first:?} applied, then it asked for {second:?}"
            ));
        }
    }
    Ok(())
}

async fn own_slots_are_kept_and_others_are_not(h: &dyn MppHarness) -> Result<(), String> {
    let plugin = h.plugin().await?;
    plugin
        .validate_config(&h.config(0))
        .await
        .map_err(|e| describe("config", &e))?;
    for (slots, keep) in [(h.own_slots(), true), (h.foreign_slots(), false)] {
        for slot in slots {
            let kept = plugin
                .ignore_replication_slot(&slot)
                .await
                .map_err(|e| describe("ignore-replication-slot", &e))?;
            if kept != keep {
                return Err(format!("{slot:?}: kept = {kept}, expected {keep}"));
            }
        }
    }
    Ok(())
}

/// The coordinator leader of a bootstrapped formation, and the suite's view of it.
struct Formation<'h> {
    harness: &'h dyn MppHarness,
    env: Box<dyn MppEnvironment>,
    coordinator: (String, u16),
}

impl<'h> Formation<'h> {
    /// A new environment: configured as the coordinator, bootstrapped, the formation synced.
    async fn start(harness: &'h dyn MppHarness) -> Result<Self, String> {
        let env = harness.environment().await?;
        let plugin = env.plugin();
        plugin
            .validate_config(&harness.config(0))
            .await
            .map_err(|e| describe("config", &e))?;
        let context = env.bootstrap_context();
        let coordinator = (context.host.clone(), context.port);
        plugin
            .bootstrap(&context)
            .await
            .map_err(|e| describe("bootstrap", &e))?;
        let formation = Self {
            harness,
            env,
            coordinator,
        };
        formation.sync().await?;
        for group in [1, 2] {
            let expected = harness.worker_address(group, 1);
            let primary = formation.primary(group).await?;
            if primary.as_ref() != Some(&expected) {
                return Err(format!(
                    "after sync-meta-data, group {group}'s primary is {primary:?}, not {expected:?}"
                ));
            }
        }
        Ok(formation)
    }

    fn plugin(&self) -> &MppPlugin {
        self.env.plugin()
    }

    /// Every group as the DCS shows it before any switchover.
    fn view(&self) -> Vec<GroupView> {
        let member = |name: String, (host, port): (String, u16), role: &str| MemberView {
            name,
            host: Some(host),
            port,
            role: role.to_owned(),
            state: "running".to_owned(),
            noloadbalance: false,
        };
        let mut groups = vec![GroupView {
            group: 0,
            leader: Some("coordinator".to_owned()),
            members: vec![member(
                "coordinator".to_owned(),
                self.coordinator.clone(),
                "primary",
            )],
        }];
        for group in [1, 2] {
            groups.push(GroupView {
                group,
                leader: Some(format!("w{group}a")),
                members: vec![
                    member(
                        format!("w{group}a"),
                        self.harness.worker_address(group, 1),
                        "primary",
                    ),
                    member(
                        format!("w{group}b"),
                        self.harness.worker_address(group, 2),
                        "replica",
                    ),
                ],
            });
        }
        groups
    }

    async fn sync(&self) -> Result<(), String> {
        self.plugin()
            .sync_meta_data(&self.view())
            .await
            .map_err(|e| describe("sync-meta-data", &e))
    }

    /// Worker `group`'s event from member `a` (the old primary) or `b` (the new one).
    fn event(&self, kind: MppEventKind, group: u32, member: char, timeout: u32) -> MppEvent {
        let (host, port) = self
            .harness
            .worker_address(group, if member == 'a' { 1 } else { 2 });
        MppEvent {
            kind,
            group,
            leader: format!("w{group}{member}"),
            host,
            port,
            timeout_seconds: timeout,
            cooldown_ms: 10_000,
        }
    }

    async fn send(&self, event: &MppEvent) -> Result<(), String> {
        self.plugin().handle_event(event).await.map_err(|e| {
            describe(
                &format!("handle-event {:?} for group {}", event.kind, event.group),
                &e,
            )
        })
    }

    /// The group's primary as committed, from a session of the suite's own.
    async fn primary(&self, group: u32) -> Result<Option<(String, u16)>, String> {
        let session = self.env.session().await?;
        let rows = session
            .query(self.harness.primary_sql(), &[&group_param(group)])
            .await
            .map_err(|e| format!("the harness's primary query: {e}"))?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let host: String = row.try_get(0).map_err(|e| e.to_string())?;
        let port: i32 = row.try_get(1).map_err(|e| e.to_string())?;
        let port = u16::try_from(port).map_err(|e| e.to_string())?;
        Ok(Some((host, port)))
    }

    /// Whether a write to `group` waits (gives up after 300 ms).
    async fn write_waits(&self, group: u32) -> Result<bool, String> {
        let session = self.env.session().await?;
        session
            .batch_execute("SET lock_timeout = '300ms'; SET statement_timeout = '3s'")
            .await
            .map_err(|e| e.to_string())?;
        match session
            .execute(self.harness.write_sql(), &[&group_param(group)])
            .await
        {
            Ok(_) => Ok(false),
            Err(e) => match e.code().map(|c| c.code()) {
                // lock_not_available, query_canceled
                Some("55P03" | "57014") => Ok(true),
                _ => Err(format!("a write to group {group} failed: {e}")),
            },
        }
    }

    async fn expect_primary(&self, group: u32, member: u32, when: &str) -> Result<(), String> {
        let expected = self.harness.worker_address(group, member);
        let primary = self.primary(group).await?;
        if primary.as_ref() == Some(&expected) {
            Ok(())
        } else {
            Err(format!(
                "{when}: group {group}'s committed primary is {primary:?}, expected {expected:?}"
            ))
        }
    }

    async fn expect_waiting(&self, group: u32, waits: bool, when: &str) -> Result<(), String> {
        if self.write_waits(group).await? == waits {
            Ok(())
        } else if waits {
            Err(format!("{when}: a write to group {group} did not wait"))
        } else {
            Err(format!("{when}: a write to group {group} waited"))
        }
    }
}

fn group_param(group: u32) -> i32 {
    i32::try_from(group).unwrap_or(i32::MAX)
}

async fn before_demote_pauses_and_after_promote_commits(h: &dyn MppHarness) -> Result<(), String> {
    let f = Formation::start(h).await?;
    f.expect_waiting(1, false, "before any event").await?;
    f.send(&f.event(MppEventKind::BeforeDemote, 1, 'a', 30))
        .await?;
    f.expect_waiting(1, true, "after before-demote returned")
        .await?;
    f.expect_primary(1, 1, "while paused").await?;
    f.send(&f.event(MppEventKind::AfterPromote, 1, 'b', 30))
        .await?;
    f.expect_primary(1, 2, "after after-promote").await?;
    f.expect_waiting(1, false, "after after-promote").await
}

async fn events_for_another_group_wait_for_the_open_pause(
    h: &dyn MppHarness,
) -> Result<(), String> {
    let f = Formation::start(h).await?;
    f.send(&f.event(MppEventKind::BeforeDemote, 1, 'a', 30))
        .await?;
    f.send(&f.event(MppEventKind::AfterPromote, 2, 'b', 30))
        .await?;
    f.expect_waiting(2, false, "group 2's event while group 1 is paused")
        .await?;
    f.expect_primary(2, 1, "group 2's event while group 1 is paused")
        .await?;
    f.send(&f.event(MppEventKind::AfterPromote, 1, 'b', 30))
        .await?;
    f.plugin().tick().await.map_err(|e| describe("tick", &e))?;
    f.expect_primary(1, 2, "after group 1's after-promote")
        .await?;
    f.expect_primary(2, 2, "once group 1 committed").await
}

async fn a_pause_past_its_deadline_rolls_back_on_tick(h: &dyn MppHarness) -> Result<(), String> {
    let f = Formation::start(h).await?;
    f.send(&f.event(MppEventKind::BeforeDemote, 1, 'a', 1))
        .await?;
    f.expect_waiting(1, true, "after before-demote returned")
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    f.plugin().tick().await.map_err(|e| describe("tick", &e))?;
    f.expect_waiting(1, false, "after tick past the deadline")
        .await?;
    f.expect_primary(1, 1, "after the rollback").await
}

async fn on_demote_ends_the_pause(h: &dyn MppHarness) -> Result<(), String> {
    let f = Formation::start(h).await?;
    f.send(&f.event(MppEventKind::BeforeDemote, 1, 'a', 30))
        .await?;
    f.plugin()
        .on_demote()
        .await
        .map_err(|e| describe("on-demote", &e))?;
    // The server ends the session asynchronously; give it a moment.
    for _ in 0..50 {
        if !f.write_waits(1).await? {
            return f.expect_primary(1, 1, "after on-demote").await;
        }
    }
    Err("a write to group 1 still waits after on-demote".into())
}
