//! Replication slots (Patroni's `postgresql/slots.py`, the part that runs on one node).
//!
//! The caller (the HA loop) decides which slots this node should have: a physical slot per member
//! that streams from it, plus permanent physical and logical slots from the dynamic
//! configuration. [`Postgres::sync_slots`] makes the server match: creates what is missing, drops
//! and recreates slots whose type/plugin/database differ, and drops inactive slots nobody wants
//! unless the ignore predicate (`ignore_slots`, the MPP plugin's hook) keeps them. Temporary slots
//! are never touched.
//!
//! Logical slot failover (Patroni 4): [`Postgres::copy_logical_slots`] copies a logical slot's
//! `pg_replslot/<slot>/state` from the primary (read with `pg_read_binary_file` by the rewind
//! role) onto a stopped replica; [`Postgres::advance_slot`] moves a copy forward;
//! [`Postgres::leader_slots`] and [`Postgres::oldest_wal_lsn`] give what the HA loop needs to
//! judge whether a copy is usable and safe after a failover. Scheduling all of it (when a copy
//! is needed, `hot_standby_feedback`, the "safe after failover" `catalog_xmin` check) is the HA
//! loop's job and not done here.

use crate::Postgres;
use crate::bootstrap::quote_literal;
use crate::error::{Error, Result};
use crate::misc::Lsn;

/// A slot's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    /// A physical slot.
    Physical,
    /// A logical slot on `database` using output `plugin`.
    Logical {
        /// The database.
        database: String,
        /// The output plugin.
        plugin: String,
    },
}

/// A slot this node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    /// The slot name (`^[a-z0-9_]{1,63}$`).
    pub name: String,
    /// Its type.
    pub kind: SlotKind,
}

impl SlotSpec {
    /// A physical slot.
    pub fn physical(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: SlotKind::Physical,
        }
    }

    /// A logical slot.
    pub fn logical(
        name: impl Into<String>,
        database: impl Into<String>,
        plugin: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: SlotKind::Logical {
                database: database.into(),
                plugin: plugin.into(),
            },
        }
    }
}

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSlot {
    /// Name.
    pub name: String,
    /// Type, plugin and database.
    pub kind: SlotKind,
    /// Temporary slots are ignored by the sync.
    pub temporary: bool,
    /// In use by a walsender.
    pub active: bool,
    /// `restart_lsn`.
    pub restart_lsn: Option<Lsn>,
    /// `confirmed_flush_lsn` (logical slots).
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `catalog_xmin`: the oldest transaction whose catalog rows the slot needs (logical
    /// slots; a physical slot has one from `hot_standby_feedback`).
    pub catalog_xmin: Option<u32>,
}

/// What [`Postgres::sync_slots`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotSyncReport {
    /// Slots created.
    pub created: Vec<String>,
    /// Slots dropped (including ones dropped to be recreated).
    pub dropped: Vec<String>,
    /// Unwanted slots kept because they are active (retried next time) or ignored.
    pub kept: Vec<String>,
}

/// Patroni's slot name for a member: lower case, `-` and `.` become `_`, any other character
/// outside `[a-z0-9_]` becomes `u` + its code point as 4+ decimal digits; at most 63 characters.
pub fn slot_name_from_member_name(member: &str) -> String {
    let mut out = String::new();
    for c in member.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04}", u32::from(other))),
        }
    }
    out.chars().take(63).collect()
}

/// True for a valid permanent slot name: `^[a-z0-9_]{1,63}$`.
pub fn is_valid_slot_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Slot changes as a plan: (to drop, to create, kept). Pure, so it is unit-tested.
pub fn plan_slots<'a>(
    wanted: &'a [SlotSpec],
    existing: &[ReplicationSlot],
    ignore: &dyn Fn(&ReplicationSlot) -> bool,
) -> (Vec<String>, Vec<&'a SlotSpec>, Vec<String>) {
    let mut drop = Vec::new();
    let mut kept = Vec::new();
    for slot in existing.iter().filter(|s| !s.temporary) {
        let want = wanted.iter().find(|w| w.name == slot.name);
        let unwanted = want.is_none_or(|w| w.kind != slot.kind);
        if !unwanted {
            continue;
        }
        if (want.is_none() && ignore(slot)) || slot.active {
            kept.push(slot.name.clone());
        } else {
            drop.push(slot.name.clone());
        }
    }
    let create = wanted
        .iter()
        .filter(|w| existing.iter().all(|s| s.name != w.name) || drop.contains(&w.name))
        .collect();
    (drop, create, kept)
}

