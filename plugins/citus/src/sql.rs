//! The SQL the plugin runs: Citus's documented functions, nothing else.
//!
//! [`Session`] is the one dedicated connection to the Citus database that the
//! metadata work uses (Patroni's `citus` connection), with `statement_timeout`
//! and `idle_in_transaction_session_timeout` off, because a switchover holds a
//! transaction open across calls. It is opened on first use and after any
//! failure, and closed (which rolls back) on demotion.

use keel_sdk::host::postgres::{Connection, SqlError};

use crate::topology::Change;
use crate::worker::{Failure, Metadata, Row};

/// Why a statement failed, for [`Failure::message`].
pub fn describe(error: &SqlError) -> String {
    match &error.sqlstate {
        Some(code) => format!("{} (SQLSTATE {code})", error.message),
        None => error.message.clone(),
    }
}

/// A failure of `what`.
pub fn failure(what: impl Into<String>, error: &SqlError) -> Failure {
    Failure {
        what: what.into(),
        message: describe(error),
    }
}

/// A text literal for messages (not for SQL: parameters are bound by the host).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The metadata session.
#[derive(Debug)]
pub struct Session {
    database: String,
    connection: Option<Connection>,
}

impl Session {
    /// A session on `database`, opened when first needed.
    pub fn new(database: impl Into<String>) -> Self {
        Self {
            database: database.into(),
            connection: None,
        }
    }

    /// Whether the session has a transaction open.
    #[cfg(test)]
    pub fn in_transaction(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(Connection::in_transaction)
    }

