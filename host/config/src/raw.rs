//! Stage one: the syntax of patroni.yml as serde structs, with nothing decided yet.
//!
//! Every scalar uses a lenient wrapper from [`crate::lenient`] so that anything Patroni
//! accepts deserializes. Required keys are `Option` here and checked in stage two, which
//! reports them with their full path. Each struct keeps the keys it does not know in `extra`,
//! so stage two can turn them into warnings (or, for `tags` and `bootstrap`, into custom tags
//! and custom method sections). Nothing here is public: callers only ever see `Settings`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::lenient::{Bytes, Flag, Int, List, Secs, Text};

/// Unknown keys of a section, kept for warnings or pass-through.
pub(crate) type Extra = BTreeMap<String, Value>;

/// The whole file, after directory merge and environment overlay.
#[derive(Debug, Deserialize)]
pub(crate) struct RawConfig {
    pub(crate) name: Option<Text>,
    pub(crate) scope: Option<Text>,
    pub(crate) namespace: Option<Text>,
    pub(crate) log: Option<RawLog>,
    pub(crate) restapi: Option<RawRestApi>,
    pub(crate) ctl: Option<RawCtl>,
    pub(crate) bootstrap: Option<RawBootstrap>,
    pub(crate) postgresql: Option<RawPostgresql>,
    pub(crate) watchdog: Option<RawWatchdog>,
    pub(crate) tags: Option<BTreeMap<String, Value>>,
    pub(crate) plugins: Option<RawPlugins>,
    pub(crate) thread_pool_size: Option<Int>,
    pub(crate) thread_stack_size: Option<Bytes>,
    /// Plugin sections, and top-level keys that are ignored with a warning.
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `log`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLog {
    #[serde(rename = "type")]
    pub(crate) kind: Option<Text>,
    pub(crate) level: Option<Text>,
    pub(crate) traceback_level: Option<Text>,
    pub(crate) format: Option<Value>,
    pub(crate) dateformat: Option<Text>,
    pub(crate) static_fields: Option<BTreeMap<String, Text>>,
    pub(crate) max_queue_size: Option<Int>,
    pub(crate) dir: Option<Text>,
    pub(crate) file_num: Option<Int>,
    pub(crate) file_size: Option<Bytes>,
    pub(crate) mode: Option<Int>,
    pub(crate) loggers: Option<BTreeMap<String, Text>>,
    pub(crate) deduplicate_heartbeat_logs: Option<Flag>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `username` / `password` pairs of `restapi.authentication` and `ctl.authentication`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawCredentials {
    pub(crate) username: Option<Text>,
    pub(crate) password: Option<Text>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `restapi`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRestApi {
    pub(crate) listen: Option<Text>,
    pub(crate) connect_address: Option<Text>,
    pub(crate) authentication: Option<RawCredentials>,
    pub(crate) certfile: Option<Text>,
    pub(crate) keyfile: Option<Text>,
    pub(crate) keyfile_password: Option<Text>,
    pub(crate) cafile: Option<Text>,
    pub(crate) ciphers: Option<Text>,
    pub(crate) verify_client: Option<Text>,
    pub(crate) allowlist: Option<List>,
    pub(crate) allowlist_include_members: Option<Flag>,
    pub(crate) http_extra_headers: Option<BTreeMap<String, Text>>,
    pub(crate) https_extra_headers: Option<BTreeMap<String, Text>>,
    pub(crate) request_queue_size: Option<Int>,
    pub(crate) server_tokens: Option<Text>,
    pub(crate) thread_pool_size: Option<Int>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `ctl`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCtl {
    pub(crate) insecure: Option<Flag>,
    pub(crate) cacert: Option<Text>,
    pub(crate) certfile: Option<Text>,
    pub(crate) keyfile: Option<Text>,
    pub(crate) keyfile_password: Option<Text>,
    pub(crate) authentication: Option<RawCredentials>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `bootstrap`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawBootstrap {
    pub(crate) dcs: Option<Value>,
    pub(crate) method: Option<Text>,
    pub(crate) initdb: Option<Vec<Value>>,
    pub(crate) post_bootstrap: Option<Text>,
    pub(crate) post_init: Option<Text>,
    pub(crate) users: Option<Value>,
    pub(crate) pg_hba: Option<Vec<Text>>,
    /// Custom bootstrap method sections, and unknown keys.
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `postgresql.authentication`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPgAuth {
    pub(crate) superuser: Option<BTreeMap<String, Text>>,
    pub(crate) replication: Option<BTreeMap<String, Text>>,
    pub(crate) rewind: Option<BTreeMap<String, Text>>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `postgresql`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPostgresql {
    pub(crate) listen: Option<Text>,
    pub(crate) connect_address: Option<Text>,
    pub(crate) proxy_address: Option<Text>,
    pub(crate) data_dir: Option<Text>,
    pub(crate) config_dir: Option<Text>,
    pub(crate) bin_dir: Option<Text>,
    pub(crate) bin_name: Option<BTreeMap<String, Text>>,
    pub(crate) pgpass: Option<Text>,
    pub(crate) database: Option<Text>,
    pub(crate) authentication: Option<RawPgAuth>,
    pub(crate) parameters: Option<serde_json::Map<String, Value>>,
    pub(crate) pg_hba: Option<Vec<Text>>,
    pub(crate) pg_ident: Option<Vec<Text>>,
    pub(crate) pg_ctl_timeout: Option<Secs>,
    pub(crate) use_pg_rewind: Option<Flag>,
    pub(crate) use_unix_socket: Option<Flag>,
    pub(crate) use_unix_socket_repl: Option<Flag>,
    pub(crate) use_slots: Option<Value>,
    pub(crate) callbacks: Option<BTreeMap<String, Text>>,
    pub(crate) create_replica_methods: Option<List>,
    pub(crate) recovery_conf: Option<serde_json::Map<String, Value>>,
    pub(crate) custom_conf: Option<Text>,
    pub(crate) remove_data_directory_on_rewind_failure: Option<Flag>,
    pub(crate) remove_data_directory_on_diverged_timelines: Option<Flag>,
    pub(crate) pre_promote: Option<Text>,
    pub(crate) before_stop: Option<Text>,
    pub(crate) krbsrvname: Option<Text>,
    /// Replica method sections (`basebackup`, …) and unknown keys.
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `watchdog`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWatchdog {
    pub(crate) mode: Option<Value>,
    pub(crate) device: Option<Text>,
    pub(crate) safety_margin: Option<Int>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `plugins.limits` and each `plugins.overrides.<name>`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLimits {
    pub(crate) memory_mb: Option<Int>,
    pub(crate) call_timeout_ms: Option<Int>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// `plugins` (Keel's own section).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPlugins {
    pub(crate) dir: Option<Text>,
    pub(crate) cache_dir: Option<Text>,
    pub(crate) limits: Option<RawLimits>,
    pub(crate) overrides: Option<BTreeMap<String, RawLimits>>,
    #[serde(flatten)]
    pub(crate) extra: Extra,
}

/// Deserializes the merged tree, turning a serde failure into an error that names its path.
pub(crate) fn parse(tree: Value) -> Result<RawConfig, crate::ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(crate::ConfigError::from_serde)
}
