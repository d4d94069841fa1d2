//! Connection strings and passwords (Patroni's `postgresql/connection.py` and the conninfo parts
//! of `config.py`).
//!
//! Passwords never appear in a conninfo: they go to a pgpass file (mode 0600) that the conninfo
//! names with `passfile=`, and that pg_basebackup/pg_rewind get through `PGPASSFILE`. Keel's own
//! queries use the unix socket directory with bounded connect and statement timeouts.

use std::path::Path;
use std::time::Duration;

/// A role name and optional password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The role.
    pub username: String,
    /// Its password; `None` for trust/peer authentication.
    pub password: Option<String>,
    /// libpq connection keywords from `authentication.<user>` (`sslmode`, `sslcert`,
    /// `sslkey`, `sslrootcert`, `gssencmode`, `channel_binding`, ...), used in the conninfo
    /// strings Keel writes (`primary_conninfo`, pg_basebackup, pg_rewind).
    pub options: std::collections::BTreeMap<String, String>,
}

impl Credentials {
    /// Credentials without a password.
    pub fn new(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: None,
            options: Default::default(),
        }
    }

    /// Credentials with a password.
    pub fn with_password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Some(password.into()),
            options: Default::default(),
        }
    }

    /// These credentials with libpq `options` (see [`Credentials::options`]).
    pub fn with_options(mut self, options: std::collections::BTreeMap<String, String>) -> Self {
        self.options = options;
        self
    }
}

/// The libpq keywords Patroni writes after `port` and around `application_name`, in its
/// order; `prefer` is the default of the three it always writes.
const SSL_KEYWORDS: [&str; 8] = [
    "sslmode",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
];
const LATE_KEYWORDS: [&str; 4] = [
    "krbsrvname",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];

/// A remote server to connect to: the leader to stream or clone from, or to rewind against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database, default `postgres`.
    pub dbname: String,
    /// Set when the server is outside this cluster: the source of a standby cluster.
    pub remote: Option<RemoteSource>,
}

/// How to replicate from a server outside this cluster (Patroni's `standby_cluster`
/// section): its own slot and recovery settings, and the replica methods to clone with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteSource {
    /// The slot to stream from on the source; `None`: stream without a slot.
    pub primary_slot_name: Option<String>,
    /// Recovery parameters that replace the member's own (`restore_command`,
    /// `archive_cleanup_command`, `recovery_min_apply_delay`).
    pub recovery: crate::Parameters,
    /// The replica methods to clone with; `None`: the member's own.
    pub create_replica_methods: Option<Vec<crate::replica::ReplicaMethod>>,
}

impl Upstream {
    /// An upstream at `host:port`, database `postgres`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            dbname: "postgres".to_owned(),
            remote: None,
        }
    }

    /// A key/value conninfo for `creds` in Patroni's key order. The password is not included;
    /// `passfile` names where it is when the credentials carry one.
    pub fn conninfo(
        &self,
        creds: &Credentials,
        passfile: Option<&Path>,
        application_name: Option<&str>,
        major: u32,
    ) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("dbname", self.dbname.clone()),
            ("user", creds.username.clone()),
        ];
        if let (Some(_), Some(pf)) = (&creds.password, passfile) {
            pairs.push(("passfile", pf.display().to_string()));
        }
        pairs.push(("host", self.host.clone()));
        pairs.push(("port", self.port.to_string()));
        let option = |key: &str| creds.options.get(key).cloned();
        pairs.push((
            "sslmode",
            option("sslmode").unwrap_or_else(|| "prefer".to_owned()),
        ));
        for &key in &SSL_KEYWORDS[1..] {
            if let Some(value) = option(key) {
                pairs.push((key, value));
            }
        }
        if let Some(app) = application_name {
            pairs.push(("application_name", app.to_owned()));
        }
        for key in LATE_KEYWORDS {
            let default = matches!(key, "gssencmode" | "channel_binding").then_some("prefer");
            // The walreceiver's libpq of an older server does not know these keywords.
            let supported = match key {
                "channel_binding" => major >= 13,
                "sslnegotiation" => major >= 17,
                _ => true,
            };
            if let Some(value) = option(key).or(default.map(str::to_owned))
                && supported
            {
                pairs.push((key, value));
            }
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_conninfo_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A pgpass line for this upstream and `creds`, if they carry a password.
    pub fn pgpass_line(&self, creds: &Credentials) -> Option<String> {
        let password = creds.password.as_deref()?;
        Some(
            [
                self.host.as_str(),
                &self.port.to_string(),
                "*",
                &creds.username,
                password,
            ]
            .map(escape_pgpass_field)
            .join(":"),
        )
    }
}

