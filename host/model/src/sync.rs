//! `sync`: who the primary replicates synchronously to, and the quorum.
//!
//! Patroni 4.x always writes `{"leader":..,"quorum":N,"sync_standby":"a,b"|null}`
//! in that key order, standby names sorted and comma-joined. A 3.x value has no
//! `quorum` and reads as 0; `quorum` only counts when `leader` is set. Anything
//! malformed reads as the empty state (no leader), which the HA loop treats as
//! "no synchronous standby is known", the safe reading. Names compare
//! case-insensitively, like Postgres' `synchronous_standby_names`.

use serde_json::Value;

use super::json::{as_u64, to_compact};

/// The synchronous replication state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    /// The key's version; `None` when the key is absent (then writes are plain puts).
    pub version: Option<String>,
    /// The primary that manages the key; `None` means the state is empty.
    pub leader: Option<String>,
    /// The synchronous standbys (Patroni 4.x: the voters), in stored order.
    pub sync_standby: Vec<String>,
    /// Quorum: how many of `{leader} ∪ voters` a racing node must see.
    pub quorum: u32,
}

impl SyncState {
    /// The state of an absent key.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A state to write (no version yet).
    pub fn new(leader: impl Into<String>, sync_standby: Vec<String>, quorum: u32) -> Self {
        Self {
            version: None,
            leader: Some(leader.into()),
            sync_standby,
            quorum,
        }
    }

    /// Parse a `sync` value. Never fails: garbage gives the empty state (with the
    /// version kept, so the leader can still compare-and-set over it).
    pub fn parse(version: &str, raw: &str) -> Self {
        let empty = Self {
            version: Some(version.to_owned()),
            ..Self::default()
        };
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
            tracing::warn!("sync key is not a JSON object, ignored");
            return empty;
        };
        let leader = match map.get("leader") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => return empty,
            Some(_) => {
                tracing::warn!("sync leader is not a string, ignored");
                return empty;
            }
        };
        let quorum = match map.get("quorum") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => 0,
            Some(q) => match as_u64(q).and_then(|q| u32::try_from(q).ok()) {
                Some(q) => q,
                None => {
                    tracing::warn!("sync quorum is not a small non-negative integer, ignored");
                    return empty;
                }
            },
        };
        let sync_standby = match map.get("sync_standby") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => split_names(s),
            Some(_) => {
                tracing::warn!("sync sync_standby is not a string, ignored");
                return empty;
            }
        };
        Self {
            version: Some(version.to_owned()),
            leader: Some(leader),
            sync_standby,
            quorum,
        }
    }

    /// Render as Patroni 4.x: `{"leader":..,"quorum":N,"sync_standby":"a,b"|null}`.
    pub fn render(&self) -> String {
        let mut names = self.sync_standby.clone();
        names.sort();
        let standby = if names.is_empty() {
            Value::Null
        } else {
            Value::String(names.join(","))
        };
        let leader = self.leader.clone().map_or(Value::Null, Value::String);
        format!(
            "{{\"leader\":{},\"quorum\":{},\"sync_standby\":{}}}",
            to_compact(&leader),
            self.quorum,
            to_compact(&standby)
        )
    }

    /// `true` when no leader is recorded.
    pub fn is_empty(&self) -> bool {
        self.leader.is_none()
    }

    /// The voters (`sync_standby`), empty when the state is empty.
    pub fn voters(&self) -> &[String] {
        if self.is_empty() {
            &[]
        } else {
            &self.sync_standby
        }
    }

    /// `[leader] + voters`, the voting set of quorum commit.
    pub fn members(&self) -> Vec<String> {
        self.leader.iter().chain(self.voters()).cloned().collect()
    }

    /// `true` if `name` is a voter (or the leader, with `check_leader`),
    /// case-insensitively.
    pub fn matches(&self, name: &str, check_leader: bool) -> bool {
        if name.is_empty() || self.is_empty() {
            return false;
        }
        self.voters().iter().any(|v| v.eq_ignore_ascii_case(name))
            || (check_leader && self.leader_matches(name))
    }

    /// `true` if `name` is the recorded leader, case-insensitively.
    pub fn leader_matches(&self, name: &str) -> bool {
        !name.is_empty()
            && self
                .leader
                .as_deref()
                .is_some_and(|l| l.to_lowercase() == name.to_lowercase())
    }
}

/// Split a comma-joined list, trimming and dropping empty names.
fn split_names(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_3x_and_4x_values() {
        let s = SyncState::parse("5", r#"{"leader":"pg0","sync_standby":"pg1,pg2"}"#);
        assert_eq!(s.leader.as_deref(), Some("pg0"));
        assert_eq!(s.voters(), ["pg1", "pg2"]);
        assert_eq!(s.quorum, 0);
        let q = SyncState::parse(
            "6",
            r#"{"leader":"node0","sync_standby":"node1,node2,node3","quorum":1}"#,
        );
        assert_eq!(q.quorum, 1);
        assert_eq!(q.members(), ["node0", "node1", "node2", "node3"]);
        let none = SyncState::parse("7", r#"{"leader":"n0","quorum":0,"sync_standby":null}"#);
        assert!(!none.is_empty());
        assert!(none.voters().is_empty());
    }

    #[test]
    fn renders_in_patroni_order() {
        let s = SyncState::new("n0", vec!["n2".into(), "n1".into()], 0);
        assert_eq!(
            s.render(),
            r#"{"leader":"n0","quorum":0,"sync_standby":"n1,n2"}"#
        );
        let e = SyncState::new("n0", vec![], 0);
        assert_eq!(
            e.render(),
            r#"{"leader":"n0","quorum":0,"sync_standby":null}"#
        );
        let back = SyncState::parse("1", &s.render());
        assert_eq!(back.sync_standby, ["n1", "n2"]);
    }

    #[test]
    fn garbage_is_the_empty_state() {
        let cases = [
            "",
            "{",
            "[]",
            "null",
            "{}",
            r#"{"leader":""}"#,
            r#"{"leader":5}"#,
            r#"{"leader":"a","quorum":"x"}"#,
            r#"{"leader":"a","quorum":-1}"#,
            r#"{"leader":"a","sync_standby":["b"]}"#,
        ];
        for raw in cases {
            let s = SyncState::parse("9", raw);
            assert!(s.is_empty(), "{raw:?}");
            assert_eq!(s.version.as_deref(), Some("9"));
        }
        // like Python int(), a decimal string is a valid quorum
        assert_eq!(
            SyncState::parse("1", r#"{"leader":"a","quorum":"2"}"#).quorum,
            2
        );
    }

    #[test]
    fn matching_is_case_insensitive() {
        let s = SyncState::parse("1", r#"{"leader":"foo","sync_standby":"bar,zoo"}"#);
        assert!(!s.matches("foo", false));
        assert!(s.matches("fOo", true));
        assert!(s.matches("Bar", false));
        assert!(s.matches("zoO", false));
        assert!(!s.matches("baz", true));
        assert!(!SyncState::empty().matches("foo", true));
        assert!(s.leader_matches("FOO"));
    }
}
