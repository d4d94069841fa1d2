//! Small helpers for stage two: required keys, ranges, and the warnings collector.
//!
//! They exist so that each section's conversion reads as a list of keys, and so that every
//! error and warning is built the same way, with the full key path first.

use std::path::PathBuf;

use crate::ConfigError;
use crate::error::join;
use crate::lenient::{Int, Text};
use crate::raw::Extra;

/// Collects the warnings of one load.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) warnings: Vec<String>,
}

impl Ctx {
    /// Records a warning about `path`.
    pub(crate) fn warn(&mut self, path: &str, message: impl std::fmt::Display) {
        self.warnings.push(format!("{path}: {message}"));
    }

    /// Records one warning per unknown key of a section.
    pub(crate) fn unknown_keys(&mut self, section: &str, extra: &Extra) {
        for key in extra.keys() {
            self.warn(&join(section, key), "unknown key, ignored");
        }
    }
}

/// A required string.
pub(crate) fn required(value: Option<Text>, path: &str) -> Result<String, ConfigError> {
    match value {
        Some(Text(s)) if !s.trim().is_empty() => Ok(s),
        _ => Err(ConfigError::missing(path)),
    }
}

/// An optional string; empty strings count as absent.
pub(crate) fn text(value: Option<Text>) -> Option<String> {
    value.map(|t| t.0).filter(|s| !s.is_empty())
}

/// An optional path; empty strings count as absent.
pub(crate) fn path(value: Option<Text>) -> Option<PathBuf> {
    text(value).map(PathBuf::from)
}

/// An optional integer that must lie in `min..=max` and fit `T`.
pub(crate) fn int_in<T: TryFrom<i64>>(
    value: Option<Int>,
    path: &str,
    min: i64,
    max: i64,
) -> Result<Option<T>, ConfigError> {
    let Some(Int(v)) = value else { return Ok(None) };
    if v < min || v > max {
        return Err(ConfigError::invalid(
            path,
            format!("expected an integer between {min} and {max}, got {v}"),
        ));
    }
    T::try_from(v)
        .map(Some)
        .map_err(|_| ConfigError::invalid(path, format!("{v} is out of range")))
}

/// Parses a value against a fixed set of case-insensitive names.
pub(crate) fn one_of<T: Copy>(
    value: &str,
    path: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let lower = value.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            ConfigError::invalid(
                path,
                format!("expected one of {}, got {value:?}", names.join(", ")),
            )
        })
}
