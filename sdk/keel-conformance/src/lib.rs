//! # keel-conformance
//!
//! The suites a Keel plugin must pass, each case named for what it proves, so a
//! plugin author sees exactly which property broke.
//!
//! [`dcs`] checks a DCS backend through [`keel_dcs::DcsBackend`], the same
//! interface the daemon uses: a wasm component loaded by keel-runtime, or a
//! native backend such as keel-dcs's in-memory reference. The author supplies a
//! [`dcs::DcsHarness`] that makes members of one store, lets time pass, and makes a
//! member whose store cannot be reached; [`dcs::check`] runs every case.
//!
//! [`mpp`] checks an MPP handler component through [`keel_runtime::MppPlugin`], the
//! handle keeld uses. The author supplies an [`mpp::MppHarness`]: a fresh server
//! with the plugin on it per case, config sections good and bad, the plugin's own
//! replication slots, and two statements to see effects with (where a group's
//! primary points, and what a client writing to a group runs); [`mpp::check`] runs
//! every case.
#![deny(missing_docs)]

pub mod dcs;
pub mod mpp;
