//! The DCS conformance suite.
//!
//! Every case runs in a cluster (scope) of its own, so one store serves the
//! whole suite and cases cannot see each other's keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use keel_dcs::{DcsBackend, DcsError, GroupEntries, LoadScope, Settings, ValueKey};

/// What the suite needs from the backend under test.
pub trait DcsHarness: Send + Sync {
    /// A configured backend for the member `settings.member` of
    /// `settings.scope` (and `settings.group`), on the store under test.
    fn member(&self, settings: Settings) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>>;
    /// A configured backend whose store cannot be reached.
    fn unreachable_member(
        &self,
        settings: Settings,
    ) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>>;
    /// Let `by` pass on the store's clock (a real sleep for a real store).
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()>;
    /// The shortest lease the store honours, seconds (etcd rounds below ~2 s up).
    fn min_ttl(&self) -> u32 {
        2
    }
}

type Run = for<'a> fn(&'a dyn DcsHarness, &'a str) -> BoxFuture<'a, Result<(), String>>;

/// One property every backend must have.
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
            "DCS conformance failures:\n  {}",
            failures.join("\n  ")
        );
    }
}

macro_rules! case {
    ($run:ident, $proves:literal) => {
        Case {
            name: stringify!($run),
            proves: $proves,
            run: |h, scope| Box::pin($run(h, scope)),
        }
    };
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            one_leader_among_concurrent_contenders,
            "the leader race has exactly one winner, and the key names it"
        ),
        case!(
            leader_key_vanishes_after_ttl_without_renewal,
            "a crashed leader's lock frees itself after ttl"
        ),
        case!(
            renewal_keeps_the_lock_and_a_lost_lock_is_reported,
            "update-leader renews our lock and answers false, not an error, once another member holds it"
        ),
        case!(
            delete_leader_only_deletes_our_own_lock,
            "releasing the lock never deletes another member's lock"
        ),
        case!(
            stale_version_is_refused,
            "compare-and-set with a stale version is a conflict and writes nothing"
        ),
        case!(
            member_keys_expire_with_their_lease,
            "a dead member's key disappears after ttl"
        ),
        case!(
            initialize_race_has_one_winner,
            "only one member may bootstrap a cluster"
        ),
        case!(
            watch_wakes_promptly_on_leader_delete,
            "a watch returns soon after the leader key goes, not at its timeout"
        ),
        case!(
            formation_load_returns_every_group,
            "a coordinator sees every group of an MPP formation in one read"
        ),
        case!(
            values_round_trip_byte_for_byte,
            "what the host writes is what it reads back"
        ),
        case!(
            unreachable_store_is_unavailable,
            "an unreachable store is Unavailable, never a conflict or a lost race"
        ),
    ]
}

/// Run every case against `harness`; each in a scope of its own.
pub async fn check(harness: &dyn DcsHarness) -> Report {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut outcomes = Vec::new();
    for case in cases() {
        let scope = format!("conformance-{}-{nonce}", case.name);
        let outcome = (case.run)(harness, &scope)
            .await
            .map_err(|e| format!("{e} (proves: {})", case.proves));
        outcomes.push((case.name, outcome));
    }
    Report { outcomes }
}

fn settings(h: &dyn DcsHarness, scope: &str, member: &str) -> Settings {
    Settings {
        ttl: h.min_ttl(),
        loop_wait: 1,
        retry_timeout: 2,
        ..Settings::new(scope, member)
    }
}

fn err(context: &str, error: &DcsError) -> String {
    format!("{context}: {error}")
}

fn value_of<'a>(groups: &'a [GroupEntries], key: &str) -> Option<&'a str> {
    groups
        .iter()
        .flat_map(|g| &g.entries)
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

async fn leader_of(member: &dyn DcsBackend) -> Result<Option<String>, String> {
    let groups = member
        .load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("load", &e))?;
    Ok(value_of(&groups, "leader").map(str::to_owned))
}

