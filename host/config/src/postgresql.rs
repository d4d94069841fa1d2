//! `postgresql`: the local half of Postgres management.
//!
//! Keys that only make sense on one machine (addresses, directories, credentials) are typed
//! and required here. Keys that the DCS may also set (`parameters`, `pg_hba`, `use_pg_rewind`,
//! `pg_ctl_timeout`, …) stay `Option` so that [`crate::merge`] can tell "not set locally" from
//! "set to the default"; use the accessor methods for the value with Patroni's default.
//! Parameter values are rendered once, here, into the text postgresql.conf expects.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::ConfigError;
use crate::check::{Ctx, path, required, text};
use crate::error::join;
use crate::lenient::Text;
use crate::merge::is_command_line_guc;
use crate::raw::{RawPgAuth, RawPostgresql};
use crate::sections::{HostPort, bad_address, split_host_port};

/// `postgresql.listen`: `host[,host…]:port`, becoming `listen_addresses` and `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgListen {
    /// Hosts, without IPv6 brackets (`*` for all).
    pub hosts: Vec<String>,
    /// Port.
    pub port: u16,
}

impl PgListen {
    /// Parses `host[,host…]:port`; `key` is the path used in errors.
    pub fn parse(value: &str, key: &str) -> Result<Self, ConfigError> {
        let (hosts, port) = split_host_port(value, key)?;
        let hosts: Vec<String> = hosts
            .split(',')
            .map(|h| {
                h.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            })
            .collect();
        if hosts.iter().any(String::is_empty) {
            return Err(bad_address(key, value));
        }
        Ok(Self { hosts, port })
    }

    /// The value of the `listen_addresses` GUC.
    pub fn listen_addresses(&self) -> String {
        self.hosts.join(",")
    }
}

/// Connection settings of one Postgres user (`superuser`, `replication`, `rewind`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionAuth {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: Option<String>,
    /// libpq keywords `sslmode`, `sslcert`, `sslkey`, `sslpassword`, `sslrootcert`, `sslcrl`,
    /// `sslcrldir`, `gssencmode`, `channel_binding`, `sslnegotiation`, as given.
    pub options: BTreeMap<String, String>,
}

/// `postgresql.authentication`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgAuthentication {
    /// `superuser` (required).
    pub superuser: ConnectionAuth,
    /// `replication` (required).
    pub replication: ConnectionAuth,
    /// `rewind`; pg_rewind uses the superuser when absent.
    pub rewind: Option<ConnectionAuth>,
}

/// `postgresql`, as given locally.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PostgresqlSettings {
    /// `listen` (required).
    pub listen: PgListen,
    /// `connect_address` (required): how other members and clients reach this Postgres.
    pub connect_address: HostPort,
    /// `proxy_address`: published in the member key for connection poolers.
    pub proxy_address: Option<HostPort>,
    /// `data_dir` (required).
    pub data_dir: PathBuf,
    /// `config_dir`; see [`PostgresqlSettings::config_dir`].
    pub config_dir: Option<PathBuf>,
    /// `bin_dir`: where the Postgres binaries are; `PATH` when absent.
    pub bin_dir: Option<PathBuf>,
    /// `bin_name.<binary>`: replacement names for `pg_ctl`, `initdb`, `pg_controldata`,
    /// `pg_basebackup`, `postgres`, `pg_isready`, `pg_rewind`.
    pub bin_name: BTreeMap<String, String>,
    /// `pgpass`: the passfile Keel writes for its own connections.
    pub pgpass: Option<PathBuf>,
    /// `database`, default `postgres`.
    pub database: String,
    /// `authentication`.
    pub authentication: PgAuthentication,
    /// `parameters`, rendered for postgresql.conf, without the GUCs only the DCS may set.
    pub parameters: BTreeMap<String, String>,
    /// `pg_hba` lines; when absent the DCS value (if any) is used.
    pub pg_hba: Option<Vec<String>>,
    /// `pg_ident` lines.
    pub pg_ident: Option<Vec<String>>,
    /// `pg_ctl_timeout`; see [`PostgresqlSettings::pg_ctl_timeout`].
    pub pg_ctl_timeout: Option<Duration>,
    /// `use_pg_rewind`.
    pub use_pg_rewind: Option<bool>,
    /// `use_unix_socket`: connect locally through the socket directory.
    pub use_unix_socket: bool,
    /// `use_unix_socket_repl`: replicate through the socket directory.
    pub use_unix_socket_repl: bool,
    /// `callbacks`: `on_start`, `on_stop`, `on_restart`, `on_reload`, `on_role_change` commands.
    pub callbacks: BTreeMap<String, String>,
    /// `create_replica_methods`; `basebackup` alone when absent here and in the DCS.
    pub create_replica_methods: Option<Vec<String>>,
    /// Per-method sections (`basebackup`, `wal_g`, …), kept as JSON.
    pub replica_method_sections: BTreeMap<String, Value>,
    /// `recovery_conf`: extra recovery settings, kept as JSON.
    pub recovery_conf: Option<Map<String, Value>>,
    /// `custom_conf`: a postgresql.conf to include instead of the generated base.
    pub custom_conf: Option<PathBuf>,
    /// `remove_data_directory_on_rewind_failure`.
    pub remove_data_directory_on_rewind_failure: bool,
    /// `remove_data_directory_on_diverged_timelines`.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// `pre_promote`: a command that must succeed before promotion.
    pub pre_promote: Option<String>,
    /// `before_stop`: a command run before stopping Postgres.
    pub before_stop: Option<String>,
    /// `krbsrvname`.
    pub krbsrvname: Option<String>,
}

