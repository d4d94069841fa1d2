//! Keel's cross-process tests, one binary (ripgrep style): real wasm components
//! built from plugins/, real etcd, real PostgreSQL, real daemons.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod callbacks_e2e;
mod citus_e2e;
mod citus_fixture;
mod citus_plugin;
mod cluster;
mod dcs_conformance;
mod etcd_capability;
mod example_configs;
mod example_plugins;
mod ha_e2e;
mod haproxy_e2e;
mod http_capability;
mod keelctl_cli;
mod keeld_cli;
mod mpp_conformance;
mod patroni_interop;
mod patroni_tooling;
mod plugin_limits;
mod plugin_loading;
mod postgres_capability;
mod rest_e2e;
mod standby_cluster_e2e;

use keel_runtime::{Runtime, RuntimeOptions};
use keel_tests::PluginDir;

/// A runtime whose cache lives in the plugin dir.
pub(crate) fn runtime_for(dir: &PluginDir) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.cache()),
    })
    .expect("runtime")
}