impl Postgres {
    /// The non-temporary and temporary slots on this server.
    pub async fn slots(&self) -> Result<Vec<ReplicationSlot>> {
        let rows = self
            .query(&format!("{SLOTS_QUERY} FROM pg_replication_slots"))
            .await?;
        rows.iter().map(slot_from_row).collect()
    }

    /// Makes the server's slots match `wanted`. `ignore` keeps unwanted slots it returns true
    /// for. Logical slots are created only on a primary (an error on a replica).
    pub async fn sync_slots(
        &self,
        wanted: &[SlotSpec],
        ignore: &dyn Fn(&ReplicationSlot) -> bool,
    ) -> Result<SlotSyncReport> {
        let existing = self.slots().await?;
        self.sync_slots_from(&existing, wanted, ignore).await
    }

    /// [`Postgres::sync_slots`] against `existing`, the slots the caller just read.
    pub async fn sync_slots_from(
        &self,
        existing: &[ReplicationSlot],
        wanted: &[SlotSpec],
        ignore: &dyn Fn(&ReplicationSlot) -> bool,
    ) -> Result<SlotSyncReport> {
        if let Some(bad) = wanted.iter().find(|w| !is_valid_slot_name(&w.name)) {
            return Err(Error::InvalidParameter {
                name: "slots".to_owned(),
                value: bad.name.clone(),
            });
        }
        let (drop, create, kept) = plan_slots(wanted, existing, ignore);
        let mut report = SlotSyncReport {
            kept,
            ..SlotSyncReport::default()
        };
        for name in drop {
            self.execute(&format!(
                "SELECT pg_drop_replication_slot({})",
                quote_literal(&name)
            ))
            .await?;
            report.dropped.push(name);
        }
        for spec in create {
            match &spec.kind {
                SlotKind::Physical => {
                    self.execute(&format!(
                        "SELECT pg_create_physical_replication_slot({}, true)",
                        quote_literal(&spec.name)
                    ))
                    .await?;
                }
                SlotKind::Logical { database, plugin } => {
                    self.create_logical_slot(&spec.name, database, plugin)
                        .await?;
                }
            }
            report.created.push(spec.name.clone());
        }
        Ok(report)
    }

    async fn create_logical_slot(&self, name: &str, database: &str, plugin: &str) -> Result<()> {
        let s = &self.settings;
        let mut config = crate::connection::local_config(
            &s.socket_dir,
            s.port,
            &s.superuser,
            s.timeouts.connect,
        );
        config.dbname(database);
        let (client, conn) =
            tokio::time::timeout(s.timeouts.connect, config.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| Error::Timeout {
                    what: crate::error::Wait::Connect,
                    timeout: s.timeouts.connect,
                })??;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let sql = format!(
            "SELECT pg_create_logical_replication_slot({}, {})",
            quote_literal(name),
            quote_literal(plugin)
        );
        tokio::time::timeout(s.timeouts.query, client.batch_execute(&sql))
            .await
            .map_err(|_| Error::Timeout {
                what: crate::error::Wait::Query,
                timeout: s.timeouts.query,
            })??;
        Ok(())
    }

    /// Advances an inactive slot to `lsn` (`pg_replication_slot_advance`), as Patroni does for
    /// permanent slots on replicas.
    pub async fn advance_slot(&self, name: &str, lsn: Lsn) -> Result<()> {
        self.execute(&format!(
            "SELECT pg_replication_slot_advance({}, {}::pg_lsn)",
            quote_literal(name),
            quote_literal(&lsn.to_string())
        ))
        .await
    }
}

impl Postgres {
    /// The slots `names` on the primary at `primary` (those it has). Empty when that server
    /// is in recovery: only a primary's slots say what a failover would find.
    pub async fn leader_slots(
        &self,
        primary: &crate::Upstream,
        names: &[String],
    ) -> Result<Vec<ReplicationSlot>> {
        let client = self.connect_leader(primary).await?;
        let t = self.settings.timeouts.query;
        let sql = format!(
            "{SLOTS_QUERY} FROM pg_replication_slots \
             WHERE NOT pg_is_in_recovery() AND slot_name = ANY($1)"
        );
        let rows = tokio::time::timeout(t, client.query(&sql, &[&names]))
            .await
            .map_err(|_| Error::Timeout {
                what: crate::error::Wait::Query,
                timeout: t,
            })??;
        rows.iter().map(slot_from_row).collect()
    }

