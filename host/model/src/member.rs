//! `members/<name>`: what each node publishes about itself every HA cycle.
//!
//! Patroni peers, patronictl and the REST API of every node read these keys, so
//! the writer reproduces Patroni 4.1's `Ha.touch_member` exactly: the same field
//! names, the same order, absent fields omitted, LSNs as JSON integers, role
//! `primary` (never `master`). The reader is lenient the way Patroni is: a value
//! starting with `postgres` is a legacy connection URL, unparsable JSON is an
//! empty member, `master` means primary, and a field of the wrong type is logged
//! and dropped without losing the rest of the member. Unknown fields are dropped:
//! a node only ever renders its own key, from its own state.

use serde_json::{Map, Value};

use super::json::{as_u64, parse_object, to_compact, type_name};

/// The role a member publishes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// The primary (`primary`; Patroni 3.x wrote `master`, which reads as this).
    Primary,
    /// A streaming or archive replica.
    Replica,
    /// The leader of a standby cluster.
    StandbyLeader,
    /// A former primary that stepped down.
    Demoted,
    /// No data directory yet.
    Uninitialized,
    /// Transient: promoted, not yet in production.
    Promoted,
    /// A role this version does not know; kept verbatim.
    Other(String),
}

impl Role {
    /// Read a role string (`master` is [`Role::Primary`]).
    pub fn parse(s: &str) -> Self {
        match s {
            "primary" | "master" => Self::Primary,
            "replica" => Self::Replica,
            "standby_leader" => Self::StandbyLeader,
            "demoted" => Self::Demoted,
            "uninitialized" => Self::Uninitialized,
            "promoted" => Self::Promoted,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The string Patroni 4.1 writes.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::StandbyLeader => "standby_leader",
            Self::Demoted => "demoted",
            Self::Uninitialized => "uninitialized",
            Self::Promoted => "promoted",
            Self::Other(s) => s,
        }
    }
}

/// The content of a member key. Every field is optional because peers may omit
/// it; the writer omits what is `None` / `false` / empty, as Patroni does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemberData {
    /// `postgres://host:port/dbname`, no credentials.
    pub conn_url: Option<String>,
    /// `http(s)://host:port/patroni`.
    pub api_url: Option<String>,
    /// Postgres state as managed by the daemon (`running`, `stopped`, ...).
    pub state: Option<String>,
    /// The member's role.
    pub role: Option<Role>,
    /// The daemon version, dotted integers (`4.1.4`).
    pub version: Option<String>,
    /// `postgres://<proxy_address>/<dbname>` when a proxy is configured.
    pub proxy_url: Option<String>,
    /// `Some(false)` on the lock holder until the post-promote checkpoint is done.
    pub checkpoint_after_promote: Option<bool>,
    /// Effective tags; omitted when empty.
    pub tags: Map<String, Value>,
    /// A restart is pending.
    pub pending_restart: bool,
    /// `{"<guc>": {"old_value": .., "new_value": ..}}`.
    pub pending_restart_reason: Option<Map<String, Value>>,
    /// Flush LSN on a primary, max(receive, replay) on a replica (bytes).
    pub xlog_location: Option<u64>,
    /// Replica replay LSN (4.1), written only when non-zero.
    pub replay_lsn: Option<u64>,
    /// Replica receive LSN (4.1), written only when non-zero.
    pub receive_lsn: Option<u64>,
    /// `streaming` or `in archive recovery`.
    pub replication_state: Option<String>,
    /// Current (primary) or received (replica) timeline.
    pub timeline: Option<u32>,
    /// `{"schedule": "<ISO 8601>", "postmaster_start_time": .., ...}`.
    pub scheduled_restart: Option<Map<String, Value>>,
    /// The cluster is paused.
    pub pause: bool,
}

/// One member as read from the store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Member {
    /// The member name (last component of the key).
    pub name: String,
    /// The key's version; `None` for the stub made for a leader without a member key.
    pub version: Option<String>,
    /// The session (lease) the key is bound to.
    pub session: Option<String>,
    /// The parsed value.
    pub data: MemberData,
}

impl Member {
    /// A member with no key in the store, as Patroni makes for a leader whose
    /// member key is missing.
    pub fn stub(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

impl MemberData {
    /// Parse a member value. Never fails: garbage gives an empty member.
    pub fn parse(raw: &str, name: &str) -> Self {
        if raw.starts_with("postgres") {
            return Self::from_legacy_url(raw);
        }
        let Some(map) = parse_object(raw) else {
            tracing::warn!(member = name, "member key is not a JSON object, ignored");
            return Self::default();
        };
        Self::from_map(&map, name)
    }

    /// Governor-era value: `postgres://..?application_name=<api_url>`.
    fn from_legacy_url(raw: &str) -> Self {
        let (without_fragment, fragment) = match raw.split_once('#') {
            Some((a, f)) => (a, Some(f)),
            None => (raw, None),
        };
        let (base, query) = match without_fragment.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (without_fragment, None),
        };
        let mut conn_url = base.to_owned();
        if let Some(f) = fragment {
            conn_url.push('#');
            conn_url.push_str(f);
        }
        let api_url = query.and_then(|q| {
            q.split(['&', ';'])
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| percent_decode(k) == "application_name")
                .map(|(_, v)| percent_decode(v))
                .filter(|v| !v.is_empty())
        });
        Self {
            conn_url: Some(conn_url),
            api_url,
            ..Self::default()
        }
    }