impl PostgresqlSettings {
    /// `config_dir`, defaulting to `data_dir`.
    pub fn config_dir(&self) -> &PathBuf {
        self.config_dir.as_ref().unwrap_or(&self.data_dir)
    }

    /// `pg_ctl_timeout`, default 60 s.
    pub fn pg_ctl_timeout(&self) -> Duration {
        self.pg_ctl_timeout.unwrap_or(Duration::from_secs(60))
    }
}

/// Renders a parameter value the way postgresql.conf wants it: strings as they are, booleans
/// as `on`/`off`, numbers in decimal. Lists, maps and null are refused.
pub fn render_parameter(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(if *b { "on" } else { "off" }.to_owned()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("expected a string, number or boolean, got {other}")),
    }
}

/// Quotes a rendered value for postgresql.conf: `'` and `\` are doubled, the whole is quoted.
pub fn quote_conf_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

const BINARIES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];
const CALLBACKS: &[&str] = &[
    "on_start",
    "on_stop",
    "on_restart",
    "on_reload",
    "on_role_change",
];

fn connection(
    raw: Option<BTreeMap<String, Text>>,
    key: &str,
    ctx: &mut Ctx,
) -> Result<Option<ConnectionAuth>, ConfigError> {
    let Some(mut raw) = raw else { return Ok(None) };
    let username = required(raw.remove("username"), &join(key, "username"))?;
    let password = text(raw.remove("password"));
    let mut options = BTreeMap::new();
    for (name, Text(value)) in raw {
        if crate::env::AUTH_KEYS.contains(&name.as_str()) {
            options.insert(name, value);
        } else {
            ctx.warn(&join(key, &name), "unknown key, ignored");
        }
    }
    Ok(Some(ConnectionAuth {
        username,
        password,
        options,
    }))
}

fn authentication(raw: RawPgAuth, ctx: &mut Ctx) -> Result<PgAuthentication, ConfigError> {
    const KEY: &str = "postgresql.authentication";
    ctx.unknown_keys(KEY, &raw.extra);
    let need = |c: Option<ConnectionAuth>, user: &str| {
        c.ok_or_else(|| ConfigError::missing(format!("{KEY}.{user}.username")))
    };
    Ok(PgAuthentication {
        superuser: need(
            connection(raw.superuser, &join(KEY, "superuser"), ctx)?,
            "superuser",
        )?,
        replication: need(
            connection(raw.replication, &join(KEY, "replication"), ctx)?,
            "replication",
        )?,
        rewind: connection(raw.rewind, &join(KEY, "rewind"), ctx)?,
    })
}

fn parameters(
    raw: Option<Map<String, Value>>,
    ctx: &mut Ctx,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw.unwrap_or_default() {
        let key = format!("postgresql.parameters.{name}");
        let rendered = render_parameter(&value).map_err(|p| ConfigError::invalid(&key, p))?;
        if is_command_line_guc(&name) {
            ctx.warn(
                &key,
                "only the DCS configuration (or Keel itself) sets this GUC; ignored here",
            );
        } else {
            out.insert(name, rendered);
        }
    }
    Ok(out)
}

fn named(
    map: Option<BTreeMap<String, Text>>,
    section: &str,
    known: &[&str],
    ctx: &mut Ctx,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, Text(value)) in map.unwrap_or_default() {
        if known.contains(&name.as_str()) {
            out.insert(name, value);
        } else {
            ctx.warn(&join(section, &name), "unknown key, ignored");
        }
    }
    out
}

fn lines(raw: Option<Vec<Text>>) -> Option<Vec<String>> {
    raw.map(|v| v.into_iter().map(|t| t.0).collect())
}

