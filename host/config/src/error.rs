//! The one error type of this crate.
//!
//! Every variant that comes from the content of a configuration carries the dotted key path
//! (`postgresql.listen`, `bootstrap.initdb[2]`) as a field, so that an operator can find the
//! offending line, and so that callers can match on the kind of failure instead of parsing a
//! message. Problems that do not stop Keel from running are *warnings*, never errors: they are
//! collected in `Settings::warnings`.

use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required key is absent (after environment overrides were applied).
    #[error("{path}: required key is missing")]
    Missing {
        /// Dotted key path, e.g. `postgresql.data_dir`.
        path: String,
    },
    /// A key is present but its value is unusable.
    #[error("{path}: {problem}")]
    Invalid {
        /// Dotted key path, e.g. `postgresql.listen`.
        path: String,
        /// What is wrong, e.g. `expected host:port, got "abc"`.
        problem: String,
    },
    /// A configuration file or directory could not be read.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file or directory being read.
        file: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A YAML document is not syntactically valid.
    #[error("{origin}: invalid YAML: {source}")]
    Yaml {
        /// Where the document came from: a file name or `PATRONI_CONFIGURATION`.
        origin: String,
        /// The parser's error, which carries the line and column.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A YAML document parsed, but its top level is not a mapping.
    #[error("{origin}: the configuration must be a mapping at the top level")]
    NotAMapping {
        /// Where the document came from: a file name or `PATRONI_CONFIGURATION`.
        origin: String,
    },
    /// Neither a path nor `PATRONI_CONFIGURATION` / `KEEL_CONFIGURATION` was given.
    #[error("no configuration: give a file or directory, or set PATRONI_CONFIGURATION")]
    NoConfiguration,
}

impl ConfigError {
    /// Builds [`ConfigError::Invalid`].
    pub fn invalid(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// Builds [`ConfigError::Missing`].
    pub fn missing(path: impl Into<String>) -> Self {
        Self::Missing { path: path.into() }
    }

    /// The dotted key path this error is about, if it is about a key.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Missing { path } | Self::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Converts a serde error that carries its path into [`ConfigError::Invalid`].
    pub(crate) fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let mut problem = err.into_inner().to_string();
        // The raw structs' names mean nothing to an operator.
        if let Some(at) = problem.find("expected struct Raw") {
            problem.replace_range(at.., "expected a mapping");
        }
        // Missing fields are reported by serde at the parent's path.
        if let Some(field) = problem
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            return Self::missing(join(&path, field));
        }
        Self::invalid(path, problem)
    }
}

/// Joins a parent key path and a child key: `join("postgresql", "listen")`.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() || parent == "." {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}