    /// Where the oldest WAL segment in this server's `pg_wal` starts: WAL before it is gone
    /// here, so a logical slot that still needs it cannot be decoded or advanced here.
    /// `None` when `pg_wal` holds no complete segment.
    pub async fn oldest_wal_lsn(&self) -> Result<Option<Lsn>> {
        let rows = self
            .query(
                "SELECT min(substr(name, 9)), current_setting('wal_segment_size') \
                 FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'",
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let Some(position) = row.try_get::<_, Option<String>>(0)? else {
            return Ok(None);
        };
        let size: String = row.try_get(1)?;
        segment_start(&position, &size).map(Some)
    }

    /// Drops the replication slot `name` (not active).
    pub async fn drop_slot(&self, name: &str) -> Result<()> {
        self.execute(&format!(
            "SELECT pg_drop_replication_slot({})",
            quote_literal(name)
        ))
        .await
    }

    /// Copies the logical slots `names` from the primary at `primary` onto this replica: their
    /// state files are read first, then PostgreSQL is stopped (fast), the files are written and
    /// fsynced under `pg_replslot/`, and PostgreSQL is started again (it loads slots at start-up).
    /// Returns the names copied; names that are not logical slots on the primary are skipped.
    /// Refuses ([`Error::InvalidParameter`]) unless this node runs with `wal_level = logical`.
    pub async fn copy_logical_slots(
        &self,
        primary: &crate::Upstream,
        names: &[String],
    ) -> Result<Vec<String>> {
        // PostgreSQL refuses to start with a logical slot below wal_level=logical.
        let (cmdline, _) = crate::config::split_cmdline(&self.effective_parameters());
        let wal_level = cmdline.get("wal_level").unwrap_or_default();
        if wal_level != "logical" {
            return Err(Error::InvalidParameter {
                name: "wal_level".to_owned(),
                value: wal_level.to_owned(),
            });
        }
        let client = self.connect_leader(primary).await?;
        let t = self.settings.timeouts.query;
        let sql = "SELECT slot_name::text, pg_read_binary_file('pg_replslot/' || slot_name || '/state') \
                   FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT temporary \
                   AND slot_name = ANY($1)";
        let rows = tokio::time::timeout(t, client.query(sql, &[&names]))
            .await
            .map_err(|_| Error::Timeout {
                what: crate::error::Wait::Query,
                timeout: t,
            })??;
        let mut states = Vec::new();
        for row in &rows {
            let name: String = row.try_get(0)?;
            if !is_valid_slot_name(&name) {
                continue;
            }
            states.push((name, row.try_get::<_, Vec<u8>>(1)?));
        }
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let was_running = self.stop(crate::StopMode::Fast).await?;
        for (name, state) in &states {
            write_slot_state(&self.data_dir().join("pg_replslot").join(name), state)?;
        }
        if was_running {
            self.start().await?;
        }
        Ok(states.into_iter().map(|(n, _)| n).collect())
    }
}

/// The columns [`slot_from_row`] reads, without the `FROM`.
const SLOTS_QUERY: &str = "SELECT slot_name::text, slot_type, plugin::text, database::text, \
    temporary, active, restart_lsn::text, confirmed_flush_lsn::text, catalog_xmin::text";

fn slot_from_row(r: &tokio_postgres::Row) -> Result<ReplicationSlot> {
    let slot_type: String = r.try_get(1)?;
    let kind = if slot_type == "logical" {
        SlotKind::Logical {
            plugin: r.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
            database: r.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
        }
    } else {
        SlotKind::Physical
    };
    let lsn = |i: usize| -> Result<Option<Lsn>> {
        r.try_get::<_, Option<String>>(i)?
            .map(|s| s.parse())
            .transpose()
    };
    let catalog_xmin = r
        .try_get::<_, Option<String>>(8)?
        .map(|text| {
            text.parse::<u32>().map_err(|_| Error::Parse {
                what: "catalog_xmin",
                text,
            })
        })
        .transpose()?;
    Ok(ReplicationSlot {
        name: r.try_get(0)?,
        kind,
        temporary: r.try_get(4)?,
        active: r.try_get(5)?,
        restart_lsn: lsn(6)?,
        confirmed_flush_lsn: lsn(7)?,
        catalog_xmin,
    })
}

/// The LSN a WAL segment starts at, from the last 16 hex digits of its file name (log and
/// segment number; the timeline is left off) and `wal_segment_size` as `SHOW` prints it.
fn segment_start(log_and_segment: &str, segment_size: &str) -> Result<Lsn> {
    let parse_err = || Error::Parse {
        what: "WAL segment",
        text: format!("{log_and_segment} ({segment_size})"),
    };
    let size = parse_size(segment_size).ok_or_else(parse_err)?;
    let hex = |s: Option<&str>| s.and_then(|s| u64::from_str_radix(s, 16).ok());
    let log = hex(log_and_segment.get(..8)).ok_or_else(parse_err)?;
    let segment = hex(log_and_segment.get(8..16)).ok_or_else(parse_err)?;
    // A segment number counts within its 4 GiB "log".
    if segment >= (1u64 << 32) / size {
        return Err(parse_err());
    }
    Ok(Lsn(log * (1u64 << 32) + segment * size))
}

/// `16MB`, `1GB`, `1024kB` (what `SHOW wal_segment_size` prints) in bytes.
fn parse_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    let unit = match &text[digits.len()..] {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    Some(n * unit).filter(|size| size.is_power_of_two())
}

/// Writes one slot's `state` file into `dir` (replacing a previous copy) and fsyncs both.
fn write_slot_state(dir: &std::path::Path, state: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let err = crate::error::io_err;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(err(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let path = dir.join("state");
    let mut f = std::fs::File::create(&path).map_err(err(&path))?;
    f.write_all(state).map_err(err(&path))?;
    f.sync_all().map_err(err(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_patroni() {
        assert_eq!(slot_name_from_member_name("postgres-0"), "postgres_0");
        assert_eq!(slot_name_from_member_name("Node.One"), "node_one");
        assert_eq!(slot_name_from_member_name("a b"), "au0032b");
        assert_eq!(slot_name_from_member_name("ü"), "u0252");
        assert_eq!(slot_name_from_member_name(&"x".repeat(70)).len(), 63);
        assert!(is_valid_slot_name("node_1"));
        assert!(!is_valid_slot_name("Node"));
        assert!(!is_valid_slot_name(""));
    }

    fn slot(name: &str, kind: SlotKind, active: bool) -> ReplicationSlot {
        ReplicationSlot {
            name: name.to_owned(),
            kind,
            temporary: false,
            active,
            restart_lsn: None,
            confirmed_flush_lsn: None,
            catalog_xmin: None,
        }
    }

    #[test]
    fn wal_segment_names_give_their_start() {
        // 000000010000000000000003 with 16 MB segments starts at 0/3000000.
        assert_eq!(
            segment_start("0000000000000003", "16MB").unwrap(),
            Lsn(0x300_0000)
        );
        // Log 1, segment 0xFF: 1/FF000000.
        assert_eq!(
            segment_start("00000001000000FF", "16MB").unwrap(),
            Lsn(0x1_FF00_0000)
        );
        assert_eq!(
            segment_start("0000000200000001", "1GB").unwrap(),
            Lsn(0x2_4000_0000)
        );
        assert!(segment_start("00000001", "16MB").is_err());
        assert!(
            segment_start("0000000000000100", "16MB").is_err(),
            "256 segments per log"
        );
        assert!(segment_start("0000000000000003", "15MB").is_err());
        assert!(segment_start("0000000000000003", "16XB").is_err());
    }

    #[test]
    fn plan_creates_drops_and_keeps() {
        let wanted = vec![
            SlotSpec::physical("n2"),
            SlotSpec::logical("cdc", "postgres", "pgoutput"),
        ];
        let existing = vec![
            slot("old", SlotKind::Physical, false),
            slot("busy", SlotKind::Physical, true),
            slot("keepme", SlotKind::Physical, false),
            slot("cdc", SlotKind::Physical, false),
        ];
        let ignore = |s: &ReplicationSlot| s.name == "keepme";
        let (drop, create, kept) = plan_slots(&wanted, &existing, &ignore);
        assert_eq!(drop, vec!["old", "cdc"]);
        let created: Vec<&str> = create.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(created, vec!["n2", "cdc"]);
        assert_eq!(kept, vec!["busy", "keepme"]);
    }
}
