//! Which capabilities a plugin gets, from the configuration. Capabilities are
//! decided here, by the operator's config, and never by the plugin.

use std::sync::Arc;
use std::time::Duration;

use keel_config::Settings;
use keel_runtime::capabilities::{EtcdGrant, HttpGrant, PostgresGrant};
use keel_runtime::{Grants, LoadedPlugin, PluginKind};

use crate::Error;

/// Per-request timeout of the etcd client, given the DCS retry budget: a few
/// attempts fit in one `retry_timeout`, as in Patroni's client.
pub fn etcd_request_timeout(retry_timeout: u32) -> Duration {
    Duration::from_secs(u64::from((retry_timeout / 3).max(1)))
}

fn imports(plugin: &LoadedPlugin, interface: &str) -> bool {
    plugin.imports().iter().any(|i| i.starts_with(interface))
}

/// The grants of `plugin`, configured by `section`: only capabilities it
/// imports, pointed only at what the section names.
pub fn for_plugin(
    settings: &Settings,
    plugin: &LoadedPlugin,
    section: &str,
    retry_timeout: u32,
) -> Result<Grants, Error> {
    let config = settings
        .plugin_sections
        .get(section)
        .cloned()
        .unwrap_or_default();
    match plugin.description().kind {
        PluginKind::Dcs => {
            // The store's endpoints, reachable through the typed etcd client and
            // over HTTP (etcd's JSON gateway, Consul, ...); nothing else. A plugin
            // that imports neither reaches no store through the host: it gets
            // nothing, and its section need not name endpoints.
            let wants_etcd = imports(plugin, "keel:host/etcd@");
            let wants_http = imports(plugin, "wasi:http/outgoing-handler@");
            if !wants_etcd && !wants_http {
                return Ok(Grants::default());
            }
            let problem = |problem| Error::Section {
                section: section.to_owned(),
                problem,
            };
            let http = HttpGrant::from_section(section, &config, 2379)
                .map_err(problem)?
                .ok_or_else(|| Error::NoEndpoints {
                    section: section.to_owned(),
                })?;
            let etcd = if wants_etcd {
                EtcdGrant::from_section(section, &config, etcd_request_timeout(retry_timeout))
                    .map_err(problem)?
                    .map(Arc::new)
            } else {
                None
            };
            let http = wants_http.then(|| Arc::new(http));
            Ok(Grants {
                etcd,
                http,
                ..Grants::default()
            })
        }
        PluginKind::Mpp => Ok(Grants {
            postgres: Some(Arc::new(postgres_grant(settings))),
            ..Grants::default()
        }),
    }
}

/// Sessions on the local instance as the superuser: over the unix socket when
/// `use_unix_socket` is set and a socket directory is configured, else over TCP
/// to the first address PostgreSQL listens on.
fn postgres_grant(settings: &Settings) -> PostgresGrant {
    let pg = &settings.postgresql;
    let mut config = tokio_postgres::Config::new();
    let socket_dir = pg
        .parameters
        .get("unix_socket_directories")
        .and_then(|dirs| {
            dirs.split(',')
                .map(str::trim)
                .find(|d| !d.is_empty())
                .map(str::to_owned)
        });
    match socket_dir {
        Some(dir) if pg.use_unix_socket => {
            config.host_path(dir);
        }
        _ => {
            let host = pg
                .listen
                .hosts
                .iter()
                .find(|h| *h != "*" && *h != "0.0.0.0" && *h != "::")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            config.host(&host);
        }
    }
    config.port(pg.listen.port);
    let superuser = &pg.authentication.superuser;
    config.user(&superuser.username);
    if let Some(password) = &superuser.password {
        config.password(password);
    }
    config.dbname(&pg.database);
    PostgresGrant::new(config, Duration::from_secs(5))
}
