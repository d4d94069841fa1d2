//! The process-wide wasmtime engine and its epoch ticker.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::{CallHook, Config, Engine};

use crate::cache::CompileCache;
use crate::error::LoadError;

/// How often the engine's epoch advances while a guest executes. A running guest
/// yields to the host at each tick, which is what lets a wall-clock deadline
/// interrupt an endless loop.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How many stores are executing guest code right now, process-wide. The epoch
/// ticker sleeps (parked) while this is zero: an idle daemon, whose plugins spend
/// their time waiting in host calls (an etcd watch) or not called at all, wakes for
/// no timer.
#[derive(Clone, Default)]
pub(crate) struct GuestActivity {
    inner: Arc<ActivityInner>,
}

#[derive(Default)]
struct ActivityInner {
    executing: AtomicUsize,
    ticker: OnceLock<Thread>,
}

impl GuestActivity {
    fn enter(&self) {
        if self.inner.executing.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(ticker) = self.inner.ticker.get()
        {
            ticker.unpark();
        }
    }

    fn exit(&self) {
        self.inner.executing.fetch_sub(1, Ordering::SeqCst);
    }

    fn idle(&self) -> bool {
        self.inner.executing.load(Ordering::SeqCst) == 0
    }

    /// A tracker for one store, to be fed its call hooks.
    pub(crate) fn tracker(&self) -> StoreActivity {
        StoreActivity {
            shared: self.clone(),
            in_guest: false,
        }
    }
}

/// One store's side of [`GuestActivity`]: in guest code between entering wasm (or
/// returning to it from a host call) and leaving it (returning, or calling the host,
/// which is also where an epoch yield suspends). Dropped with its store, so a store
/// discarded mid-call cannot keep the ticker awake.
pub(crate) struct StoreActivity {
    shared: GuestActivity,
    in_guest: bool,
}

impl StoreActivity {
    pub(crate) fn on(&mut self, hook: CallHook) {
        let entering = matches!(hook, CallHook::CallingWasm | CallHook::ReturningFromHost);
        if entering && !self.in_guest {
            self.in_guest = true;
            self.shared.enter();
        } else if !entering && self.in_guest {
            self.in_guest = false;
            self.shared.exit();
        }
    }
}

impl Drop for StoreActivity {
    fn drop(&mut self) {
        if self.in_guest {
            self.shared.exit();
        }
    }
}

/// Options for [`Runtime::new`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

/// One per process: the engine, the epoch ticker and the compile cache.
/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    cache: Option<CompileCache>,
    activity: GuestActivity,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.ticker.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Build the engine and start the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Self, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine {
            reason: e.to_string(),
        })?;
        let cache = options.cache_dir.map(CompileCache::open).transpose()?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let activity = GuestActivity::default();
        let ticker = {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            let activity = activity.clone();
            std::thread::Builder::new()
                .name("keel-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if activity.idle() {
                            // Woken by the first store entering guest code (an unpark
                            // that comes first makes this return at once).
                            std::thread::park();
                            continue;
                        }
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Engine {
                    reason: format!("epoch ticker: {e}"),
                })?
        };
        let _ = activity.inner.ticker.set(ticker.thread().clone());
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                cache,
                activity,
                ticker_stop,
                ticker: Some(ticker),
            }),
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn activity(&self) -> &GuestActivity {
        &self.inner.activity
    }

    pub(crate) fn cache(&self) -> Option<&CompileCache> {
        self.inner.cache.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticker_is_needed_only_while_a_guest_executes() {
        let activity = GuestActivity::default();
        let mut a = activity.tracker();
        let mut b = activity.tracker();
        assert!(activity.idle());
        a.on(CallHook::CallingWasm);
        b.on(CallHook::CallingWasm);
        // A guest waiting in a host call (an etcd watch, an epoch yield) needs no ticks.
        a.on(CallHook::CallingHost);
        assert!(!activity.idle(), "b still executes");
        b.on(CallHook::ReturningFromWasm);
        assert!(activity.idle());
        a.on(CallHook::ReturningFromHost);
        assert!(!activity.idle());
        // A store discarded mid-call (deadline, trap) releases its share.
        drop(a);
        assert!(activity.idle());
        // Repeated hooks of the same direction count once.
        b.on(CallHook::CallingWasm);
        b.on(CallHook::ReturningFromHost);
        b.on(CallHook::ReturningFromWasm);
        assert!(activity.idle());
    }
}
