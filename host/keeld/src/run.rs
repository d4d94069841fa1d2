//! Running the daemon.
//!
//! Loads the configuration and the plugins, configures them, reports what was
//! loaded and granted, starts the REST API and hands over to the HA loop.

#![allow(clippy::print_stdout, reason = "start-up summary for the operator")]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use keel_config::{Env, Settings, Timeouts, TtlFloor};
use keel_dcs::{Dcs, DcsBackend};
use keel_runtime::{PluginCatalog, Runtime, RuntimeOptions};

use crate::metrics::PluginSeries;
use keel_select::{Choice, Selected, select};

pub(crate) fn load_settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load_or_env(config, &Env::from_process()).context("configuration")?;
    settings.log_warnings();
    Ok(settings)
}

/// `keeld validate-config`: everything `keeld` checks before it touches the DCS or
/// PostgreSQL — the file, the plugin directory and which plugin each section selects (and
/// the MPP plugin's own validation), the REST API's TLS files and allowlist, the
/// certificates for calls to other members, and the PostgreSQL programs.
pub(crate) async fn validate(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = load_settings(config)?;
    let (_, selected) = load_plugins(&settings).await?;
    if let Some(choice) = &selected.mpp {
        let mpp = choice.plugin.mpp(choice.grants.clone(), choice.limits)?;
        mpp.validate_config(&choice.config_json(&settings)).await?;
    }
    api_options(&settings)?;
    keel_api::tls_server_config(&settings.restapi)?;
    crate::peer_client::PeerClient::new(&settings)?;
    keel_postgres::Binaries::new(crate::ha::pgconf::bin_dir(&settings)?)
        .await
        .context("postgresql.bin_dir")?;
    tracing::info!(member = %settings.name, scope = %settings.scope, "configuration is valid");
    Ok(())
}

/// The timings in force and the plugins the sections select, from the plugin directory
/// (compiled or from the cache); warnings logged.
async fn load_plugins(settings: &Settings) -> anyhow::Result<(Timeouts, Selected)> {
    let dir = settings.plugins.dir.clone().context(
        "plugins.dir: not set; point it at the directory that holds the plugin components (*.wasm)",
    )?;
    let (timeouts, warnings) = settings
        .bootstrap
        .dcs_config
        .validated_timeouts(TtlFloor::keel());
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: settings.plugins.cache_dir(),
    })?;
    let catalog = PluginCatalog::load_dir(&runtime, &dir).await?;
    for rejected in catalog.rejected() {
        tracing::warn!("{}", rejected.error);
    }
    let selected = select(settings, &catalog, timeouts.retry_timeout)?;
    Ok((timeouts, selected))
}

fn describe(choice: &Choice, role: &str) {
    let d = choice.plugin.description();
    println!(
        "{role} plugin `{}` {} for section `{}` from {} ({}, {:.1} ms); granted: {}",
        d.name,
        d.version,
        choice.section,
        choice.plugin.file().display(),
        if choice.plugin.from_cache() {
            "cached code"
        } else {
            "compiled"
        },
        choice.plugin.load_time().as_secs_f64() * 1e3,
        choice.grants.describe().join("; "),
    );
}

/// `keeld CONFIG`: start the member; SIGTERM/SIGINT during start-up is a clean exit.
pub(crate) async fn run(config: Option<&Path>) -> anyhow::Result<()> {
    let mut signals = crate::signals::Signals::install().context("installing signal handlers")?;
    let daemon = tokio::select! {
        daemon = start(config) => daemon?,
        () = signals.stop_requested() => {
            tracing::info!("stop requested during start-up");
            return Ok(());
        }
    };
    daemon.run(signals).await
}

