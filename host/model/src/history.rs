//! `history`: the cluster's timeline switches, as the primary publishes them.
//!
//! Each element is `[timeline, switch_lsn, reason, timestamp, new_leader]`; older
//! elements may have only the first three or four items. The derived "cluster
//! timeline" follows Patroni: absent key → 0, `[]` → 1, otherwise the last
//! element's timeline + 1. A history with any malformed element is kept raw and
//! reads as timeline 0, as in Patroni, rather than guessing from the rest.

use serde_json::Value;

use super::json::{as_u64, to_compact};

/// One timeline switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where it ended (bytes).
    pub lsn: u64,
    /// The reason from the `.history` file.
    pub reason: String,
    /// When (ISO 8601, from the history file's mtime); absent on old entries.
    pub timestamp: Option<String>,
    /// Who became leader; absent on old entries.
    pub new_leader: Option<String>,
}

impl HistoryLine {
    fn parse(value: &Value) -> Option<Self> {
        let items = value.as_array()?;
        if !(3..=5).contains(&items.len()) {
            return None;
        }
        let text = |i: usize| -> Option<Option<String>> {
            match items.get(i) {
                None => Some(None),
                Some(Value::String(s)) => Some(Some(s.clone())),
                Some(_) => None,
            }
        };
        Some(Self {
            timeline: as_u64(&items[0]).and_then(|t| u32::try_from(t).ok())?,
            lsn: as_u64(&items[1])?,
            reason: text(2)??,
            timestamp: text(3)?,
            new_leader: text(4)?,
        })
    }

    fn to_value(&self) -> Value {
        let mut items = vec![
            Value::from(self.timeline),
            Value::from(self.lsn),
            Value::from(self.reason.clone()),
        ];
        if let Some(ts) = &self.timestamp {
            items.push(Value::from(ts.clone()));
            if let Some(leader) = &self.new_leader {
                items.push(Value::from(leader.clone()));
            }
        }
        Value::Array(items)
    }
}

/// The `history` key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimelineHistory {
    /// The key's version (`None` for a value about to be written).
    pub version: Option<String>,
    /// The parsed lines; empty when the value is malformed (see [`Self::is_valid`]).
    pub lines: Vec<HistoryLine>,
    valid: bool,
}

impl TimelineHistory {
    /// A history to write.
    pub fn new(lines: Vec<HistoryLine>) -> Self {
        Self {
            version: None,
            lines,
            valid: true,
        }
    }

    /// Parse a `history` value. Never fails.
    pub fn parse(version: &str, raw: &str) -> Self {
        let lines = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Array(items)) => items.iter().map(HistoryLine::parse).collect(),
            _ => None,
        };
        if lines.is_none() {
            tracing::warn!("history key is not a list of timeline records, ignored");
        }
        Self {
            version: Some(version.to_owned()),
            valid: lines.is_some(),
            lines: lines.unwrap_or_default(),
        }
    }

    /// `false` when the stored value was malformed.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// The cluster timeline this history implies: `[]` → 1, otherwise the last
    /// line's timeline + 1; a malformed history → 0.
    pub fn timeline(&self) -> u32 {
        match self.lines.last() {
            _ if !self.valid => 0,
            None => 1,
            Some(last) => last.timeline.saturating_add(1),
        }
    }

    /// Render as compact JSON (`[[1,25165984,"reason","ts","pg1"]]`).
    pub fn render(&self) -> String {
        to_compact(&Value::Array(
            self.lines.iter().map(HistoryLine::to_value).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        r#"[[1,25165984,"no recovery target specified","2024-07-02T16:10:00.123456+02:00","pg1"]]"#;

    #[test]
    fn doc_value_round_trips() {
        let h = TimelineHistory::parse("4", DOC);
        assert!(h.is_valid());
        assert_eq!(h.lines[0].lsn, 25_165_984);
        assert_eq!(h.lines[0].new_leader.as_deref(), Some("pg1"));
        assert_eq!(h.timeline(), 2);
        assert_eq!(h.render(), DOC);
    }

    #[test]
    fn short_and_string_records() {
        let h = TimelineHistory::parse(
            "1",
            r#"[[1,100,"a"],[2,200,"b","2024-01-01T00:00:00+00:00"],["3","2","1"]]"#,
        );
        assert!(h.is_valid());
        assert_eq!(h.timeline(), 4);
        assert_eq!(
            h.lines[1].timestamp.as_deref(),
            Some("2024-01-01T00:00:00+00:00")
        );
        assert_eq!(
            h.render(),
            r#"[[1,100,"a"],[2,200,"b","2024-01-01T00:00:00+00:00"],[3,2,"1"]]"#
        );
    }

    #[test]
    fn derived_timeline() {
        assert_eq!(TimelineHistory::parse("1", "[]").timeline(), 1);
        let bad = [
            r#"[["a"]]"#,
            "{",
            "{}",
            "null",
            r#"[[1,2]]"#,
            r#"[[1,2,3]]"#,
            r#"[[1,2,"r","t","n","x"]]"#,
            r#"[[1,-2,"r"]]"#,
        ];
        for raw in bad {
            let h = TimelineHistory::parse("1", raw);
            assert!(!h.is_valid(), "{raw}");
            assert_eq!(h.timeline(), 0, "{raw}");
        }
    }
}
