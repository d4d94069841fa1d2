//! PostgreSQL configuration files as Patroni writes them (Patroni's `postgresql/config.py`).
//!
//! The `postgresql.conf` that initdb wrote is renamed once to `postgresql.base.conf`; ours starts
//! with `include 'postgresql.base.conf'`, then lists the parameters sorted by name, then the
//! recovery settings under a `# recovery.conf` comment. The parameters that must match across
//! members ([`CMDLINE_GUCS`]) are passed on the postmaster command line instead, so that neither a
//! local file nor `ALTER SYSTEM` can override them. Parameter names are case-insensitive.
//!
//! Rendering is pure so it can be tested without a server; [`crate::Postgres::write_config`] puts
//! the text on disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A set of GUCs, keyed by lower-cased name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters(BTreeMap<String, String>);

impl Parameters {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` (any case) to `value`, replacing a previous value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// The value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// Removes `name` (any case), returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(&name.to_ascii_lowercase())
    }

    /// Name/value pairs sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Overlays `other` on top of `self` (later wins), e.g. local then dynamic parameters.
    pub fn merge(&mut self, other: &Parameters) {
        for (k, v) in other.iter() {
            self.set(k, v);
        }
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Parameters {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Parameters::new();
        for (k, v) in iter {
            p.set(k.as_ref(), v);
        }
        p
    }
}

/// The GUCs that must match across members and are passed on the postmaster command line, with
/// Patroni's defaults. `listen_addresses`, `port` and `cluster_name` also go on the command line
/// but come from the node settings.
pub const CMDLINE_GUCS: [(&str, &str); 10] = [
    ("hot_standby", "on"),
    ("max_connections", "100"),
    ("max_locks_per_transaction", "64"),
    ("max_prepared_transactions", "0"),
    ("max_replication_slots", "10"),
    ("max_wal_senders", "10"),
    ("max_worker_processes", "8"),
    ("track_commit_timestamp", "off"),
    ("wal_level", "replica"),
    ("wal_log_hints", "on"),
];

/// Recovery settings that are never taken from user parameters.
const RECOVERY_OWNED: [&str; 8] = [
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_timeline",
];

/// True when `name` is one of the [`CMDLINE_GUCS`] (or listen_addresses/port/cluster_name).
pub fn is_cmdline_guc(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "listen_addresses" | "port" | "cluster_name")
        || CMDLINE_GUCS.iter().any(|(n, _)| *n == name)
}

/// Splits `params` into the command-line GUCs (with defaults filled in and `wal_level =
/// hot_standby` rewritten to `replica`) and the rest, which go to `postgresql.conf`.
pub fn split_cmdline(params: &Parameters) -> (Parameters, Parameters) {
    let mut cmdline = Parameters::new();
    for (name, default) in CMDLINE_GUCS {
        let mut value = params.get(name).unwrap_or(default).to_owned();
        if name == "wal_level" && value == "hot_standby" {
            value = "replica".to_owned();
        }
        cmdline.set(name, value);
    }
    let rest = params
        .iter()
        .filter(|(k, _)| !is_cmdline_guc(k) && !RECOVERY_OWNED.contains(k))
        .collect();
    (cmdline, rest)
}

/// The command-line GUCs a replica cannot run below the primary's values, with their
/// pg_controldata names.
pub const CONTROL_MINIMUMS: [(&str, &str); 5] = [
    ("max_connections", "max_connections setting"),
    ("max_worker_processes", "max_worker_processes setting"),
    ("max_wal_senders", "max_wal_senders setting"),
    ("max_prepared_transactions", "max_prepared_xacts setting"),
    ("max_locks_per_transaction", "max_locks_per_xact setting"),
];

/// Raises command-line GUCs to the values recorded in pg_control where those are higher (a
/// replica refuses to start below the primary's values). Returns the names raised; Patroni then
/// reports a pending restart for them.
pub fn raise_to_control(
    cmdline: &mut Parameters,
    control: &crate::misc::ControlData,
) -> Vec<String> {
    let mut raised = Vec::new();
    for (guc, field) in CONTROL_MINIMUMS {
        let recorded: Option<u64> = control.get(field).and_then(|v| v.parse().ok());
        let wanted: Option<u64> = cmdline.get(guc).and_then(|v| v.parse().ok());
        if let (Some(recorded), Some(wanted)) = (recorded, wanted)
            && recorded > wanted
        {
            cmdline.set(guc, recorded.to_string());
            raised.push(guc.to_owned());
        }
    }
    raised
}

/// Recovery settings for a replica (PostgreSQL 12+: `standby.signal` plus parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// `primary_conninfo`; `None` for a standby with no upstream.
    pub primary_conninfo: Option<String>,
    /// `primary_slot_name`.
    pub primary_slot_name: Option<String>,
    /// Other recovery parameters, e.g. `restore_command`, `archive_cleanup_command`.
    pub extra: Parameters,
    /// Targeted archive recovery (a point-in-time restore) instead of a standby:
    /// `recovery.signal`, and the recovery targets in `extra` are kept.
    pub archive_recovery: bool,
}

