//! Writing a DCS backend: implement [`DcsPlugin`], then call
//! [`export_dcs_plugin!`](crate::export_dcs_plugin).
//!
//! The backend stores Patroni's keys (`leader`, `members/<name>`, `config`, ...)
//! in its store and hands back raw values with versions; the host parses and
//! renders the values. See `wit/keel-dcs/dcs.wit` for the contract of each
//! operation: the doc comments there are the specification.

use std::any::Any;
use std::cell::RefCell;

use crate::PluginInfo;
use crate::bindings::dcs::exports::keel::dcs::backend;
use crate::bindings::dcs::keel::host::plugin::Description;

pub use crate::bindings::dcs::keel::dcs::types::{
    DcsError, Entry, GroupEntries, LoadScope, Settings, ValueKey,
};

/// A DCS backend. One value of this type lives inside the plugin instance from
/// `configure` on; the host calls the methods one at a time.
pub trait DcsPlugin: Sized + 'static {
    /// Who this plugin is.
    fn describe() -> PluginInfo;
    /// Build the backend from the settings (checking the plugin's config section).
    fn configure(settings: Settings) -> Result<Self, DcsError>;
    /// Settings changed after the first `configure`. By default the backend is
    /// rebuilt from scratch.
    fn reconfigure(&mut self, settings: Settings) -> Result<(), DcsError> {
        *self = Self::configure(settings)?;
        Ok(())
    }
    /// Read the cluster, a group, or the whole formation.
    fn load(&mut self, scope: LoadScope) -> Result<Vec<GroupEntries>, DcsError>;
    /// Race for the leader key; `true` when won.
    fn attempt_to_acquire_leader(&mut self) -> Result<bool, DcsError>;
    /// Keep the leader key ours; `false` when another member holds it.
    fn update_leader(&mut self) -> Result<bool, DcsError>;
    /// Write the leader key unconditionally.
    fn take_leader(&mut self) -> Result<bool, DcsError>;
    /// Delete the leader key if it still holds our name.
    fn delete_leader(&mut self) -> Result<bool, DcsError>;
    /// Write this member's key, bound to its session.
    fn touch_member(&mut self, value: String) -> Result<bool, DcsError>;
    /// Write `initialize` (create-only when `create_new`).
    fn initialize(&mut self, create_new: bool, value: String) -> Result<bool, DcsError>;
    /// Delete `initialize`.
    fn cancel_initialization(&mut self) -> Result<bool, DcsError>;
    /// Write a value, compare-and-set when a version is given; returns the new version.
    fn set_value(
        &mut self,
        key: ValueKey,
        value: String,
        expected_version: Option<String>,
    ) -> Result<String, DcsError>;
    /// Delete a value, compare-and-set when a version is given.
    fn delete_value(
        &mut self,
        key: ValueKey,
        expected_version: Option<String>,
    ) -> Result<(), DcsError>;
    /// Delete every key of the cluster (or group).
    fn delete_cluster(&mut self) -> Result<(), DcsError>;
    /// The leader lock's TTL changed.
    fn set_ttl(&mut self, seconds: u32) -> Result<(), DcsError>;
    /// The retry budget changed. Backends that do not retry (every failed
    /// request is `unavailable` at once) keep the default, which ignores it.
    fn set_retry_timeout(&mut self, seconds: u32) -> Result<(), DcsError> {
        let _ = seconds;
        Ok(())
    }
    /// Wait for a leader key change or the timeout; `true` when woken by a change.
    fn watch(&mut self, leader_version: Option<String>, timeout_ms: u32) -> Result<bool, DcsError>;
}

/// The relative name of a [`ValueKey`] under the cluster path (`optime/leader`, ...).
pub fn value_key_name(key: ValueKey) -> &'static str {
    match key {
        ValueKey::Config => "config",
        ValueKey::Failover => "failover",
        ValueKey::Sync => "sync",
        ValueKey::History => "history",
        ValueKey::Status => "status",
        ValueKey::Failsafe => "failsafe",
        ValueKey::OptimeLeader => "optime/leader",
    }
}

