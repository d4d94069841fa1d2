//! Preparing a freshly bootstrapped primary, as Patroni does after post_bootstrap.
//!
//! 1. the Citus database, unless it is the daemon's own (an existing one is fine);
//! 2. `CREATE EXTENSION IF NOT EXISTS citus` in it;
//! 3. the superuser's password and client certificate into `pg_dist_authinfo`,
//!    so Citus can connect to the other nodes as the superuser;
//! 4. on the coordinator, its own row, from its `connect_address`.
//!
//! Every session runs with `synchronous_commit = local` (no synchronous standby
//! exists yet) and without a statement timeout. Unlike Patroni's plain INSERT,
//! the credentials are written so that running the step again succeeds.

use keel_sdk::host::postgres::{Connection, SqlError};
use keel_sdk::mpp::{BootstrapContext, MppError};

use crate::config::Config;
use crate::sql::describe;

/// `SQLSTATE` of "database already exists".
const DUPLICATE_DATABASE: &str = "42P04";

/// The conninfo keys Citus accepts in `pg_dist_authinfo`, in Patroni's order.
const AUTHINFO_KEYS: [&str; 3] = ["password", "sslcert", "sslkey"];

/// Run the bootstrap steps.
pub fn run(config: &Config, context: &BootstrapContext) -> Result<(), MppError> {
    if config.database != context.default_database {
        let session = open(&context.default_database)?;
        let create = format!("CREATE DATABASE {}", quote_ident(&config.database));
        match session.batch(&create) {
            Ok(()) => {}
            Err(e) if e.sqlstate.as_deref() == Some(DUPLICATE_DATABASE) => {
                keel_sdk::host::log::debug(&format!("{create}: {}", e.message));
            }
            Err(e) => return Err(failed(&create, &e)),
        }
    }

    let session = open(&config.database)?;
    let extension = "CREATE EXTENSION IF NOT EXISTS citus";
    session
        .batch(extension)
        .map_err(|e| failed(extension, &e))?;

    let authinfo = conninfo(&context.superuser_conninfo);
    if !authinfo.is_empty() {
        let what = "writing the superuser's credentials into pg_catalog.pg_dist_authinfo";
        let updated = session
            .execute(
                "UPDATE pg_catalog.pg_dist_authinfo SET authinfo = $1 \
                 WHERE nodeid = 0 AND rolename = pg_catalog.current_user()",
                &[Some(authinfo.clone())],
            )
            .map_err(|e| failed(what, &e))?;
        if updated == 0 {
            session
                .execute(
                    "INSERT INTO pg_catalog.pg_dist_authinfo \
                     VALUES (0, pg_catalog.current_user(), $1)",
                    &[Some(authinfo)],
                )
                .map_err(|e| failed(what, &e))?;
        }
    }

    if config.is_coordinator() {
        let what = format!(
            "citus_set_coordinator_host('{}', {}, 'primary', 'default')",
            context.host, context.port
        );
        session
            .query(
                "SELECT pg_catalog.citus_set_coordinator_host($1, $2::integer, 'primary', 'default')",
                &[Some(context.host.clone()), Some(context.port.to_string())],
            )
            .map_err(|e| failed(&what, &e))?;
    }
    Ok(())
}

/// A session for the bootstrap steps.
fn open(database: &str) -> Result<Connection, MppError> {
    let what = format!("connecting to database {}", quote_ident(database));
    let session = Connection::open(database).map_err(|e| failed(&what, &e))?;
    session
        .batch("SET synchronous_commit = local; SET statement_timeout = 0")
        .map_err(|e| failed(&what, &e))?;
    Ok(session)
}

fn failed(what: &str, error: &SqlError) -> MppError {
    MppError::Failed(format!("bootstrap: {what} failed: {}", describe(error)))
}

