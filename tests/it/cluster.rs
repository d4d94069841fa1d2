//! A Keel cluster on loopback for end-to-end tests: one etcd, N `keeld`
//! members with the etcd plugin, each managing its own PostgreSQL 15.
//!
//! Timings are short (ttl 8 s, loop_wait 1 s, retry_timeout 3 s) so failovers
//! happen in seconds; every wait is bounded and fails with the members' logs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_testkit::etcd::TempEtcd;
use keel_testkit::free_port;
use keel_tests::{PluginDir, components as c};
use serde_json::Value;

/// target/<profile>/keeld, next to the test binary's deps/ directory.
pub(crate) fn keeld_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("keeld")
}

/// One member: its config, ports, data directory and daemon process.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) config: PathBuf,
    pub(crate) pg_port: u16,
    pub(crate) api_port: u16,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
    daemon: Option<Child>,
}

impl Member {
    /// The postmaster's pid, if one runs.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

/// The cluster under test.
pub(crate) struct Cluster {
    pub(crate) etcd: TempEtcd,
    pub(crate) scope: String,
    pub(crate) members: Vec<Member>,
    _dir: tempfile::TempDir,
    _plugins: PluginDir,
}

/// The `bootstrap.dcs` section; `extra` is spliced in (YAML flow mapping entries), and
/// `pg_parameters` into its PostgreSQL parameters.
fn dcs_section(extra: &str, pg_parameters: &str) -> String {
    let sep = if extra.is_empty() { "" } else { ", " };
    let psep = if pg_parameters.is_empty() { "" } else { ", " };
    format!(
        "{{ttl: 8, loop_wait: 1, retry_timeout: 3, maximum_lag_on_failover: 1048576{sep}{extra}, \
         postgresql: {{use_pg_rewind: true, parameters: {{wal_log_hints: 'on', \
         wal_keep_size: 64MB{psep}{pg_parameters}}}}}}}"
    )
}

/// What [`Cluster::start_spec`] starts.
pub(crate) struct Spec<'a> {
    /// Number of members.
    pub(crate) members: usize,
    /// Dynamic-config entries (YAML flow mapping entries, e.g. `failsafe_mode: true`).
    pub(crate) dcs_extra: &'a str,
    /// Extra PostgreSQL parameters in the dynamic config (flow mapping entries).
    pub(crate) pg_parameters: &'a str,
    /// Extra top-level YAML for member `i` (0-based), e.g. a `citus:` section.
    pub(crate) member_yaml: &'a dyn Fn(usize) -> String,
    /// Extra keys of member `i`'s `postgresql:` section (each line indented by
    /// two spaces), e.g. `callbacks`.
    pub(crate) postgresql_yaml: &'a dyn Fn(usize) -> String,
    /// The plugin components in the plugin directory.
    pub(crate) plugins: &'a [&'a str],
    /// `bootstrap.post_bootstrap`, if any.
    pub(crate) post_bootstrap: Option<&'a str>,
}

impl Spec<'static> {
    /// `n` members with the etcd plugin and nothing else configured.
    pub(crate) fn plain(n: usize) -> Self {
        Spec {
            members: n,
            dcs_extra: "",
            pg_parameters: "",
            member_yaml: &|_| String::new(),
            postgresql_yaml: &|_| String::new(),
            plugins: &[c::ETCD],
            post_bootstrap: None,
        }
    }
}

impl Cluster {
    /// Start etcd and `n` members; `dcs_extra` adds dynamic-config entries
    /// (e.g. `failsafe_mode: true`). `None` when end-to-end tests are skipped.
    pub(crate) fn start(n: usize, dcs_extra: &str) -> Option<Self> {
        Self::start_spec(&Spec {
            dcs_extra,
            ..Spec::plain(n)
        })
    }

