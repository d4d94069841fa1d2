//! A PostgreSQL 15 that answers like a Citus coordinator (the emulation fixture in
//! `tests/fixtures/citus_emulation.sql`), and the Citus plugin loaded on it the
//! way keeld loads an MPP plugin.

use std::sync::Arc;
use std::time::Duration;

use keel_runtime::capabilities::PostgresGrant;
use keel_runtime::{
    Grants, GroupView, LoadedPlugin, MemberView, MppPlugin, PluginLimits, Runtime, RuntimeOptions,
};
use tokio_postgres::Client;

use crate::{PluginDir, TempPostgres, components};

/// The emulation of Citus's metadata surface.
pub const FIXTURE: &str = include_str!("../fixtures/citus_emulation.sql");

/// A throwaway server whose new databases come with the fixture: it is loaded into
/// `template1`, so the plugin's `CREATE DATABASE` copies it and its
/// `CREATE EXTENSION IF NOT EXISTS citus` finds the extension.
pub struct TempCitus {
    pg: TempPostgres,
}

impl TempCitus {
    /// Start the server and load the fixture; `None` when e2e tests are skipped.
    pub async fn start() -> Option<Self> {
        let pg = TempPostgres::start()?;
        let (client, connection) = pg
            .config("template1")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to template1");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(FIXTURE)
            .await
            .expect("load the fixture into template1");
        // CREATE DATABASE refuses a template that has other sessions.
        drop(client);
        let _ = driver.await;
        Some(Self { pg })
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.pg.config("postgres").get_ports()[0]
    }

    /// A superuser session on `database`, driven in the background.
    pub async fn connect(&self, database: &str) -> Client {
        let (client, connection) = self
            .pg
            .config(database)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {database}: {e}"));
        tokio::spawn(connection);
        client
    }

    /// The grant keeld gives an MPP plugin: the local instance as the superuser.
    pub fn grants(&self) -> Grants {
        let grant = PostgresGrant::new(self.pg.config("postgres"), Duration::from_secs(5));
        Grants {
            postgres: Some(Arc::new(grant)),
            ..Grants::default()
        }
    }
}

/// The Citus component, loaded from a plugin directory of its own.
pub struct CitusComponent {
    _dir: PluginDir,
    plugin: LoadedPlugin,
}

impl CitusComponent {
    /// Copy the built component into a fresh directory and load it.
    pub async fn load() -> Self {
        let dir = PluginDir::with(&[components::CITUS]).expect("plugin dir");
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(dir.cache()),
        })
        .expect("runtime");
        let plugin = LoadedPlugin::load(&runtime, &dir.path().join("citus.wasm"))
            .await
            .expect("load citus.wasm");
        Self { _dir: dir, plugin }
    }

    /// The loaded component.
    pub fn loaded(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// A fresh handle with these grants and limits (not yet configured).
    pub fn handler(&self, grants: Grants, limits: PluginLimits) -> MppPlugin {
        self.plugin.mpp(grants, limits).expect("an MPP plugin")
    }
}

/// A member as the DCS shows it: `name` at `host:port` with `role` and `state`.
pub fn member(name: &str, host: &str, port: u16, role: &str, state: &str) -> MemberView {
    MemberView {
        name: name.to_owned(),
        host: Some(host.to_owned()),
        port,
        role: role.to_owned(),
        state: state.to_owned(),
        noloadbalance: false,
    }
}

/// A group as the DCS shows it.
pub fn group(number: u32, leader: &str, members: Vec<MemberView>) -> GroupView {
    GroupView {
        group: number,
        leader: Some(leader.to_owned()),
        members,
    }
}
