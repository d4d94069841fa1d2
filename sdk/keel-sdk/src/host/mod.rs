//! What a plugin may ask of the host.
//!
//! On wasm32 these calls go to the daemon through the component's imports. On any
//! other target they go to the fake host of [`crate::testing`], so the same plugin
//! code runs in native unit tests.

pub mod etcd;
pub mod http;
pub mod log;
pub mod postgres;
