//! On-disk cache of compiled components.
//!
//! Key: SHA-256 of the component's bytes plus the engine's precompile
//! compatibility hash (wasmtime version, target, settings), so a cached artefact
//! is only ever loaded by an engine that could have produced it. Files are written
//! to a temporary name and renamed, so a crash never leaves a torn artefact.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// Whether a component came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompileSource {
    /// Loaded precompiled code from the cache.
    Cache,
    /// Compiled from the wasm bytes.
    Compiled,
}

#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub(crate) fn open(dir: PathBuf) -> Result<Self, LoadError> {
        std::fs::create_dir_all(&dir).map_err(|e| LoadError::Cache {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self { dir })
    }

    fn entry(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let digest = hex::encode(Sha256::digest(wasm));
        self.dir
            .join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
    }
}

/// Compile `wasm`, or load it from the cache when an artefact for exactly these
/// bytes and this engine exists.
pub(crate) fn load_component(
    engine: &Engine,
    cache: Option<&CompileCache>,
    file: &Path,
    wasm: &[u8],
) -> Result<(Component, CompileSource), LoadError> {
    let compile = || {
        Component::new(engine, wasm).map_err(|e| LoadError::Compile {
            file: file.to_owned(),
            reason: format!("{e:#}"),
        })
    };
    let Some(cache) = cache else {
        return Ok((compile()?, CompileSource::Compiled));
    };
    let entry = cache.entry(engine, wasm);
    if entry.exists() {
        // SAFETY: the artefact was written by `Component::serialize` of an engine
        // with the same compatibility hash (it is in the file name) into a cache
        // directory that only this daemon's user writes. wasmtime still checks
        // the header and refuses artefacts of another version or configuration.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &entry) } {
            Ok(component) => return Ok((component, CompileSource::Cache)),
            Err(e) => tracing::warn!(
                file = %entry.display(),
                error = %e,
                "discarding unusable compiled-plugin cache entry"
            ),
        }
    }
    let component = compile()?;
    if let Err(e) = store(&entry, &component) {
        tracing::warn!(file = %entry.display(), error = %e, "could not cache compiled plugin");
    }
    Ok((component, CompileSource::Compiled))
}

fn store(entry: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, entry)
}
