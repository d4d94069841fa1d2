//! The commands, one module per group (as patronictl's `ctl.py`, split up),
//! and what several of them share: picking members, confirming an action,
//! reporting a REST answer, parsing a schedule.

pub(crate) mod actions;
pub(crate) mod config;
pub(crate) mod info;
pub(crate) mod pause;
pub(crate) mod query;
pub(crate) mod switchover;

use anyhow::{anyhow, bail};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use keel_model::Member;

use crate::context::Ctl;
use crate::list::{self, Listing};
use crate::prompt;
use crate::view::{CtlRole, View};

/// Print the cluster as commands show it before acting.
pub(crate) fn show(ctl: &Ctl, view: &View, name: &str) {
    print!(
        "{}",
        list::render(view, name, Listing::pretty(ctl.is_mpp()))
    );
}

/// What [`pick_members`] selects for.
pub(crate) struct Pick<'a> {
    pub(crate) names: &'a [String],
    pub(crate) role: CtlRole,
    pub(crate) force: bool,
    /// `restart`, `reload`, `reinitialize`, `flush`.
    pub(crate) action: &'a str,
    /// Ask "Are you sure…" here (else the caller asks, after more questions).
    pub(crate) confirm: bool,
}

/// patronictl's `get_members`: show the cluster, keep the named members that
/// have the role (all of them when none is named, except for reinitialize),
/// ask which one when nothing is left and `--force` is not given. A name that
/// is no member of the cluster is an error that names it.
pub(crate) fn pick_members(
    ctl: &Ctl,
    view: &View,
    cluster: &str,
    pick: &Pick<'_>,
) -> anyhow::Result<Vec<Member>> {
    let members = view.members_with(pick.role);
    let candidates: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    if pick.names.is_empty() && candidates.is_empty() {
        bail!(
            "{cluster} cluster doesn't have any members with role {}; check the cluster name and `keelctl list {cluster}`",
            pick.role.as_str()
        );
    }
    show(ctl, view, cluster);
    let everyone: Vec<String> = view
        .members_with(CtlRole::Any)
        .into_iter()
        .map(|m| m.name)
        .collect();
    for name in pick.names {
        if !everyone.contains(name) {
            bail!(not_a_member(name, cluster, &everyone));
        }
    }
    let mut chosen: Vec<String> = if pick.names.is_empty() {
        if pick.action == "reinitialize" {
            Vec::new()
        } else {
            candidates.iter().map(|c| (*c).to_owned()).collect()
        }
    } else {
        let kept: Vec<String> = pick
            .names
            .iter()
            .filter(|n| candidates.contains(&n.as_str()))
            .cloned()
            .collect();
        if kept.is_empty() {
            bail!(
                "No {} among provided members ({}); members with that role: {}",
                pick.role.as_str(),
                pick.names.join(", "),
                if candidates.is_empty() {
                    "none".to_owned()
                } else {
                    candidates.join(", ")
                }
            );
        }
        kept
    };
    if chosen.is_empty() && !pick.force {
        let question = format!(
            "Which member do you want to {} [{}]?",
            pick.action,
            candidates.join(", ")
        );
        let answer = prompt::ask(&question, Some(""))?;
        if !candidates.contains(&answer.as_str()) {
            bail!(not_a_member(
                &answer,
                cluster,
                &candidates
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect::<Vec<_>>()
            ));
        }
        chosen.push(answer);
    }
    let picked: Vec<Member> = members
        .into_iter()
        .filter(|m| chosen.contains(&m.name))
        .collect();
    if pick.confirm {
        confirm_action(&picked, pick.force, pick.action, None, false)?;
    }
    Ok(picked)
}

/// The error for a name that is no member.
pub(crate) fn not_a_member(name: &str, cluster: &str, members: &[String]) -> String {
    format!(
        "{name} is not a member of cluster {cluster}; its members are: {} (see `keelctl list {cluster}`)",
        if members.is_empty() {
            "none".to_owned()
        } else {
            members.join(", ")
        }
    )
}

/// patronictl's `confirm_members_action`.
pub(crate) fn confirm_action(
    members: &[Member],
    force: bool,
    action: &str,
    scheduled_at: Option<&DateTime<FixedOffset>>,
    pending: bool,
) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let (question, refusal) = match scheduled_at {
        Some(_) if pending => (
            "The nodes needing a restart will be identified at the scheduled time, and might be different from the ones showing pending restart right now. Is this fine?".to_owned(),
            format!("Aborted scheduled {action}"),
        ),
        Some(at) => (
            format!("Are you sure you want to schedule {action} of members {} at {}?", names.join(", "), python_datetime(at)),
            format!("Aborted scheduled {action}"),
        ),
        None => (
            format!("Are you sure you want to {action} members {}?", names.join(", ")),
            format!("Aborted {action}"),
        ),
    };
    if prompt::confirm(&question)? {
        Ok(())
    } else {
        Err(anyhow!(refusal))
    }
}

/// Print a REST answer as patronictl's `check_response` does; `true` on success.
pub(crate) fn report(
    status: u16,
    body: &str,
    member: &str,
    action: &str,
    quiet_success: bool,
) -> bool {
    if status >= 400 {
        println!("Failed: {action} for member {member}, status code={status}, ({body})");
        false
    } else {
        if !quiet_success {
            println!("Success: {action} for member {member}");
        }
        true
    }
}

/// A schedule (`--scheduled`): `None` for now; a time without a zone is local.
pub(crate) fn parse_scheduled(
    given: Option<&str>,
) -> anyhow::Result<Option<DateTime<FixedOffset>>> {
    let Some(text) = given
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "now")
    else {
        return Ok(None);
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Ok(Some(at));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format)
            && let Some(local) = Local.from_local_datetime(&naive).earliest()
        {
            return Ok(Some(local.fixed_offset()));
        }
    }
    bail!(
        "Unable to parse scheduled timestamp ({text}). It should be in an unambiguous format (e.g. ISO 8601), for example 2030-01-31T02:00:00+00:00"
    )
}

/// Python's `datetime.isoformat()` of an aware time.
pub(crate) fn python_datetime(at: &DateTime<FixedOffset>) -> String {
    keel_model::python_isoformat(at)
}

/// An example schedule an hour from now, for prompts.
pub(crate) fn next_hour() -> String {
    (Local::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_like_dateutil_for_iso_forms() {
        assert_eq!(parse_scheduled(None).unwrap(), None);
        assert_eq!(parse_scheduled(Some("now")).unwrap(), None);
        let at = parse_scheduled(Some("2999-01-01T00:00:00+00:00"))
            .unwrap()
            .unwrap();
        assert_eq!(python_datetime(&at), "2999-01-01T00:00:00+00:00");
        let at = parse_scheduled(Some("2030-05-29T04:32:31-0300"))
            .unwrap()
            .unwrap();
        assert_eq!(python_datetime(&at), "2030-05-29T04:32:31-03:00");
        assert!(parse_scheduled(Some("2030-05-29T04:32")).unwrap().is_some());
        let e = parse_scheduled(Some("tomorrow")).unwrap_err().to_string();
        assert!(
            e.contains("Unable to parse scheduled timestamp (tomorrow)"),
            "{e}"
        );
    }
}
