//! A minimal MPP handler for Keel: it puts `pg_stat_statements` into
//! `shared_preload_libraries` on every member, creates the extension when a
//! primary is bootstrapped, and tells Keel to leave alone the logical slots an
//! external change-data-capture tool manages (by name prefix).
//!
//! Its config section, `minimal-mpp: {group: 0, slot_prefix: cdc_, database: postgres}`,
//! arrives as JSON. Like any MPP plugin it makes the cluster a formation: this
//! member's keys live under `/<namespace>/<scope>/<group>/` in the DCS. It has no
//! metadata to keep in step across groups, so events and the per-cycle sync do
//! nothing; a real handler (plugins/citus) does its work there.

use keel_sdk::PluginInfo;
use keel_sdk::host::{log, postgres::Connection};
use keel_sdk::mpp::{BootstrapContext, Event, GroupView, MppError, MppPlugin, Parameter, Slot};

/// The library this handler preloads.
const LIBRARY: &str = "pg_stat_statements";

/// The handler's settings, from its config section.
pub struct MinimalMpp {
    group: u32,
    slot_prefix: String,
    database: String,
}

/// Read `key` of the section: absent is `None`, the wrong type an error naming the key.
fn field<T>(
    section: &serde_json::Value,
    key: &str,
    read: fn(&serde_json::Value) -> Option<T>,
) -> Result<Option<T>, MppError> {
    match section.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => read(value).map(Some).ok_or_else(|| {
            MppError::InvalidConfig(format!("minimal-mpp.{key}: unexpected value {value}"))
        }),
    }
}

fn text(value: &serde_json::Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

impl MppPlugin for MinimalMpp {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "minimal-mpp",
            env!("CARGO_PKG_VERSION"),
            "example: preloads pg_stat_statements and keeps CDC slots",
        )
    }

    fn validate_config(config: String) -> Result<Self, MppError> {
        let section: serde_json::Value = serde_json::from_str(&config)
            .map_err(|e| MppError::InvalidConfig(format!("minimal-mpp: not JSON: {e}")))?;
        let group =
            field(&section, "group", |v| v.as_u64()?.try_into().ok())?.ok_or_else(|| {
                MppError::InvalidConfig("minimal-mpp.group: required, an integer >= 0".into())
            })?;
        Ok(Self {
            group,
            slot_prefix: field(&section, "slot_prefix", text)?.unwrap_or_else(|| "cdc_".into()),
            database: field(&section, "database", text)?.unwrap_or_else(|| "postgres".into()),
        })
    }

    fn group(&self) -> u32 {
        self.group
    }

    /// Append the library to `shared_preload_libraries` unless it is there already
    /// (so applying the answer again changes nothing, as the contract asks).
    fn adjust_gucs(&mut self, parameters: Vec<Parameter>) -> Vec<Parameter> {
        let current = parameters
            .iter()
            .find(|p| p.name == "shared_preload_libraries")
            .map_or("", |p| p.value.as_str());
        let mut libraries: Vec<&str> =
            current.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
        if libraries.contains(&LIBRARY) {
            return Vec::new();
        }
        libraries.push(LIBRARY);
        vec![Parameter { name: "shared_preload_libraries".into(), value: libraries.join(",") }]
    }

    fn ignore_replication_slot(&self, slot: Slot) -> bool {
        slot.slot_type == "logical" && slot.name.starts_with(&self.slot_prefix)
    }

    fn bootstrap(&mut self, context: BootstrapContext) -> Result<(), MppError> {
        log::info(&format!(
            "creating {LIBRARY} in {} on {}:{}",
            self.database, context.host, context.port
        ));
        let failed = |e: keel_sdk::host::postgres::SqlError| MppError::Failed(e.to_string());
        let conn = Connection::open(&self.database).map_err(failed)?;
        conn.batch(&format!("CREATE EXTENSION IF NOT EXISTS {LIBRARY}")).map_err(failed)
    }

    fn handle_event(&mut self, _event: Event) -> Result<(), MppError> {
        Ok(())
    }

    fn sync_meta_data(&mut self, _formation: Vec<GroupView>) -> Result<(), MppError> {
        Ok(())
    }
}

keel_sdk::export_mpp_plugin!(MinimalMpp);

#[cfg(test)]
mod tests {
    use super::*;
    use keel_sdk::testing::{FakeHost, SqlAnswer};

    fn handler(section: &str) -> MinimalMpp {
        MinimalMpp::validate_config(section.into()).unwrap()
    }

    #[test]
    fn the_library_is_appended_once() {
        let mut h = handler(r#"{"group": 1}"#);
        let given = vec![Parameter {
            name: "shared_preload_libraries".into(),
            value: "auto_explain".into(),
        }];
        let adjusted = h.adjust_gucs(given);
        assert_eq!(adjusted[0].value, "auto_explain,pg_stat_statements");
        assert_eq!(h.adjust_gucs(adjusted), Vec::new(), "idempotent");
    }

    #[test]
    fn a_wrong_section_names_the_key() {
        for (section, key) in [
            (r#"{}"#, "group"),
            (r#"{"group": -1}"#, "group"),
            (r#"{"group": 0, "slot_prefix": 7}"#, "slot_prefix"),
        ] {
            match MinimalMpp::validate_config(section.into()) {
                Err(MppError::InvalidConfig(m)) => {
                    assert!(m.starts_with(&format!("minimal-mpp.{key}")), "{m}")
                }
                other => panic!("{section}: {:?}", other.map(|h| h.group)),
            }
        }
    }

    #[test]
    fn bootstrap_creates_the_extension_in_the_configured_database() {
        let host = FakeHost::install();
        host.sql().answer("CREATE EXTENSION", SqlAnswer::empty());
        let mut h = handler(r#"{"group": 0, "database": "app"}"#);
        let context = BootstrapContext {
            host: "127.0.0.1".into(),
            port: 5432,
            default_database: "postgres".into(),
            superuser_conninfo: Vec::new(),
        };
        h.bootstrap(context).unwrap();
        let ran = host.sql().statements();
        assert_eq!(ran.len(), 1);
        assert_eq!(
            (ran[0].database.as_str(), ran[0].sql.as_str()),
            ("app", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        );
    }
}
