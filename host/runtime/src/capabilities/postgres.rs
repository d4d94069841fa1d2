//! `keel:host/postgres`: SQL sessions on the local PostgreSQL as the daemon's
//! superuser.
//!
//! Statements run over the simple query protocol so every value comes back in
//! PostgreSQL's text format, which is what the WIT contract promises. Parameters
//! are bound client-side as quoted literals (as libpq-based tools like Patroni's
//! psycopg2 do): `$n` outside quotes, identifiers and comments becomes `'value'`
//! or `NULL`, which PostgreSQL types like any untyped literal.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{NoTls, SimpleQueryMessage};
use wasmtime::component::Resource;

use crate::bindings::host::keel::host::postgres::{Host, HostConnection, Rows, SqlError};
use crate::state::HostState;

/// Access to the local instance granted to one plugin.
#[derive(Debug)]
pub struct PostgresGrant {
    config: tokio_postgres::Config,
    connect_timeout: Duration,
}

impl PostgresGrant {
    /// Grant sessions with `config` (host, port, user, password; the database is
    /// chosen by the plugin per connection).
    pub fn new(config: tokio_postgres::Config, connect_timeout: Duration) -> Self {
        Self {
            config,
            connect_timeout,
        }
    }

    /// Where and as whom, without secrets.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}:{} as {}",
            hosts.join(","),
            port,
            self.config.get_user().unwrap_or("?")
        )
    }
}

/// One session held by a plugin. Dropping it closes the session (the server
/// rolls back an open transaction).
pub struct PgConnection {
    client: tokio_postgres::Client,
    driver: JoinHandle<()>,
    in_transaction: bool,
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn sql_error(error: &tokio_postgres::Error) -> SqlError {
    match error.as_db_error() {
        Some(db) => SqlError {
            sqlstate: Some(db.code().code().to_owned()),
            message: db.message().to_owned(),
        },
        None => SqlError {
            sqlstate: None,
            message: error.to_string(),
        },
    }
}

fn client_error(message: impl Into<String>) -> SqlError {
    SqlError {
        sqlstate: None,
        message: message.into(),
    }
}

/// Replace `$1`..`$n` with quoted literals, skipping quoted strings, quoted
/// identifiers, dollar-quoted bodies and comments.
pub(crate) fn bind(sql: &str, params: &[Option<String>]) -> Result<String, SqlError> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let index: usize = sql[i + 1..i + 1 + digits].parse().unwrap_or(0);
                    let value = index
                        .checked_sub(1)
                        .and_then(|n| params.get(n))
                        .ok_or_else(|| {
                            client_error(format!(
                                "statement uses ${index}, but {} parameters were given",
                                params.len()
                            ))
                        })?;
                    out.push_str(&sql[copied..i]);
                    match value {
                        None => out.push_str("NULL"),
                        Some(text) => {
                            if text.contains('\0') {
                                return Err(client_error(format!(
                                    "parameter ${index} contains a NUL byte"
                                )));
                            }
                            out.push('\'');
                            out.push_str(&text.replace('\'', "''"));
                            out.push('\'');
                        }
                    }
                    i += 1 + digits;
                    copied = i;
                    continue;
                }
                // A dollar-quoted body: $tag$ ... $tag$
                let tag_len = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                if bytes.get(i + 1 + tag_len) == Some(&b'$') {
                    let tag = &sql[i..i + 2 + tag_len];
                    match sql[i + tag.len()..].find(tag) {
                        Some(end) => i += tag.len() + end + tag.len(),
                        None => i = bytes.len(),
                    }
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Ok(out)
}

/// The transaction state after running `sql` successfully, judged by the first
/// word of each statement. Good enough for BEGIN/COMMIT/ROLLBACK issued by a
/// plugin; savepoints do not change it.
fn transaction_after(sql: &str, mut open: bool) -> bool {
    for statement in sql.split(';') {
        let mut words = statement.split_whitespace().map(str::to_ascii_uppercase);
        match (words.next().as_deref(), words.next().as_deref()) {
            (Some("BEGIN" | "START"), _) => open = true,
            (Some("COMMIT" | "END" | "ABORT"), _) => open = false,
            (Some("ROLLBACK"), Some("TO")) => {}
            (Some("ROLLBACK"), _) => open = false,
            (Some("PREPARE"), Some("TRANSACTION")) => open = false,
            _ => {}
        }
    }
    open
}