pub(crate) fn postgresql(
    raw: RawPostgresql,
    ctx: &mut Ctx,
) -> Result<PostgresqlSettings, ConfigError> {
    let listen = required(raw.listen, "postgresql.listen")?;
    let connect = required(raw.connect_address, "postgresql.connect_address")?;
    let methods = raw.create_replica_methods.map(|l| l.0);
    let mut sections = BTreeMap::new();
    for (name, value) in raw.extra {
        let key = join("postgresql", &name);
        let listed = name == "basebackup" || methods.iter().flatten().any(|m| *m == name);
        match (&value, listed) {
            (Value::Object(_) | Value::Array(_), true) => {}
            (Value::Object(_), false) => ctx.warn(
                &key,
                "not listed in create_replica_methods; kept as a replica method section",
            ),
            _ => {
                ctx.warn(&key, "unknown key, ignored");
                continue;
            }
        }
        sections.insert(name, value);
    }
    if raw.use_slots.is_some() {
        ctx.warn(
            "postgresql.use_slots",
            "only read from the DCS configuration; ignored here",
        );
    }
    Ok(PostgresqlSettings {
        listen: PgListen::parse(&listen, "postgresql.listen")?,
        connect_address: HostPort::parse(&connect, "postgresql.connect_address", true)?,
        proxy_address: text(raw.proxy_address)
            .map(|p| HostPort::parse(&p, "postgresql.proxy_address", true))
            .transpose()?,
        data_dir: required(raw.data_dir, "postgresql.data_dir")?.into(),
        config_dir: path(raw.config_dir),
        bin_dir: path(raw.bin_dir),
        bin_name: named(raw.bin_name, "postgresql.bin_name", BINARIES, ctx),
        pgpass: path(raw.pgpass),
        database: text(raw.database).unwrap_or_else(|| "postgres".to_owned()),
        authentication: match raw.authentication {
            Some(auth) => authentication(auth, ctx)?,
            None => {
                return Err(ConfigError::missing(
                    "postgresql.authentication.superuser.username",
                ));
            }
        },
        parameters: parameters(raw.parameters, ctx)?,
        pg_hba: lines(raw.pg_hba),
        pg_ident: lines(raw.pg_ident),
        pg_ctl_timeout: raw.pg_ctl_timeout.map(|s| s.0),
        use_pg_rewind: raw.use_pg_rewind.map(|f| f.0),
        use_unix_socket: raw.use_unix_socket.is_some_and(|f| f.0),
        use_unix_socket_repl: raw.use_unix_socket_repl.is_some_and(|f| f.0),
        callbacks: named(raw.callbacks, "postgresql.callbacks", CALLBACKS, ctx),
        create_replica_methods: methods,
        replica_method_sections: sections,
        recovery_conf: raw.recovery_conf,
        custom_conf: path(raw.custom_conf),
        remove_data_directory_on_rewind_failure: raw
            .remove_data_directory_on_rewind_failure
            .is_some_and(|f| f.0),
        remove_data_directory_on_diverged_timelines: raw
            .remove_data_directory_on_diverged_timelines
            .is_some_and(|f| f.0),
        pre_promote: text(raw.pre_promote),
        before_stop: text(raw.before_stop),
        krbsrvname: text(raw.krbsrvname),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listen_accepts_host_lists_and_v6() {
        let l = PgListen::parse("127.0.0.1, 10.0.0.1:5432", "k").unwrap();
        assert_eq!(l.hosts, ["127.0.0.1", "10.0.0.1"]);
        assert_eq!(l.port, 5432);
        assert_eq!(PgListen::parse("[::1]:5433", "k").unwrap().hosts, ["::1"]);
        assert_eq!(
            PgListen::parse("*:5432", "k").unwrap().listen_addresses(),
            "*"
        );
        let err = PgListen::parse("abc", "postgresql.listen").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"postgresql.listen: expected host:port, got "abc""#
        );
        assert!(PgListen::parse("a:0", "k").is_err());
        assert!(PgListen::parse("a,:1", "k").is_err());
    }

    #[test]
    fn parameters_render_for_postgresql_conf() {
        assert_eq!(render_parameter(&json!(true)).unwrap(), "on");
        assert_eq!(render_parameter(&json!(false)).unwrap(), "off");
        assert_eq!(render_parameter(&json!(100)).unwrap(), "100");
        assert_eq!(render_parameter(&json!(0.9)).unwrap(), "0.9");
        assert_eq!(render_parameter(&json!("32MB")).unwrap(), "32MB");
        assert!(render_parameter(&json!([1])).is_err());
        assert!(render_parameter(&Value::Null).is_err());
        assert_eq!(quote_conf_value(r"it's a\b"), r"'it''s a\\b'");
    }
}