/// Escapes a conninfo value: `'`, `\` and spaces get a backslash (Patroni's rule); an empty value
/// becomes `''`.
pub fn escape_conninfo_value(value: &str) -> String {
    if value.is_empty() {
        return "''".to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\'' | '\\' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes a pgpass field: `\` and `:` get a backslash.
pub fn escape_pgpass_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// A tokio-postgres configuration for the local server over its unix socket.
pub(crate) fn local_config(
    socket_dir: &Path,
    port: u16,
    creds: &Credentials,
    connect_timeout: Duration,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(&creds.username)
        .dbname("postgres")
        .application_name("Keel")
        .connect_timeout(connect_timeout);
    if let Some(pw) = &creds.password {
        config.password(pw.as_bytes());
    }
    config
}

/// A tokio-postgres configuration for a remote server over TCP.
pub(crate) fn remote_config(
    upstream: &Upstream,
    creds: &Credentials,
    connect_timeout: Duration,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&upstream.host)
        .port(upstream.port)
        .user(&creds.username)
        .dbname(&upstream.dbname)
        .application_name("Keel")
        .connect_timeout(connect_timeout);
    if let Some(pw) = &creds.password {
        config.password(pw.as_bytes());
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_in_patroni_order() {
        let up = Upstream::new("10.0.0.1", 5432);
        let creds = Credentials::with_password("repl user", "s3cret");
        let ci = up.conninfo(&creds, Some(Path::new("/tmp/pgpass")), Some("node-2"), 15);
        assert_eq!(
            ci,
            "dbname=postgres user=repl\\ user passfile=/tmp/pgpass host=10.0.0.1 port=5432 \
             sslmode=prefer application_name=node-2 gssencmode=prefer channel_binding=prefer"
        );
        assert!(!ci.contains("s3cret"));
        let no_pw = up.conninfo(&Credentials::new("r"), Some(Path::new("/p")), None, 12);
        assert!(!no_pw.contains("passfile"));
        assert!(!no_pw.contains("channel_binding"));
    }

    #[test]
    fn configured_ssl_keywords_replace_the_defaults_in_patronis_order() {
        let up = Upstream::new("10.0.0.1", 5432);
        let options = [
            ("sslmode", "verify-full"),
            ("sslrootcert", "/etc/ssl/ca.pem"),
            ("sslcert", "/etc/ssl/r.pem"),
            ("channel_binding", "require"),
            ("sslnegotiation", "direct"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let creds = Credentials::new("r").with_options(options);
        assert_eq!(
            up.conninfo(&creds, None, Some("n2"), 15),
            "dbname=postgres user=r host=10.0.0.1 port=5432 sslmode=verify-full \
             sslcert=/etc/ssl/r.pem sslrootcert=/etc/ssl/ca.pem application_name=n2 \
             gssencmode=prefer channel_binding=require"
        );
        assert!(
            up.conninfo(&creds, None, None, 17)
                .ends_with("sslnegotiation=direct")
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_conninfo_value("a'b\\c d"), "a\\'b\\\\c\\ d");
        assert_eq!(escape_conninfo_value(""), "''");
        let up = Upstream::new("h", 1);
        assert_eq!(
            up.pgpass_line(&Credentials::with_password("u", "p:w\\")),
            Some("h:1:*:u:p\\:w\\\\".to_owned())
        );
        assert_eq!(up.pgpass_line(&Credentials::new("u")), None);
    }
}
