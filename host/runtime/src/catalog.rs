//! The plugin directory: every component found there, checked against the world
//! it claims, described, and ready to be instantiated with grants.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings;
use crate::cache::{CompileSource, load_component};
use crate::capabilities::Grants;
use crate::dcs_plugin::DcsPlugin;
use crate::error::LoadError;
use crate::limits::PluginLimits;
use crate::mpp_plugin::MppPlugin;
use crate::runtime::Runtime;
use crate::state::HostState;

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// `keel:dcs/dcs-plugin`.
    Dcs,
    /// `keel:mpp/mpp-plugin`.
    Mpp,
}

impl PluginKind {
    /// The world's WIT name.
    pub fn world(self) -> &'static str {
        match self {
            Self::Dcs => "keel:dcs/dcs-plugin@0.1.0",
            Self::Mpp => "keel:mpp/mpp-plugin@0.1.0",
        }
    }
}

/// A plugin's self-description, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDescription {
    /// Name; selects the config section.
    pub name: String,
    /// Other config section names that select it.
    pub aliases: Vec<String>,
    /// Its world.
    pub kind: PluginKind,
    /// Its version.
    pub version: String,
    /// The WIT version it was built against.
    pub wit_version: String,
    /// The keel-sdk version that built it, if any.
    pub sdk_version: Option<String>,
    /// One line for operators.
    pub summary: String,
}

impl PluginDescription {
    /// Whether a config section of this name selects the plugin.
    pub fn answers_to(&self, section: &str) -> bool {
        self.name == section || self.aliases.iter().any(|a| a == section)
    }

    /// Check what a plugin said about itself against the world it was loaded for.
    pub(crate) fn check(self, expected: PluginKind) -> Result<Self, String> {
        if self.kind != expected {
            return Err(format!(
                "it says it is a {:?} plugin but implements {}",
                self.kind,
                expected.world()
            ));
        }
        for name in std::iter::once(&self.name).chain(&self.aliases) {
            let valid = name.len() <= 63
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(format!(
                    "name {name:?} must be 1-63 lower-case letters, digits or '-', starting with a letter"
                ));
            }
        }
        if !is_semver(&self.version) {
            return Err(format!("version {:?} is not semver (x.y.z)", self.version));
        }
        if !compatible(&self.wit_version, crate::WIT_VERSION) {
            return Err(format!(
                "built against keel WIT {} but this host implements {}",
                self.wit_version,
                crate::WIT_VERSION
            ));
        }
        if self.summary.len() > 200 || self.summary.chars().any(char::is_control) {
            return Err("summary must be one line of at most 200 characters".into());
        }
        Ok(self)
    }
}

/// A world's generated `description` record as a [`PluginDescription`]; each
/// world has its own generated copy of `keel:host/plugin.description`.
macro_rules! described {
    ($world:ident, $d:expr) => {{
        use crate::bindings::$world::keel::host::plugin::{Description, Kind};
        let d: Description = $d;
        crate::catalog::PluginDescription {
            name: d.name,
            aliases: d.aliases,
            kind: match d.kind {
                Kind::Dcs => crate::catalog::PluginKind::Dcs,
                Kind::Mpp => crate::catalog::PluginKind::Mpp,
            },
            version: d.version,
            wit_version: d.wit_version,
            sdk_version: d.sdk_version,
            summary: d.summary,
        }
    }};
}
pub(crate) use described;

