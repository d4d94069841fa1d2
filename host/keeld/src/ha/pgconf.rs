//! From the `postgresql` and `bootstrap` configuration (local merged with the
//! DCS `config`) to what keel-postgres needs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_config::{ConnectionAuth, DynamicConfig, Settings};
use keel_postgres::{
    BootstrapMethod, Credentials, InitdbOption, Parameters, RemoteSource, ReplicaMethod, Upstream,
};
use serde_json::Value;

fn credentials(auth: &ConnectionAuth) -> Credentials {
    match &auth.password {
        Some(pw) => Credentials::with_password(auth.username.clone(), pw.clone()),
        None => Credentials::new(auth.username.clone()),
    }
    .with_options(auth.options.clone())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `unix_socket_directories`' first entry, else the data directory's parent.
fn socket_dir(parameters: &std::collections::BTreeMap<String, String>, data_dir: &Path) -> PathBuf {
    parameters
        .get("unix_socket_directories")
        .and_then(|v| v.split(',').map(str::trim).find(|d| !d.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.parent().unwrap_or(data_dir).to_owned())
}

/// Options of a method section (`basebackup: [a, {k: v}]` or `{k: v}`).
fn options_of(section: Option<&Value>) -> Vec<InitdbOption> {
    match section {
        Some(Value::Array(items)) => items
            .iter()
            .flat_map(|item| match item {
                Value::String(flag) => vec![InitdbOption::Flag(flag.clone())],
                Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| InitdbOption::Value(k.clone(), value_text(v)))
                    .collect(),
                _ => Vec::new(),
            })
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| InitdbOption::Value(k.clone(), value_text(v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn replica_method(name: &str, section: Option<&Value>) -> anyhow::Result<ReplicaMethod> {
    if name == "basebackup" {
        return Ok(ReplicaMethod::Basebackup);
    }
    let map = section.and_then(Value::as_object).with_context(|| {
        format!("postgresql.create_replica_methods: `{name}` has no `postgresql.{name}` section")
    })?;
    let command = map
        .get("command")
        .and_then(Value::as_str)
        .with_context(|| format!("postgresql.{name}.command: required for a replica method"))?;
    let flag = |k: &str| map.get(k).is_some_and(|v| v.as_bool() == Some(true));
    let reserved = [
        "command",
        "no_params",
        "keep_data",
        "no_leader",
        "no_master",
    ];
    Ok(ReplicaMethod::Command {
        name: name.to_owned(),
        command: command.to_owned(),
        options: map
            .iter()
            .filter(|(k, _)| !reserved.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
        no_params: flag("no_params"),
        keep_data: flag("keep_data"),
        no_leader: flag("no_leader") || flag("no_master"),
    })
}

/// keel-postgres settings for this member under `dynamic`.
pub(crate) fn postgres_settings(
    settings: &Settings,
    dynamic: &DynamicConfig,
) -> anyhow::Result<keel_postgres::Settings> {
    let local = &settings.postgresql;
    let effective = settings.effective_postgresql(dynamic);
    let data_dir = local.data_dir.clone();
    let mut pg = keel_postgres::Settings::new(
        settings.name.clone(),
        data_dir.clone(),
        socket_dir(&effective.parameters, &data_dir),
        local.listen.port,
    );
    pg.scope = settings.scope.clone();
    pg.listen_addresses = local.listen.listen_addresses();
    pg.superuser = credentials(&local.authentication.superuser);
    pg.replication = credentials(&local.authentication.replication);
    pg.rewind = local.authentication.rewind.as_ref().map(credentials);
    let mut parameters = Parameters::new();
    for (k, v) in &effective.parameters {
        parameters.set(k, v.clone());
    }
    pg.parameters = parameters;
    pg.pg_hba = effective
        .pg_hba
        .clone()
        .or_else(|| settings.bootstrap.pg_hba.clone())
        .unwrap_or_default();
    if let Some(pgpass) = &local.pgpass {
        pg.pgpass = pgpass.clone();
    }
    pg.use_slots = effective.use_slots;
    pg.use_pg_rewind = effective.use_pg_rewind;
    pg.remove_data_directory_on_rewind_failure = local.remove_data_directory_on_rewind_failure;
    pg.remove_data_directory_on_diverged_timelines =
        local.remove_data_directory_on_diverged_timelines;
    let mut recovery = Parameters::new();
    for (k, v) in effective.recovery_conf.iter().flatten() {
        recovery.set(k, value_text(v));
    }
    pg.recovery_conf = recovery;
    pg.create_replica_methods = effective
        .create_replica_methods
        .iter()
        .map(|name| replica_method(name, effective.replica_method_sections.get(name)))
        .collect::<anyhow::Result<_>>()?;
    pg.basebackup = options_of(effective.replica_method_sections.get("basebackup"));
    pg.timeouts.start = effective.pg_ctl_timeout;
    pg.before_stop = local.before_stop.clone();
    Ok(pg)
}

/// How this member bootstraps a new cluster.
pub(crate) fn bootstrap_method(settings: &Settings) -> anyhow::Result<BootstrapMethod> {
    let boot = &settings.bootstrap;
    if boot.method == "initdb" {
        return Ok(BootstrapMethod::Initdb(
            boot.initdb
                .iter()
                .map(|o| match o {
                    keel_config::InitdbOption::Flag(f) => InitdbOption::Flag(f.clone()),
                    keel_config::InitdbOption::Value(k, v) => {
                        InitdbOption::Value(k.clone(), v.clone())
                    }
                })
                .collect(),
        ));
    }
    let custom = boot.custom_methods.get(&boot.method).with_context(|| {
        format!(
            "bootstrap.method: `{}` has no `bootstrap.{}` section",
            boot.method, boot.method
        )
    })?;
    // Keel writes the recovery settings itself (and strips what a restore tool put in
    // postgresql.auto.conf), so it cannot keep the command's own.
    anyhow::ensure!(
        !custom.keep_existing_recovery_conf,
        "bootstrap.{}.keep_existing_recovery_conf: not supported by Keel; give the recovery \
         settings in bootstrap.{}.recovery_conf",
        boot.method,
        boot.method
    );
    let recovery_conf = custom.recovery_conf.as_ref().map(|map| {
        let mut params = Parameters::new();
        for (k, v) in map {
            params.set(k, value_text(v));
        }
        params
    });
    Ok(BootstrapMethod::Custom {
        command: custom.command.clone(),
        options: custom
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
        no_params: custom.no_params,
        recovery_conf,
    })
}

/// The PostgreSQL programs: `postgresql.bin_dir`, else the directory of
/// `pg_ctl` on PATH, else the newest `/usr/lib/postgresql/*/bin`.
pub(crate) fn bin_dir(settings: &Settings) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &settings.postgresql.bin_dir {
        return Ok(dir.clone());
    }
    // A directory counts only with every program Keel runs (a lone pg_ctl
    // wrapper on PATH, as some distributions install, does not).
    let complete = |dir: &Path| {
        [
            "postgres",
            "pg_ctl",
            "initdb",
            "pg_controldata",
            "pg_basebackup",
            "pg_rewind",
        ]
        .iter()
        .all(|p| dir.join(p).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if complete(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "postgresql.bin_dir: not set and no pg_ctl found on PATH or under /usr/lib/postgresql",
    )
}

/// The source of this standby cluster (`standby_cluster` in the dynamic
/// configuration) as an upstream: its host and port, its slot and recovery
/// settings, and the replica methods to clone it with.
pub(crate) fn remote_source(
    settings: &Settings,
    dynamic: &DynamicConfig,
) -> anyhow::Result<Upstream> {
    let source = dynamic
        .standby_cluster
        .as_ref()
        .filter(|s| s.is_configured())
        .context("standby_cluster: not set in the dynamic configuration")?;
    let mut recovery = Parameters::new();
    let settings_of = [
        ("restore_command", &source.restore_command),
        ("archive_cleanup_command", &source.archive_cleanup_command),
        ("recovery_min_apply_delay", &source.recovery_min_apply_delay),
    ];
    for (name, value) in settings_of {
        if let Some(value) = value {
            recovery.set(name, value.clone());
        }
    }
    let effective = settings.effective_postgresql(dynamic);
    let methods = (!source.create_replica_methods.is_empty())
        .then(|| {
            source
                .create_replica_methods
                .iter()
                .map(|name| replica_method(name, effective.replica_method_sections.get(name)))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .transpose()
        .context("standby_cluster.create_replica_methods")?;
    let remote = RemoteSource {
        primary_slot_name: source.primary_slot_name.clone(),
        recovery,
        create_replica_methods: methods,
    };
    // Patroni also runs a standby cluster from restore_command alone; Keel
    // needs a server to stream from (and to clone the standby leader from).
    let host = source.host.clone().context(
        "standby_cluster.host: required (a standby cluster fed by restore_command alone is \
         not supported yet)",
    )?;
    let mut upstream = Upstream::new(host, source.port.unwrap_or(5432));
    upstream.remote = Some(remote);
    Ok(upstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(bootstrap: &str) -> Settings {
        let yaml = format!(
            "scope: s\nname: m1\n\
             restapi: {{listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}}\n\
             etcd3: {{hosts: 127.0.0.1:2379}}\n\
             postgresql: {{listen: 127.0.0.1:5432, connect_address: 127.0.0.1:5432, \
             data_dir: /tmp/none, authentication: {{superuser: {{username: postgres}}, \
             replication: {{username: rep}}}}}}\n\
             bootstrap:\n{bootstrap}"
        );
        Settings::from_yaml_str(&yaml, &keel_config::Env::empty()).unwrap()
    }

    #[test]
    fn a_custom_bootstrap_carries_its_recovery_settings() {
        let s = settings(
            "  method: pitr\n  pitr:\n    command: restore-backup\n    recovery_conf:\n      \
             restore_command: cp /a/%f %p\n      recovery_target_time: '2026-11-23 12:00:00'\n",
        );
        let BootstrapMethod::Custom {
            recovery_conf,
            command,
            ..
        } = bootstrap_method(&s).unwrap()
        else {
            panic!("not a custom method");
        };
        assert_eq!(command, "restore-backup");
        let recovery_conf = recovery_conf.expect("recovery_conf");
        assert_eq!(recovery_conf.get("restore_command"), Some("cp /a/%f %p"));
        assert_eq!(
            recovery_conf.get("recovery_target_time"),
            Some("2026-11-23 12:00:00")
        );
    }

    #[test]
    fn keep_existing_recovery_conf_is_refused_naming_the_key() {
        let s = settings(
            "  method: pitr\n  pitr:\n    command: restore-backup\n    \
             keep_existing_recovery_conf: true\n",
        );
        let error = bootstrap_method(&s).unwrap_err().to_string();
        assert!(
            error.contains("bootstrap.pitr.keep_existing_recovery_conf"),
            "{error}"
        );
    }
}
