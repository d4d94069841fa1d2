//! A fake host for native unit tests of plugin logic (not available on wasm32).
//!
//! [`FakeHost::install`] makes a fresh fake the current thread's host: every call a
//! plugin makes through [`crate::host`] goes to it. It captures logs, answers SQL
//! from a script and records every statement, and keeps an in-memory etcd with
//! revisions, leases on a manual clock, transactions and watches.
//!
//! ```
//! use keel_sdk::testing::{FakeHost, SqlAnswer};
//! let host = FakeHost::install();
//! host.sql().answer("SELECT 1", SqlAnswer::rows(&["?column?"], &[&["1"]]));
//! let conn = keel_sdk::host::postgres::Connection::open("postgres").unwrap();
//! assert_eq!(conn.query("SELECT 1", &[]).unwrap().scalar(), Some("1"));
//! keel_sdk::host::log::info("done");
//! assert_eq!(host.logs().last().unwrap().1, "done");
//! ```

mod etcd;
mod http;
mod sql;

use std::cell::RefCell;
use std::rc::Rc;

use crate::host::log::Level;

pub use etcd::FakeEtcd;
pub use http::FakeHttp;
pub use sql::{FakeConnection, FakeSql, SqlAnswer};

thread_local! {
    static CURRENT: RefCell<Option<FakeHost>> = const { RefCell::new(None) };
}

/// The fake host: cheap to clone, all clones share state.
#[derive(Clone, Default)]
pub struct FakeHost {
    logs: Rc<RefCell<Vec<(Level, String)>>>,
    sql: FakeSql,
    etcd: FakeEtcd,
    http: FakeHttp,
}

impl FakeHost {
    /// Install a fresh fake as this thread's host and return a handle to it.
    pub fn install() -> Self {
        let host = Self::default();
        CURRENT.with(|c| *c.borrow_mut() = Some(host.clone()));
        host
    }

    /// Every log record so far, oldest first.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }

    /// Whether any log record contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|(_, m)| m.contains(needle))
    }

    /// The scripted PostgreSQL.
    pub fn sql(&self) -> &FakeSql {
        &self.sql
    }

    /// The in-memory etcd.
    pub fn etcd(&self) -> &FakeEtcd {
        &self.etcd
    }

    /// The scripted HTTP endpoints.
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    pub(crate) fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    pub(crate) fn open_connection(
        &self,
        database: &str,
    ) -> Result<FakeConnection, crate::host::postgres::SqlError> {
        self.sql.open(database)
    }
}

/// The current thread's fake host. Panics with a hint when none is installed.
pub(crate) fn current() -> FakeHost {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or_else(|| {
        panic!("no fake host installed: call keel_sdk::testing::FakeHost::install() first")
    })
}
