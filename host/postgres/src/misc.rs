//! Small value types shared by the modules (Patroni's `postgresql/misc.py`): WAL positions,
//! timeline history entries and pg_controldata output.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A WAL position (log sequence number), written `X/Y` in hex by PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Parse {
            what: "LSN",
            text: s.to_owned(),
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
            return Err(bad());
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// One line of a timeline history file: the timeline `parent` ended at `switch_point`, where the
/// next timeline branched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub parent: u32,
    /// Where it ended.
    pub switch_point: Lsn,
}

/// Parses a `0000000N.history` file (`parent<TAB>X/Y<TAB>reason` lines; comments and blank lines
/// skipped).
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, Error> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (fields.next(), fields.next()) else {
            return Err(Error::Parse {
                what: "timeline history",
                text: line.to_owned(),
            });
        };
        let parent = tli.parse().map_err(|_| Error::Parse {
            what: "timeline history",
            text: line.to_owned(),
        })?;
        out.push(HistoryEntry {
            parent,
            switch_point: lsn.parse()?,
        });
    }
    Ok(out)
}

/// The parts of `pg_controldata` output Keel uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlData {
    /// All `key: value` lines, verbatim.
    pub fields: BTreeMap<String, String>,
}

impl ControlData {
    /// Parses the `key: value` lines printed by `pg_controldata`.
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { fields }
    }

    /// A field by its exact name.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// `Database cluster state`, e.g. `shut down`, `shut down in recovery`, `in production`.
    pub fn state(&self) -> Option<&str> {
        self.get("Database cluster state")
    }

    /// `Database system identifier`.
    pub fn system_identifier(&self) -> Option<u64> {
        self.get("Database system identifier")?.parse().ok()
    }

    /// True when pg_rewind can work on this cluster: wal_log_hints on or data checksums on.
    pub fn rewind_capable(&self) -> bool {
        self.get("wal_log_hints setting") == Some("on")
            || self
                .get("Data page checksum version")
                .is_some_and(|v| v != "0")
    }

    /// The timeline and position a stopped cluster is at: the minimum recovery end point for a
    /// cluster shut down in recovery (when set), else the latest checkpoint (Patroni's rule).
    pub fn position(&self) -> Option<(u32, Lsn)> {
        let checkpoint = || {
            Some((
                self.get("Latest checkpoint's TimeLineID")?.parse().ok()?,
                self.get("Latest checkpoint location")?.parse().ok()?,
            ))
        };
        if matches!(
            self.state(),
            Some("shut down in recovery" | "in archive recovery")
        ) {
            let tli: u32 = self
                .get("Min recovery ending loc's timeline")?
                .parse()
                .ok()?;
            let lsn: Lsn = self.get("Minimum recovery ending location")?.parse().ok()?;
            if tli != 0 && lsn != Lsn(0) {
                return Some((tli, lsn));
            }
        }
        checkpoint()
    }

    /// The latest checkpoint's position and timeline.
    pub fn checkpoint(&self) -> Option<(u32, Lsn)> {
        Some((
            self.get("Latest checkpoint's TimeLineID")?.parse().ok()?,
            self.get("Latest checkpoint location")?.parse().ok()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips() {
        let lsn: Lsn = "16/B374D848".parse().expect("lsn");
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().expect("zero"), Lsn(0));
        assert!("garbage".parse::<Lsn>().is_err());
        assert!("1/100000000".parse::<Lsn>().is_err());
    }

    #[test]
    fn history_parses() {
        let h = parse_history("1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tx\n")
            .expect("history");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].parent, 1);
        assert_eq!(h[1].switch_point, Lsn(0x500_0000));
    }

    #[test]
    fn controldata_position() {
        let text = "Database cluster state:               shut down in recovery\n\
            Latest checkpoint location:           0/2000060\n\
            Latest checkpoint's TimeLineID:       1\n\
            Minimum recovery ending location:     0/3000000\n\
            Min recovery ending loc's timeline:   2\n\
            wal_log_hints setting:                on\n\
            Data page checksum version:           0\n";
        let cd = ControlData::parse(text);
        assert_eq!(cd.position(), Some((2, Lsn(0x300_0000))));
        assert_eq!(cd.checkpoint(), Some((1, Lsn(0x200_0060))));
        assert!(cd.rewind_capable());
        let shut = ControlData::parse(&text.replace("shut down in recovery", "shut down"));
        assert_eq!(shut.position(), Some((1, Lsn(0x200_0060))));
    }
}
