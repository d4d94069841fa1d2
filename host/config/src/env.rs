//! Environment overrides: Patroni's `PATRONI_*` variables, and the same names with `KEEL_`.
//!
//! Patroni lets every important key be set from the environment (containers are configured
//! that way), so Keel must read the same names. The environment is an injected [`Env`] value,
//! never read behind the caller's back: production builds it from `std::env::vars()`, tests
//! from a map, so no test touches the process environment. The result of this module is a JSON
//! *overlay* that is patched on top of the file configuration before anything is typed, so an
//! overridden value is validated (and its errors are reported) exactly like a value from a file.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::load::yaml_str_to_json;

/// The environment variables Keel reads, injected rather than global.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

/// Keel's own prefix; a `KEEL_X` variable wins over `PATRONI_X`.
pub const KEEL_PREFIX: &str = "KEEL_";
/// Patroni's prefix.
pub const PATRONI_PREFIX: &str = "PATRONI_";

impl Env {
    /// The environment of this process.
    pub fn from_process() -> Self {
        std::env::vars().collect()
    }

    /// An empty environment (no overrides).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Looks up one variable by its full name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The whole YAML document from `KEEL_CONFIGURATION` or `PATRONI_CONFIGURATION`.
    pub fn configuration_document(&self) -> Option<&str> {
        self.setting("CONFIGURATION")
    }

    /// The value for a name without prefix: `KEEL_<name>` if set and non-empty, else
    /// `PATRONI_<name>` if set and non-empty.
    pub fn setting(&self, name: &str) -> Option<&str> {
        [KEEL_PREFIX, PATRONI_PREFIX]
            .iter()
            .filter_map(|prefix| self.get(&format!("{prefix}{name}")))
            .find(|v| !v.is_empty())
    }

    /// Every configuration variable, prefix stripped; `KEEL_` entries replace `PATRONI_` ones.
    fn settings(&self) -> BTreeMap<&str, &str> {
        let mut out = BTreeMap::new();
        for prefix in [PATRONI_PREFIX, KEEL_PREFIX] {
            for (name, value) in &self.vars {
                if let Some(rest) = name.strip_prefix(prefix)
                    && !value.is_empty()
                {
                    out.insert(rest, value.as_str());
                }
            }
        }
        out
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// How an environment string becomes a JSON value.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    List,
    Dict,
}

const TOP_LEVEL: &[&str] = &[
    "name",
    "namespace",
    "scope",
    "thread_pool_size",
    "thread_stack_size",
];
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "restapi",
        &[
            "listen",
            "connect_address",
            "certfile",
            "keyfile",
            "keyfile_password",
            "cafile",
            "ciphers",
            "verify_client",
            "http_extra_headers",
            "https_extra_headers",
            "allowlist",
            "allowlist_include_members",
            "request_queue_size",
            "server_tokens",
            "thread_pool_size",
        ],
    ),
    (
        "ctl",
        &[
            "insecure",
            "cacert",
            "certfile",
            "keyfile",
            "keyfile_password",
        ],
    ),
    (
        "postgresql",
        &[
            "listen",
            "connect_address",
            "proxy_address",
            "config_dir",
            "data_dir",
            "pgpass",
            "bin_dir",
        ],
    ),
    (
        "log",
        &[
            "type",
            "level",
            "traceback_level",
            "format",
            "dateformat",
            "static_fields",
            "max_queue_size",
            "dir",
            "mode",
            "file_size",
            "file_num",
            "loggers",
            "deduplicate_heartbeat_logs",
        ],
    ),
    ("plugins", &["dir", "cache_dir"]),
];
const BINARIES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];
/// Connection keys Patroni reads for `superuser`, `replication` and `rewind`.
pub(crate) const AUTH_KEYS: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];
/// Sections for DCS and MPP backends whose keys may be set generically.
pub(crate) const KNOWN_PLUGIN_SECTIONS: &[&str] = &[
    "etcd",
    "etcd3",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
    "citus",
];

fn kind_of(section: &str, key: &str) -> Kind {
    match (section, key) {
        ("restapi", "allowlist") => Kind::List,
        ("restapi", "http_extra_headers" | "https_extra_headers")
        | ("log", "static_fields" | "loggers") => Kind::Dict,
        ("raft", "partner_addrs") => Kind::List,
        (_, "hosts" | "ports" | "checks" | "service_tags" | "retriable_http_codes") => Kind::List,
        (_, "labels" | "set_acls" | "auth_data" | "bootstrap_labels") => Kind::Dict,
        _ => Kind::Text,
    }
}

/// Converts one variable's text; typed scalars (ints, bools) stay strings because every
/// consumer parses leniently, except a few plugin keys that Patroni types itself.
fn convert(section: &str, key: &str, text: &str) -> Result<Value, String> {
    let wrap = |open: &str, close: &str, looks: bool| {
        let doc = if looks {
            text.to_owned()
        } else {
            format!("{open}{text}{close}")
        };
        yaml_str_to_json(&doc).map_err(|e| e.to_string())
    };
    let value = match kind_of(section, key) {
        Kind::Text => Value::String(text.to_owned()),
        Kind::List => wrap("[", "]", text.trim().starts_with('-') || text.contains('['))?,
        Kind::Dict => wrap("{", "}", text.trim().starts_with('{'))?,
    };
    match (section, key) {
        ("citus", "group") | (_, "port") => crate::lenient::parse_int(&value).map(Value::from),
        (
            _,
            "use_proxies" | "register_service" | "use_endpoints" | "bypass_api_service" | "verify",
        ) => crate::lenient::parse_bool(&value).map(Value::from),
        _ => Ok(value),
    }
}

