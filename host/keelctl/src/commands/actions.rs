//! Member actions over the REST API: `restart`, `reload`, `reinit`, `flush`.

use std::time::Duration;

use anyhow::bail;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::switchover::dynamic;
use super::{
    Pick, confirm_action, next_hour, parse_scheduled, pick_members, python_datetime, report,
};
use crate::context::Ctl;
use crate::output::timestamp;
use crate::prompt;
use crate::view::CtlRole;

/// `restart` options.
pub(crate) struct RestartArgs {
    pub(crate) cluster: String,
    pub(crate) members: Vec<String>,
    pub(crate) group: Option<u32>,
    pub(crate) role: CtlRole,
    pub(crate) any: bool,
    pub(crate) scheduled: Option<String>,
    pub(crate) pg_version: Option<String>,
    pub(crate) pending: bool,
    pub(crate) timeout: Option<String>,
    pub(crate) force: bool,
}

fn failures(failed: usize, action: &str) -> anyhow::Result<()> {
    if failed > 0 {
        bail!("{action} failed on {failed} member(s); see the messages above");
    }
    Ok(())
}

/// `restart`.
pub(crate) async fn restart(ctl: &Ctl, a: RestartArgs) -> anyhow::Result<()> {
    let (_, view) = ctl.view(&a.cluster, a.group).await?;
    let pick = Pick {
        names: &a.members,
        role: a.role,
        force: a.force,
        action: "restart",
        confirm: false,
    };
    let mut members = pick_members(ctl, &view, &a.cluster, &pick)?;
    let mut scheduled = a.scheduled.clone();
    if scheduled.is_none() && !a.force {
        scheduled = Some(prompt::ask(
            &format!("When should the restart take place (e.g. {}) ", next_hour()),
            Some("now"),
        )?);
    }
    let scheduled_at = parse_scheduled(scheduled.as_deref())?;
    let mut content = Map::new();
    if a.pending {
        content.insert("restart_pending".into(), json!(true));
        if scheduled_at.is_none() {
            members.retain(|m| m.data.pending_restart);
        }
    }
    if a.any && !members.is_empty() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let pick = fastrand::Rng::with_seed(seed).usize(..members.len());
        members = vec![members.swap_remove(pick)];
    }
    confirm_action(
        &members,
        a.force,
        "restart",
        scheduled_at.as_ref(),
        a.pending,
    )?;
    let mut version = a.pg_version.clone();
    if version.is_none() && !a.force {
        version = Some(prompt::ask(
            "Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ",
            Some(""),
        )?);
    }
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        if keel_api::version_number(&v).is_none() {
            bail!(
                "{v}: not a PostgreSQL version; use MAJOR.MINOR (15.4) or, before 10, MAJOR.MINOR.PATCH (9.6.24)"
            );
        }
        content.insert("postgres_version".into(), json!(v));
    }
    if let Some(at) = &scheduled_at {
        if dynamic(&view.cluster).pause {
            bail!(
                "Can't schedule restart in the paused state; resume the cluster first (`keelctl resume`)"
            );
        }
        content.insert("schedule".into(), json!(python_datetime(at)));
    }
    if let Some(t) = &a.timeout {
        content.insert("timeout".into(), json!(t));
    }
    let body = Value::Object(content);
    let mut failed = 0;
    for m in &members {
        if body.get("schedule").is_some() && a.force && m.data.scheduled_restart.is_some() {
            let (status, text) = ctl.request(m, Method::DELETE, "restart", None).await?;
            report(status, &text, &m.name, "flush scheduled restart", true);
        }
        let (status, text) = ctl.request(m, Method::POST, "restart", Some(&body)).await?;
        match status {
            200 => println!("Success: restart on member {}", m.name),
            202 => println!("Success: restart scheduled on member {}", m.name),
            409 => {
                failed += 1;
                println!(
                    "Failed: another restart is already scheduled on member {}",
                    m.name
                );
            }
            _ => {
                failed += 1;
                println!(
                    "Failed: restart for member {}, status code={status}, ({text})",
                    m.name
                );
            }
        }
    }
    failures(failed, "restart")
}

/// `reload`.
pub(crate) async fn reload(
    ctl: &Ctl,
    cluster: &str,
    names: &[String],
    group: Option<u32>,
    role: CtlRole,
    force: bool,
) -> anyhow::Result<()> {
    let (_, view) = ctl.view(cluster, group).await?;
    let pick = Pick {
        names,
        role,
        force,
        action: "reload",
        confirm: true,
    };
    let members = pick_members(ctl, &view, cluster, &pick)?;
    let loop_wait = dynamic(&view.cluster).loop_wait;
    let mut failed = 0;
    for m in &members {
        let (status, text) = ctl.request(m, Method::POST, "reload", None).await?;
        match status {
            200 => println!("No changes to apply on member {}", m.name),
            202 => println!(
                "Reload request received for member {} and will be processed within {loop_wait} seconds",
                m.name
            ),
            _ => {
                failed += 1;
                println!(
                    "Failed: reload for member {}, status code={status}, ({text})",
                    m.name
                );
            }
        }
    }
    failures(failed, "reload")
}