fn semver_parts(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

fn is_semver(version: &str) -> bool {
    semver_parts(version).is_some()
}

/// Semver compatibility, with 0.x minors treated as majors.
fn compatible(plugin: &str, host: &str) -> bool {
    match (semver_parts(plugin), semver_parts(host)) {
        (Some((0, pm, _)), Some((0, hm, _))) => pm == hm,
        (Some((pmaj, ..)), Some((hmaj, ..))) => pmaj == hmaj,
        _ => false,
    }
}

pub(crate) enum WorldPre {
    Dcs(Arc<bindings::dcs::DcsPluginPre<HostState>>),
    Mpp(Arc<bindings::mpp::MppPluginPre<HostState>>),
}

/// A component that passed every check.
pub struct LoadedPlugin {
    file: PathBuf,
    description: PluginDescription,
    imports: Vec<String>,
    exports: Vec<String>,
    pre: WorldPre,
    compile_source: CompileSource,
    load_time: Duration,
    runtime: Runtime,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("file", &self.file)
            .field("description", &self.description)
            .field("compile_source", &self.compile_source)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Compile (or load from cache), check and describe one component.
    pub async fn load(runtime: &Runtime, file: &Path) -> Result<Self, LoadError> {
        let started = Instant::now();
        let wasm = std::fs::read(file).map_err(|e| LoadError::Compile {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
        let engine = runtime.engine();
        let (component, compile_source) = load_component(engine, runtime.cache(), file, &wasm)?;
        let kind = world_of(engine, &component, file)?;
        let component_type = component.component_type();
        let imports = component_type
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports = component_type
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let mismatch = |e: wasmtime::Error| LoadError::WorldMismatch {
            file: file.to_owned(),
            world: kind.world(),
            reason: format!("{e:#}"),
        };
        let pre = match kind {
            PluginKind::Dcs => {
                let linker = dcs_linker(engine).map_err(mismatch)?;
                let pre = linker.instantiate_pre(&component).map_err(mismatch)?;
                WorldPre::Dcs(Arc::new(
                    bindings::dcs::DcsPluginPre::new(pre).map_err(mismatch)?,
                ))
            }
            PluginKind::Mpp => {
                let linker = mpp_linker(engine).map_err(mismatch)?;
                let pre = linker.instantiate_pre(&component).map_err(mismatch)?;
                WorldPre::Mpp(Arc::new(
                    bindings::mpp::MppPluginPre::new(pre).map_err(mismatch)?,
                ))
            }
        };
        let mut plugin = Self {
            file: file.to_owned(),
            description: PluginDescription {
                name: file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                aliases: Vec::new(),
                kind,
                version: String::new(),
                wit_version: String::new(),
                sdk_version: None,
                summary: String::new(),
            },
            imports,
            exports,
            pre,
            compile_source,
            load_time: Duration::ZERO,
            runtime: runtime.clone(),
        };
        let described = match kind {
            PluginKind::Dcs => {
                plugin
                    .dcs(Grants::default(), PluginLimits::default())?
                    .describe()
                    .await
            }
            PluginKind::Mpp => {
                plugin
                    .mpp(Grants::default(), PluginLimits::default())?
                    .describe()
                    .await
            }
        };
        let described = described.map_err(|source| LoadError::Describe {
            file: file.to_owned(),
            source,
        })?;
        plugin.description = described
            .check(kind)
            .map_err(|reason| LoadError::Description {
                file: file.to_owned(),
                reason,
            })?;
        plugin.load_time = started.elapsed();
        Ok(plugin)
    }

    /// The file it was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Its checked self-description.
    pub fn description(&self) -> &PluginDescription {
        &self.description
    }

    /// The interfaces it imports (`keel:host/etcd@0.1.0`, `wasi:io/streams@0.2.x`, ...).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The interfaces it exports.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Whether its compiled code came from the cache.
    pub fn from_cache(&self) -> bool {
        self.compile_source == CompileSource::Cache
    }

    /// Time to read, compile (or load cached code), check and describe it.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// A DCS handle with these grants and limits; an error if this is not a DCS plugin.
    pub fn dcs(&self, grants: Grants, limits: PluginLimits) -> Result<DcsPlugin, LoadError> {
        match &self.pre {
            WorldPre::Dcs(pre) => Ok(DcsPlugin::new(
                &self.description.name,
                &self.runtime,
                pre.clone(),
                grants,
                limits,
            )),
            WorldPre::Mpp(_) => Err(self.wrong_kind(PluginKind::Dcs)),
        }
    }

    /// An MPP handle with these grants and limits; an error if this is not an MPP plugin.
    pub fn mpp(&self, grants: Grants, limits: PluginLimits) -> Result<MppPlugin, LoadError> {
        match &self.pre {
            WorldPre::Mpp(pre) => Ok(MppPlugin::new(
                &self.description.name,
                &self.runtime,
                pre.clone(),
                grants,
                limits,
            )),
            WorldPre::Dcs(_) => Err(self.wrong_kind(PluginKind::Mpp)),
        }
    }

    fn wrong_kind(&self, wanted: PluginKind) -> LoadError {
        LoadError::WorldMismatch {
            file: self.file.clone(),
            world: wanted.world(),
            reason: format!(
                "`{}` implements {}",
                self.description.name,
                self.description.kind.world()
            ),
        }
    }
}

fn world_of(
    engine: &wasmtime::Engine,
    component: &Component,
    file: &Path,
) -> Result<PluginKind, LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let has = |name: &str| exports.iter().any(|e| e == name);
    match (has("keel:dcs/backend@0.1.0"), has("keel:mpp/handler@0.1.0")) {
        (true, false) => Ok(PluginKind::Dcs),
        (false, true) => Ok(PluginKind::Mpp),
        (true, true) => Err(LoadError::WorldMismatch {
            file: file.to_owned(),
            world: PluginKind::Dcs.world(),
            reason:
                "it exports both keel:dcs/backend and keel:mpp/handler; one component, one world"
                    .into(),
        }),
        (false, false) => Err(LoadError::NoWorld {
            file: file.to_owned(),
            found: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
        }),
    }
}

fn dcs_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // DCS plugins may speak HTTP to their store; the allowlist decides where.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::dcs::DcsPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

fn mpp_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::mpp::MppPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

// Type-only interfaces the worlds import implicitly (their exports `use` them).
impl bindings::dcs::keel::host::plugin::Host for HostState {}
impl bindings::dcs::keel::dcs::types::Host for HostState {}
impl bindings::mpp::keel::host::plugin::Host for HostState {}
impl bindings::mpp::keel::mpp::types::Host for HostState {}

/// A file in the plugin directory that was refused, and why.
#[derive(Debug)]
pub struct RejectedPlugin {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub error: LoadError,
}

/// Every plugin of a directory.
#[derive(Debug, Default)]
pub struct PluginCatalog {
    plugins: Vec<Arc<LoadedPlugin>>,
    rejected: Vec<RejectedPlugin>,
}

impl PluginCatalog {
    /// Load every `*.wasm` in `dir` (sorted by name). A file that fails its checks
    /// is kept in [`PluginCatalog::rejected`]; only an unreadable directory fails.
    pub async fn load_dir(runtime: &Runtime, dir: &Path) -> Result<Self, LoadError> {
        let read = std::fs::read_dir(dir).map_err(|e| LoadError::Directory {
            dir: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let mut files: Vec<PathBuf> = read
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        files.sort();
        let mut catalog = Self::default();
        for file in files {
            match LoadedPlugin::load(runtime, &file).await {
                Ok(plugin) => catalog.add(plugin),
                Err(error) => catalog.rejected.push(RejectedPlugin { file, error }),
            }
        }
        Ok(catalog)
    }

    fn add(&mut self, plugin: LoadedPlugin) {
        let names = std::iter::once(&plugin.description.name).chain(&plugin.description.aliases);
        for name in names {
            if let Some(first) = self.find(name) {
                let error = LoadError::Duplicate {
                    name: name.clone(),
                    first: first.file.clone(),
                    second: plugin.file.clone(),
                };
                self.rejected.push(RejectedPlugin {
                    file: plugin.file.clone(),
                    error,
                });
                return;
            }
        }
        self.plugins.push(Arc::new(plugin));
    }

    /// The plugin a config section of this name selects.
    pub fn find(&self, section: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins
            .iter()
            .find(|p| p.description.answers_to(section))
    }

    /// Loaded plugins, in file-name order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Refused files.
    pub fn rejected(&self) -> &[RejectedPlugin] {
        &self.rejected
    }

    /// "name (aliases: a, b)" for every plugin, for error messages.
    pub fn available(&self) -> String {
        if self.plugins.is_empty() {
            return "no plugins".into();
        }
        self.plugins
            .iter()
            .map(|p| {
                let d = &p.description;
                if d.aliases.is_empty() {
                    d.name.clone()
                } else {
                    format!("{} (also {})", d.name, d.aliases.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> PluginDescription {
        PluginDescription {
            name: "etcd".into(),
            aliases: vec!["etcd3".into()],
            kind: PluginKind::Dcs,
            version: "1.2.3".into(),
            wit_version: "0.1.0".into(),
            sdk_version: None,
            summary: "etcd v3".into(),
        }
    }

    #[test]
    fn accepts_a_good_description() {
        assert!(description().check(PluginKind::Dcs).is_ok());
    }

    #[test]
    fn refuses_each_bad_field_with_a_reason() {
        let cases: Vec<(PluginDescription, &str)> = vec![
            (
                PluginDescription {
                    kind: PluginKind::Mpp,
                    ..description()
                },
                "Mpp plugin",
            ),
            (
                PluginDescription {
                    name: "Etcd!".into(),
                    ..description()
                },
                "lower-case",
            ),
            (
                PluginDescription {
                    aliases: vec!["".into()],
                    ..description()
                },
                "lower-case",
            ),
            (
                PluginDescription {
                    version: "banana".into(),
                    ..description()
                },
                "semver",
            ),
            (
                PluginDescription {
                    wit_version: "0.2.0".into(),
                    ..description()
                },
                "host implements 0.1.0",
            ),
            (
                PluginDescription {
                    summary: "two\nlines".into(),
                    ..description()
                },
                "one line",
            ),
        ];
        for (bad, expected) in cases {
            let err = bad.clone().check(PluginKind::Dcs).unwrap_err();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
    }

    #[test]
    fn wit_versions_follow_semver_with_zero_minors_as_majors() {
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("x", "0.1.0"));
    }
}