/// A group directory name in an MPP formation: `0` or a decimal without
/// leading zeros (`01` is not group 1, as for Patroni).
pub fn parse_group(name: &str) -> Option<u32> {
    let canonical = name == "0" || (name.starts_with(|c: char| ('1'..='9').contains(&c)));
    canonical.then(|| name.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_names_are_strict_decimals() {
        assert_eq!(super::parse_group("0"), Some(0));
        assert_eq!(super::parse_group("12"), Some(12));
        for bad in ["00", "01", "-1", "+1", "a", "", "1a", "99999999999"] {
            assert_eq!(super::parse_group(bad), None, "{bad}");
        }
    }
}

/// Glue between the generated export trait and a [`DcsPlugin`]; used by the macro.
#[doc(hidden)]
pub mod glue {
    use super::*;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// Run `f` on the configured backend.
    fn with<T: DcsPlugin, R>(f: impl FnOnce(&mut T) -> Result<R, DcsError>) -> Result<R, DcsError> {
        STATE.with(|cell| {
            let mut slot = cell.borrow_mut();
            match slot.as_mut().and_then(|b| b.downcast_mut::<T>()) {
                Some(backend) => f(backend),
                None => Err(DcsError::Failed(
                    "the backend is not configured: the host must call configure first".into(),
                )),
            }
        })
    }

    /// The generated `Guest` implementation for `T`.
    pub struct Export<T>(std::marker::PhantomData<T>);

    impl<T: DcsPlugin> backend::Guest for Export<T> {
        fn describe() -> Description {
            crate::info::description!(crate::bindings::dcs::keel::host::plugin, T::describe(), Dcs)
        }
        fn configure(settings: Settings) -> Result<(), DcsError> {
            let configured = STATE.with(|cell| cell.borrow().is_some());
            if configured {
                return with::<T, _>(|b| b.reconfigure(settings));
            }
            let backend = T::configure(settings)?;
            STATE.with(|cell| *cell.borrow_mut() = Some(Box::new(backend)));
            Ok(())
        }
        fn load(scope: LoadScope) -> Result<Vec<GroupEntries>, DcsError> {
            with::<T, _>(|b| b.load(scope))
        }
        fn attempt_to_acquire_leader() -> Result<bool, DcsError> {
            with::<T, _>(|b| b.attempt_to_acquire_leader())
        }
        fn update_leader() -> Result<bool, DcsError> {
            with::<T, _>(|b| b.update_leader())
        }
        fn take_leader() -> Result<bool, DcsError> {
            with::<T, _>(|b| b.take_leader())
        }
        fn delete_leader() -> Result<bool, DcsError> {
            with::<T, _>(|b| b.delete_leader())
        }
        fn touch_member(value: String) -> Result<bool, DcsError> {
            with::<T, _>(|b| b.touch_member(value))
        }
        fn initialize(create_new: bool, value: String) -> Result<bool, DcsError> {
            with::<T, _>(|b| b.initialize(create_new, value))
        }
        fn cancel_initialization() -> Result<bool, DcsError> {
            with::<T, _>(|b| b.cancel_initialization())
        }
        fn set_value(
            key: ValueKey,
            value: String,
            expected_version: Option<String>,
        ) -> Result<String, DcsError> {
            with::<T, _>(|b| b.set_value(key, value, expected_version))
        }
        fn delete_value(key: ValueKey, expected_version: Option<String>) -> Result<(), DcsError> {
            with::<T, _>(|b| b.delete_value(key, expected_version))
        }
        fn delete_cluster() -> Result<(), DcsError> {
            with::<T, _>(|b| b.delete_cluster())
        }
        fn set_ttl(seconds: u32) -> Result<(), DcsError> {
            with::<T, _>(|b| b.set_ttl(seconds))
        }
        fn set_retry_timeout(seconds: u32) -> Result<(), DcsError> {
            with::<T, _>(|b| b.set_retry_timeout(seconds))
        }
        fn watch(leader_version: Option<String>, timeout_ms: u32) -> Result<bool, DcsError> {
            with::<T, _>(|b| b.watch(leader_version, timeout_ms))
        }
    }
}

/// Export a [`DcsPlugin`] implementation as the component's `keel:dcs/dcs-plugin` world.
#[macro_export]
macro_rules! export_dcs_plugin {
    ($plugin:ty) => {
        // Exports exist only in the component; natively the plugin is a library
        // that tests call directly.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        type __KeelDcsExport = $crate::__private::dcs_glue::Export<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::bindings::dcs::__keel_export_dcs_world!(
            __KeelDcsExport with_types_in $crate::__private::bindings::dcs
        );
    };
}