    fn connection(&mut self) -> Result<&Connection, Failure> {
        if self.connection.is_none() {
            let what = format!("connecting to database {}", quoted(&self.database));
            let connection =
                Connection::open(&self.database).map_err(|e| failure(what.clone(), &e))?;
            connection
                .batch("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
                .map_err(|e| failure(what, &e))?;
            self.connection = Some(connection);
        }
        self.connection.as_ref().ok_or_else(|| Failure {
            what: "opening the metadata session".into(),
            message: "no connection".into(),
        })
    }

    fn batch(&mut self, sql: &str) -> Result<(), Failure> {
        self.connection()?.batch(sql).map_err(|e| failure(sql, &e))
    }

    fn select(
        &mut self,
        what: String,
        sql: &str,
        params: &[Option<String>],
    ) -> Result<Option<String>, Failure> {
        let rows = self
            .connection()?
            .query(sql, params)
            .map_err(|e| failure(what, &e))?;
        Ok(rows.scalar().map(str::to_owned))
    }
}

fn text(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

impl Metadata for Session {
    fn load(&mut self) -> Result<Vec<Row>, Failure> {
        const SQL: &str = "SELECT groupid, nodename, nodeport, noderole, nodeid \
                           FROM pg_catalog.pg_dist_node";
        let what = "reading pg_catalog.pg_dist_node";
        let rows = self
            .connection()?
            .query(SQL, &[])
            .map_err(|e| failure(what, &e))?;
        rows.rows
            .iter()
            .map(|row| {
                let field = |i: usize| row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
                let bad = |column: &str| Failure {
                    what: what.to_owned(),
                    message: format!("unexpected {column} in row {row:?}"),
                };
                Ok(Row {
                    group: field(0).parse().map_err(|_| bad("groupid"))?,
                    host: field(1).to_owned(),
                    port: field(2).parse().map_err(|_| bad("nodeport"))?,
                    role: field(3).to_owned(),
                    nodeid: field(4).parse().map_err(|_| bad("nodeid"))?,
                })
            })
            .collect()
    }

    fn begin(&mut self) -> Result<(), Failure> {
        self.batch("BEGIN")
    }

    fn commit(&mut self) -> Result<(), Failure> {
        self.batch("COMMIT")
    }

    fn rollback(&mut self) -> Result<(), Failure> {
        self.batch("ROLLBACK")
    }

    fn apply(
        &mut self,
        group: u32,
        change: &Change,
        cooldown_ms: u32,
    ) -> Result<Option<i32>, Failure> {
        match change {
            Change::Add { host, port, role } => {
                let what = format!(
                    "citus_add_node({}, {port}, {group}, {}, 'default')",
                    quoted(host),
                    quoted(role)
                );
                let nodeid = self.select(
                    what.clone(),
                    "SELECT pg_catalog.citus_add_node($1, $2::integer, $3::integer, $4, 'default')",
                    &[text(host), text(port), text(group), text(role)],
                )?;
                nodeid
                    .and_then(|id| id.parse().ok())
                    .map(Some)
                    .ok_or_else(|| Failure {
                        what,
                        message: "no nodeid returned".into(),
                    })
            }
            Change::Update { nodeid, host, port } => {
                let what = format!(
                    "citus_update_node({nodeid}, {}, {port}, true, {cooldown_ms})",
                    quoted(host)
                );
                self.select(
                    what,
                    "SELECT pg_catalog.citus_update_node($1::integer, $2, $3::integer, true, $4::integer)",
                    &[text(nodeid), text(host), text(port), text(cooldown_ms)],
                )?;
                Ok(None)
            }
            Change::Remove { host, port } => {
                let what = format!("citus_remove_node({}, {port})", quoted(host));
                self.select(
                    what,
                    "SELECT pg_catalog.citus_remove_node($1, $2::integer)",
                    &[text(host), text(port)],
                )?;
                Ok(None)
            }
        }
    }

    fn close(&mut self) {
        self.connection = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_sdk::testing::{FakeHost, SqlAnswer};

    #[test]
    fn the_session_turns_timeouts_off_and_calls_citus_by_its_documented_names() {
        let host = FakeHost::install();
        host.sql().answer("SET ", SqlAnswer::empty());
        host.sql().answer(
            "citus_add_node",
            SqlAnswer::rows(&["citus_add_node"], &[&["7"]]),
        );
        host.sql().answer("citus_update_node", SqlAnswer::empty());
        host.sql().answer("citus_remove_node", SqlAnswer::empty());
        let mut session = Session::new("citus");
        let add = Change::Add {
            host: "10.0.0.2".into(),
            port: 5433,
            role: "secondary".into(),
        };
        assert_eq!(session.apply(3, &add, 10_000), Ok(Some(7)));
        let update = Change::Update {
            nodeid: 4,
            host: "10.0.0.1-demoted".into(),
            port: 5432,
        };
        assert_eq!(session.apply(3, &update, 2500), Ok(None));
        let remove = Change::Remove {
            host: "10.0.0.9".into(),
            port: 5432,
        };
        assert_eq!(session.apply(3, &remove, 10_000), Ok(None));

        let statements = host.sql().statements();
        assert!(statements.iter().all(|s| s.database == "citus"));
        assert_eq!(
            (statements[0].sql.as_str(), statements[1].sql.as_str()),
            (
                "SET statement_timeout = 0",
                "SET idle_in_transaction_session_timeout = 0"
            ),
            "one session, set up once"
        );
        let calls: Vec<(&str, Vec<Option<String>>)> = statements[2..]
            .iter()
            .map(|s| (s.sql.as_str(), s.params.clone()))
            .collect();
        let p = |v: &[&str]| v.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();
        assert_eq!(
            calls,
            vec![
                (
                    "SELECT pg_catalog.citus_add_node($1, $2::integer, $3::integer, $4, 'default')",
                    p(&["10.0.0.2", "5433", "3", "secondary"])
                ),
                (
                    "SELECT pg_catalog.citus_update_node($1::integer, $2, $3::integer, true, $4::integer)",
                    p(&["4", "10.0.0.1-demoted", "5432", "2500"])
                ),
                (
                    "SELECT pg_catalog.citus_remove_node($1, $2::integer)",
                    p(&["10.0.0.9", "5432"])
                ),
            ]
        );
    }

    #[test]
    fn a_failed_call_says_which_call_and_why() {
        let host = FakeHost::install();
        host.sql().answer("SET ", SqlAnswer::empty());
        host.sql().answer(
            "citus_update_node",
            SqlAnswer::error(
                "55000",
                "there is already another node with the specified hostname and port",
            ),
        );
        let mut session = Session::new("citus");
        let update = Change::Update {
            nodeid: 2,
            host: "it's".into(),
            port: 5432,
        };
        let failure = session.apply(1, &update, 10_000).unwrap_err();
        assert_eq!(
            failure.to_string(),
            "citus_update_node(2, 'it''s', 5432, true, 10000) failed: there is already another \
             node with the specified hostname and port (SQLSTATE 55000)"
        );
    }

    #[test]
    fn rows_of_pg_dist_node_are_read_by_column_name_order() {
        let host = FakeHost::install();
        host.sql().answer("SET ", SqlAnswer::empty());
        host.sql().answer(
            "FROM pg_catalog.pg_dist_node",
            SqlAnswer::rows(
                &["groupid", "nodename", "nodeport", "noderole", "nodeid"],
                &[
                    &["0", "10.0.0.1", "5432", "primary", "1"],
                    &["1", "w", "6432", "secondary", "4"],
                ],
            ),
        );
        let rows = Session::new("citus").load().unwrap();
        assert_eq!(
            rows[1],
            Row {
                group: 1,
                host: "w".into(),
                port: 6432,
                role: "secondary".into(),
                nodeid: 4
            }
        );
    }
}
