//! Host capabilities, one module each, shaped config → state → host trait impl.
//!
//! A capability is reachable only when (a) the plugin's world imports it, which
//! the linker of that world enforces, and (b) the operator's config granted it,
//! which [`Grants`] carries into each instance. An import that is linked but not
//! granted answers with an error the plugin sees, never a trap.

pub mod etcd;
pub mod http;
mod log;
pub mod postgres;

use std::sync::Arc;

pub use etcd::EtcdGrant;
pub use http::HttpGrant;
pub use postgres::PostgresGrant;

/// A string setting of a plugin section; numbers are accepted as text.
pub(crate) fn section_text(
    section_name: &str,
    section: &serde_json::Value,
    key: &str,
) -> Result<Option<String>, String> {
    use serde_json::Value;
    match section.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!(
            "{section_name}.{key}: expected a string, got {other}"
        )),
    }
}

/// The store endpoints a Patroni-style DCS section names, as base URLs: `host`,
/// `hosts` (a list or a comma-separated string) with `protocol` (http or https;
/// `default_port` when a host has none), and `url`. Errors name the key.
pub fn section_endpoints(
    section_name: &str,
    section: &serde_json::Value,
    default_port: u16,
) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let key = |k: &str| format!("{section_name}.{k}");
    let protocol =
        section_text(section_name, section, "protocol")?.unwrap_or_else(|| "http".into());
    if protocol != "http" && protocol != "https" {
        return Err(format!(
            "{}: expected http or https, got {protocol:?}",
            key("protocol")
        ));
    }
    let mut hosts: Vec<String> = Vec::new();
    if let Some(host) = section_text(section_name, section, "host")? {
        hosts.push(host);
    }
    match section.get("hosts") {
        None | Some(Value::Null) => {}
        Some(Value::String(list)) => hosts.extend(list.split(',').map(|h| h.trim().to_owned())),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(h) => hosts.push(h.trim().to_owned()),
                    other => {
                        return Err(format!(
                            "{}: expected host:port strings, got {other}",
                            key("hosts")
                        ));
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "{}: expected a list or a comma-separated string, got {other}",
                key("hosts")
            ));
        }
    }
    let mut endpoints = Vec::new();
    for host in hosts.into_iter().filter(|h| !h.is_empty()) {
        if host.contains("://") {
            return Err(format!(
                "{}: {host:?} must be host:port; use url for a URL",
                key("hosts")
            ));
        }
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        let with_port = if has_port {
            host
        } else {
            format!("{host}:{default_port}")
        };
        endpoints.push(format!("{protocol}://{with_port}"));
    }
    if let Some(url) = section_text(section_name, section, "url")? {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "{}: expected http(s)://host:port, got {url:?}",
                key("url")
            ));
        }
        endpoints.push(url.trim_end_matches('/').to_owned());
    }
    Ok(endpoints)
}

/// The capabilities granted to one plugin.
#[derive(Clone, Default, Debug)]
pub struct Grants {
    /// etcd endpoints and credentials, for DCS plugins configured for etcd.
    pub etcd: Option<Arc<EtcdGrant>>,
    /// The local PostgreSQL, for MPP plugins.
    pub postgres: Option<Arc<PostgresGrant>>,
    /// Outgoing HTTP to these endpoints, for DCS plugins.
    pub http: Option<Arc<HttpGrant>>,
}

impl Grants {
    /// One line per granted capability, for operators (`keeld` prints it at start).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec!["log".to_owned()];
        if let Some(etcd) = &self.etcd {
            lines.push(format!("etcd: {}", etcd.endpoints().join(",")));
        }
        if let Some(http) = &self.http {
            lines.push(format!("http: {}", http.endpoints().join(",")));
        }
        if let Some(pg) = &self.postgres {
            lines.push(format!("postgres: {}", pg.describe()));
        }
        lines
    }
}