/// Load everything, start the REST API and build the loop.
async fn start(config: Option<&Path>) -> anyhow::Result<crate::ha::Daemon> {
    let mut settings = load_settings(config)?;
    let (timeouts, selected) = load_plugins(&settings).await?;
    if selected.mpp.is_some() {
        // A formation's groups default to quorum commit (Patroni does so for Citus).
        settings
            .bootstrap
            .default_synchronous_mode(keel_config::SynchronousMode::Quorum);
    }
    println!(
        "keeld {}: member `{}` of cluster `{}`",
        env!("CARGO_PKG_VERSION"),
        settings.name,
        settings.scope
    );
    describe(&selected.dcs, "DCS");

    let mut group = None;
    let mut mpp_metrics = None;
    let mut mpp_plugin = None;
    if let Some(choice) = &selected.mpp {
        describe(choice, "MPP");
        let mpp = choice.plugin.mpp(choice.grants.clone(), choice.limits)?;
        mpp_metrics = Some(PluginSeries {
            plugin: choice.plugin.description().name.clone(),
            instance: "mpp",
            metrics: Arc::clone(mpp.metrics()),
        });
        mpp.validate_config(&choice.config_json(&settings)).await?;
        group = Some(mpp.group().await?);
        mpp_plugin = Some(mpp);
    }

    let backend = selected
        .dcs
        .plugin
        .dcs(selected.dcs.grants.clone(), selected.dcs.limits)?;
    let dcs_settings = keel_dcs::Settings {
        namespace: settings.namespace.clone(),
        scope: settings.scope.clone(),
        group,
        member: settings.name.clone(),
        ttl: timeouts.ttl,
        loop_wait: timeouts.loop_wait,
        retry_timeout: timeouts.retry_timeout,
        config: selected.dcs.config_json(&settings),
    };
    let watcher = selected
        .dcs
        .plugin
        .dcs(selected.dcs.grants.clone(), selected.dcs.limits)?;
    watcher
        .configure(dcs_settings.clone())
        .await
        .context("configuring the DCS plugin (watch instance)")?;
    let dcs_settings_for_api = dcs_settings.clone();
    backend
        .configure(dcs_settings)
        .await
        .context("configuring the DCS plugin")?;
    let api_backend = selected
        .dcs
        .plugin
        .dcs(selected.dcs.grants.clone(), selected.dcs.limits)?;
    api_backend
        .configure(dcs_settings_for_api)
        .await
        .context("configuring the DCS plugin (REST API instance)")?;
    let plugin_name = selected.dcs.plugin.description().name.clone();
    let mut series = vec![
        PluginSeries {
            plugin: plugin_name.clone(),
            instance: "loop",
            metrics: Arc::clone(backend.metrics()),
        },
        PluginSeries {
            plugin: plugin_name.clone(),
            instance: "watch",
            metrics: Arc::clone(watcher.metrics()),
        },
        PluginSeries {
            plugin: plugin_name,
            instance: "api",
            metrics: Arc::clone(api_backend.metrics()),
        },
    ];
    if let Some(mpp) = &mpp_metrics {
        series.push(mpp.clone());
    }
    let dcs = Dcs::new(Arc::new(backend));
    let watcher = Dcs::new(Arc::new(watcher));
    let api_dcs = Dcs::new(Arc::new(api_backend));
    let (dynamic, dynamic_version) = initial_dynamic_config(&dcs, &settings).await;
    let pg_settings = crate::ha::pgconf::postgres_settings(&settings, &dynamic)?;
    // A bootstrap section keeld could not carry out is refused now, not when a bootstrap
    // is already under way with the `initialize` key taken.
    crate::ha::pgconf::bootstrap_method(&settings)?;
    let bin = keel_postgres::Binaries::new(crate::ha::pgconf::bin_dir(&settings)?)
        .await
        .context("postgresql.bin_dir")?;
    let pg = Arc::new(keel_postgres::Postgres::new(pg_settings, bin));
    let http = crate::peer_client::PeerClient::new(&settings)?;
    let mpp = match mpp_plugin {
        Some(plugin) => {
            let mpp =
                crate::mpp::Mpp::new(plugin, settings.name.clone(), http.clone(), api_dcs.clone())
                    .await?;
            let mpp = Arc::new(mpp);
            let configured = pg.effective_parameters();
            mpp.adjust_parameters(&pg, &configured).await;
            tokio::spawn(Arc::clone(&mpp).run_ticker());
            Some(mpp)
        }
        None => None,
    };
    let shared = Arc::new(Mutex::new(crate::ha::Shared {
        ttl: dynamic.ttl,
        failsafe_mode: dynamic.failsafe_mode,
        paused: dynamic.pause,
        role: "replica".to_owned(),
        tags: settings.tags.published(),
        ..crate::ha::Shared::default()
    }));
    let wake = Arc::new(tokio::sync::Notify::new());
    let (commands, command_queue) = tokio::sync::mpsc::unbounded_channel();
    let (scope, member) = (settings.scope.clone(), settings.name.clone());
    let api = crate::ha::ApiNode {
        shared: Arc::clone(&shared),
        pg: Arc::clone(&pg),
        name: settings.name.clone(),
        scope: settings.scope.clone(),
        wake: Arc::clone(&wake),
        commands,
        http: http.clone(),
        plugin_metrics: Box::new(move || crate::metrics::render(&series, &scope, &member)),
        mpp: mpp.clone(),
    };
    let (router, reloader) =
        keel_api::router_with_reloader(Arc::new(api), api_dcs, api_options(&settings)?);
    let rest = keel_api::ApiServer::start(router, reloader, &settings.restapi).await?;
    println!("REST API on {}://{}", rest.scheme(), rest.local_addr());
    let lease = crate::ha::lease::LeaseGuard::start(Arc::clone(&pg));
    // A primary left running by the previous daemon keeps waiting for the standbys
    // it was told to: starting from "" would let commits go unconfirmed while
    // `/sync` still promises them to the leader race.
    let ssn = std::fs::read_to_string(pg.data_dir().join("postgresql.conf"))
        .ok()
        .and_then(|conf| {
            keel_postgres::config::written_parameter(&conf, "synchronous_standby_names")
        })
        .unwrap_or_default();
    let memory = keel_ha::Memory {
        ssn_changed_at_lsn: crate::ha::SSN_POSITION_UNKNOWN,
        ..keel_ha::Memory::default()
    };
    let callbacks = crate::callbacks::Callbacks::new(
        settings.postgresql.callbacks.clone(),
        settings.scope.clone(),
    );
    let watchdog = crate::watchdog::Watchdog::new(settings.watchdog.clone());
    let daemon = crate::ha::Daemon {
        config_path: config.map(Path::to_owned),
        settings,
        dynamic,
        dynamic_version,
        dcs,
        watcher,
        pg,
        memory,
        task: None,
        shared,
        wake,
        commands: command_queue,
        http,
        upstream: None,
        ssn,
        sysid: None,
        replay_timeline: None,
        checkpoint_pending: false,
        role: "replica",
        mpp,
        announce_promotion: false,
        callbacks,
        start_callback_due: true,
        lease,
        watchdog,
        rest,
        slot_state: crate::ha::slots::SlotState::default(),
        hot_standby_feedback_enforced: false,
    };
    Ok(daemon)
}

