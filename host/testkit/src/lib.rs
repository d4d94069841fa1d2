//! Test and benchmark harness for Keel code that needs real processes: PostgreSQL and etcd
//! started in temporary directories on free loopback ports, as an unprivileged user.
//!
//! Tests in CI run as root, and `initdb`/`postgres` refuse to run as root. The
//! [`unprivileged_test!`] macro therefore re-runs the current test as the unprivileged user
//! `keel` (see [`unprivileged`]). Everything this crate starts is bounded in time and killed
//! when its owner is dropped, so a failing test never leaves a server behind.
//!
//! Missing binaries are a loud failure, never a silent pass: tests panic with the command that
//! installs them, unless `KEEL_SKIP_E2E=1` is set, in which case they print a `SKIP` line.
//!
//! This crate must never change permissions outside the temporary directories it creates; making
//! the test binaries reachable by `keel` is the job of the CI setup.

pub mod etcd;
pub mod net;
pub mod pg;
pub mod tls;
pub mod unprivileged;

pub use etcd::TempEtcd;
pub use net::free_port;
pub use pg::{PgBinaries, PgLayout, StopPostgresOnDrop};
pub use tls::TestPki;

/// True when `KEEL_SKIP_E2E=1`: a missing external binary then skips a test loudly instead of
/// failing it.
pub fn skip_e2e() -> bool {
    std::env::var_os("KEEL_SKIP_E2E").is_some_and(|v| v == "1")
}

/// Prints the loud skip line used when a test cannot run (only ever with `KEEL_SKIP_E2E=1`).
pub fn print_skip(what: &str) {
    eprintln!("\n*** SKIP: {what} (KEEL_SKIP_E2E=1) ***\n");
}
