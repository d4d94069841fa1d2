//! Writing an MPP handler: implement [`MppPlugin`], then call
//! [`export_mpp_plugin!`](crate::export_mpp_plugin).
//!
//! The handler keeps state between calls (queued metadata changes, an open
//! transaction on a [`crate::host::postgres::Connection`]) and enforces its own
//! deadlines in [`MppPlugin::tick`]. See `wit/keel-mpp/mpp.wit` for the contract.

use std::any::Any;
use std::cell::RefCell;

use crate::PluginInfo;
use crate::bindings::mpp::exports::keel::mpp::handler;
use crate::bindings::mpp::keel::host::plugin::Description;

pub use crate::bindings::mpp::keel::mpp::types::{
    BootstrapContext, Event, EventKind, GroupView, Member, MppError, Parameter, Slot,
};

/// An MPP handler. One value of this type lives inside the plugin instance from
/// `validate_config` on; the host calls the methods one at a time.
pub trait MppPlugin: Sized + 'static {
    /// Who this plugin is.
    fn describe() -> PluginInfo;
    /// Check the config section (JSON) and build the handler.
    fn validate_config(config: String) -> Result<Self, MppError>;
    /// This member's group.
    fn group(&self) -> u32;
    /// The coordinator's group.
    fn coordinator_group(&self) -> u32 {
        0
    }
    /// Parameters to change or add, given every computed one. Idempotent.
    fn adjust_gucs(&mut self, parameters: Vec<Parameter>) -> Vec<Parameter>;
    /// Whether Keel must never drop this replication slot.
    fn ignore_replication_slot(&self, _slot: Slot) -> bool {
        false
    }
    /// Prepare a freshly bootstrapped primary.
    fn bootstrap(&mut self, context: BootstrapContext) -> Result<(), MppError>;
    /// This member stops being primary: drop in-flight state.
    fn on_demote(&mut self) {}
    /// On the coordinator's leader: apply a worker's event.
    fn handle_event(&mut self, event: Event) -> Result<(), MppError>;
    /// On the coordinator's leader, every cycle: align metadata with the formation.
    fn sync_meta_data(&mut self, formation: Vec<GroupView>) -> Result<(), MppError>;
    /// Enforce deadlines.
    fn tick(&mut self) -> Result<(), MppError> {
        Ok(())
    }
}

/// Glue between the generated export trait and an [`MppPlugin`]; used by the macro.
#[doc(hidden)]
pub mod glue {
    use super::*;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    const NOT_CONFIGURED: &str =
        "the handler is not configured: the host must call validate-config first";

    fn with<T: MppPlugin, R>(f: impl FnOnce(&mut T) -> R) -> Option<R> {
        STATE.with(|cell| cell.borrow_mut().as_mut()?.downcast_mut::<T>().map(f))
    }

    fn try_with<T: MppPlugin>(
        f: impl FnOnce(&mut T) -> Result<(), MppError>,
    ) -> Result<(), MppError> {
        with::<T, _>(f).unwrap_or_else(|| Err(MppError::Failed(NOT_CONFIGURED.into())))
    }

    /// Calls that cannot report an error trap instead; the host blames the plugin.
    fn must<R>(value: Option<R>) -> R {
        value.unwrap_or_else(|| panic!("{NOT_CONFIGURED}"))
    }

    /// The generated `Guest` implementation for `T`.
    pub struct Export<T>(std::marker::PhantomData<T>);

    impl<T: MppPlugin> handler::Guest for Export<T> {
        fn describe() -> Description {
            crate::info::description!(crate::bindings::mpp::keel::host::plugin, T::describe(), Mpp)
        }
        fn validate_config(config: String) -> Result<(), MppError> {
            let handler = T::validate_config(config)?;
            STATE.with(|cell| *cell.borrow_mut() = Some(Box::new(handler)));
            Ok(())
        }
        fn group() -> u32 {
            must(with::<T, _>(|h| h.group()))
        }
        fn coordinator_group() -> u32 {
            must(with::<T, _>(|h| h.coordinator_group()))
        }
        fn adjust_gucs(parameters: Vec<Parameter>) -> Vec<Parameter> {
            must(with::<T, _>(|h| h.adjust_gucs(parameters)))
        }
        fn ignore_replication_slot(slot: Slot) -> bool {
            must(with::<T, _>(|h| h.ignore_replication_slot(slot)))
        }
        fn bootstrap(context: BootstrapContext) -> Result<(), MppError> {
            try_with::<T>(|h| h.bootstrap(context))
        }
        fn on_demote() {
            // Nothing to drop when never configured.
            let _ = with::<T, _>(|h| h.on_demote());
        }
        fn handle_event(event: Event) -> Result<(), MppError> {
            try_with::<T>(|h| h.handle_event(event))
        }
        fn sync_meta_data(formation: Vec<GroupView>) -> Result<(), MppError> {
            try_with::<T>(|h| h.sync_meta_data(formation))
        }
        fn tick() -> Result<(), MppError> {
            try_with::<T>(|h| h.tick())
        }
    }
}

/// Export an [`MppPlugin`] implementation as the component's `keel:mpp/mpp-plugin` world.
#[macro_export]
macro_rules! export_mpp_plugin {
    ($plugin:ty) => {
        // Exports exist only in the component; natively the plugin is a library
        // that tests call directly.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        type __KeelMppExport = $crate::__private::mpp_glue::Export<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::bindings::mpp::__keel_export_mpp_world!(
            __KeelMppExport with_types_in $crate::__private::bindings::mpp
        );
    };
}