/// The REST API's access rules and headers from `restapi` (at start and on SIGHUP).
pub(crate) fn api_options(settings: &Settings) -> anyhow::Result<keel_api::ApiOptions> {
    Ok(keel_api::ApiOptions {
        scope: settings.scope.clone(),
        name: settings.name.clone(),
        access: keel_api::AccessPolicy::from_settings(&settings.restapi)?,
        extra_headers: response_headers(&settings.restapi),
        server: Some(server_header(settings.restapi.server_tokens.as_deref())),
    })
}

/// `http_extra_headers`, plus `https_extra_headers` when the API serves HTTPS (Patroni's rule).
fn response_headers(
    restapi: &keel_config::RestApiSettings,
) -> std::collections::BTreeMap<String, String> {
    let mut headers = restapi.http_extra_headers.clone();
    if restapi.certfile.is_some() {
        headers.extend(restapi.https_extra_headers.clone());
    }
    headers
}

/// The `Server` header for `restapi.server_tokens` (Patroni 4.1, case-insensitive):
/// `productonly` names the product, `minimal` adds the version, `original` (the default)
/// adds the Patroni version Keel speaks for.
fn server_header(tokens: Option<&str>) -> String {
    let version = env!("CARGO_PKG_VERSION");
    match tokens.map(str::to_ascii_lowercase).as_deref() {
        Some("productonly") => "Keel".to_owned(),
        Some("minimal") => format!("Keel/{version}"),
        None | Some("original") => {
            format!("Keel/{version} Patroni/{}", crate::ha::WIRE_VERSION)
        }
        Some(other) => {
            tracing::warn!(
                "restapi.server_tokens: {other:?} is not original, productonly or minimal; \
                 using original"
            );
            format!("Keel/{version} Patroni/{}", crate::ha::WIRE_VERSION)
        }
    }
}

/// The dynamic configuration at start-up: the DCS `config` if present, else
/// `bootstrap.dcs` (Patroni retries the read every 5 s; so do we, bounded by
/// the operator's patience, logging each failure).
async fn initial_dynamic_config(
    dcs: &Dcs,
    settings: &Settings,
) -> (keel_config::DynamicConfig, Option<String>) {
    loop {
        match dcs.load().await {
            Ok(cluster) => {
                if let Some(config) = cluster.config.as_ref().filter(|c| c.is_usable()) {
                    let (dynamic, warnings) =
                        keel_config::DynamicConfig::from_json_lenient(&config.raw);
                    for w in warnings {
                        tracing::warn!("config: {w}");
                    }
                    return (dynamic, config.modify_version.clone());
                }
                return (settings.bootstrap.dcs_config.clone(), None);
            }
            Err(e) => {
                tracing::warn!("DCS not reachable at start-up, retrying in 5 s: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_tokens_pick_the_server_header_case_insensitively() {
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(server_header(Some("ProductOnly")), "Keel");
        assert_eq!(server_header(Some("minimal")), format!("Keel/{v}"));
        let original = server_header(None);
        assert!(
            original.starts_with(&format!("Keel/{v} Patroni/4.")),
            "{original}"
        );
        assert_eq!(server_header(Some("nonsense")), original);
    }
}
