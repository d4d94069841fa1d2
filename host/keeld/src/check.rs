//! `keeld plugin check` and `keeld plugin list`: what an operator or a plugin
//! author needs to know about a component before the daemon runs it.

#![allow(
    clippy::print_stdout,
    reason = "these commands report on standard output"
)]

use std::path::Path;

use anyhow::{Context, anyhow};
use keel_config::{DynamicConfig, Env, Settings};
use keel_runtime::{LoadedPlugin, PluginCatalog, Runtime, RuntimeOptions};

fn print_plugin(plugin: &LoadedPlugin) {
    let d = plugin.description();
    println!("{} {} ({})", d.name, d.version, plugin.file().display());
    println!("  world:        {}", d.kind.world());
    println!("  summary:      {}", d.summary);
    if !d.aliases.is_empty() {
        println!("  aliases:      {}", d.aliases.join(", "));
    }
    println!("  wit version:  {}", d.wit_version);
    println!(
        "  sdk version:  {}",
        d.sdk_version
            .as_deref()
            .unwrap_or("(not built with keel-sdk)")
    );
    println!(
        "  load time:    {:.1} ms ({})",
        plugin.load_time().as_secs_f64() * 1e3,
        if plugin.from_cache() {
            "cached code"
        } else {
            "compiled"
        }
    );
    println!("  exports:      {}", plugin.exports().join(", "));
    println!("  imports:      {}", plugin.imports().join(", "));
}

/// Load, check and describe one component.
pub(crate) async fn check(file: &Path, config: Option<&Path>) -> anyhow::Result<()> {
    // No cache: a check measures and validates the file itself.
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let plugin = LoadedPlugin::load(&runtime, file).await?;
    print_plugin(&plugin);
    if let Some(config) = config {
        let settings = Settings::load(config, &Env::from_process())?;
        let d = plugin.description();
        let section = settings
            .plugin_sections
            .keys()
            .find(|s| d.answers_to(s))
            .ok_or_else(|| {
                anyhow!(
                    "{}: no section selects `{}` (name or alias)",
                    config.display(),
                    d.name
                )
            })?;
        let retry = DynamicConfig::default().retry_timeout;
        let granted = keel_select::for_plugin(&settings, &plugin, section, retry)
            .with_context(|| format!("{}: section `{section}`", config.display()))?;
        println!(
            "  granted:      {} (from section `{section}`)",
            granted.describe().join("; ")
        );
    }
    println!("ok");
    Ok(())
}

/// Load every component of a directory and list them.
pub(crate) async fn list(dir: Option<&Path>, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = config
        .map(|c| Settings::load(c, &Env::from_process()))
        .transpose()?;
    let dir = match (dir, settings.as_ref().and_then(|s| s.plugins.dir.clone())) {
        (Some(dir), _) => dir.to_owned(),
        (None, Some(dir)) => dir,
        (None, None) => return Err(anyhow!("give --dir, or --config with plugins.dir set")),
    };
    let cache = settings.as_ref().and_then(|s| s.plugins.cache_dir());
    let runtime = Runtime::new(RuntimeOptions { cache_dir: cache })?;
    let catalog = PluginCatalog::load_dir(&runtime, &dir).await?;
    for plugin in catalog.plugins() {
        print_plugin(plugin);
    }
    for rejected in catalog.rejected() {
        println!("REFUSED {}", rejected.error);
    }
    if catalog.rejected().is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{} component(s) refused", catalog.rejected().len()))
    }
}
