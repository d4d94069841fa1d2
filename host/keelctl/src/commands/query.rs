//! `query` and `dsn`: find a member by role or name in the DCS and connect to
//! its PostgreSQL with the `conn_url` it publishes.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use keel_model::Member;
use serde_json::{Value, json};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::context::Ctl;
use crate::output::{Format, Rows, timestamp};
use crate::prompt;
use crate::view::{CtlRole, View};

/// patronictl's `get_any_member`: by name (any role), else the first with
/// `role` (the leader by default).
fn any_member(
    view: &View,
    cluster: &str,
    role: Option<CtlRole>,
    member: Option<&str>,
) -> anyhow::Result<Member> {
    if member.is_some() && role.is_some() {
        bail!("--role and --member are mutually exclusive options");
    }
    let role = if member.is_some() {
        CtlRole::Any
    } else {
        role.unwrap_or(CtlRole::Leader)
    };
    let found = view
        .members_with(role)
        .into_iter()
        .find(|m| member.is_none_or(|name| m.name == name));
    found.ok_or_else(|| match member {
        Some(name) => {
            let all: Vec<String> = view
                .members_with(CtlRole::Any)
                .into_iter()
                .map(|m| m.name)
                .collect();
            anyhow!(super::not_a_member(name, cluster, &all))
        }
        None => anyhow!(
            "Can not find a suitable member with role {} in cluster {cluster}",
            role.as_str()
        ),
    })
}

/// Host, port and database of a member's `conn_url`.
fn conn_parts(member: &Member) -> anyhow::Result<(String, u16, String)> {
    let url = member.data.conn_url.as_deref().ok_or_else(|| {
        anyhow!(
            "member {} publishes no conn_url (postgresql.connect_address)",
            member.name
        )
    })?;
    let parsed = reqwest::Url::parse(url)
        .with_context(|| format!("member {}: conn_url `{url}` is not a URL", member.name))?;
    let host = parsed
        .host_str()
        .unwrap_or("localhost")
        .trim_matches(['[', ']'])
        .to_owned();
    let db = parsed.path().trim_start_matches('/').to_owned();
    Ok((host, parsed.port().unwrap_or(5432), db))
}

/// `dsn`.
pub(crate) async fn dsn(
    ctl: &Ctl,
    cluster: Option<&str>,
    group: Option<u32>,
    role: Option<CtlRole>,
    member: Option<&str>,
) -> anyhow::Result<()> {
    let name = ctl.scope(cluster)?;
    let (_, view) = ctl.view(&name, group).await?;
    let m = any_member(&view, &name, role, member)?;
    let (host, port, _) = conn_parts(&m)?;
    println!("host={host} port={port}");
    Ok(())
}

/// `query` options.
pub(crate) struct QueryArgs {
    pub(crate) cluster: Option<String>,
    pub(crate) group: Option<u32>,
    pub(crate) format: Format,
    pub(crate) file: Option<String>,
    pub(crate) password: bool,
    pub(crate) username: Option<String>,
    pub(crate) dbname: Option<String>,
    pub(crate) watch: Option<f64>,
    pub(crate) role: Option<CtlRole>,
    pub(crate) member: Option<String>,
    pub(crate) delimiter: String,
    pub(crate) command: Option<String>,
}

/// `query`.
pub(crate) async fn query(ctl: &Ctl, a: QueryArgs) -> anyhow::Result<()> {
    let sql = match (&a.file, &a.command) {
        (Some(_), Some(_)) => bail!("--file and --command are mutually exclusive options"),
        (Some(f), None) => {
            std::fs::read_to_string(f).with_context(|| format!("--file: cannot read {f}"))?
        }
        (None, Some(c)) => c.clone(),
        (None, None) => bail!("You need to specify either --command or --file"),
    };
    let password = if a.password {
        Some(prompt::ask("Password", None)?)
    } else {
        std::env::var("PGPASSWORD").ok()
    };
    let name = ctl.scope(a.cluster.as_deref())?;
    let (_, view) = ctl.view(&name, a.group).await?;
    loop {
        let rows = match run_on_member(&view, &name, &a, password.as_deref(), &sql).await {
            Ok(rows) => rows,
            Err(message) => Rows {
                columns: Vec::new(),
                rows: vec![vec![json!(timestamp(0)), json!(message)]],
                ..Rows::default()
            },
        };
        let mut text = rows.render(a.format, &a.delimiter);
        if rows.columns.is_empty() && a.format == Format::Tsv {
            // No header line without a result description (patronictl prints none).
            text = text
                .split_once('\n')
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or_default();
        }
        print!("{text}");
        match a.watch {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.1))).await,
            None => return Ok(()),
        }
    }
}

/// Connect and run; an error becomes the one-line message patronictl prints.
async fn run_on_member(
    view: &View,
    cluster: &str,
    a: &QueryArgs,
    password: Option<&str>,
    sql: &str,
) -> Result<Rows, String> {
    let member =
        any_member(view, cluster, a.role, a.member.as_deref()).map_err(|e| e.to_string())?;
    let (host, port, db) = conn_parts(&member).map_err(|e| e.to_string())?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .application_name("Keel ctl")
        .connect_timeout(Duration::from_secs(5))
        .user(
            a.username
                .clone()
                .or_else(|| std::env::var("PGUSER").ok())
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "postgres".into())
                .as_str(),
        )
        .dbname(
            a.dbname
                .as_deref()
                .or(std::env::var("PGDATABASE").ok().as_deref())
                .unwrap_or(if db.is_empty() { "postgres" } else { &db }),
        );
    if let Some(p) = password {
        config.password(p);
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("No connection to member {} is available: {e}", member.name))?;
    tokio::spawn(connection);
    let sqlstate = |e: tokio_postgres::Error| {
        let code = e
            .code()
            .map(|c| c.code().to_owned())
            .unwrap_or_else(|| e.to_string());
        format!("ERROR, SQLSTATE: {}", code.replace('\n', " "))
    };
    if let Some(role) = a
        .role
        .filter(|r| !matches!(r, CtlRole::Any | CtlRole::Leader))
    {
        let rows = client
            .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
            .await
            .map_err(sqlstate)?;
        let in_recovery = first_value(&rows).is_none_or(|v| v == "t");
        let fits = match role {
            CtlRole::Primary => !in_recovery,
            _ => in_recovery,
        };
        if !fits {
            return Err(format!(
                "No connection to role {} is available",
                role.as_str()
            ));
        }
    }
    let messages = client.simple_query(sql).await.map_err(sqlstate)?;
    let mut rows = Rows::default();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            if rows.columns.is_empty() {
                rows.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
            }
            rows.rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map_or(Value::Null, |v| json!(v)))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn first_value(messages: &[SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0),
        _ => None,
    })
}
