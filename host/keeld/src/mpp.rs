//! The MPP handler (Citus) at the moments Patroni's HA loop calls it.
//!
//! * every member: the handler adjusts the computed parameters and keeps its own replication
//!   slots from being dropped; a new primary is prepared by its `bootstrap`;
//! * a worker's leader announces `before_demote` (switchover), `before_promote` and
//!   `after_promote` to the coordinator's leader with `POST /citus`, Patroni's body and timeouts;
//! * the coordinator's leader checks such an event against a fresh DCS view and hands it to the
//!   handler, brings the metadata in line with the formation every cycle (`sync-meta-data`) and
//!   lets the handler enforce its deadlines once a second (`tick`).
//!
//! A failing handler call is logged and never stops the loop: the handler's state is the
//! plugin's, and a discarded instance closes its sessions, which rolls back an open pause.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel_config::Settings;
use keel_dcs::{Cluster, Dcs, Formation};
use keel_postgres::{Parameters, Postgres, ReplicationSlot, SlotKind};
use keel_runtime::{
    BootstrapContext, GroupView, MemberView, MppEvent, MppEventKind, MppPlugin, Parameter, SlotInfo,
};
use serde_json::{Value, json};

use crate::ha::upstream_of;

/// How often the coordinator's leader lets the handler enforce deadlines.
const TICK: Duration = Duration::from_secs(1);

/// Patroni's HTTP timeout for events other than `before_demote`.
const EVENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The MPP handler and what the daemon needs around it. Shared by the loop, its background
/// actions, the REST API and the ticker.
pub(crate) struct Mpp {
    plugin: MppPlugin,
    /// This member's group.
    pub(crate) group: u32,
    /// The coordinator's group.
    pub(crate) coordinator: u32,
    member: String,
    http: crate::peer_client::PeerClient,
    /// Reads the coordinator's group (worker) or a worker's group (coordinator, for events).
    dcs: Dcs,
    /// The coordinator's leader has synced the metadata since it became primary: events are
    /// accepted only from then on (Patroni starts its worker thread in the first sync).
    active: AtomicBool,
}

impl Mpp {
    pub(crate) async fn new(
        plugin: MppPlugin,
        member: String,
        http: crate::peer_client::PeerClient,
        dcs: Dcs,
    ) -> anyhow::Result<Self> {
        let group = plugin.group().await?;
        let coordinator = plugin.coordinator_group().await?;
        Ok(Self {
            plugin,
            group,
            coordinator,
            member,
            http,
            dcs,
            active: AtomicBool::new(false),
        })
    }

    pub(crate) fn is_coordinator(&self) -> bool {
        self.group == self.coordinator
    }

