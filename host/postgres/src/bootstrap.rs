//! Creating a new cluster (Patroni's `postgresql/bootstrap.py`): initdb with the configured
//! options, or a custom bootstrap command; then the post-bootstrap roles (superuser password,
//! replication role, rewind role with the grants pg_rewind needs).
//!
//! An existing data directory is never wiped unless the caller asks for it explicitly.

use std::path::Path;

use crate::Postgres;
use crate::config::{remove_if_exists, write_atomic};
use crate::error::{Error, Result, io_err};

/// One initdb or pg_basebackup option, as Patroni accepts them: a bare flag (`data-checksums`)
/// or a `{key: value}` pair (`{encoding: UTF8}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitdbOption {
    /// `--flag`.
    Flag(String),
    /// `--key=value`.
    Value(String, String),
}

impl InitdbOption {
    /// The command-line argument.
    pub fn to_arg(&self) -> String {
        match self {
            InitdbOption::Flag(f) => format!("--{}", f.trim_start_matches('-')),
            InitdbOption::Value(k, v) => format!("--{}={v}", k.trim_start_matches('-')),
        }
    }

    fn name(&self) -> &str {
        match self {
            InitdbOption::Flag(f) | InitdbOption::Value(f, _) => f.trim_start_matches('-'),
        }
    }
}

/// How a new cluster is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapMethod {
    /// `initdb` with options (`--pgdata` and `--username` are set by Keel).
    Initdb(Vec<InitdbOption>),
    /// A user command that must leave a data directory behind; it gets `--scope=<scope>
    /// --datadir=<data_dir>` plus `--key=value` for each option, unless `no_params`.
    Custom {
        /// The command line, split like a shell would (quotes respected, no expansion).
        command: String,
        /// Extra `--key=value` arguments.
        options: Vec<(String, String)>,
        /// Suppress all generated arguments.
        no_params: bool,
        /// Recover what the command restored (point-in-time recovery): these recovery
        /// parameters (`restore_command`, `recovery_target_time`, ...) with
        /// `recovery.signal`, until PostgreSQL ends recovery and promotes itself.
        recovery_conf: Option<crate::Parameters>,
    },
}

/// Splits a command line into words: whitespace separates, single and double quotes group,
/// backslash escapes outside single quotes. No expansion happens.
pub fn split_command(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// True when `dir` does not exist or is empty.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(dir)(e)),
    }
}