/// Long enough past ttl for any store to have expired the lease.
fn past_ttl(h: &dyn DcsHarness) -> Duration {
    Duration::from_secs(u64::from(h.min_ttl())) + Duration::from_millis(2500)
}

async fn one_leader_among_concurrent_contenders(
    h: &dyn DcsHarness,
    scope: &str,
) -> Result<(), String> {
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(h.member(settings(h, scope, &format!("m{i}"))).await?);
    }
    let races = members.iter().map(|m| m.attempt_to_acquire_leader());
    let outcomes = futures::future::join_all(races).await;
    let mut winners = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        if outcome.map_err(|e| err("leader race", &e))? {
            winners.push(format!("m{i}"));
        }
    }
    if winners.len() != 1 {
        return Err(format!("{} winners: {winners:?}", winners.len()));
    }
    match leader_of(&*members[0]).await? {
        Some(holder) if holder == winners[0] => Ok(()),
        other => Err(format!(
            "leader key holds {other:?}, the winner was {}",
            winners[0]
        )),
    }
}

async fn leader_key_vanishes_after_ttl_without_renewal(
    h: &dyn DcsHarness,
    scope: &str,
) -> Result<(), String> {
    let a = h.member(settings(h, scope, "a")).await?;
    let b = h.member(settings(h, scope, "b")).await?;
    if !a
        .attempt_to_acquire_leader()
        .await
        .map_err(|e| err("a races", &e))?
    {
        return Err("a lost an uncontended race".into());
    }
    if b.attempt_to_acquire_leader()
        .await
        .map_err(|e| err("b races", &e))?
    {
        return Err("b took a lock that a holds".into());
    }
    h.advance(past_ttl(h)).await;
    if let Some(holder) = leader_of(&*b).await? {
        return Err(format!(
            "the leader key still holds {holder} after ttl without renewal"
        ));
    }
    if !b
        .attempt_to_acquire_leader()
        .await
        .map_err(|e| err("b races again", &e))?
    {
        return Err("b could not take the expired lock".into());
    }
    Ok(())
}

async fn renewal_keeps_the_lock_and_a_lost_lock_is_reported(
    h: &dyn DcsHarness,
    scope: &str,
) -> Result<(), String> {
    let a = h.member(settings(h, scope, "a")).await?;
    let b = h.member(settings(h, scope, "b")).await?;
    a.attempt_to_acquire_leader()
        .await
        .map_err(|e| err("a races", &e))?;
    // Renew twice within ttl: the lock must survive well past one ttl.
    let half = Duration::from_millis(u64::from(h.min_ttl()) * 500);
    for _ in 0..3 {
        h.advance(half).await;
        a.load(LoadScope::OwnGroup)
            .await
            .map_err(|e| err("a loads", &e))?;
        if !a.update_leader().await.map_err(|e| err("a renews", &e))? {
            return Err("update-leader lost a lock that was renewed in time".into());
        }
    }
    if leader_of(&*b).await?.as_deref() != Some("a") {
        return Err("the renewed lock is gone".into());
    }
    // Now let it lapse and let b take it: a must be told, with a clean false.
    h.advance(past_ttl(h)).await;
    if !b
        .attempt_to_acquire_leader()
        .await
        .map_err(|e| err("b races", &e))?
    {
        return Err("b could not take the lapsed lock".into());
    }
    a.load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("a loads", &e))?;
    match a.update_leader().await {
        Ok(false) => {}
        Ok(true) => return Err("update-leader claimed a lock that b holds".into()),
        Err(e) => return Err(err("update-leader after losing the lock", &e)),
    }
    match leader_of(&*a).await?.as_deref() {
        Some("b") => Ok(()),
        other => Err(format!(
            "a's failed renewal changed the lock: it holds {other:?}"
        )),
    }
}

