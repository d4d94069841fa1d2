//! One owner for a plugin's live instance, and the call wrapper that enforces
//! deadlines and memory limits and turns every fault into a [`PluginError`].
//!
//! A wasmtime `Store` is single-threaded and an instance that trapped (or whose
//! call was cancelled) can never be entered again. So each plugin handle keeps
//! at most one live instance behind an async mutex; a call that faults drops it,
//! and the next call builds a fresh one and replays the plugin's configuration
//! (the [`Init`] hook) before doing its own work.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use crate::capabilities::Grants;
use crate::error::PluginError;
use crate::limits::PluginLimits;
use crate::metrics::PluginMetrics;
use crate::runtime::Runtime;
use crate::state::HostState;

/// A boxed, `Send` future borrowing the store.
pub(crate) type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

/// Creates instances of one world from its `InstancePre`.
pub(crate) trait Pre<B>: Send + Sync + 'static {
    fn instantiate<'a>(&'a self, store: &'a mut Store<HostState>) -> CallFuture<'a, B>;
}

/// Work replayed on every fresh instance (the last accepted configuration).
pub(crate) trait Init<B>: Send + Sync + 'static {
    /// The call's name in errors.
    fn name(&self) -> &'static str;
    /// Run it; an `Err` inner string means the plugin refused.
    fn run<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
        bindings: &'a B,
    ) -> CallFuture<'a, Result<(), String>>;
}

struct Live<B> {
    store: Store<HostState>,
    bindings: B,
    /// Set while a call is in progress; still set at the next call means the
    /// previous caller was cancelled mid-call and the instance is unusable.
    busy: bool,
}

/// The plugin-independent parts of a handle.
pub(crate) struct Instances<B> {
    plugin: Arc<str>,
    /// Held, not just its engine: the runtime's epoch ticker must outlive every
    /// instance, or deadlines stop firing.
    runtime: Runtime,
    pre: Arc<dyn Pre<B>>,
    grants: Grants,
    limits: PluginLimits,
    metrics: Arc<PluginMetrics>,
    init: Mutex<Option<Arc<dyn Init<B>>>>,
    live: tokio::sync::Mutex<Option<Live<B>>>,
}

impl<B: Send + Sync + 'static> Instances<B> {
    pub(crate) fn new(
        plugin: Arc<str>,
        runtime: Runtime,
        pre: Arc<dyn Pre<B>>,
        grants: Grants,
        limits: PluginLimits,
    ) -> Self {
        Self {
            plugin,
            runtime,
            pre,
            grants,
            limits,
            metrics: Arc::default(),
            init: Mutex::new(None),
            live: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn plugin(&self) -> &str {
        &self.plugin
    }

    pub(crate) fn metrics(&self) -> &Arc<PluginMetrics> {
        &self.metrics
    }

    pub(crate) fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Replay `init` on every fresh instance from now on.
    pub(crate) fn set_init(&self, init: Arc<dyn Init<B>>) {
        *self
            .init
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(init);
    }

    async fn instantiate(&self) -> Result<Live<B>, PluginError> {
        let state = HostState::new(
            self.plugin.clone(),
            self.grants.clone(),
            self.limits.memory_bytes,
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Yield to the executor at every epoch tick, so a deadline (a plain tokio
        // timeout) can interrupt a guest that never returns.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        // The epoch only needs to advance while some guest executes.
        let mut activity = self.runtime.activity().tracker();
        store.call_hook(move |_, hook| {
            activity.on(hook);
            Ok(())
        });
        self.metrics.record_instantiation();
        let bindings =
            self.pre
                .instantiate(&mut store)
                .await
                .map_err(|e| PluginError::Instantiate {
                    plugin: self.plugin.to_string(),
                    reason: format!("{e:#}"),
                })?;
        let mut live = Live {
            store,
            bindings,
            busy: false,
        };
        let init = self.init.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(init) = init {
            let name = init.name();
            let replay = self.run(&mut live, name, Duration::ZERO, move |store, bindings| {
                Box::pin(async move { init.run(store, bindings).await })
            });
            match replay.await? {
                Ok(()) => {}
                Err(refusal) => {
                    return Err(PluginError::Instantiate {
                        plugin: self.plugin.to_string(),
                        reason: format!(
                            "the fresh instance refused `{name}` it accepted before: {refusal}"
                        ),
                    });
                }
            }
        }
        Ok(live)
    }

    /// Call into the plugin with the deadline `call_timeout + extra`.
    pub(crate) async fn call<R, F>(
        &self,
        call: &'static str,
        extra: Duration,
        f: F,
    ) -> Result<R, PluginError>
    where
        R: Send,
        F: for<'a> FnOnce(&'a mut Store<HostState>, &'a B) -> CallFuture<'a, R> + Send,
    {
        let mut guard = self.live.lock().await;
        if guard.as_ref().is_some_and(|live| live.busy) {
            tracing::warn!(
                plugin = &*self.plugin,
                "previous call was cancelled mid-way; discarding the instance"
            );
            *guard = None;
        }
        if guard.is_none() {
            match self.instantiate().await {
                Ok(live) => *guard = Some(live),
                Err(e) => {
                    self.metrics.record_failure(&e);
                    return Err(e);
                }
            }
        }
        let Some(live) = guard.as_mut() else {
            unreachable!("an instance was just installed")
        };
        let started = Instant::now();
        let result = self.run(live, call, extra, f).await;
        self.metrics.record_call(started.elapsed());
        self.metrics
            .record_memory(live.store.data().limiter.high_water);
        if let Err(e) = &result {
            self.metrics.record_failure(e);
            tracing::warn!(plugin = &*self.plugin, call, error = %e, "plugin call failed; the next call gets a fresh instance");
            *guard = None;
        }
        result
    }

    async fn run<R, F>(
        &self,
        live: &mut Live<B>,
        call: &'static str,
        extra: Duration,
        f: F,
    ) -> Result<R, PluginError>
    where
        F: for<'a> FnOnce(&'a mut Store<HostState>, &'a B) -> CallFuture<'a, R>,
    {
        let budget = self.limits.call_timeout + extra;
        live.store.data_mut().limiter.hit = false;
        live.busy = true;
        let outcome = tokio::time::timeout(budget, f(&mut live.store, &live.bindings)).await;
        live.busy = false;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(live, call, &error)),
            Err(_elapsed) => Err(PluginError::Deadline {
                plugin: self.plugin.to_string(),
                call,
                budget,
            }),
        }
    }

    fn classify(&self, live: &Live<B>, call: &'static str, error: &wasmtime::Error) -> PluginError {
        let plugin = self.plugin.to_string();
        let state = live.store.data();
        if state.limiter.hit {
            return PluginError::MemoryLimit {
                plugin,
                call,
                limit_bytes: self.limits.memory_bytes,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PluginError::Deadline {
                plugin,
                call,
                budget: self.limits.call_timeout,
            };
        }
        let mut reason = error.to_string();
        if let Some(root) = error.chain().last().map(ToString::to_string)
            && root != reason
        {
            reason = format!("{reason}: {root}");
        }
        let stderr = state.stderr_text();
        if !stderr.is_empty() {
            let tail: String = stderr
                .chars()
                .rev()
                .take(1000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            reason = format!("{reason}; plugin stderr: {tail}");
        }
        PluginError::Trap {
            plugin,
            call,
            reason,
        }
    }
}