/// `reinit` options.
pub(crate) struct ReinitArgs {
    pub(crate) cluster: String,
    pub(crate) members: Vec<String>,
    pub(crate) group: Option<u32>,
    pub(crate) force: bool,
    pub(crate) from_leader: bool,
    pub(crate) wait: bool,
}

/// `reinit`: only replicas; `--wait` polls `GET /patroni` until the member
/// is no longer `creating replica`.
pub(crate) async fn reinit(ctl: &Ctl, a: ReinitArgs) -> anyhow::Result<()> {
    let (_, view) = ctl.view(&a.cluster, a.group).await?;
    let pick = Pick {
        names: &a.members,
        role: CtlRole::Replica,
        force: a.force,
        action: "reinitialize",
        confirm: true,
    };
    let members = pick_members(ctl, &view, &a.cluster, &pick)?;
    let mut waiting = Vec::new();
    let mut failed = 0;
    for m in members {
        let mut body = json!({"force": a.force, "from_leader": a.from_leader});
        loop {
            let (status, text) = ctl
                .request(&m, Method::POST, "reinitialize", Some(&body))
                .await?;
            let started = report(status, &text, &m.name, "reinitialize", false);
            if !started
                && text.ends_with(" already in progress")
                && !a.force
                && prompt::confirm("Do you want to cancel it and reinitialize anyway?")?
            {
                body["force"] = json!(true);
                continue;
            }
            if started && a.wait {
                waiting.push(m.clone());
            } else if !started {
                failed += 1;
            }
            break;
        }
    }
    let mut shown: Vec<String> = Vec::new();
    while !waiting.is_empty() {
        let names: Vec<String> = waiting.iter().map(|m| m.name.clone()).collect();
        if names != shown {
            println!(
                "Waiting for reinitialize to complete on: {}",
                names.join(", ")
            );
            shown = names;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut still = Vec::new();
        for m in waiting {
            let state = match ctl.request(&m, Method::GET, "patroni", None).await {
                Ok((_, text)) => serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["state"].as_str().map(str::to_owned)),
                Err(_) => Some("creating replica".to_owned()),
            };
            if state.as_deref() == Some("creating replica") {
                still.push(m);
            } else {
                println!("Reinitialize is completed on: {}", m.name);
            }
        }
        waiting = still;
    }
    failures(failed, "reinitialize")
}

/// What `flush` discards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FlushTarget {
    /// Scheduled restarts.
    Restart,
    /// A scheduled switchover.
    Switchover,
}

/// `flush CLUSTER [MEMBER...] restart|switchover`.
pub(crate) async fn flush(
    ctl: &Ctl,
    cluster: &str,
    names: &[String],
    target: FlushTarget,
    group: Option<u32>,
    role: CtlRole,
    force: bool,
) -> anyhow::Result<()> {
    let (dcs, view) = ctl.view(cluster, group).await?;
    match target {
        FlushTarget::Restart => {
            let pick = Pick {
                names,
                role,
                force,
                action: "flush",
                confirm: true,
            };
            let mut failed = 0;
            for m in pick_members(ctl, &view, cluster, &pick)? {
                if m.data.scheduled_restart.is_some() {
                    let (status, text) = ctl.request(&m, Method::DELETE, "restart", None).await?;
                    if !report(status, &text, &m.name, "flush scheduled restart", false) {
                        failed += 1;
                    }
                } else {
                    println!("No scheduled restart for member {}", m.name);
                }
            }
            failures(failed, "flush")
        }
        FlushTarget::Switchover => {
            let Some(failover) = view
                .cluster
                .failover
                .as_ref()
                .filter(|f| f.scheduled_at.is_some())
            else {
                println!("No pending scheduled switchover");
                return Ok(());
            };
            for m in view.members_leader_first() {
                match ctl.request(&m, Method::DELETE, "switchover", None).await {
                    Ok((status @ (200 | 404), text)) => {
                        println!(
                            "{}: {text}",
                            if status == 200 { "Success" } else { "Failed" }
                        );
                        return Ok(());
                    }
                    Ok((status, text)) => {
                        println!("Failed: member={}, status_code={status}, ({text})", m.name);
                    }
                    Err(e) => eprintln!("Member {} is not accessible: {e:#}", m.name),
                }
            }
            println!(
                "{} Could not find any accessible member of cluster {cluster}",
                timestamp(6)
            );
            dcs.clear_failover(failover.version.as_deref())
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "clearing the failover key in the DCS ({}) failed: {e}",
                        ctl.dcs_endpoints()
                    )
                })?;
            Ok(())
        }
    }
}
