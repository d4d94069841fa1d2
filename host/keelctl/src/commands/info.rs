//! Commands that read: `list`, `topology`, `history`, `version`; and `remove`,
//! which deletes what they read after three confirmations.

use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};

use crate::context::Ctl;
use crate::list::{self, Listing};
use crate::output::{Format, Rows, timestamp};
use crate::prompt;
use crate::view::CtlRole;

/// `list` / `topology` options.
pub(crate) struct ListArgs {
    pub(crate) clusters: Vec<String>,
    pub(crate) group: Option<u32>,
    pub(crate) extended: bool,
    pub(crate) timestamp: bool,
    pub(crate) format: Format,
    /// Seconds between refreshes (`-W` = 2, `-w N`).
    pub(crate) watch: Option<f64>,
}

/// `list` and `topology`.
pub(crate) async fn list(ctl: &Ctl, args: ListArgs) -> anyhow::Result<()> {
    let clusters = if args.clusters.is_empty() {
        vec![ctl.scope(None)?]
    } else {
        args.clusters.clone()
    };
    loop {
        if args.watch.is_some() {
            print!("\x1b[2J\x1b[H");
        }
        if args.timestamp {
            println!("{}", timestamp(0));
        }
        for name in &clusters {
            let (_, view) = ctl.view(name, args.group).await?;
            let how = Listing {
                format: args.format,
                extended: args.extended,
                mpp: ctl.is_mpp() || args.group.is_some(),
            };
            print!("{}", list::render(&view, name, how));
        }
        match args.watch {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.1))).await,
            None => return Ok(()),
        }
    }
}

/// `history`: the timeline history.
pub(crate) async fn history(
    ctl: &Ctl,
    cluster: Option<&str>,
    group: Option<u32>,
    format: Format,
) -> anyhow::Result<()> {
    let name = ctl.scope(cluster)?;
    let (_, view) = ctl.view(&name, group.or(ctl.default_group())).await?;
    let lines = view.cluster.history.map(|h| h.lines).unwrap_or_default();
    let rows = Rows {
        columns: ["TL", "LSN", "Reason", "Timestamp", "New Leader"]
            .map(str::to_owned)
            .to_vec(),
        rows: lines
            .into_iter()
            .map(|l| {
                vec![
                    json!(l.timeline),
                    json!(l.lsn),
                    json!(l.reason),
                    json!(l.timestamp.unwrap_or_default()),
                    json!(l.new_leader.unwrap_or_default()),
                ]
            })
            .collect(),
        right: vec!["TL", "LSN"],
        title: String::new(),
    };
    print!("{}", rows.render(format, "\t"));
    Ok(())
}

/// `version [CLUSTER [MEMBER...]]`: keelctl's version and each member's.
pub(crate) async fn version(
    ctl: Option<&Ctl>,
    cluster: Option<&str>,
    group: Option<u32>,
    names: &[String],
) -> anyhow::Result<()> {
    println!("keelctl version {}", env!("CARGO_PKG_VERSION"));
    let (Some(ctl), Some(cluster)) = (ctl, cluster) else {
        return Ok(());
    };
    println!();
    let (_, view) = ctl.view(cluster, group).await?;
    for m in view.members_with(CtlRole::Any) {
        if m.data.api_url.is_none() || !(names.is_empty() || names.contains(&m.name)) {
            continue;
        }
        match ctl.request(&m, reqwest::Method::GET, "patroni", None).await {
            Ok((_, body)) => {
                let data: Value = serde_json::from_str(&body).unwrap_or_default();
                let version = data["patroni"]["version"].as_str().unwrap_or("unknown");
                let pg = data["server_version"]
                    .as_u64()
                    .map(|v| format!(" PostgreSQL {}", pg_version(v)))
                    .unwrap_or_default();
                println!("{}: Patroni {version}{pg}", m.name);
            }
            Err(e) => println!("{}: failed to get version: {e:#}", m.name),
        }
    }
    Ok(())
}

/// `150004` → `15.4`, `90624` → `9.6.24`.
pub(crate) fn pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10000, v % 100)
    }
}

/// `remove CLUSTER`: type the cluster name, then "Yes I am aware", then the
/// leader's name if the cluster has one; then every key of the cluster goes.
pub(crate) async fn remove(
    ctl: &Ctl,
    cluster: &str,
    group: Option<u32>,
    format: Format,
) -> anyhow::Result<()> {
    if ctl.is_mpp() && group.is_none() {
        bail!(
            "For Citus clusters the --group must me specified (the group whose keys go, 0 for the coordinator)"
        );
    }
    let (dcs, view) = ctl.view(cluster, group).await?;
    let how = Listing {
        format,
        extended: false,
        mpp: ctl.is_mpp(),
    };
    print!("{}", list::render(&view, cluster, how));
    if prompt::ask("Please confirm the cluster name to remove", None)? != cluster {
        bail!("Cluster names specified do not match");
    }
    let aware = "Yes I am aware";
    let question = format!(
        "You are about to remove all information in DCS for {cluster}, please type: \"{aware}\""
    );
    if prompt::ask(&question, None)? != aware {
        bail!("You did not exactly type \"{aware}\"");
    }
    if let Some(leader) = view.cluster.leader_name().filter(|l| !l.is_empty()) {
        let answer = prompt::ask(
            "This cluster currently is healthy. Please specify the leader name to continue",
            None,
        )?;
        if answer != leader {
            bail!("You did not specify the current leader of the cluster");
        }
    }
    dcs.delete_cluster().await.map_err(|e| {
        anyhow::anyhow!("deleting cluster {cluster} from the DCS ({}) failed: {e}; nothing or part of it may be gone, run the command again", ctl.dcs_endpoints())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_versions() {
        assert_eq!(super::pg_version(90624), "9.6.24");
        assert_eq!(super::pg_version(100000), "10.0");
        assert_eq!(super::pg_version(150004), "15.4");
    }
}
