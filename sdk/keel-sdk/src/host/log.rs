//! Logging into the daemon's log, attributed to the plugin by the host.

pub use crate::bindings::host::keel::host::log::Level;

/// Emit one record.
pub fn emit(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::host::keel::host::log::emit(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::current().log(level, message);
}

/// Emit a debug record.
pub fn debug(message: &str) {
    emit(Level::Debug, message);
}

/// Emit an info record.
pub fn info(message: &str) {
    emit(Level::Info, message);
}

/// Emit a warning.
pub fn warn(message: &str) {
    emit(Level::Warn, message);
}

/// Emit an error record.
pub fn error(message: &str) {
    emit(Level::Error, message);
}