/// The first lines of every file Keel writes.
pub const HEADER: &str = "# Do not edit this file manually!\n# It will be overwritten by Keel!\n";

/// Quotes a value for postgresql.conf: wrapped in `'`, with `'` and `\` backslash-escaped.
pub fn quote_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The value of `name` in a `postgresql.conf` Keel rendered (`name = 'value'`,
/// backslash escapes undone); `None` when absent or not in that form.
pub fn written_parameter(conf: &str, name: &str) -> Option<String> {
    conf.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let inner = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next()? } else { c });
        }
        Some(out)
    })
}

/// Renders our `postgresql.conf`: include of the base file, sorted parameters, then recovery.
pub fn render_postgresql_conf(
    base_conf: &str,
    params: &Parameters,
    recovery: Option<&RecoveryConfig>,
) -> String {
    let mut out = String::new();
    out.push_str(HEADER);
    let _ = writeln!(out, "include {}\n", quote_value(base_conf));
    for (name, value) in params.iter() {
        let _ = writeln!(out, "{name} = {}", quote_value(value));
    }
    if let Some(rec) = recovery.filter(|r| r.archive_recovery) {
        out.push_str("\n# recovery (point-in-time)\n");
        for (name, value) in rec.extra.iter() {
            let _ = writeln!(out, "{name} = {}", quote_value(value));
        }
    } else if let Some(rec) = recovery {
        out.push_str("\n# recovery.conf\n");
        if let Some(ci) = &rec.primary_conninfo {
            let _ = writeln!(out, "primary_conninfo = {}", quote_value(ci));
        }
        if let Some(slot) = &rec.primary_slot_name {
            let _ = writeln!(out, "primary_slot_name = {}", quote_value(slot));
        }
        for target in &RECOVERY_OWNED[2..7] {
            let _ = writeln!(out, "{target} = ''");
        }
        out.push_str("recovery_target_timeline = 'latest'\n");
        for (name, value) in rec.extra.iter() {
            if !RECOVERY_OWNED.contains(&name) {
                let _ = writeln!(out, "{name} = {}", quote_value(value));
            }
        }
    }
    out
}

/// Renders `pg_hba.conf` from configured lines.
pub fn render_pg_hba(lines: &[String]) -> String {
    let mut out = String::from(HEADER);
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// How a parameter change takes effect, from `pg_settings.context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// A reload (SIGHUP) is enough.
    Reload,
    /// Only a restart applies it (`postmaster` context, or a command-line GUC).
    Restart,
    /// It cannot be changed at all (`internal` context).
    Never,
}

/// Decides how a change to `name` applies, given its `pg_settings.context`.
pub fn apply_kind(name: &str, context: &str) -> Apply {
    if is_cmdline_guc(name) {
        return Apply::Restart;
    }
    match context {
        "postmaster" => Apply::Restart,
        "internal" => Apply::Never,
        _ => Apply::Reload,
    }
}