/// A quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `key=value ...` for the keys Citus accepts, escaped as libpq reads them.
pub fn conninfo(pairs: &[(String, String)]) -> String {
    AUTHINFO_KEYS
        .iter()
        .filter_map(|key| {
            let (_, value) = pairs.iter().find(|(k, _)| k == key)?;
            let mut escaped = String::with_capacity(value.len());
            for c in value.chars() {
                if matches!(c, '\'' | '\\' | ' ') {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            Some(format!("{key}={escaped}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_sdk::testing::{FakeHost, SqlAnswer};

    fn context(conninfo: &[(&str, &str)]) -> BootstrapContext {
        BootstrapContext {
            host: "10.0.0.1".into(),
            port: 5432,
            default_database: "postgres".into(),
            superuser_conninfo: conninfo
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn config(group: u32, database: &str) -> Config {
        Config {
            group,
            database: database.into(),
        }
    }

    #[test]
    fn credentials_are_escaped_as_libpq_reads_them_and_filtered_to_what_citus_takes() {
        let pairs = [
            ("sslkey".to_owned(), "/k".to_owned()),
            ("host".to_owned(), "elsewhere".to_owned()),
            ("password".to_owned(), r"it's a \secret".to_owned()),
        ];
        assert_eq!(conninfo(&pairs), r"password=it\'s\ a\ \\secret sslkey=/k");
        assert_eq!(conninfo(&[]), "");
    }

    #[test]
    fn a_coordinator_bootstraps_database_extension_credentials_and_its_row() {
        let host = FakeHost::install();
        host.sql().allow_unscripted();
        run(&config(0, "ci\"tus"), &context(&[("password", "pw")])).unwrap();
        let ran: Vec<(String, String)> = host
            .sql()
            .statements()
            .into_iter()
            .map(|s| (s.database, s.sql))
            .collect();
        let expect = |db: &str, sql: &str| (db.to_owned(), sql.to_owned());
        assert_eq!(
            ran,
            vec![
                expect("postgres", "SET synchronous_commit = local"),
                expect("postgres", "SET statement_timeout = 0"),
                expect("postgres", "CREATE DATABASE \"ci\"\"tus\""),
                expect("ci\"tus", "SET synchronous_commit = local"),
                expect("ci\"tus", "SET statement_timeout = 0"),
                expect("ci\"tus", "CREATE EXTENSION IF NOT EXISTS citus"),
                expect(
                    "ci\"tus",
                    "UPDATE pg_catalog.pg_dist_authinfo SET authinfo = $1 WHERE nodeid = 0 AND rolename = pg_catalog.current_user()"
                ),
                expect(
                    "ci\"tus",
                    "INSERT INTO pg_catalog.pg_dist_authinfo VALUES (0, pg_catalog.current_user(), $1)"
                ),
                expect(
                    "ci\"tus",
                    "SELECT pg_catalog.citus_set_coordinator_host($1, $2::integer, 'primary', 'default')"
                ),
            ]
        );
    }

    #[test]
    fn an_existing_database_is_fine_and_workers_register_nothing() {
        let host = FakeHost::install();
        host.sql().allow_unscripted();
        host.sql().answer(
            "CREATE DATABASE",
            SqlAnswer::error(DUPLICATE_DATABASE, "database \"citus\" already exists"),
        );
        run(&config(2, "citus"), &context(&[])).unwrap();
        assert!(host.sql().ran("citus_set_coordinator_host").is_empty());
        assert!(
            host.sql().ran("pg_dist_authinfo").is_empty(),
            "no credentials given"
        );
        assert_eq!(host.sql().ran("CREATE EXTENSION").len(), 1);
    }

    #[test]
    fn the_daemons_own_database_is_not_created_and_failures_say_what_failed() {
        let host = FakeHost::install();
        host.sql().allow_unscripted();
        host.sql().answer(
            "CREATE EXTENSION",
            SqlAnswer::error("0A000", "extension \"citus\" is not available"),
        );
        let err = run(&config(0, "postgres"), &context(&[])).unwrap_err();
        assert!(host.sql().ran("CREATE DATABASE").is_empty());
        assert_eq!(
            err,
            MppError::Failed(
                "bootstrap: CREATE EXTENSION IF NOT EXISTS citus failed: extension \"citus\" is \
                 not available (SQLSTATE 0A000)"
                    .into()
            )
        );
    }
}
