//! `pause` and `resume`: `PATCH /config` with `{"pause": true}` / `{"pause":
//! null}` to the first member that answers, the leader first; `--wait` polls
//! the DCS until every member publishes the new state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use reqwest::Method;
use serde_json::json;

use super::switchover::dynamic;
use crate::context::Ctl;
use crate::view::View;

/// Pause (`true`) or resume (`false`) cluster management.
pub(crate) async fn toggle(
    ctl: &Ctl,
    cluster: Option<&str>,
    group: Option<u32>,
    paused: bool,
    wait: bool,
) -> anyhow::Result<()> {
    let name = ctl.scope(cluster)?;
    let group = group.or(ctl.default_group());
    let (_, view) = ctl.view(&name, group).await?;
    let what = if paused { "pause" } else { "resume" };
    let done = if paused { "paused" } else { "resumed" };
    if dynamic(&view.cluster).pause == paused {
        bail!(
            "Cluster is {} paused",
            if paused { "already" } else { "not" }
        );
    }
    let body = json!({"pause": if paused { json!(true) } else { json!(null) }});
    for member in view.members_leader_first() {
        let (status, text) = match ctl
            .request(&member, Method::PATCH, "config", Some(&body))
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("Member {} is not accessible: {e:#}", member.name);
                continue;
            }
        };
        if status != 200 {
            println!("Failed: {what} cluster management status code={status}, ({text})");
            bail!(
                "{what} was refused by member {}; see the message above",
                member.name
            );
        }
        if wait {
            return wait_until_applied(ctl, &name, group, paused, &view).await;
        }
        println!("Success: cluster management is {done}");
        return Ok(());
    }
    bail!(
        "Can not find accessible cluster member: none of the members' REST APIs answered; check that keeld runs"
    )
}

async fn wait_until_applied(
    ctl: &Ctl,
    name: &str,
    group: Option<u32>,
    paused: bool,
    old: &View,
) -> anyhow::Result<()> {
    println!(
        "'{}' request sent, waiting until it is recognized by all nodes",
        if paused { "pause" } else { "resume" }
    );
    let before: BTreeMap<String, Option<String>> = old
        .cluster
        .members
        .iter()
        .filter(|m| m.data.api_url.is_some())
        .map(|m| (m.name.clone(), m.version.clone()))
        .collect();
    let loop_wait = dynamic(&old.cluster).loop_wait;
    let deadline = Instant::now() + Duration::from_secs(u64::from(loop_wait) + 1);
    loop {
        let (_, view) = ctl.view(name, group).await?;
        let pending: Vec<&keel_model::Member> = view
            .cluster
            .members
            .iter()
            .filter(|m| before.contains_key(&m.name) && m.data.pause != paused)
            .collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let remaining: Vec<&str> = pending
                .iter()
                .filter(|m| before.get(&m.name) != Some(&m.version))
                .map(|m| m.name.as_str())
                .collect();
            if !remaining.is_empty() {
                println!(
                    "{} members didn't recognized pause state after {loop_wait} seconds",
                    remaining.join(", ")
                );
                return Ok(());
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "Success: cluster management is {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}