    /// Ask the handler for its parameter changes to `configured` (as PostgreSQL would get them)
    /// and install them as the adjust hook. On failure the previous hook stays: parameters the
    /// handler needs (shared_preload_libraries) must not silently disappear.
    pub(crate) async fn adjust_parameters(&self, pg: &Postgres, configured: &Parameters) {
        let input: Vec<Parameter> = pg
            .unadjusted_parameters(configured)
            .iter()
            .map(|(name, value)| Parameter {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect();
        match self.plugin.adjust_gucs(&input).await {
            Ok(changes) => {
                let changes: Vec<(String, String)> =
                    changes.into_iter().map(|p| (p.name, p.value)).collect();
                pg.set_adjust_hook(Some(Arc::new(move |params: &mut Parameters| {
                    for (name, value) in &changes {
                        params.set(name, value.clone());
                    }
                })));
            }
            Err(e) => tracing::error!("{e}; keeping the previous parameter adjustments"),
        }
    }

    /// The slots among `slots` the handler wants kept. A failed call keeps the slot: dropping
    /// a slot cannot be undone, keeping one costs WAL until the next cycle asks again.
    pub(crate) async fn ignored_slots(&self, slots: &[ReplicationSlot]) -> HashSet<String> {
        let mut keep = HashSet::new();
        for slot in slots {
            let info = match &slot.kind {
                SlotKind::Physical => SlotInfo {
                    name: slot.name.clone(),
                    slot_type: "physical".to_owned(),
                    plugin: None,
                    database: None,
                },
                SlotKind::Logical { plugin, database } => SlotInfo {
                    name: slot.name.clone(),
                    slot_type: "logical".to_owned(),
                    plugin: Some(plugin.clone()),
                    database: Some(database.clone()),
                },
            };
            match self.plugin.ignore_replication_slot(&info).await {
                Ok(false) => {}
                Ok(true) => {
                    keep.insert(slot.name.clone());
                }
                Err(e) => {
                    tracing::warn!("{e}; keeping slot {}", slot.name);
                    keep.insert(slot.name.clone());
                }
            }
        }
        keep
    }

    /// Prepare a freshly bootstrapped primary (after post_bootstrap).
    pub(crate) async fn bootstrap(&self, settings: &Settings) -> anyhow::Result<()> {
        let pg = &settings.postgresql;
        let su = &pg.authentication.superuser;
        let mut superuser_conninfo = Vec::new();
        if let Some(password) = &su.password {
            superuser_conninfo.push(("password".to_owned(), password.clone()));
        }
        for key in ["sslcert", "sslkey"] {
            if let Some(value) = su.options.get(key) {
                superuser_conninfo.push((key.to_owned(), value.clone()));
            }
        }
        let context = BootstrapContext {
            host: pg.connect_address.host.clone(),
            port: pg.connect_address.port,
            default_database: pg.database.clone(),
            superuser_conninfo,
        };
        Ok(self.plugin.bootstrap(&context).await?)
    }

    /// This member stops being primary.
    pub(crate) async fn on_demote(&self) {
        self.active.store(false, Ordering::SeqCst);
        if let Err(e) = self.plugin.on_demote().await {
            tracing::warn!("{e}");
        }
    }

    /// The coordinator's leader, every cycle while it runs as primary: metadata = formation.
    pub(crate) async fn sync_meta_data(&self, formation: &Formation) {
        let view = formation_view(formation);
        match self.plugin.sync_meta_data(&view).await {
            Ok(()) => self.active.store(true, Ordering::SeqCst),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Let the handler enforce its deadlines (a pause past its timeout rolls back).
    async fn tick(&self) {
        if let Err(e) = self.plugin.tick().await {
            tracing::warn!("{e}");
        }
    }

    /// Runs the ticker while the coordinator's leader is active. Never returns.
    pub(crate) async fn run_ticker(self: Arc<Self>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if self.active.load(Ordering::SeqCst) {
                self.tick().await;
            }
        }
    }

    /// A worker's leader announces `kind` to the coordinator's leader. Failures are logged,
    /// never fatal (Patroni's rule: the switchover goes on, clients may see errors instead of
    /// waiting).
    pub(crate) async fn notify(&self, kind: MppEventKind, ttl: u32, retry_timeout: u32) {
        if self.is_coordinator() {
            return;
        }
        let name = event_name(kind);
        let url = match self.coordinator_api().await {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!("cannot send {name} to the coordinator: {e}");
                return;
            }
        };
        let body = json!({
            "type": name,
            "group": self.group,
            "leader": self.member,
            "timeout": ttl,
            "cooldown": retry_timeout,
        });
        let timeout = match kind {
            MppEventKind::BeforeDemote => Duration::from_secs(ttl.into()),
            _ => EVENT_TIMEOUT,
        };
        let sent = self
            .http
            .get()
            .post(&url)
            .timeout(timeout)
            .json(&body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) => tracing::info!("{name} sent to the coordinator at {url}"),
            Err(e) => tracing::warn!("{name} to the coordinator at {url} failed: {e}"),
        }
    }

    /// `<coordinator leader's REST API>/citus`.
    async fn coordinator_api(&self) -> anyhow::Result<String> {
        let cluster = self.dcs.load_group(self.coordinator).await?;
        let leader = cluster
            .leader
            .as_ref()
            .map(|l| l.name.clone())
            .ok_or_else(|| anyhow::anyhow!("the coordinator group has no leader"))?;
        let member = cluster
            .member(&leader)
            .ok_or_else(|| anyhow::anyhow!("coordinator leader {leader} has no member key"))?;
        anyhow::ensure!(
            member.data.conn_url.is_some(),
            "coordinator leader {leader} publishes no conn_url"
        );
        let api =
            member.data.api_url.as_deref().ok_or_else(|| {
                anyhow::anyhow!("coordinator leader {leader} publishes no api_url")
            })?;
        let base = api.strip_suffix("/patroni").unwrap_or(api);
        Ok(format!("{}/citus", base.trim_end_matches('/')))
    }

    /// `POST /citus` on this node: applied only on the coordinator's active leader, and only
    /// when the DCS confirms the sender leads its group. Always answered 200 by the API.
    pub(crate) async fn handle_event(&self, body: &Value) {
        if !self.is_coordinator() || !self.active.load(Ordering::SeqCst) {
            tracing::debug!("MPP event ignored: not the coordinator's active leader");
            return;
        }
        let request = match EventRequest::parse(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("MPP event refused: {e}");
                return;
            }
        };
        let group = match self.dcs.load_group(request.group).await {
            Ok(cluster) => cluster,
            Err(e) => {
                tracing::warn!(
                    "MPP event from group {}: DCS read failed: {e}",
                    request.group
                );
                return;
            }
        };
        let event = match request.check(&group) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("MPP event refused: {e}");
                return;
            }
        };
        tracing::info!(
            "MPP event {} from {} (group {}) for {}:{}",
            event_name(event.kind),
            event.leader,
            event.group,
            event.host,
            event.port
        );
        if let Err(e) = self.plugin.handle_event(&event).await {
            tracing::warn!("{e}");
        }
    }
}

