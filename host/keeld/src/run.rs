//! Running the daemon.
//!
//! Today this loads the configuration and the plugins, configures them, reports
//! what was loaded and granted, and keeps the member's DCS session alive until
//! SIGTERM/SIGINT. The HA loop (issue 5) takes over `serve` as it lands.

#![allow(clippy::print_stdout, reason = "start-up summary for the operator")]

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use keel_config::{Env, Settings, TtlFloor};
use keel_dcs::{Dcs, DcsBackend};
use keel_runtime::{PluginCatalog, Runtime, RuntimeOptions};

use crate::selection::{Choice, select};

fn load_settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load_or_env(config, &Env::from_process()).context("configuration")?;
    settings.log_warnings();
    Ok(settings)
}

/// `keeld validate-config`.
pub(crate) fn validate(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = load_settings(config)?;
    tracing::info!(member = %settings.name, scope = %settings.scope, "configuration is valid");
    Ok(())
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

/// `keeld CONFIG`: start the member.
pub(crate) async fn run(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = load_settings(config)?;
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
    let selected = select(&settings, &catalog, timeouts.retry_timeout)?;
    println!(
        "keeld {}: member `{}` of cluster `{}`",
        env!("CARGO_PKG_VERSION"),
        settings.name,
        settings.scope
    );
    describe(&selected.dcs, "DCS");

    let mut group = None;
    if let Some(choice) = &selected.mpp {
        describe(choice, "MPP");
        let mpp = choice.plugin.mpp(choice.grants.clone(), choice.limits)?;
        mpp.validate_config(&choice.config_json(&settings)).await?;
        group = Some(mpp.group().await?);
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
    backend
        .configure(dcs_settings)
        .await
        .context("configuring the DCS plugin")?;
    let dcs = Dcs::new(std::sync::Arc::new(backend));
    serve(&dcs, Duration::from_secs(timeouts.loop_wait.into())).await
}

/// Until the HA loop lands: read the cluster every `loop_wait` and report it,
/// until asked to stop.
async fn serve(dcs: &Dcs, loop_wait: Duration) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        match dcs.load().await {
            Ok(cluster) => tracing::info!(
                members = cluster.members.len(),
                leader = cluster.leader_name().unwrap_or("none"),
                "DCS reachable"
            ),
            Err(error) => tracing::warn!("DCS: {error}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(loop_wait) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    tracing::info!("stopping");
    Ok(())
}
