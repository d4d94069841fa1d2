//! The one error type of the DCS layer.
//!
//! The HA loop reacts differently to each way a DCS operation can fail, so the
//! variants must never be blurred:
//!
//! * [`DcsError::Unavailable`] — the store did not answer within the retry budget.
//!   This is the only case failsafe mode exists for; a primary that cannot reach
//!   the DCS demotes unless failsafe says otherwise.
//! * [`DcsError::Conflict`] — a compare-and-set lost: somebody else wrote the key
//!   since we read it. Re-read and decide again.
//! * [`DcsError::InvalidConfig`] — the plugin refused its settings.
//! * [`DcsError::Failed`] — the store refused for another reason.
//! * [`DcsError::PluginFault`] — the plugin itself broke (trapped, returned
//!   nonsense, ran out of fuel). A fault says nothing about the store and, above
//!   all, **must never be read as "another node holds the leader lock"**: a node
//!   that got a fault from `update_leader` does not know whether it still holds the
//!   lock, which is the same position as [`DcsError::Unavailable`], never the
//!   position of a clean `false`. Use [`DcsError::is_unavailable`] to take the
//!   failsafe path for both.

/// Why a DCS operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DcsError {
    /// The store could not be reached or did not answer within the retry budget.
    #[error("DCS is not reachable: {reason}")]
    Unavailable {
        /// What the backend saw (timeout, connection refused, ...).
        reason: String,
    },
    /// A compare-and-set failed: the key changed since the version given.
    #[error("DCS key `{key}` changed concurrently: {reason}")]
    Conflict {
        /// The key, relative to the cluster path (`config`, `sync`, ...).
        key: String,
        /// What the backend said.
        reason: String,
    },
    /// The plugin's config section (or the settings) are wrong.
    #[error("invalid DCS configuration: {reason}")]
    InvalidConfig {
        /// Names the offending key.
        reason: String,
    },
    /// Anything else the store refused.
    #[error("DCS operation `{operation}` failed: {reason}")]
    Failed {
        /// The backend operation, named as in the WIT contract (`set-value`).
        operation: &'static str,
        /// What the backend said.
        reason: String,
    },
    /// The plugin trapped or broke its contract. Never means "lock held elsewhere".
    #[error("DCS plugin `{plugin}` faulted: {reason}")]
    PluginFault {
        /// The plugin's name.
        plugin: String,
        /// The trap or contract violation.
        reason: String,
    },
}

impl DcsError {
    /// Shorthand for [`DcsError::Unavailable`].
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DcsError::Conflict`].
    pub fn conflict(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Conflict {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DcsError::Failed`].
    pub fn failed(operation: &'static str, reason: impl Into<String>) -> Self {
        Self::Failed {
            operation,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DcsError::InvalidConfig`].
    pub fn invalid_config(reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            reason: reason.into(),
        }
    }

    /// `true` when the outcome of the operation is unknown because the store (or
    /// the plugin talking to it) could not be relied on: [`DcsError::Unavailable`]
    /// and [`DcsError::PluginFault`]. This is the failsafe path; it never means
    /// that another member holds the leader lock.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::PluginFault { .. })
    }

    /// `true` for a lost compare-and-set.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// `true` when the plugin itself broke (as opposed to the store answering).
    pub fn is_plugin_fault(&self) -> bool {
        matches!(self, Self::PluginFault { .. })
    }
}

/// Result of a DCS operation.
pub type Result<T, E = DcsError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cases = [
            (DcsError::unavailable("timeout"), true, false, false),
            (DcsError::conflict("sync", "stale"), false, true, false),
            (DcsError::invalid_config("hosts"), false, false, false),
            (DcsError::failed("set-value", "denied"), false, false, false),
            (
                DcsError::PluginFault {
                    plugin: "etcd".into(),
                    reason: "trap".into(),
                },
                true,
                false,
                true,
            ),
        ];
        for (err, unavailable, conflict, fault) in cases {
            assert_eq!(err.is_unavailable(), unavailable, "{err}");
            assert_eq!(err.is_conflict(), conflict, "{err}");
            assert_eq!(err.is_plugin_fault(), fault, "{err}");
        }
    }
}