    fn from_map(map: &Map<String, Value>, name: &str) -> Self {
        let f = Fields { map, name };
        let mut data = Self {
            conn_url: f.string("conn_url"),
            api_url: f.string("api_url"),
            state: f.string("state"),
            role: f.string("role").map(|r| Role::parse(&r)),
            version: f.string("version"),
            proxy_url: f.string("proxy_url"),
            checkpoint_after_promote: f.boolean("checkpoint_after_promote"),
            tags: f.object("tags").unwrap_or_default(),
            pending_restart: f.boolean("pending_restart").unwrap_or(false),
            pending_restart_reason: f.object("pending_restart_reason"),
            xlog_location: f.int("xlog_location"),
            replay_lsn: f.int("replay_lsn"),
            receive_lsn: f.int("receive_lsn"),
            replication_state: f.string("replication_state"),
            timeline: f.int("timeline").and_then(|t| u32::try_from(t).ok()),
            scheduled_restart: f.object("scheduled_restart"),
            pause: f.boolean("pause").unwrap_or(false),
        };
        if data.conn_url.is_none() {
            data.conn_url = f
                .object("conn_kwargs")
                .and_then(|kw| conn_url_from_kwargs(&kw));
        }
        data
    }

    /// Render as Patroni 4.1's `touch_member` does: compact JSON in its key order.
    pub fn render(&self) -> String {
        let s = |v: &Option<String>| v.clone().map(Value::String);
        let fields: [(&str, Option<Value>); 17] = [
            ("conn_url", s(&self.conn_url)),
            ("api_url", s(&self.api_url)),
            ("state", s(&self.state)),
            ("role", self.role.as_ref().map(|r| r.as_str().into())),
            ("version", s(&self.version)),
            ("proxy_url", s(&self.proxy_url)),
            (
                "checkpoint_after_promote",
                self.checkpoint_after_promote.map(Value::Bool),
            ),
            (
                "tags",
                (!self.tags.is_empty()).then(|| Value::Object(self.tags.clone())),
            ),
            (
                "pending_restart",
                self.pending_restart.then_some(Value::Bool(true)),
            ),
            (
                "pending_restart_reason",
                self.pending_restart_reason.clone().map(Value::Object),
            ),
            ("xlog_location", self.xlog_location.map(Value::from)),
            (
                "replay_lsn",
                self.replay_lsn.filter(|l| *l != 0).map(Value::from),
            ),
            (
                "receive_lsn",
                self.receive_lsn.filter(|l| *l != 0).map(Value::from),
            ),
            ("replication_state", s(&self.replication_state)),
            ("timeline", self.timeline.map(Value::from)),
            (
                "scheduled_restart",
                self.scheduled_restart.clone().map(Value::Object),
            ),
            ("pause", self.pause.then_some(Value::Bool(true))),
        ];
        // serde_json's map sorts keys, so write the object by hand in this order.
        let mut out = String::from("{");
        for (k, v) in fields {
            if let Some(v) = v {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(&to_compact(&Value::String(k.to_owned())));
                out.push(':');
                out.push_str(&to_compact(&v));
            }
        }
        out.push('}');
        out
    }

    /// The `version` field as integers (`4.1.4` → `[4, 1, 4]`); `None` when absent
    /// or not dotted integers.
    pub fn patroni_version(&self) -> Option<Vec<u32>> {
        let v = self.version.as_deref()?;
        v.split('.').map(|p| p.parse().ok()).collect()
    }

    /// `true` when the state is `running`.
    pub fn is_running(&self) -> bool {
        self.state.as_deref() == Some("running")
    }
}

/// Typed field access that logs and drops values of the wrong type.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    name: &'a str,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, v: &Value) {
        tracing::warn!(
            member = self.name,
            field = key,
            got = type_name(v),
            "member field has the wrong type, ignored"
        );
    }

    fn string(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            v => {
                self.bad(key, v);
                None
            }
        }
    }

    fn boolean(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            v => {
                self.bad(key, v);
                None
            }
        }
    }

    fn int(&self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        let n = as_u64(v);
        if n.is_none() {
            self.bad(key, v);
        }
        n
    }

    fn object(&self, key: &str) -> Option<Map<String, Value>> {
        match self.get(key)? {
            Value::Object(o) => Some(o.clone()),
            v => {
                self.bad(key, v);
                None
            }
        }
    }
}

/// `conn_kwargs` (other backends) → `postgresql://host:port`, default port 5432.
fn conn_url_from_kwargs(kw: &Map<String, Value>) -> Option<String> {
    let host = kw.get("host")?.as_str()?;
    let port = kw.get("port").and_then(as_u64).unwrap_or(5432);
    Some(format!("postgresql://{host}:{port}"))
}

/// Decode `%XX` escapes and `+` as Python's `parse_qsl` does.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
