//! The member listing of `list`, `topology` and every command that shows the
//! cluster before acting: patronictl 4.1's columns (Member, Host, Role, State,
//! TL, Receive LSN, Lag, Replay LSN, Lag; a Group column for formations;
//! pending/scheduled restarts and tags when present or with `-e`), built from
//! the same `/cluster` JSON the REST API serves. Pure: returns text.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::output::{Format, Rows, text};
use crate::view::View;

/// How to list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing {
    pub(crate) format: Format,
    pub(crate) extended: bool,
    /// An MPP formation: a Group column, and a Citus title.
    pub(crate) mpp: bool,
}

impl Listing {
    /// The table a command shows before it acts.
    pub(crate) fn pretty(mpp: bool) -> Self {
        Self {
            format: Format::Pretty,
            extended: false,
            mpp,
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Render the members of `view` (cluster `name`), with the service lines
/// (maintenance mode, scheduled switchover) after a table.
pub(crate) fn render(view: &View, name: &str, how: Listing) -> String {
    let (rows, info) = rows(view, name, how);
    let mut out = rows.render(how.format, "\t");
    if matches!(how.format, Format::Pretty | Format::Topology) {
        for (group, lines) in info {
            if how.mpp && view.group.is_none() {
                out.push_str(&format!("Citus group: {group}\n"));
            }
            out.push_str(&format!(" {}\n", lines.join("\n ")));
        }
    }
    out
}

fn rows(view: &View, name: &str, how: Listing) -> (Rows, Vec<(u32, Vec<String>)>) {
    let initialize = match view.cluster.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(sysid) => sysid,
    };
    let mut columns: Vec<&str> = vec![
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag",
        "Replay LSN",
        "Replay Lag",
    ];
    if how.mpp {
        columns.insert(1, "Group");
    }
    let clusters: BTreeMap<u32, Map<String, Value>> = view
        .groups()
        .into_iter()
        .map(|(g, c)| (g, keel_api::cluster_json(c)))
        .collect();
    let members = |c: &Map<String, Value>| -> Vec<Map<String, Value>> {
        c.get("members")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|m| m.as_object().cloned()).collect())
            .unwrap_or_default()
    };
    let all: Vec<Map<String, Value>> = clusters
        .values()
        .flat_map(members)
        .filter(|m| m.contains_key("host"))
        .collect();
    for extra in [
        "Pending restart",
        "Pending restart reason",
        "Scheduled restart",
        "Tags",
    ] {
        let key = field(extra);
        if how.extended
            || all
                .iter()
                .any(|m| m.get(&key).is_some_and(|v| !is_empty(v)))
        {
            columns.push(extra);
        }
    }
    let hosts: std::collections::HashSet<&str> = all
        .iter()
        .filter_map(|m| m.get("host").and_then(Value::as_str))
        .collect();
    let append_port =
        all.iter().any(|m| m.get("port").is_some_and(|p| p != 5432)) || hosts.len() < all.len();

    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut info = Vec::new();
    for (group, cluster) in &clusters {
        let mut list = members(cluster);
        if how.format == Format::Topology {
            list = topology_sort(list);
        }
        for member in list {
            let row = member_row(&member, name, *group, append_port, how.format);
            rows.push(
                columns
                    .iter()
                    .map(|c| row.get(&field(c)).cloned().unwrap_or(json!("")))
                    .collect(),
            );
        }
        let lines = service_info(cluster);
        if !lines.is_empty() {
            info.push((*group, lines));
        }
    }
    let title = if how.mpp {
        match view.group {
            None => format!(" Citus cluster: {name} "),
            Some(g) => format!(" Citus cluster: {name} (group: {g}, {initialize}) "),
        }
    } else {
        format!(" Cluster: {name} ({initialize}) ")
    };
    let mut columns: Vec<String> = columns.into_iter().map(str::to_owned).collect();
    let tabular = matches!(how.format, Format::Pretty | Format::Topology);
    if tabular {
        // The cluster name (and group of a single group) are in the title.
        let skip = if title.contains(" (group: ") { 2 } else { 1 };
        columns.drain(..skip);
        for row in &mut rows {
            row.drain(..skip);
        }
        for c in &mut columns {
            if c == "Receive Lag" || c == "Replay Lag" {
                *c = "Lag".into();
            }
        }
    }
    let rows = Rows {
        columns,
        rows,
        right: vec!["Group", "Receive LSN", "Replay LSN", "Lag", "TL"],
        title,
    };
    (rows, info)
}

