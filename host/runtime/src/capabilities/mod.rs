//! Host capabilities, one module each, shaped config → state → host trait impl.
//!
//! A capability is reachable only when (a) the plugin's world imports it, which
//! the linker of that world enforces, and (b) the operator's config granted it,
//! which [`Grants`] carries into each instance. An import that is linked but not
//! granted answers with an error the plugin sees, never a trap.

pub mod etcd;
mod log;
pub mod postgres;

use std::sync::Arc;

pub use etcd::EtcdGrant;
pub use postgres::PostgresGrant;

/// The capabilities granted to one plugin.
#[derive(Clone, Default, Debug)]
pub struct Grants {
    /// etcd endpoints and credentials, for DCS plugins configured for etcd.
    pub etcd: Option<Arc<EtcdGrant>>,
    /// The local PostgreSQL, for MPP plugins.
    pub postgres: Option<Arc<PostgresGrant>>,
}

impl Grants {
    /// One line per granted capability, for operators (`keeld` prints it at start).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec!["log".to_owned()];
        if let Some(etcd) = &self.etcd {
            lines.push(format!("etcd: {}", etcd.endpoints().join(",")));
        }
        if let Some(pg) = &self.postgres {
            lines.push(format!("postgres: {}", pg.describe()));
        }
        lines
    }
}
