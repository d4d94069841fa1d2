//! What a plugin's `Store` holds: WASI with nothing granted, the resource table,
//! the limiter, and the capabilities this plugin was granted.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::capabilities::Grants;
use crate::capabilities::http::AllowlistHooks;
use crate::limits::Limiter;

/// stdout/stderr are captured (not inherited) so a panic message can go into the
/// fault report; plugins log through `keel:host/log`.
const CAPTURED_OUTPUT_BYTES: usize = 64 << 10;

pub(crate) struct HostState {
    pub(crate) plugin: Arc<str>,
    pub(crate) grants: Grants,
    pub(crate) limiter: Limiter,
    pub(crate) table: ResourceTable,
    pub(crate) http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    pub(crate) http_hooks: AllowlistHooks,
    wasi: WasiCtx,
    stderr: MemoryOutputPipe,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, grants: Grants, max_memory: usize) -> Self {
        let stderr = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
        // No args, no env, no preopened directories, no sockets, no name lookup:
        // the WASI surface a std guest links against, with nothing behind it.
        let wasi = WasiCtxBuilder::new()
            .stdout(MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES))
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let http_hooks = AllowlistHooks {
            plugin: plugin.clone(),
            grant: grants.http.clone(),
        };
        Self {
            plugin,
            grants,
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks,
            limiter: Limiter::new(max_memory),
            table: ResourceTable::new(),
            wasi,
            stderr,
        }
    }

    /// What the plugin printed to stderr (a panic message, typically), trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_owned()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