fn event_name(kind: MppEventKind) -> &'static str {
    match kind {
        MppEventKind::BeforeDemote => "before_demote",
        MppEventKind::BeforePromote => "before_promote",
        MppEventKind::AfterPromote => "after_promote",
    }
}

/// A `POST /citus` body as Patroni sends it.
#[derive(Debug, Clone, PartialEq)]
struct EventRequest {
    kind: MppEventKind,
    group: u32,
    leader: String,
    timeout: f64,
    cooldown: f64,
}

impl EventRequest {
    fn parse(body: &Value) -> Result<Self, String> {
        let kind = match body.get("type").and_then(Value::as_str) {
            Some("before_demote") => MppEventKind::BeforeDemote,
            Some("before_promote") => MppEventKind::BeforePromote,
            Some("after_promote") => MppEventKind::AfterPromote,
            other => return Err(format!("unknown event type {other:?}")),
        };
        let group = body
            .get("group")
            .and_then(Value::as_u64)
            .and_then(|g| u32::try_from(g).ok())
            .ok_or("`group` must be a group number")?;
        let leader = body
            .get("leader")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .ok_or("`leader` must name the sending member")?
            .to_owned();
        let number = |key: &str| {
            body.get(key)
                .and_then(Value::as_f64)
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("`{key}` must be a non-negative number of seconds"))
        };
        Ok(Self {
            kind,
            group,
            leader,
            timeout: number("timeout")?,
            cooldown: number("cooldown")?,
        })
    }

    /// The event for the handler, if the group's DCS view confirms the sender leads it; the
    /// address is the one that leader publishes, not anything in the request.
    fn check(&self, group: &Cluster) -> Result<MppEvent, String> {
        let leader = group
            .leader_name()
            .ok_or_else(|| format!("group {} has no leader", self.group))?;
        if leader != self.leader {
            return Err(format!(
                "{} does not lead group {} ({leader} does)",
                self.leader, self.group
            ));
        }
        let up = group
            .member(leader)
            .and_then(|m| m.data.conn_url.as_deref())
            .and_then(upstream_of)
            .ok_or_else(|| format!("{leader} publishes no usable conn_url"))?;
        Ok(MppEvent {
            kind: self.kind,
            group: self.group,
            leader: self.leader.clone(),
            host: up.host,
            port: up.port,
            timeout_seconds: seconds(self.timeout),
            cooldown_ms: seconds(self.cooldown * 1000.0),
        })
    }
}