async fn delete_leader_only_deletes_our_own_lock(
    h: &dyn DcsHarness,
    scope: &str,
) -> Result<(), String> {
    let a = h.member(settings(h, scope, "a")).await?;
    let b = h.member(settings(h, scope, "b")).await?;
    a.attempt_to_acquire_leader()
        .await
        .map_err(|e| err("a races", &e))?;
    if b.delete_leader().await.map_err(|e| err("b releases", &e))? {
        return Err("b deleted a's lock".into());
    }
    if leader_of(&*a).await?.as_deref() != Some("a") {
        return Err("a's lock is gone after b's release".into());
    }
    if !a.delete_leader().await.map_err(|e| err("a releases", &e))? {
        return Err("a could not release its own lock".into());
    }
    match leader_of(&*a).await? {
        None => Ok(()),
        Some(holder) => Err(format!("the lock still holds {holder} after release")),
    }
}

async fn stale_version_is_refused(h: &dyn DcsHarness, scope: &str) -> Result<(), String> {
    let a = h.member(settings(h, scope, "a")).await?;
    let v1 = a
        .set_value(ValueKey::Config, r#"{"ttl":30}"#.into(), None)
        .await
        .map_err(|e| err("first write", &e))?;
    let v2 = a
        .set_value(ValueKey::Config, r#"{"ttl":20}"#.into(), Some(v1.clone()))
        .await
        .map_err(|e| err("write with the current version", &e))?;
    if v2 == v1 {
        return Err("a successful write kept the old version".into());
    }
    match a
        .set_value(ValueKey::Config, r#"{"ttl":10}"#.into(), Some(v1))
        .await
    {
        Err(e) if e.is_conflict() => {}
        other => {
            return Err(format!(
                "a stale write answered {other:?}, expected a conflict"
            ));
        }
    }
    let groups = a
        .load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("load", &e))?;
    match value_of(&groups, "config") {
        Some(r#"{"ttl":20}"#) => {}
        other => return Err(format!("the refused write changed the value to {other:?}")),
    }
    match a.delete_value(ValueKey::Config, Some("1".into())).await {
        Err(e) if e.is_conflict() => Ok(()),
        other => Err(format!(
            "a stale delete answered {other:?}, expected a conflict"
        )),
    }
}

async fn member_keys_expire_with_their_lease(
    h: &dyn DcsHarness,
    scope: &str,
) -> Result<(), String> {
    let a = h.member(settings(h, scope, "a")).await?;
    let b = h.member(settings(h, scope, "b")).await?;
    a.touch_member(r#"{"state":"running"}"#.into())
        .await
        .map_err(|e| err("touch", &e))?;
    let groups = b
        .load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("load", &e))?;
    if value_of(&groups, "members/a").is_none() {
        return Err("the member key was not written".into());
    }
    h.advance(past_ttl(h)).await;
    let groups = b
        .load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("load", &e))?;
    match value_of(&groups, "members/a") {
        None => Ok(()),
        Some(v) => Err(format!("the member key outlived its ttl: {v}")),
    }
}

async fn initialize_race_has_one_winner(h: &dyn DcsHarness, scope: &str) -> Result<(), String> {
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(h.member(settings(h, scope, &format!("m{i}"))).await?);
    }
    let races = members.iter().map(|m| m.initialize(true, String::new()));
    let mut winners = 0;
    for outcome in futures::future::join_all(races).await {
        winners += usize::from(outcome.map_err(|e| err("initialize race", &e))?);
    }
    if winners != 1 {
        return Err(format!("{winners} members won the initialize race"));
    }
    members[0]
        .initialize(false, "7312345678901234567".into())
        .await
        .map_err(|e| err("initialize", &e))?;
    let groups = members[1]
        .load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("load", &e))?;
    match value_of(&groups, "initialize") {
        Some("7312345678901234567") => Ok(()),
        other => Err(format!("initialize holds {other:?}")),
    }
}