/// `Pending restart` → `pending_restart`.
fn field(column: &str) -> String {
    column.to_lowercase().replace(' ', "_")
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

/// One member's values by field name.
fn member_row(
    m: &Map<String, Value>,
    cluster: &str,
    group: u32,
    append_port: bool,
    format: Format,
) -> Map<String, Value> {
    let get = |k: &str| m.get(k).cloned().unwrap_or(json!(""));
    let (mut receive_lag, mut replay_lag) = (get("receive_lag"), get("replay_lag"));
    let (mut receive_lsn, mut replay_lsn) = (get("receive_lsn"), get("replay_lsn"));
    let lsn = get("lsn");
    if receive_lsn == "unknown" && replay_lsn == "unknown" && lsn != "" && lsn != "unknown" {
        if m.get("state").is_some_and(|s| s == "streaming") {
            (receive_lag, receive_lsn) = (get("lag"), lsn);
        } else {
            (replay_lag, replay_lsn) = (get("lag"), lsn);
        }
    }
    let megabytes = |lag: Value| match lag {
        Value::Number(n) if n.is_u64() || n.is_i64() => {
            json!((n.as_f64().unwrap_or(0.0) / MIB).round_ties_even() as i64)
        }
        Value::String(s) if s == "unknown" => json!(""),
        other => other,
    };
    let mut host = text(&get("host"));
    if append_port
        && !host.is_empty()
        && let Some(port) = m.get("port")
    {
        host = format!("{host}:{port}");
    }
    let role = text(&get("role"))
        .split('_')
        .map(title_case)
        .collect::<Vec<_>>()
        .join(" ");
    let hide_long = matches!(format, Format::Pretty | Format::Topology);
    let reason: Vec<String> = m
        .get("pending_restart_reason")
        .and_then(Value::as_object)
        .map(|r| {
            r.iter()
                .map(|(param, v)| {
                    let full = format!(
                        "{param}: {}->{}",
                        text(&v["old_value"]),
                        text(&v["new_value"])
                    );
                    if hide_long && full.chars().count() > 50 {
                        format!("{param}: [hidden - too long]")
                    } else {
                        full
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let scheduled = m
        .get("scheduled_restart")
        .and_then(Value::as_object)
        .map(|s| {
            let mut value = text(s.get("schedule").unwrap_or(&json!("")));
            if let Some(v) = s.get("postgres_version") {
                value.push_str(&format!(" if version < {}", text(v)));
            }
            value
        });
    let tags = match m.get("tags") {
        Some(Value::Object(t)) if !t.is_empty() => match format {
            Format::Pretty => json!(crate::output::yaml(&Value::Object(t.clone())).trim_end()),
            Format::Tsv | Format::Topology => json!(flow(&Value::Object(t.clone()))),
            _ => Value::Object(t.clone()),
        },
        _ => json!(""),
    };
    let mut row = Map::new();
    row.insert("cluster".into(), json!(cluster));
    row.insert("group".into(), json!(group));
    row.insert("member".into(), get("name"));
    row.insert("host".into(), json!(host));
    row.insert("role".into(), json!(role));
    row.insert("state".into(), get("state"));
    row.insert("tl".into(), get("timeline"));
    row.insert("receive_lsn".into(), receive_lsn);
    row.insert("receive_lag".into(), megabytes(receive_lag));
    row.insert("replay_lsn".into(), replay_lsn);
    row.insert("replay_lag".into(), megabytes(replay_lag));
    let pending = m.get("pending_restart").is_some_and(|p| p == true);
    row.insert(
        "pending_restart".into(),
        json!(if pending { "*" } else { "" }),
    );
    row.insert("pending_restart_reason".into(), json!(reason.join("\n")));
    row.insert(
        "scheduled_restart".into(),
        json!(scheduled.unwrap_or_default()),
    );
    row.insert("tags".into(), tags);
    row
}

fn title_case(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| {
            c.to_uppercase()
                .chain(chars.flat_map(char::to_lowercase))
                .collect()
        })
        .unwrap_or_default()
}

/// YAML flow style on one line: `{nofailover: true, priority: 1}`.
fn flow(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", flow(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Maintenance mode and a scheduled switchover, as lines.
fn service_info(cluster: &Map<String, Value>) -> Vec<String> {
    let mut lines = Vec::new();
    if cluster.get("pause").is_some_and(|p| p == true) {
        lines.push("Maintenance mode: on".to_owned());
    }
    if let Some(s) = cluster.get("scheduled_switchover") {
        let mut line = format!("Switchover scheduled at: {}", text(&s["at"]));
        for key in ["from", "to"] {
            if let Some(v) = s.get(key) {
                line.push_str(&format!("\n{key:>24}: {}", text(v)));
            }
        }
        lines.push(line);
    }
    lines
}

/// Members as a replication tree: the leader, then the replicas below what
/// they replicate from (`replicatefrom`), names indented with `+ `.
fn topology_sort(members: Vec<Map<String, Value>>) -> Vec<Map<String, Value>> {
    let is_leader = |m: &Map<String, Value>| text(&m["role"]).ends_with("leader");
    let leader = members.iter().find(|m| is_leader(m)).cloned();
    let replicas: Vec<String> = members
        .iter()
        .filter(|m| !is_leader(m))
        .map(|m| text(&m["name"]))
        .collect();
    let leader_name = leader.as_ref().map(|l| text(&l["name"]));
    let mut below: BTreeMap<Option<String>, Vec<Map<String, Value>>> = BTreeMap::new();
    for m in members.into_iter().filter(|m| !is_leader(m)) {
        let name = text(&m["name"]);
        let parent = m
            .get("tags")
            .and_then(|t| t.get("replicatefrom"))
            .map(text)
            .filter(|p| *p != name && replicas.contains(p))
            .or_else(|| leader_name.clone());
        below.entry(parent).or_default().push(m);
    }
    let mut out = Vec::new();
    if let Some(l) = leader {
        out.push(l);
    }
    descend(&leader_name, 1, &mut below, &mut out);
    out
}

fn descend(
    parent: &Option<String>,
    level: usize,
    below: &mut BTreeMap<Option<String>, Vec<Map<String, Value>>>,
    out: &mut Vec<Map<String, Value>>,
) {
    for mut m in below.remove(parent).unwrap_or_default() {
        let name = text(&m["name"]);
        m.insert(
            "name".into(),
            json!(format!("{}+ {name}", " ".repeat((level - 1) * 2))),
        );
        out.push(m);
        descend(&Some(name), level + 1, below, out);
    }
}

#[cfg(test)]
mod tests {
    use keel_model::{Cluster, Entry};

    use super::*;

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
            version: "1".into(),
            session: None,
        }
    }

    fn cluster() -> Cluster {
        Cluster::from_entries(&[
            entry("initialize", "7376000000000000001"),
            entry("config", r#"{"pause":true}"#),
            entry("leader", "m1"),
            entry("status", r#"{"optime":67108960}"#),
            entry(
                "members/m1",
                r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","timeline":2}"#,
            ),
            entry(
                "members/m2",
                r#"{"conn_url":"postgres://127.0.0.1:5433/postgres","state":"running","role":"replica","replication_state":"streaming","timeline":2,"receive_lsn":67108960,"replay_lsn":50331744,"xlog_location":50331744}"#,
            ),
            entry(
                "members/m3",
                r#"{"conn_url":"postgres://127.0.0.1:5434/postgres","state":"running","role":"replica","timeline":2,"xlog_location":67108960,"tags":{"replicatefrom":"m2"}}"#,
            ),
        ])
    }

    #[test]
    fn the_table_has_patronictl_4_1_columns() {
        let text = render(
            &View::single(cluster(), None),
            "demo",
            Listing::pretty(false),
        );
        let expected = "\
+ Cluster: demo (7376000000000000001) ----------+----+-------------+-----+------------+-----+-------------------+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags              |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+-------------------+
| m1     | 127.0.0.1:5432 | Leader  | running   |  2 |             |     |            |     |                   |
| m2     | 127.0.0.1:5433 | Replica | streaming |  2 |   0/4000060 |   0 |  0/3000060 |  16 |                   |
| m3     | 127.0.0.1:5434 | Replica | running   |  2 |     unknown |     |  0/4000060 |   0 | replicatefrom: m2 |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+-------------------+
 Maintenance mode: on
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json_keeps_the_cluster_and_both_lags() {
        let how = Listing {
            format: Format::Json,
            extended: false,
            mpp: false,
        };
        let text = render(&View::single(cluster(), None), "demo", how);
        let rows: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            rows[1],
            json!({"Cluster": "demo", "Member": "m2", "Host": "127.0.0.1:5433", "Role": "Replica",
                "State": "streaming", "TL": 2, "Receive LSN": "0/4000060", "Receive Lag": 0,
                "Replay LSN": "0/3000060", "Replay Lag": 16})
        );
        assert_eq!(rows[0]["Role"], "Leader");
        assert!(rows[0].get("Receive Lag").is_none());
    }

    #[test]
    fn topology_indents_cascading_replicas() {
        let how = Listing {
            format: Format::Topology,
            extended: false,
            mpp: false,
        };
        let text = render(&View::single(cluster(), None), "demo", how);
        let names: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| Member"))
            .map(|l| l.split('|').nth(1).unwrap()[1..].trim_end())
            .collect();
        assert_eq!(names, ["m1", "+ m2", "  + m3"]);
    }

    #[test]
    fn formations_have_a_group_column_and_a_citus_title() {
        let mut view = View::single(cluster(), None);
        view.workers.insert(1, cluster());
        let text = render(&view, "demo", Listing::pretty(true));
        assert!(text.starts_with("+ Citus cluster: demo -"), "{text}");
        assert!(text.contains("| Group | Member"), "{text}");
        assert!(text.contains("|     1 | m3 "), "{text}");
        assert!(
            text.contains("Citus group: 0\n Maintenance mode: on\nCitus group: 1\n"),
            "{text}"
        );
    }

    #[test]
    fn roles_are_title_cased() {
        assert_eq!(title_case("sync"), "Sync");
        let m: Map<String, Value> =
            serde_json::from_value(json!({"name": "a", "role": "quorum_standby"})).unwrap();
        let row = member_row(&m, "c", 0, false, Format::Pretty);
        assert_eq!(row["role"], "Quorum Standby");
    }
}
