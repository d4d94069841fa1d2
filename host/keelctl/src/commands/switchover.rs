//! `switchover` and `failover`: patronictl's checks and questions in its
//! order, then `POST /switchover` (or `/failover`) to the leader; when the REST
//! call cannot be made, the request is written to the `failover` key directly.

use anyhow::bail;
use chrono::{DateTime, FixedOffset};
use keel_config::{DynamicConfig, SynchronousMode};
use keel_model::{Cluster, Failover};
use serde_json::{Map, Value, json};

use super::{next_hour, parse_scheduled, python_datetime, show};
use crate::context::Ctl;
use crate::output::timestamp;
use crate::prompt;
use crate::view::nofailover;

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Switchover,
    Failover,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Switchover => "switchover",
            Self::Failover => "failover",
        }
    }
}

/// The command's options.
pub(crate) struct Request {
    pub(crate) action: Action,
    pub(crate) cluster: Option<String>,
    pub(crate) group: Option<u32>,
    pub(crate) leader: Option<String>,
    pub(crate) candidate: Option<String>,
    pub(crate) scheduled: Option<String>,
    pub(crate) force: bool,
}

/// The dynamic configuration in force (defaults when the key is missing).
pub(crate) fn dynamic(cluster: &Cluster) -> DynamicConfig {
    cluster
        .config
        .as_ref()
        .map(|c| DynamicConfig::from_json_lenient(&c.raw).0)
        .unwrap_or_default()
}

