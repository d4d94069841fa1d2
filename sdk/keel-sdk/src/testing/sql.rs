//! Scripted SQL for native tests: answers by statement text, records everything.

use std::cell::RefCell;
use std::rc::Rc;

use crate::host::postgres::{Rows, SqlError};

/// What a scripted statement answers.
#[derive(Debug, Clone)]
pub enum SqlAnswer {
    /// Rows for `query`, and their count for `execute`.
    Rows(Rows),
    /// An error with an optional SQLSTATE.
    Error(SqlError),
}

impl SqlAnswer {
    /// Rows from string slices.
    pub fn rows(columns: &[&str], rows: &[&[&str]]) -> Self {
        Self::Rows(Rows {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| Some((*v).to_owned())).collect())
                .collect(),
        })
    }

    /// No rows.
    pub fn empty() -> Self {
        Self::Rows(Rows {
            columns: Vec::new(),
            rows: Vec::new(),
        })
    }

    /// A server error with SQLSTATE.
    pub fn error(sqlstate: &str, message: &str) -> Self {
        Self::Error(SqlError {
            sqlstate: Some(sqlstate.to_owned()),
            message: message.to_owned(),
        })
    }
}

/// One statement the plugin ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The database of the connection.
    pub database: String,
    /// The SQL text.
    pub sql: String,
    /// The parameters.
    pub params: Vec<Option<String>>,
}

#[derive(Default)]
struct State {
    /// (needle, answer, remaining uses; None = forever). First match wins.
    script: Vec<(String, SqlAnswer, Option<usize>)>,
    log: Vec<Statement>,
    refuse_connections: Option<SqlError>,
    unscripted_ok: bool,
}

/// The scripted database. Statements match a rule when they contain its needle;
/// transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`) needs no script.
#[derive(Clone, Default)]
pub struct FakeSql {
    state: Rc<RefCell<State>>,
}

impl FakeSql {
    /// Answer every statement containing `needle` with `answer`.
    pub fn answer(&self, needle: &str, answer: SqlAnswer) {
        self.state
            .borrow_mut()
            .script
            .push((needle.to_owned(), answer, None));
    }

    /// Answer the next `times` statements containing `needle`; later ones fall
    /// through to other rules.
    pub fn answer_times(&self, needle: &str, times: usize, answer: SqlAnswer) {
        self.state
            .borrow_mut()
            .script
            .push((needle.to_owned(), answer, Some(times)));
    }

    /// Answer statements no rule matches with no rows, instead of an error.
    pub fn allow_unscripted(&self) {
        self.state.borrow_mut().unscripted_ok = true;
    }

    /// Refuse new connections with this error (a database that is down).
    pub fn refuse_connections(&self, error: Option<SqlError>) {
        self.state.borrow_mut().refuse_connections = error;
    }

    /// Every statement run so far, oldest first.
    pub fn statements(&self) -> Vec<Statement> {
        self.state.borrow().log.clone()
    }

    /// The SQL text of every statement run so far containing `needle`.
    pub fn ran(&self, needle: &str) -> Vec<String> {
        self.state
            .borrow()
            .log
            .iter()
            .filter(|s| s.sql.contains(needle))
            .map(|s| s.sql.clone())
            .collect()
    }

    pub(crate) fn open(&self, database: &str) -> Result<FakeConnection, SqlError> {
        if let Some(err) = &self.state.borrow().refuse_connections {
            return Err(err.clone());
        }
        Ok(FakeConnection {
            sql: self.clone(),
            database: database.to_owned(),
            in_transaction: RefCell::new(false),
        })
    }

    fn run(&self, database: &str, sql: &str, params: &[Option<String>]) -> Result<Rows, SqlError> {
        let mut state = self.state.borrow_mut();
        state.log.push(Statement {
            database: database.to_owned(),
            sql: sql.to_owned(),
            params: params.to_vec(),
        });
        let unscripted_ok = state.unscripted_ok;
        let rule = state
            .script
            .iter_mut()
            .find(|(needle, _, left)| sql.contains(needle.as_str()) && *left != Some(0));
        match rule {
            Some((_, answer, left)) => {
                if let Some(n) = left {
                    *n -= 1;
                }
                match answer {
                    SqlAnswer::Rows(rows) => Ok(rows.clone()),
                    SqlAnswer::Error(err) => Err(err.clone()),
                }
            }
            None if unscripted_ok => Ok(Rows {
                columns: Vec::new(),
                rows: Vec::new(),
            }),
            None => Err(SqlError::client(format!(
                "fake host: no scripted answer for: {sql}"
            ))),
        }
    }
}

/// A fake session; tracks whether a transaction is open.
#[derive(Debug)]
pub struct FakeConnection {
    sql: FakeSql,
    database: String,
    in_transaction: RefCell<bool>,
}

impl std::fmt::Debug for FakeSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSql")
            .field("statements", &self.state.borrow().log.len())
            .finish()
    }
}

impl FakeConnection {
    pub(crate) fn query(&self, sql: &str, params: &[Option<String>]) -> Result<Rows, SqlError> {
        self.sql.run(&self.database, sql, params)
    }

    pub(crate) fn execute(&self, sql: &str, params: &[Option<String>]) -> Result<u64, SqlError> {
        self.sql
            .run(&self.database, sql, params)
            .map(|rows| rows.rows.len() as u64)
    }

    pub(crate) fn batch(&self, sql: &str) -> Result<(), SqlError> {
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let word = statement
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match word.as_str() {
                "BEGIN" | "START" => {
                    self.sql.log_only(&self.database, statement);
                    *self.in_transaction.borrow_mut() = true;
                }
                "COMMIT" | "ROLLBACK" | "END" | "ABORT" => {
                    self.sql.log_only(&self.database, statement);
                    *self.in_transaction.borrow_mut() = false;
                }
                _ => {
                    self.sql.run(&self.database, statement, &[])?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn in_transaction(&self) -> bool {
        *self.in_transaction.borrow()
    }
}

impl FakeSql {
    fn log_only(&self, database: &str, sql: &str) {
        self.state.borrow_mut().log.push(Statement {
            database: database.to_owned(),
            sql: sql.to_owned(),
            params: Vec::new(),
        });
    }
}