/// A non-negative float as whole units, saturating.
fn seconds(value: f64) -> u32 {
    // Saturating float-to-int cast: the value was checked to be finite and non-negative.
    value.round().min(f64::from(u32::MAX)) as u32
}

/// The formation as the handler sees it: every group, members with their published addresses.
fn formation_view(formation: &Formation) -> Vec<GroupView> {
    formation
        .groups
        .iter()
        .map(|(group, cluster)| GroupView {
            group: *group,
            leader: cluster.leader_name().map(str::to_owned),
            members: cluster
                .members
                .iter()
                .map(|m| {
                    let up = m.data.conn_url.as_deref().and_then(upstream_of);
                    MemberView {
                        name: m.name.clone(),
                        host: up.as_ref().map(|u| u.host.clone()),
                        port: up.map_or(0, |u| u.port),
                        role: m
                            .data
                            .role
                            .as_ref()
                            .map(|r| r.as_str().to_owned())
                            .unwrap_or_default(),
                        state: m.data.state.clone().unwrap_or_default(),
                        noloadbalance: m
                            .data
                            .tags
                            .get("noloadbalance")
                            .is_some_and(|v| keel_config::lenient::parse_bool(v).unwrap_or(false)),
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_dcs::model::Entry;

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            version: "1".to_owned(),
            session: None,
        }
    }

    fn group_with_leader(leader: &str, conn_url: Option<&str>) -> Cluster {
        let mut entries = vec![entry("leader", leader)];
        let data = match conn_url {
            Some(url) => json!({"conn_url": url, "api_url": "http://h:8008/patroni",
                                "role": "primary", "state": "running"}),
            None => json!({"role": "primary", "state": "running"}),
        };
        entries.push(entry(&format!("members/{leader}"), &data.to_string()));
        Cluster::from_entries(&entries)
    }

    fn body(kind: &str) -> Value {
        json!({"type": kind, "group": 1, "leader": "w1", "timeout": 30, "cooldown": 10})
    }

    #[test]
    fn patronis_event_body_parses() {
        let r = EventRequest::parse(&body("before_demote")).expect("parses");
        assert_eq!(r.kind, MppEventKind::BeforeDemote);
        assert_eq!((r.group, r.leader.as_str()), (1, "w1"));
        // retry_timeout may be fractional; the cooldown is milliseconds.
        let mut b = body("after_promote");
        b["cooldown"] = json!(2.5);
        let event = EventRequest::parse(&b)
            .expect("parses")
            .check(&group_with_leader(
                "w1",
                Some("postgres://10.0.0.7:5433/postgres"),
            ))
            .expect("accepted");
        assert_eq!(event.cooldown_ms, 2500);
        assert_eq!(event.timeout_seconds, 30);
        assert_eq!((event.host.as_str(), event.port), ("10.0.0.7", 5433));
    }

    #[test]
    fn malformed_events_are_refused_with_the_reason() {
        for (patch, expected) in [
            (json!({"type": "reboot"}), "unknown event type"),
            (json!({"group": -1}), "`group`"),
            (json!({"leader": ""}), "`leader`"),
            (json!({"timeout": "x"}), "`timeout`"),
        ] {
            let mut b = body("before_demote");
            for (k, v) in patch.as_object().expect("object") {
                b[k] = v.clone();
            }
            let err = EventRequest::parse(&b).expect_err("refused");
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn an_event_from_a_member_that_does_not_lead_its_group_is_refused() {
        let r = EventRequest::parse(&body("before_demote")).expect("parses");
        let err = r
            .check(&group_with_leader("w2", Some("postgres://h:5432/postgres")))
            .expect_err("w1 is not the leader");
        assert!(err.contains("w2 does"), "{err}");
        let err = r
            .check(&group_with_leader("w1", None))
            .expect_err("no conn_url");
        assert!(err.contains("conn_url"), "{err}");
        assert!(r.check(&Cluster::default()).is_err());
    }
}
