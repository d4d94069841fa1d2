//! The plugin's view of its config section (Patroni's `etcd3:` keys).
//!
//! Endpoints and credentials are read by the host, which builds the etcd client;
//! the plugin checks that the section is well-formed, so a typo is reported
//! against the section's key rather than as a connection failure later.

use keel_sdk::dcs::DcsError;
use serde_json::Value;

/// Keys Patroni's etcd3 section knows.
const KNOWN: &[&str] = &[
    "host",
    "hosts",
    "url",
    "proxy",
    "srv",
    "srv_suffix",
    "protocol",
    "username",
    "user",
    "password",
    "cacert",
    "cert",
    "key",
    "use_proxies",
    "retry_timeout",
];

/// Check the section (JSON).
pub fn validate(section: &str) -> Result<(), DcsError> {
    let value: Value = serde_json::from_str(section)
        .map_err(|e| DcsError::InvalidConfig(format!("etcd3: not a mapping: {e}")))?;
    let Value::Object(map) = value else {
        return Err(DcsError::InvalidConfig(
            "etcd3: expected a mapping of settings".into(),
        ));
    };
    for (key, value) in &map {
        if !KNOWN.contains(&key.as_str()) {
            keel_sdk::host::log::warn(&format!("etcd3.{key}: unknown setting, ignored"));
        }
        match key.as_str() {
            "hosts"
                if !(value.is_string()
                    || value
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_string))) =>
            {
                return Err(DcsError::InvalidConfig(
                    "etcd3.hosts: expected a list of host:port or a comma-separated string".into(),
                ));
            }
            "protocol" if !matches!(value.as_str(), Some("http" | "https")) => {
                return Err(DcsError::InvalidConfig(format!(
                    "etcd3.protocol: expected http or https, got {value}"
                )));
            }
            // Patroni renames `cacert` to `ca_cert` inside its client; a section
            // that says `ca_cert` would have its CA ignored by both.
            "ca_cert" => {
                return Err(DcsError::InvalidConfig(
                    "etcd3.ca_cert: not a setting; the CA file is etcd3.cacert".into(),
                ));
            }
            "srv" | "proxy" => {
                return Err(DcsError::InvalidConfig(format!(
                    "etcd3.{key}: not supported by Keel yet; list the endpoints in etcd3.hosts"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}
