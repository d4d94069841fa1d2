//! Host-side bindings generated from `wit/`. Private: the rest of the crate and its
//! users see typed Rust APIs, never generated code.
//!
//! Imports are async (they await etcd and PostgreSQL) and trappable: the outer
//! `wasmtime::Result` is a fault of the host call (the plugin is blamed and
//! reloaded), the inner `Result` is an answer the plugin sees.

pub(crate) mod host {
    wasmtime::component::bindgen!({
        world: "keel:host/imports@0.1.0",
        path: "../../wit/keel-host",
        imports: { default: async | trappable },
        with: {
            "keel:host/postgres.connection": crate::capabilities::postgres::PgConnection,
        },
    });
}

pub(crate) mod dcs {
    wasmtime::component::bindgen!({
        world: "keel:dcs/dcs-plugin@0.1.0",
        path: ["../../wit/keel-host", "../../wit/keel-dcs"],
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "keel:host/log@0.1.0": crate::bindings::host::keel::host::log,
            "keel:host/etcd@0.1.0": crate::bindings::host::keel::host::etcd,
        },
    });
}

pub(crate) mod mpp {
    wasmtime::component::bindgen!({
        world: "keel:mpp/mpp-plugin@0.1.0",
        path: ["../../wit/keel-host", "../../wit/keel-mpp"],
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "keel:host/log@0.1.0": crate::bindings::host::keel::host::log,
            "keel:host/postgres@0.1.0": crate::bindings::host::keel::host::postgres,
        },
    });
}
