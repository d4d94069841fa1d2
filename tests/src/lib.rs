//! Shared pieces of Keel's cross-process tests and benchmarks.

/// Paths of the components built from `plugins/` (see `build.rs`): one constant
/// per component, named after its file (`FIXTURE_DCS`, `HOSTILE_SPIN`, ...).
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

pub mod citus;

use std::path::{Path, PathBuf};

/// A temporary plugin directory holding copies of the given components.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    /// Copy `components` (paths from [`components`]) into a fresh directory.
    pub fn with(components: &[&str]) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("keel-plugins-").tempdir()?;
        for component in components {
            let source = Path::new(component);
            let name = source
                .file_name()
                .ok_or_else(|| std::io::Error::other("component path has no file name"))?;
            std::fs::copy(source, dir.path().join(name))?;
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A cache directory inside it (a fresh one per `PluginDir`).
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join(".cache")
    }

    /// Write an extra file into the directory.
    pub fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    }
}

/// A throwaway PostgreSQL server on loopback for capability tests: initdb with
/// trust auth, a unix socket in the temp dir, stopped on drop. Must run as an
/// unprivileged user (see `keel_testkit::unprivileged_test!`). Returns `None`
/// when end-to-end tests are skipped on purpose (`KEEL_SKIP_E2E=1`).
pub struct TempPostgres {
    layout: keel_testkit::pg::PgLayout,
    port: u16,
    _stop: keel_testkit::pg::StopPostgresOnDrop,
}

impl TempPostgres {
    /// initdb and start.
    pub fn start() -> Option<Self> {
        use std::process::Command;
        let bins = keel_testkit::pg::PgBinaries::discover()?;
        let layout = keel_testkit::pg::PgLayout::new();
        let data = layout.data_dir("data");
        let port = keel_testkit::free_port();
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("spawn a PostgreSQL program");
            assert!(
                out.status.success(),
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new(bins.bin("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]));
        let stop = keel_testkit::pg::StopPostgresOnDrop::new(&bins, &data);
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c fsync=off",
            layout.socket_dir().display()
        );
        run(Command::new(bins.bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(layout.root().join("postgres.log"))
            .args(["-w", "-t", "30", "-o", &options, "start"]));
        Some(Self {
            layout,
            port,
            _stop: stop,
        })
    }

    /// Connection settings for the superuser over the unix socket.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.layout.socket_dir())
            .port(self.port)
            .user("postgres")
            .dbname(database);
        config
    }

    /// Connect as the superuser and drive the connection in the background.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }
}

/// Grants of only the etcd capability, to `endpoints` (2 s request timeout), as
/// keeld gives a DCS plugin whose section names them.
pub fn etcd_grants(
    endpoints: Vec<String>,
    credentials: Option<(String, String)>,
) -> keel_runtime::Grants {
    let grant = keel_runtime::capabilities::EtcdGrant::new(
        endpoints,
        credentials,
        std::time::Duration::from_secs(2),
    );
    keel_runtime::Grants {
        etcd: Some(std::sync::Arc::new(grant)),
        ..keel_runtime::Grants::default()
    }
}