    /// Start etcd and the members `spec` describes.
    pub(crate) fn start_spec(spec: &Spec<'_>) -> Option<Self> {
        let n = spec.members;
        let etcd = TempEtcd::start()?;
        let plugins = PluginDir::with(spec.plugins).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("keel-e2e-")
            .tempdir()
            .unwrap();
        let scope = format!("e2e{}", free_port());
        let sockets = dir.path().join("s");
        std::fs::create_dir_all(&sockets).unwrap();
        let mut members = Vec::new();
        for i in 1..=n {
            let name = format!("m{i}");
            let pg_port = free_port();
            let api_port = free_port();
            let data_dir = dir.path().join(&name);
            let config = dir.path().join(format!("{name}.yml"));
            let yaml = format!(
                "scope: {scope}\nname: {name}\n\
                 restapi: {{listen: 127.0.0.1:{api_port}, connect_address: 127.0.0.1:{api_port}}}\n\
                 etcd3: {{hosts: {etcd}}}\n\
                 plugins: {{dir: {plugins}}}\n\
                 {watchdog}\
                 bootstrap:\n  dcs: {dcs}\n{post}\
                 postgresql:\n  listen: 127.0.0.1:{pg_port}\n  connect_address: 127.0.0.1:{pg_port}\n  \
                 data_dir: {data}\n  parameters: {{unix_socket_directories: {sockets}}}\n  \
                 basebackup: [{{checkpoint: fast}}]\n  \
                 pg_hba: ['local all all trust', 'host all all 127.0.0.1/32 md5', \
                 'host replication replicator 127.0.0.1/32 md5']\n  \
                 authentication:\n    superuser: {{username: postgres, password: pw}}\n    \
                 replication: {{username: replicator, password: rep}}\n{pg_extra}{extra}",
                etcd = etcd.endpoint(),
                plugins = plugins.path().display(),
                dcs = dcs_section(spec.dcs_extra, spec.pg_parameters),
                extra = (spec.member_yaml)(i - 1),
                // Tests kill daemons on purpose: never let one arm a real watchdog device.
                watchdog = if (spec.member_yaml)(i - 1).contains("watchdog:") {
                    ""
                } else {
                    "watchdog: {mode: off}\n"
                },
                pg_extra = (spec.postgresql_yaml)(i - 1),
                post = spec
                    .post_bootstrap
                    .map(|p| format!("  post_bootstrap: {p}\n"))
                    .unwrap_or_default(),
                data = data_dir.display(),
                sockets = sockets.display(),
            );
            std::fs::write(&config, yaml).unwrap();
            members.push(Member {
                log: dir.path().join(format!("{name}.log")),
                name,
                config,
                pg_port,
                api_port,
                data_dir,
                daemon: None,
            });
        }
        let mut cluster = Self {
            etcd,
            scope,
            members,
            _dir: dir,
            _plugins: plugins,
        };
        for i in 0..n {
            cluster.start_daemon(i);
        }
        Some(cluster)
    }

