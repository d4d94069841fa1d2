//! SQL on the local PostgreSQL instance as the daemon's superuser (MPP plugins only).
//!
//! A [`Connection`] outlives a single plugin call, so a transaction can stay open
//! between calls. Dropping it ends the session (an open transaction rolls back).

pub use crate::bindings::host::keel::host::postgres::{Rows, SqlError};

/// A session on the local instance.
#[derive(Debug)]
pub struct Connection {
    #[cfg(target_arch = "wasm32")]
    inner: crate::bindings::host::keel::host::postgres::Connection,
    #[cfg(not(target_arch = "wasm32"))]
    inner: crate::testing::FakeConnection,
}

impl Connection {
    /// Open a session to `database`.
    pub fn open(database: &str) -> Result<Self, SqlError> {
        #[cfg(target_arch = "wasm32")]
        let inner = crate::bindings::host::keel::host::postgres::Connection::open(database)?;
        #[cfg(not(target_arch = "wasm32"))]
        let inner = crate::testing::current().open_connection(database)?;
        Ok(Self { inner })
    }

    /// Run one statement with text parameters and return its rows.
    pub fn query(&self, sql: &str, params: &[Option<String>]) -> Result<Rows, SqlError> {
        self.inner.query(sql, params)
    }

    /// Run one statement with text parameters; returns the rows affected.
    pub fn execute(&self, sql: &str, params: &[Option<String>]) -> Result<u64, SqlError> {
        self.inner.execute(sql, params)
    }

    /// Run statements without parameters (`BEGIN`, `COMMIT`, `SET ...`).
    pub fn batch(&self, sql: &str) -> Result<(), SqlError> {
        self.inner.batch(sql)
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }
}

impl SqlError {
    /// An error without SQLSTATE.
    pub fn client(message: impl Into<String>) -> Self {
        Self {
            sqlstate: None,
            message: message.into(),
        }
    }
}

impl Rows {
    /// The first column of the first row, if any and not NULL.
    pub fn scalar(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_deref()
    }
}