fn set(overlay: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = overlay;
    for p in parents {
        let entry = node.entry(*p).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(map) = entry else { return };
        node = map;
    }
    node.insert((*last).to_owned(), value);
}

/// Builds the JSON overlay from the environment. `present` lists the top-level keys of the
/// file configuration, so that `PATRONI_<SECTION>_<KEY>` reaches plugin sections the file has.
/// Variables that cannot be converted are skipped with a warning, as Patroni does.
pub(crate) fn overlay(env: &Env, present: &[String]) -> (Map<String, Value>, Vec<String>) {
    let mut out = Map::new();
    let mut warnings = Vec::new();
    let vars = env.settings();
    let mut put =
        |out: &mut Map<String, Value>, path: &[&str], section: &str, key: &str, text: &str| {
            match convert(section, key, text) {
                Ok(value) => set(out, path, value),
                Err(problem) => warnings.push(format!("environment {}: {problem}", path.join("."))),
            }
        };
    for key in TOP_LEVEL {
        if let Some(v) = vars.get(key.to_ascii_uppercase().as_str()) {
            put(&mut out, &[key], "", key, v);
        }
    }
    for (old, new) in [
        ("LOGLEVEL", "level"),
        ("LOGFORMAT", "format"),
        ("LOG_DATEFMT", "dateformat"),
    ] {
        let new_var = format!("LOG_{}", new.to_ascii_uppercase());
        if let (Some(v), None) = (vars.get(old), vars.get(new_var.as_str())) {
            put(&mut out, &["log", new], "log", new, v);
        }
    }
    for (section, keys) in SECTIONS {
        for key in *keys {
            let var = format!("{section}_{key}").to_ascii_uppercase();
            if let Some(v) = vars.get(var.as_str()) {
                put(&mut out, &[section, key], section, key, v);
            }
        }
    }
    for bin in BINARIES {
        if let Some(v) = vars.get(format!("POSTGRESQL_BIN_{}", bin.to_ascii_uppercase()).as_str()) {
            put(
                &mut out,
                &["postgresql", "bin_name", bin],
                "postgresql",
                bin,
                v,
            );
        }
    }
    for (section, keys) in [("restapi", &AUTH_KEYS[..2]), ("ctl", &AUTH_KEYS[..2])] {
        for key in keys {
            if let Some(v) = vars.get(format!("{section}_{key}").to_ascii_uppercase().as_str()) {
                put(&mut out, &[section, "authentication", key], section, key, v);
            }
        }
    }
    for user in ["superuser", "replication", "rewind"] {
        for key in AUTH_KEYS {
            if let Some(v) = vars.get(format!("{user}_{key}").to_ascii_uppercase().as_str()) {
                put(
                    &mut out,
                    &["postgresql", "authentication", user, key],
                    user,
                    key,
                    v,
                );
            }
        }
    }
    let mut sections: Vec<String> = KNOWN_PLUGIN_SECTIONS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    sections.extend(
        present
            .iter()
            .filter(|s| !crate::settings::is_core_key(s))
            .cloned(),
    );
    // Longest names first, so that `MY_DCS_HOSTS` goes to `my_dcs` rather than `my`.
    sections.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for (var, text) in &vars {
        let Some((section, key)) = sections.iter().find_map(|s| {
            let rest = var
                .strip_prefix(s.to_ascii_uppercase().as_str())?
                .strip_prefix('_')?;
            (!rest.is_empty()).then(|| (s.as_str(), rest.to_ascii_lowercase()))
        }) else {
            continue;
        };
        if section == "citus" && !matches!(key.as_str(), "group" | "database") {
            continue;
        }
        put(&mut out, &[section, &key], section, &key, text);
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter().copied().collect()
    }

    #[test]
    fn dcs_sections_are_typed_like_patroni() {
        let e = env(&[
            ("PATRONI_ETCD3_HOSTS", "10.0.0.1:2379,10.0.0.2:2379"),
            ("PATRONI_ETCD3_PORT", "2379"),
            ("PATRONI_ETCD3_USERNAME", "u"),
            ("PATRONI_CITUS_GROUP", "1"),
            ("PATRONI_CITUS_OTHER", "x"),
            ("PATRONI_MYDCS_ENDPOINT", "e"),
        ]);
        let (o, w) = overlay(&e, &["mydcs".to_owned()]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            Value::Object(o),
            json!({
                "etcd3": {"hosts": ["10.0.0.1:2379", "10.0.0.2:2379"], "port": 2379, "username": "u"},
                "citus": {"group": 1},
                "mydcs": {"endpoint": "e"},
            })
        );
    }
}