impl HostState {
    async fn run(
        &mut self,
        conn: &Resource<PgConnection>,
        sql: &str,
    ) -> wasmtime::Result<Result<Vec<SimpleQueryMessage>, SqlError>> {
        let session = self.table.get_mut(conn)?;
        let result = session.client.simple_query(sql).await;
        Ok(match result {
            Ok(messages) => {
                session.in_transaction = transaction_after(sql, session.in_transaction);
                Ok(messages)
            }
            Err(e) => Err(sql_error(&e)),
        })
    }
}

impl HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, SqlError>> {
        let Some(grant) = self.grants.postgres.clone() else {
            return Ok(Err(client_error(format!(
                "plugin `{}` is not granted access to PostgreSQL",
                self.plugin
            ))));
        };
        let mut config = grant.config.clone();
        config.dbname(&database);
        config.application_name(format!("keel-plugin-{}", self.plugin));
        let connect = tokio::time::timeout(grant.connect_timeout, config.connect(NoTls)).await;
        let (client, connection) = match connect {
            Err(_) => {
                return Ok(Err(client_error(format!(
                    "connecting to database `{database}` timed out after {:?}",
                    grant.connect_timeout
                ))));
            }
            Ok(Err(e)) => return Ok(Err(sql_error(&e))),
            Ok(Ok(pair)) => pair,
        };
        let plugin = self.plugin.clone();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(plugin = &*plugin, error = %e, "plugin's PostgreSQL session ended");
            }
        });
        let session = PgConnection {
            client,
            driver,
            in_transaction: false,
        };
        Ok(Ok(self.table.push(session)?))
    }

    async fn query(
        &mut self,
        conn: Resource<PgConnection>,
        sql: String,
        params: Vec<Option<String>>,
    ) -> wasmtime::Result<Result<Rows, SqlError>> {
        let sql = match bind(&sql, &params) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.run(&conn, &sql).await?.map(|messages| {
            let mut rows = Rows {
                columns: Vec::new(),
                rows: Vec::new(),
            };
            for message in messages {
                match message {
                    SimpleQueryMessage::RowDescription(columns) if rows.columns.is_empty() => {
                        rows.columns = columns.iter().map(|c| c.name().to_owned()).collect();
                    }
                    SimpleQueryMessage::Row(row) => {
                        if rows.columns.is_empty() {
                            rows.columns =
                                row.columns().iter().map(|c| c.name().to_owned()).collect();
                        }
                        rows.rows.push(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_owned))
                                .collect(),
                        );
                    }
                    _ => {}
                }
            }
            rows
        }))
    }

    async fn execute(
        &mut self,
        conn: Resource<PgConnection>,
        sql: String,
        params: Vec<Option<String>>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let sql = match bind(&sql, &params) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.run(&conn, &sql).await?.map(|messages| {
            messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                })
                .sum()
        }))
    }

    async fn batch(
        &mut self,
        conn: Resource<PgConnection>,
        sql: String,
    ) -> wasmtime::Result<Result<(), SqlError>> {
        Ok(self.run(&conn, &sql).await?.map(|_| ()))
    }

    async fn in_transaction(&mut self, conn: Resource<PgConnection>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&conn)?.in_transaction)
    }

    async fn drop(&mut self, conn: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

impl Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parameters_as_literals_outside_quotes() {
        let sql =
            "SELECT citus_add_node($1, $2::int, 'keep $1', \"col$1\") -- $2\n/* $1 */ $$ $1 $$";
        let bound = bind(sql, &[Some("it's".into()), None]).unwrap();
        assert_eq!(
            bound,
            "SELECT citus_add_node('it''s', NULL::int, 'keep $1', \"col$1\") -- $2\n/* $1 */ $$ $1 $$"
        );
    }

    #[test]
    fn refuses_missing_parameters_and_nul_bytes() {
        assert!(bind("SELECT $2", &[Some("a".into())]).is_err());
        assert!(bind("SELECT $1", &[Some("a\0b".into())]).is_err());
    }

    #[test]
    fn tracks_transaction_blocks() {
        assert!(transaction_after("BEGIN", false));
        assert!(transaction_after("begin; select 1", false));
        assert!(!transaction_after("COMMIT", true));
        assert!(transaction_after("ROLLBACK TO SAVEPOINT a", true));
        assert!(!transaction_after("rollback", true));
        assert!(!transaction_after("BEGIN; COMMIT", false));
    }
}