async fn watch_wakes_promptly_on_leader_delete(
    h: &dyn DcsHarness,
    scope: &str,
) -> Result<(), String> {
    let a = h.member(settings(h, scope, "a")).await?;
    let b = h.member(settings(h, scope, "b")).await?;
    a.attempt_to_acquire_leader()
        .await
        .map_err(|e| err("a races", &e))?;
    let groups = b
        .load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("load", &e))?;
    let version = groups
        .iter()
        .flat_map(|g| &g.entries)
        .find(|e| e.key == "leader")
        .map(|e| e.version.clone());
    let timeout = Duration::from_secs(20);
    let started = Instant::now();
    let (woken, released) = tokio::join!(b.watch(version, timeout.as_millis() as u32), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.delete_leader().await
    });
    released.map_err(|e| err("release", &e))?;
    let woken = woken.map_err(|e| err("watch", &e))?;
    let elapsed = started.elapsed();
    if !woken || elapsed >= timeout / 2 {
        return Err(format!(
            "the watch returned {woken} after {elapsed:?}, not promptly after the delete"
        ));
    }
    Ok(())
}

async fn formation_load_returns_every_group(h: &dyn DcsHarness, scope: &str) -> Result<(), String> {
    let mut members = Vec::new();
    for group in [0, 1, 2] {
        let member = h
            .member(Settings {
                group: Some(group),
                ..settings(h, scope, &format!("g{group}"))
            })
            .await?;
        member
            .attempt_to_acquire_leader()
            .await
            .map_err(|e| err("race", &e))?;
        member
            .touch_member(format!(r#"{{"group":{group}}}"#))
            .await
            .map_err(|e| err("touch", &e))?;
        members.push(member);
    }
    let formation = members[0]
        .load(LoadScope::Formation)
        .await
        .map_err(|e| err("formation load", &e))?;
    let groups: Vec<Option<u32>> = formation.iter().map(|g| g.group).collect();
    if groups != [Some(0), Some(1), Some(2)] {
        return Err(format!("formation load returned groups {groups:?}"));
    }
    for (i, group) in formation.iter().enumerate() {
        let leader = value_of(std::slice::from_ref(group), "leader");
        if leader != Some(format!("g{i}").as_str()) {
            return Err(format!("group {i}'s leader is {leader:?}"));
        }
    }
    let coordinator = members[2]
        .load(LoadScope::Group(0))
        .await
        .map_err(|e| err("group 0 load", &e))?;
    match value_of(&coordinator, "leader") {
        Some("g0") => Ok(()),
        other => Err(format!("a worker reading group 0 saw leader {other:?}")),
    }
}

async fn values_round_trip_byte_for_byte(h: &dyn DcsHarness, scope: &str) -> Result<(), String> {
    let a = h.member(settings(h, scope, "a")).await?;
    let config = r#"{"postgresql":{"parameters":{"search_path":"\"$user\", public"}},"note":"é ü 😀 \\ \u0001"}"#;
    let member = r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.0","xlog_location":50331968,"timeline":2}"#;
    a.set_value(ValueKey::Config, config.into(), None)
        .await
        .map_err(|e| err("write config", &e))?;
    a.touch_member(member.into())
        .await
        .map_err(|e| err("touch", &e))?;
    let groups = a
        .load(LoadScope::OwnGroup)
        .await
        .map_err(|e| err("load", &e))?;
    for (key, written) in [("config", config), ("members/a", member)] {
        let read = value_of(&groups, key);
        if read != Some(written) {
            return Err(format!("{key}: wrote {written:?}, read {read:?}"));
        }
    }
    Ok(())
}

async fn unreachable_store_is_unavailable(h: &dyn DcsHarness, scope: &str) -> Result<(), String> {
    let a = h.unreachable_member(settings(h, scope, "a")).await?;
    let race = a.attempt_to_acquire_leader().await;
    if !matches!(race, Err(DcsError::Unavailable { .. })) {
        return Err(format!(
            "the leader race answered {race:?}, expected Unavailable"
        ));
    }
    let renewal = a.update_leader().await;
    if !matches!(renewal, Err(DcsError::Unavailable { .. })) {
        return Err(format!(
            "update-leader answered {renewal:?}, expected Unavailable"
        ));
    }
    let load = a.load(LoadScope::OwnGroup).await;
    if !matches!(load, Err(DcsError::Unavailable { .. })) {
        return Err(format!("load answered {load:?}, expected Unavailable"));
    }
    Ok(())
}
