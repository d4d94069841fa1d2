//! Small helpers for stage two (required keys, ranges, the warnings collector) and the
//! never-failing [`Reader`] used for the DCS document.
//!
//! They exist so that each section's conversion reads as a list of keys, and so that every
//! error and warning is built the same way, with the full key path first.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::ConfigError;
use crate::error::join;
use crate::lenient::{Int, Text, parse_bool, parse_duration, parse_int};
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

/// Reads keys of one JSON object, warning (with the key path) instead of failing.
pub(crate) struct Reader<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) prefix: &'a str,
    pub(crate) warnings: &'a mut Vec<String>,
}

impl Reader<'_> {
    /// A non-null value.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Parses `key` if present; on failure warns and returns `None`.
    pub(crate) fn parse<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.get(key)?;
        match parse(value) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.warnings.push(format!(
                    "{}{key}: {problem}; using the default",
                    self.prefix
                ));
                None
            }
        }
    }

    pub(crate) fn flag(&mut self, key: &str, default: bool) -> bool {
        self.parse(key, parse_bool).unwrap_or(default)
    }

    /// A non-negative integer that fits `u32`.
    pub(crate) fn uint(&mut self, key: &str, default: u32) -> u32 {
        self.parse(key, |v| {
            let n = parse_int(v)?;
            u32::try_from(n)
                .map_err(|_| format!("expected an integer between 0 and {}, got {n}", u32::MAX))
        })
        .unwrap_or(default)
    }

    /// A number of seconds; units (`30min`) are accepted.
    pub(crate) fn seconds(&mut self, key: &str) -> Option<u32> {
        self.parse(key, |v| {
            let secs = parse_duration(v)?.as_secs();
            u32::try_from(secs).map_err(|_| format!("{secs} seconds is too long"))
        })
    }

    pub(crate) fn text(&mut self, key: &str) -> Option<String> {
        self.parse(key, crate::lenient::parse_text)
    }
}