/// Run it.
pub(crate) async fn run(ctl: &Ctl, req: Request) -> anyhow::Result<()> {
    let action = req.action.as_str();
    let name = ctl.scope(req.cluster.as_deref())?;
    let mut group = req.group;
    let (mut dcs, mut view) = ctl.view(&name, group).await?;
    println!("Current cluster topology");
    show(ctl, &view, &name);
    if ctl.is_mpp() && group.is_none() {
        if req.force {
            bail!("For Citus clusters the --group must me specified");
        }
        let answer = prompt::ask("Citus group", None)?;
        let g: u32 = answer
            .parse()
            .map_err(|_| anyhow::anyhow!("Citus group: `{answer}` is not a group number"))?;
        group = Some(g);
        (dcs, view) = ctl.view(&name, group).await?;
    }
    let cluster = &view.cluster;
    let config = dynamic(cluster);
    let leader = cluster.leader_name().map(str::to_owned);
    let mut switchover_leader = req.leader.clone();
    if req.action == Action::Switchover {
        let Some(current) = leader.as_deref() else {
            bail!(
                "This cluster has no leader; a switchover needs one (use `keelctl failover --candidate NAME`)"
            );
        };
        if switchover_leader.is_none() {
            switchover_leader = Some(if req.force {
                current.to_owned()
            } else {
                let prompt_name = if config.is_standby_cluster() {
                    "Standby Leader"
                } else {
                    "Primary"
                };
                prompt::ask(prompt_name, Some(current))?
            });
        }
        if switchover_leader.as_deref() != Some(current) {
            bail!(
                "Member {} is not the leader of cluster {name}; the leader is {current}",
                switchover_leader.as_deref().unwrap_or_default()
            );
        }
    }
    let mut candidates: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) != leader.as_deref() && !nofailover(m))
        .map(|m| m.name.clone())
        .collect();
    candidates.sort();
    if candidates.is_empty() {
        bail!(
            "No candidates found to {action} to (every other member is missing or tagged nofailover)"
        );
    }
    let mut candidate = req.candidate.clone();
    if candidate.is_none() && !req.force {
        let answer = prompt::ask(&format!("Candidate {}", python_list(&candidates)), Some(""))?;
        candidate = Some(answer).filter(|a| !a.is_empty());
    }
    if req.action == Action::Failover && candidate.is_none() {
        bail!(
            "Failover could be performed only to a specific candidate; name one with --candidate ({})",
            candidates.join(", ")
        );
    }
    if let Some(c) = &candidate
        && !candidates.contains(c)
    {
        if Some(c) == leader.as_ref() {
            bail!("Member {c} is already the leader of cluster {name}");
        }
        bail!(
            "Member {c} does not exist in cluster {name} or is tagged as nofailover; candidates: {}",
            candidates.join(", ")
        );
    }
    if !req.force
        && req.action == Action::Failover
        && config.synchronous_mode != SynchronousMode::Off
        && !cluster.sync.is_empty()
        && !candidate
            .as_deref()
            .is_some_and(|c| cluster.sync.matches(c, true))
        && !prompt::confirm(&format!(
            "Are you sure you want to failover to the asynchronous node {}?",
            candidate.as_deref().unwrap_or_default()
        ))?
    {
        bail!("Aborting {action}");
    }
    let mut scheduled_at: Option<DateTime<FixedOffset>> = None;
    if req.action == Action::Switchover {
        let mut scheduled = req.scheduled.clone();
        if scheduled.is_none() && !req.force {
            let question = format!(
                "When should the switchover take place (e.g. {} ) ",
                next_hour()
            );
            scheduled = Some(prompt::ask(&question, Some("now"))?);
        }
        scheduled_at = parse_scheduled(scheduled.as_deref())?;
        if scheduled_at.is_some() && config.pause {
            bail!(
                "Can't schedule switchover in the paused state; resume the cluster first (`keelctl resume`)"
            );
        }
    }
    let mut body = Map::new();
    body.insert("candidate".into(), json!(candidate));
    if req.action == Action::Switchover {
        body.insert("leader".into(), json!(switchover_leader));
    }
    if let Some(at) = &scheduled_at {
        body.insert("scheduled_at".into(), json!(python_datetime(at)));
    }
    if !req.force {
        let demote = leader
            .as_deref()
            .map(|l| format!(", demoting current leader {l}"))
            .unwrap_or_default();
        let (question, refusal) = match &scheduled_at {
            Some(at) => (
                format!(
                    "Are you sure you want to schedule switchover of cluster {name} at {}{demote}?",
                    python_datetime(at)
                ),
                format!("Aborting scheduled {action}"),
            ),
            None => (
                format!("Are you sure you want to {action} cluster {name}{demote}?"),
                format!("Aborting {action}"),
            ),
        };
        if !prompt::confirm(&question)? {
            bail!(refusal);
        }
    }

    let target = cluster
        .leader
        .as_ref()
        .map(|l| l.member.clone())
        .or_else(|| {
            candidate
                .as_deref()
                .and_then(|c| cluster.member(c).cloned())
        });
    let body = Value::Object(body);
    let answer = match &target {
        Some(member) => {
            let method = reqwest::Method::POST;
            match ctl
                .request(member, method.clone(), action, Some(&body))
                .await
            {
                Ok((501, text))
                    if req.action == Action::Switchover
                        && text.contains("Server does not support this operation") =>
                {
                    ctl.request(member, method, "failover", Some(&body)).await
                }
                other => other,
            }
        }
        None => Err(anyhow::anyhow!("no member to send the request to")),
    };
    match answer {
        Ok((200 | 202, text)) => {
            println!("{} {text}", timestamp(6));
            (_, view) = ctl.view(&name, group).await?;
        }
        Ok((status, text)) => {
            println!("{} failed, details: {status}, {text}", title(action));
            bail!("the {action} was refused ({status}); see the message above");
        }
        Err(e) => {
            eprintln!("{e:#}");
            println!(
                "{} Could not {action} using Patroni api, falling back to DCS",
                timestamp(6)
            );
            let failover = Failover {
                version: None,
                leader: switchover_leader,
                candidate,
                scheduled_at,
            };
            dcs.set_failover(&failover, None).await.map_err(|e| {
                anyhow::anyhow!(
                    "writing the failover key to the DCS ({}) failed too: {e}",
                    ctl.dcs_endpoints()
                )
            })?;
        }
    }
    show(ctl, &view, &name);
    Ok(())
}

fn title(action: &str) -> String {
    let mut chars = action.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `['a', 'b']`, as patronictl prints the candidates.
fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_print_like_patronictl() {
        assert_eq!(python_list(&["m2".into(), "m3".into()]), "['m2', 'm3']");
        assert_eq!(title("switchover"), "Switchover");
    }
}
