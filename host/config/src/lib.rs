//! Keel's configuration: Patroni's `patroni.yml` (and Keel's additions) read the way Patroni
//! reads it, plus the dynamic configuration stored in the DCS.
//!
//! Keel must start from an unchanged Patroni configuration, so this crate accepts everything
//! Patroni accepts (lenient booleans, numbers as strings, units, `PATRONI_*` variables) and
//! reports everything it refuses with the key path at fault. It works in two stages, as
//! ripgrep does: raw serde structs that only describe the syntax, then a validated,
//! typed [`Settings`]. Sections Keel does not know are *plugin sections*, handed to the
//! WASM plugins as JSON. The dynamic configuration ([`DynamicConfig`]) is read leniently and
//! never fails, because other members write it.
//!
//! This crate performs no I/O beyond reading configuration files and never reads the process
//! environment itself: pass an [`Env`].
//!
//! ```
//! use keel_config::{Env, Settings};
//!
//! let yaml = "
//! name: pg1
//! scope: demo
//! restapi: {listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}
//! etcd3: {hosts: 127.0.0.1:2379}
//! postgresql:
//!   listen: 127.0.0.1:5432
//!   connect_address: 127.0.0.1:5432
//!   data_dir: /var/lib/pg
//!   authentication:
//!     superuser: {username: postgres}
//!     replication: {username: replicator}
//! ";
//! let env: Env = [("PATRONI_NAME", "pg9")].into_iter().collect();
//! let settings = Settings::from_yaml_str(yaml, &env).unwrap();
//! assert_eq!(settings.name, "pg9");
//! assert_eq!(settings.namespace, "/service/");
//! assert_eq!(settings.plugin_sections["etcd3"]["hosts"], "127.0.0.1:2379");
//! ```
#![deny(missing_docs)]

mod bootstrap;
mod check;
mod dynamic;
mod env;
mod error;
pub mod lenient;
mod load;
mod merge;
mod plugins;
mod postgresql;
mod raw;
mod sections;
mod settings;
mod standby;
mod tags;
mod timeouts;

pub use bootstrap::{BootstrapSettings, CustomBootstrap, FORBIDDEN_INITDB_OPTIONS, InitdbOption};
pub use dynamic::{DynamicConfig, SynchronousMode};
pub use env::{Env, KEEL_PREFIX, PATRONI_PREFIX};
pub use error::ConfigError;
pub use merge::{
    DynamicPostgresql, EffectivePostgresql, LOCAL_ONLY_POSTGRESQL_KEYS, is_command_line_guc,
    merge_postgresql,
};
pub use plugins::{
    DEFAULT_CALL_TIMEOUT_MS, DEFAULT_MEMORY_MB, LimitsOverride, PluginLimits, PluginsSettings,
};
pub use postgresql::{
    ConnectionAuth, PgAuthentication, PgListen, PostgresqlSettings, quote_conf_value,
    render_parameter,
};
pub use sections::{
    Credentials, CtlSettings, HostPort, LogLevel, LogSettings, RestApiSettings, VerifyClient,
    WatchdogMode, WatchdogSettings,
};
pub use settings::{CORE_KEYS, Settings, normalize_namespace};
pub use standby::{IgnoreSlot, PermanentSlot, StandbyCluster};
pub use tags::Tags;
pub use timeouts::{KEEL_DEFAULT_MIN_TTL, Timeouts, TtlFloor};