impl Postgres {
    /// Removes the data directory. Only ever called on an explicit request (re-clone, wipe).
    pub fn remove_data_directory(&self) -> Result<()> {
        let dir = self.data_dir();
        tracing::warn!(data_dir = %dir.display(), "removing data directory");
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(dir)(e)),
            _ => Ok(()),
        }
    }

    /// Creates a new cluster with `method`, writes the configuration, starts it as a primary and
    /// creates the post-bootstrap roles. A non-empty data directory is an error unless `wipe`.
    pub async fn bootstrap(&self, method: &BootstrapMethod, wipe: bool) -> Result<()> {
        if !is_empty_dir(self.data_dir())? {
            if !wipe {
                return Err(Error::DataDirNotEmpty {
                    path: self.data_dir().to_owned(),
                });
            }
            self.remove_data_directory()?;
        }
        // Before initdb: a start that cannot fail later for this reason leaves no half-made
        // cluster to set aside.
        self.check_log_file()?;
        match method {
            BootstrapMethod::Initdb(options) => self.initdb(options).await?,
            BootstrapMethod::Custom {
                command,
                options,
                no_params,
                recovery_conf,
            } => {
                self.custom_bootstrap(command, options, *no_params).await?;
                if let Some(recovery_conf) = recovery_conf {
                    self.recover_to_target(recovery_conf).await?;
                }
            }
        }
        self.set_recovery(None);
        if !self.is_running() {
            self.start().await?;
        } else {
            // Recovery ended: the recovery settings go from the configuration files.
            self.write_config()?;
        }
        self.post_bootstrap().await
    }

    async fn initdb(&self, options: &[InitdbOption]) -> Result<()> {
        for o in options {
            if matches!(o.name(), "pgdata" | "D" | "username" | "U" | "pwfile") {
                return Err(Error::InvalidParameter {
                    name: format!("initdb.{}", o.name()),
                    value: o.to_arg(),
                });
            }
        }
        let s = &self.settings;
        let mut args = vec![
            format!("--pgdata={}", s.data_dir.display()),
            format!("--username={}", s.superuser.username),
        ];
        let pwfile = s.pgpass.with_extension("pwfile");
        if let Some(pw) = &s.superuser.password {
            write_atomic(&pwfile, &format!("{pw}\n"), 0o600)?;
            args.push(format!("--pwfile={}", pwfile.display()));
        }
        args.extend(options.iter().map(InitdbOption::to_arg));
        let result = self.bin.run("initdb", &args, s.timeouts.command).await;
        remove_if_exists(&pwfile)?;
        result.map(drop)
    }

    async fn custom_bootstrap(
        &self,
        command: &str,
        options: &[(String, String)],
        no_params: bool,
    ) -> Result<()> {
        let mut words = split_command(command);
        if words.is_empty() {
            return Err(Error::InvalidParameter {
                name: "bootstrap.command".to_owned(),
                value: command.to_owned(),
            });
        }
        let program = std::path::PathBuf::from(words.remove(0));
        if !no_params {
            words.push(format!("--scope={}", self.settings.scope));
            words.push(format!("--datadir={}", self.data_dir().display()));
            words.extend(options.iter().map(|(k, v)| format!("--{k}={v}")));
        }
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&words);
        crate::bin::run(cmd, &program, self.settings.timeouts.command).await?;
        if crate::bin::data_dir_major(self.data_dir())?.is_none() {
            return Err(Error::Parse {
                what: "custom bootstrap result (no PG_VERSION in the data directory)",
                text: program.display().to_string(),
            });
        }
        Ok(())
    }

    /// Starts a restored data directory in archive recovery with `recovery_conf` and waits
    /// until PostgreSQL has reached its target and promoted itself (`recovery_target_action`
    /// defaults to `promote`). Recovery takes as long as the archive needs: the wait ends
    /// when the server accepts writes, or fails when it stops or stays paused at its target.
    async fn recover_to_target(&self, recovery_conf: &crate::Parameters) -> Result<()> {
        let mut extra = recovery_conf.clone();
        if extra.get("recovery_target_action").is_none() {
            extra.set("recovery_target_action", "promote");
        }
        self.set_recovery(Some(crate::RecoveryConfig {
            archive_recovery: true,
            extra,
            ..crate::RecoveryConfig::default()
        }));
        self.start().await?;
        let mut paused_since = None;
        loop {
            if !self.is_running() {
                return Err(Error::Parse {
                    what: "point-in-time recovery (PostgreSQL stopped before promoting; see its log)",
                    text: self.data_dir().display().to_string(),
                });
            }
            if !self.is_in_recovery().await? {
                return Ok(());
            }
            // `recovery_target_action = pause` would wait for an operator forever.
            let paused = self
                .query_text("SELECT pg_get_wal_replay_pause_state()")
                .await?;
            if paused == "paused" {
                let since = *paused_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > self.settings.timeouts.start {
                    return Err(Error::Parse {
                        what: "point-in-time recovery (paused at its target; use \
                               recovery_target_action: promote)",
                        text: paused,
                    });
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Creates or updates the superuser password, the replication role and the rewind role (with
    /// Patroni's grants for pg_rewind on PostgreSQL 11+).
    pub async fn post_bootstrap(&self) -> Result<()> {
        let s = &self.settings;
        let mut sql = String::new();
        if let Some(pw) = &s.superuser.password {
            sql.push_str(&format!(
                "ALTER ROLE {} WITH PASSWORD {};\n",
                quote_ident(&s.superuser.username),
                quote_literal(pw)
            ));
        }
        if s.replication.username != s.superuser.username {
            sql.push_str(&create_or_alter_role(
                &s.replication.username,
                s.replication.password.as_deref(),
                "LOGIN REPLICATION",
            ));
        }
        if let Some(rewind) = s
            .rewind
            .as_ref()
            .filter(|r| r.username != s.superuser.username)
        {
            sql.push_str(&create_or_alter_role(
                &rewind.username,
                rewind.password.as_deref(),
                "LOGIN",
            ));
            let who = quote_ident(&rewind.username);
            for f in [
                "pg_ls_dir(text, boolean, boolean)",
                "pg_stat_file(text, boolean)",
                "pg_read_binary_file(text)",
                "pg_read_binary_file(text, bigint, bigint, boolean)",
            ] {
                sql.push_str(&format!(
                    "GRANT EXECUTE ON function pg_catalog.{f} TO {who};\n"
                ));
            }
        }
        if sql.is_empty() {
            return Ok(());
        }
        self.execute(&sql).await
    }
}

fn create_or_alter_role(name: &str, password: Option<&str>, attrs: &str) -> String {
    let pw = password.map_or_else(String::new, |p| format!(" PASSWORD {}", quote_literal(p)));
    let ident = quote_ident(name);
    // The DO body is dollar-quoted; the role name is also passed as a literal for the lookup.
    format!(
        "DO $keel$ BEGIN \
         IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN \
         ALTER ROLE {ident} WITH {attrs}{pw}; \
         ELSE CREATE ROLE {ident} WITH {attrs}{pw}; END IF; END $keel$;\n",
        lit = quote_literal(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_render() {
        assert_eq!(
            InitdbOption::Flag("data-checksums".into()).to_arg(),
            "--data-checksums"
        );
        assert_eq!(
            InitdbOption::Value("encoding".into(), "UTF8".into()).to_arg(),
            "--encoding=UTF8"
        );
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_command(r#"/bin/restore --from "my backup" 'a b' c\ d"#),
            vec!["/bin/restore", "--from", "my backup", "a b", "c d"]
        );
        assert_eq!(split_command("  "), Vec::<String>::new());
        assert_eq!(split_command("x ''"), vec!["x", ""]);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        let sql = create_or_alter_role("rep", Some("p'w"), "LOGIN REPLICATION");
        assert!(sql.contains("CREATE ROLE \"rep\" WITH LOGIN REPLICATION PASSWORD 'p''w'"));
    }
}
