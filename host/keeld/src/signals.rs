//! The signals keeld answers, registered before anything slow happens.
//!
//! Until a handler is registered, SIGTERM kills the process outright; a
//! supervisor that stops keeld while it is still loading plugins must get a
//! clean exit, not a signal death, so the handlers come first.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// SIGTERM or SIGINT: shut down cleanly.
    Stop,
    /// SIGHUP: re-read the local configuration.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, as streams.
pub(crate) struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves when SIGTERM or SIGINT arrives.
    pub(crate) async fn stop_requested(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    /// The next signal that matters to the running loop.
    pub(crate) async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.terminate.recv() => Request::Stop,
            _ = self.interrupt.recv() => Request::Stop,
            _ = self.hangup.recv() => Request::Reload,
        }
    }
}
