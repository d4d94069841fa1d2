//! `keel:host/log`: plugin records go to the daemon's tracing output under the
//! plugin's name.

use crate::bindings::host::keel::host::log::{Host, Level};
use crate::state::HostState;

/// Longer messages are cut: a plugin must not be able to flood the log with one call.
const MAX_MESSAGE_BYTES: usize = 4096;

impl Host for HostState {
    async fn emit(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "keel::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "keel::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "keel::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "keel::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "keel::plugin", plugin, "{message}"),
        }
        Ok(())
    }
}
