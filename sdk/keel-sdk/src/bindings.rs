//! Generated WIT bindings. Hidden from the SDK's documented surface: plugin authors
//! use the traits in [`crate::dcs`] and [`crate::mpp`], the facade in
//! [`crate::host`], and the types re-exported from there.
//!
//! The three modules share the `keel:host` import interfaces (`with`), so one Rust
//! type stands for one WIT type whichever world a plugin implements.
#![allow(missing_docs, unsafe_code, unreachable_pub, clippy::all)]

/// The host imports (`keel:host/imports`).
pub mod host {
    wit_bindgen::generate!({
        world: "keel:host/imports@0.1.0",
        path: ["../../wit/keel-host"],
        generate_all,
        additional_derives: [PartialEq, Eq],
    });
}

/// The DCS world (`keel:dcs/dcs-plugin`).
pub mod dcs {
    wit_bindgen::generate!({
        world: "keel:dcs/dcs-plugin@0.1.0",
        path: ["../../wit/keel-host", "../../wit/keel-dcs"],
        with: {
            "keel:host/log@0.1.0": ::keel_sdk::__private::bindings::host::keel::host::log,
            "keel:host/etcd@0.1.0": ::keel_sdk::__private::bindings::host::keel::host::etcd,
        },
        generate_all,
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "__keel_export_dcs_world",
        default_bindings_module: "::keel_sdk::__private::bindings::dcs",
    });
}

/// The MPP world (`keel:mpp/mpp-plugin`).
pub mod mpp {
    wit_bindgen::generate!({
        world: "keel:mpp/mpp-plugin@0.1.0",
        path: ["../../wit/keel-host", "../../wit/keel-mpp"],
        with: {
            "keel:host/log@0.1.0": ::keel_sdk::__private::bindings::host::keel::host::log,
            "keel:host/postgres@0.1.0": ::keel_sdk::__private::bindings::host::keel::host::postgres,
        },
        generate_all,
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "__keel_export_mpp_world",
        default_bindings_module: "::keel_sdk::__private::bindings::mpp",
    });
}
