//! Per-plugin resource limits and the store limiter that enforces them.

use std::time::Duration;

/// Limits applied to one plugin's instances and calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory an instance may grow to, bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget of one call (a DCS watch gets its wait on top).
    pub call_timeout: Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// Enforces the memory limit and remembers whether it was hit, so that the trap
/// that follows a refused allocation is reported as a memory-limit hit.
#[derive(Debug)]
pub(crate) struct Limiter {
    max_memory: usize,
    pub(crate) hit: bool,
    pub(crate) high_water: usize,
}

impl Limiter {
    pub(crate) fn new(max_memory: usize) -> Self {
        Self {
            max_memory,
            hit: false,
            high_water: 0,
        }
    }
}

/// Tables are small in Rust guests; this bounds a hostile one all the same.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            // Refuse the growth: memory.grow returns -1, a Rust guest then aborts
            // (a trap) unless it used try_reserve and copes.
            self.hit = true;
            return Ok(false);
        }
        self.high_water = self.high_water.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