/// Normalises a GUC value for comparison: booleans to `on`/`off`, surrounding quotes and case of
/// enum-like words ignored.
pub fn normalize_value(value: &str) -> String {
    let v = value.trim().trim_matches('\'').to_ascii_lowercase();
    match v.as_str() {
        "true" | "yes" | "1" | "on" => "on".to_owned(),
        "false" | "no" | "0" | "off" => "off".to_owned(),
        _ => v,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_written_value_is_read_back_as_it_was_set() {
        let mut params = Parameters::new();
        params.set("synchronous_standby_names", "ANY 1 (\"pg-1\",pg2)");
        params.set("archive_command", "cp '%p' /x\\y");
        let conf = render_postgresql_conf("base.conf", &params, None);
        assert_eq!(
            written_parameter(&conf, "synchronous_standby_names").as_deref(),
            Some("ANY 1 (\"pg-1\",pg2)")
        );
        assert_eq!(
            written_parameter(&conf, "archive_command").as_deref(),
            Some("cp '%p' /x\\y")
        );
        assert_eq!(written_parameter(&conf, "max_connections"), None);
    }

    use super::*;

    #[test]
    fn names_are_case_insensitive() {
        let mut p = Parameters::new();
        p.set("Shared_Buffers", "128MB");
        assert_eq!(p.get("shared_buffers"), Some("128MB"));
        p.set("SHARED_BUFFERS", "256MB");
        assert_eq!(p.iter().count(), 1);
        assert_eq!(p.remove("shared_buffers").as_deref(), Some("256MB"));
    }

    #[test]
    fn cmdline_split_fills_defaults() {
        let p: Parameters = [
            ("max_connections", "200"),
            ("wal_level", "hot_standby"),
            ("work_mem", "4MB"),
            ("primary_conninfo", "x"),
        ]
        .into_iter()
        .collect();
        let (cmd, rest) = split_cmdline(&p);
        assert_eq!(cmd.get("max_connections"), Some("200"));
        assert_eq!(cmd.get("wal_level"), Some("replica"));
        assert_eq!(cmd.get("max_wal_senders"), Some("10"));
        assert_eq!(cmd.get("wal_log_hints"), Some("on"));
        assert_eq!(rest.iter().collect::<Vec<_>>(), vec![("work_mem", "4MB")]);
    }

    #[test]
    fn renders_conf_with_recovery() {
        let p: Parameters = [("work_mem", "4MB"), ("a_param", "it's")]
            .into_iter()
            .collect();
        let rec = RecoveryConfig {
            primary_conninfo: Some("host=h port=1".to_owned()),
            primary_slot_name: Some("n2".to_owned()),
            extra: [("restore_command", "cp %f %p")].into_iter().collect(),
            archive_recovery: false,
        };
        let text = render_postgresql_conf("postgresql.base.conf", &p, Some(&rec));
        let expected = "# Do not edit this file manually!\n# It will be overwritten by Keel!\n\
            include 'postgresql.base.conf'\n\n\
            a_param = 'it\\'s'\nwork_mem = '4MB'\n\n# recovery.conf\n\
            primary_conninfo = 'host=h port=1'\nprimary_slot_name = 'n2'\n\
            recovery_target = ''\nrecovery_target_name = ''\nrecovery_target_time = ''\n\
            recovery_target_xid = ''\nrecovery_target_lsn = ''\n\
            recovery_target_timeline = 'latest'\nrestore_command = 'cp %f %p'\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn replica_values_raised_to_pg_control() {
        let cd = crate::misc::ControlData::parse(
            "max_connections setting:              150\nmax_wal_senders setting:              5\n",
        );
        let (mut cmd, _) = split_cmdline(&Parameters::new());
        assert_eq!(raise_to_control(&mut cmd, &cd), vec!["max_connections"]);
        assert_eq!(cmd.get("max_connections"), Some("150"));
        assert_eq!(cmd.get("max_wal_senders"), Some("10"));
    }

    #[test]
    fn apply_kinds() {
        assert_eq!(apply_kind("shared_buffers", "postmaster"), Apply::Restart);
        assert_eq!(apply_kind("work_mem", "user"), Apply::Reload);
        assert_eq!(apply_kind("MAX_CONNECTIONS", "postmaster"), Apply::Restart);
        assert_eq!(apply_kind("block_size", "internal"), Apply::Never);
        assert_eq!(normalize_value("True"), "on");
        assert_eq!(normalize_value("'replica'"), "replica");
    }
}

mod files {
    //! Putting the rendered configuration on disk.

    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    use super::{HEADER, render_pg_hba, render_postgresql_conf, split_cmdline};
    use crate::Postgres;
    use crate::connection::Upstream;
    use crate::error::{Result, io_err};

    /// Recovery parameters that must not survive in `postgresql.auto.conf`.
    const AUTO_CONF_STRIP: [&str; 4] = [
        "primary_conninfo",
        "primary_slot_name",
        "restore_command",
        "recovery_target",
    ];

    /// Writes `contents` to `path` through a temporary file and a rename, with `mode`.
    pub(crate) fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<()> {
        let tmp = path.with_extension("keel-tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }

    impl Postgres {
        /// Writes `postgresql.conf` (keeping initdb's as `postgresql.base.conf`), the recovery
        /// signal file, `pg_hba.conf` when configured, and strips recovery parameters from
        /// `postgresql.auto.conf`.
        pub fn write_config(&self) -> Result<()> {
            let data = self.data_dir();
            let conf = data.join("postgresql.conf");
            let base = data.join("postgresql.base.conf");
            let backup = data.join("postgresql.base.conf.backup");
            if !base.exists() {
                let ours = std::fs::read_to_string(&conf).is_ok_and(|t| t.starts_with(HEADER));
                if backup.exists() {
                    // A clone (e.g. a restored backup) came without it: use Keel's copy.
                    std::fs::copy(&backup, &base).map_err(io_err(&backup))?;
                } else if conf.exists() && !ours {
                    std::fs::rename(&conf, &base).map_err(io_err(&conf))?;
                } else {
                    // Never rename our own file: it would include itself.
                    write_atomic(&base, "", 0o600)?;
                }
            }
            if !backup.exists() {
                std::fs::copy(&base, &backup).map_err(io_err(&base))?;
            }
            let (_, file_params) = split_cmdline(&self.effective_parameters());
            let recovery = self.recovery();
            let text =
                render_postgresql_conf("postgresql.base.conf", &file_params, recovery.as_ref());
            write_atomic(&conf, &text, 0o600)?;
            let (standby, targeted) = (data.join("standby.signal"), data.join("recovery.signal"));
            let (wanted, other) = match &recovery {
                Some(r) if r.archive_recovery => (Some(&targeted), &standby),
                Some(_) => (Some(&standby), &targeted),
                None => (None, &standby),
            };
            if let Some(signal) = wanted
                && !signal.exists()
            {
                write_atomic(signal, "", 0o600)?;
            }
            remove_if_exists(other)?;
            if recovery.is_none() {
                remove_if_exists(&targeted)?;
            }
            if !self.settings.pg_hba.is_empty() {
                write_atomic(
                    &data.join("pg_hba.conf"),
                    &render_pg_hba(&self.settings.pg_hba),
                    0o600,
                )?;
            }
            self.strip_auto_conf()
        }

        /// Writes the pgpass file with the replication and rewind credentials for `upstream`.
        pub fn write_pgpass(&self, upstream: &Upstream) -> Result<()> {
            let s = &self.settings;
            let rewind = s.rewind.as_ref().unwrap_or(&s.superuser);
            let mut text = String::new();
            for creds in [&s.replication, rewind] {
                if let Some(line) = upstream.pgpass_line(creds) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            write_atomic(&s.pgpass, &text, 0o600)
        }

        fn strip_auto_conf(&self) -> Result<()> {
            let path = self.data_dir().join("postgresql.auto.conf");
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Ok(());
            };
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| {
                    let name = l
                        .split('=')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    !AUTO_CONF_STRIP.contains(&name.as_str())
                })
                .collect();
            if kept.len() != text.lines().count() {
                write_atomic(&path, &(kept.join("\n") + "\n"), 0o600)?;
            }
            Ok(())
        }
    }

    pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
            _ => Ok(()),
        }
    }
}

pub(crate) use files::{remove_if_exists, write_atomic};