    /// Start (or restart) member `i`'s daemon.
    pub(crate) fn start_daemon(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let child = Command::new(keeld_binary())
            .arg(&m.config)
            .env("KEEL_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        m.daemon = Some(child);
    }

    /// kill -9 member `i`'s daemon and its postmaster: a hard node loss.
    pub(crate) fn kill_node(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = m.postmaster_pid() {
            // The postmaster may be gone already (a stale postmaster.pid).
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// SIGTERM member `i`'s daemon and wait for it (bounded).
    pub(crate) fn stop_daemon(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `HUP`) to member `i`'s daemon.
    pub(crate) fn signal(&self, i: usize, signal: &str) {
        let child = self.members[i].daemon.as_ref().expect("daemon running");
        let sent = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Every daemon line of every member (PostgreSQL's own lines left out).
    pub(crate) fn daemon_lines(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            for line in text
                .lines()
                .filter(|l| !l.contains(" UTC [") && !l.starts_with('\t'))
            {
                out.push_str(&m.name);
                out.push_str(": ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Every member's log tail, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            // The daemon's own lines; PostgreSQL's server log goes to the same file. A
            // steady "no action" repeats every loop_wait and would push out what happened.
            let tail: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains(" UTC [") && !l.starts_with('\t'))
                .filter(|l| !l.contains("INFO no action. I am"))
                .rev()
                .take(40)
                .collect();
            out.push_str(&format!(
                "\n----- {} (last 40 daemon lines, \"no action\" left out) -----\n",
                m.name
            ));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// `GET /patroni` of member `i` (None when it does not answer).
    pub(crate) fn status(&self, i: usize) -> Option<Value> {
        http_get(self.members[i].api_port, "/patroni")
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
    }

    /// The HTTP status code of `GET path` on member `i`.
    pub(crate) fn health(&self, i: usize, path: &str) -> Option<u16> {
        http_get(self.members[i].api_port, path).map(|(code, _)| code)
    }

    /// Wait (bounded) until `check` holds, failing with the logs otherwise.
    pub(crate) fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the member that reports itself primary and holds the lock
    /// (health `/primary` = 200), if exactly one does.
    pub(crate) fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.members.len())
            .filter(|i| {
                self.members[*i].daemon.is_some() && self.health(*i, "/primary") == Some(200)
            })
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Members whose replica reports `replication_state: streaming`.
    pub(crate) fn streaming_replicas(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| {
                self.members[*i].daemon.is_some()
                    && self.status(*i).is_some_and(|s| {
                        s["role"] == "replica" && s["replication_state"] == "streaming"
                    })
            })
            .collect()
    }

    /// Wait for one leader and `replicas` streaming replicas; returns the leader.
    pub(crate) fn wait_healthy(&self, replicas: usize, timeout: Duration) -> usize {
        self.wait_for("a leader and streaming replicas", timeout, |c| {
            let leader = c.leader()?;
            (c.streaming_replicas().len() >= replicas).then_some(leader)
        })
    }

    /// Run SQL on member `i` (simple query protocol), returning the first
    /// column of every row.
    pub(crate) fn sql(&self, i: usize, sql: &str) -> Result<Vec<String>, String> {
        sql_on_port(self.members[i].pg_port, sql)
    }

    /// Like [`Cluster::sql`], in `database`.
    pub(crate) fn sql_in(
        &self,
        i: usize,
        database: &str,
        sql: &str,
    ) -> Result<Vec<String>, String> {
        sql_in_database(self.members[i].pg_port, database, sql)
    }

    /// Write the `failover` key (what `keelctl switchover` will do).
    pub(crate) fn request_failover(&self, leader: Option<&str>, candidate: Option<&str>) {
        let mut value = serde_json::Map::new();
        if let Some(l) = leader {
            value.insert("leader".into(), l.into());
        }
        if let Some(cand) = candidate {
            value.insert("member".into(), cand.into());
        }
        self.etcd_put("failover", &Value::Object(value).to_string());
    }

    /// Put a key of this cluster in etcd.
    pub(crate) fn etcd_put(&self, key: &str, value: &str) {
        let endpoint = self.etcd.endpoint();
        let key = format!("/service/{}/{key}", self.scope);
        let value = value.to_owned();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut client = etcd_client::Client::connect([endpoint], None)
                .await
                .unwrap();
            client.put(key, value, None).await.unwrap();
        });
    }

    /// Get a key of this cluster from etcd.
    pub(crate) fn etcd_get(&self, key: &str) -> Option<String> {
        let endpoint = self.etcd.endpoint();
        let key = format!("/service/{}/{key}", self.scope);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut client = etcd_client::Client::connect([endpoint], None).await.ok()?;
            let resp = client.get(key, None).await.ok()?;
            resp.kvs()
                .first()
                .map(|kv| kv.value_str().unwrap_or("").to_owned())
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_node(i);
        }
    }
}

/// A minimal HTTP/1.0 POST of a JSON body on loopback (bounded, up to 60 s
/// for a switchover to finish): status code and body.
pub(crate) fn http_post(port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    http_post_with_head(port, path, body).map(|(code, _, body)| (code, body))
}

/// [`http_post`], also returning the response head (status line and headers).
pub(crate) fn http_post_with_head(
    port: u16,
    path: &str,
    body: &str,
) -> Option<(u16, String, String)> {
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_exchange(port, &request, Duration::from_secs(60))
}

/// A minimal HTTP/1.0 GET on loopback (bounded): status code and body.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    http_exchange(port, &request, Duration::from_secs(5)).map(|(code, _, body)| (code, body))
}

/// Sends `request` and reads the whole HTTP/1.0 answer: status code, head and body.
fn http_exchange(
    port: u16,
    request: &str,
    read_timeout: Duration,
) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(read_timeout)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Some((code, head.to_owned(), body.to_owned()))
}

/// Run SQL as the superuser on a loopback port (a member or a proxy in front
/// of one), returning the first column of every row.
pub(crate) fn sql_on_port(port: u16, sql: &str) -> Result<Vec<String>, String> {
    sql_in_database(port, "postgres", sql)
}

/// [`sql_on_port`] in `database`.
pub(crate) fn sql_in_database(port: u16, database: &str, sql: &str) -> Result<Vec<String>, String> {
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=postgres password=pw dbname={database} connect_timeout=3"
    );
    let sql = sql.to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let rows = tokio::time::timeout(Duration::from_secs(10), client.simple_query(&sql))
            .await
            .map_err(|_| "query timed out".to_owned())?
            // The server's own words ("db error" alone says nothing).
            .map_err(|e| match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            })?;
        Ok(rows
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect())
    })
}
