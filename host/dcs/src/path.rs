//! Where a cluster's keys live in the store.
//!
//! Patroni builds the base path as `'/' + namespace + '/' + scope` with runs of `/`
//! collapsed, so `service`, `/service/` and `//service` all mean the same place. A
//! plain cluster keeps its keys under `<base>/`; each group of an MPP (Citus)
//! formation under `<base>/<group>/`, where the directory name must match
//! `^(0|[1-9][0-9]*)$`. Anything else under `<base>/` is ignored by readers, so a
//! stray key can never be mistaken for a group.
//!
//! Every backend (plugins too, through the SDK) must agree on these rules, which
//! is why they live here and not in each plugin.

use std::collections::BTreeMap;

use crate::backend::{Entry, GroupEntries};

/// The namespace Patroni uses when none is configured.
pub const DEFAULT_NAMESPACE: &str = "/service/";

/// Collapse runs of `/` into one.
fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

/// Normalise a configured namespace to start and end with exactly one `/`.
///
/// `None` gives [`DEFAULT_NAMESPACE`]; `Some("")` gives `/`, as in Patroni, where
/// an explicitly empty namespace puts the scope right under the root.
pub fn normalize_namespace(namespace: Option<&str>) -> String {
    match namespace {
        None => DEFAULT_NAMESPACE.to_owned(),
        Some(ns) => collapse_slashes(&format!("/{ns}/")),
    }
}

/// Parse an MPP group directory name: `0` or a decimal without leading zeros.
///
/// Returns `None` for anything else, including numbers that do not fit a `u32`.
pub fn parse_group_dir(name: &str) -> Option<u32> {
    let bytes = name.as_bytes();
    let well_formed = match bytes {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if well_formed { name.parse().ok() } else { None }
}

/// The paths of one cluster (scope) in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPath {
    base: String,
}

impl ClusterPath {
    /// The path of `scope` in `namespace` (see [`normalize_namespace`]).
    pub fn new(namespace: Option<&str>, scope: &str) -> Self {
        let ns = normalize_namespace(namespace);
        Self {
            base: collapse_slashes(&format!("{ns}{scope}/")),
        }
    }

    /// `/<namespace>/<scope>/`, always ending in `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The directory of one MPP group: `<base><group>/`.
    pub fn group(&self, group: u32) -> String {
        format!("{}{group}/", self.base)
    }

    /// The directory a member's keys live in: the group's for a formation member,
    /// the base for a plain cluster.
    pub fn cluster(&self, group: Option<u32>) -> String {
        match group {
            Some(g) => self.group(g),
            None => self.base.clone(),
        }
    }

    /// The full path of a relative key (`leader`, `members/pg1`).
    pub fn key(&self, group: Option<u32>, relative: &str) -> String {
        format!("{}{relative}", self.cluster(group))
    }
}

/// Split the entries of one read of `<base>/` into MPP groups.
///
/// `entries` carry keys relative to the base (`0/leader`, `1/members/w1`). Keys
/// whose first component is not a group directory are dropped (logged at debug
/// level), as are keys with no component after it. The result is in ascending
/// group order with keys made relative to each group, which is exactly what a
/// backend answers for [`LoadScope::Formation`](crate::LoadScope::Formation).
pub fn split_formation(entries: impl IntoIterator<Item = Entry>) -> Vec<GroupEntries> {
    let mut groups: BTreeMap<u32, Vec<Entry>> = BTreeMap::new();
    for mut entry in entries {
        let Some((dir, rest)) = entry.key.split_once('/') else {
            tracing::debug!(key = %entry.key, "ignoring key outside any MPP group");
            continue;
        };
        let Some(group) = parse_group_dir(dir) else {
            tracing::debug!(key = %entry.key, "ignoring key outside any MPP group");
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        entry.key = rest.to_owned();
        groups.entry(group).or_default().push(entry);
    }
    groups
        .into_iter()
        .map(|(group, entries)| GroupEntries {
            group: Some(group),
            entries,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_normalise_like_patroni() {
        let cases = [
            (None, "/service/"),
            (Some("service"), "/service/"),
            (Some("/service/"), "/service/"),
            (Some("//service//"), "/service/"),
            (Some("a//b"), "/a/b/"),
            (Some(""), "/"),
            (Some("/"), "/"),
        ];
        for (ns, want) in cases {
            assert_eq!(normalize_namespace(ns), want, "{ns:?}");
        }
    }

    #[test]
    fn base_and_group_paths() {
        let p = ClusterPath::new(None, "batman");
        assert_eq!(p.base(), "/service/batman/");
        assert_eq!(p.group(0), "/service/batman/0/");
        assert_eq!(p.cluster(None), "/service/batman/");
        assert_eq!(p.cluster(Some(2)), "/service/batman/2/");
        assert_eq!(p.key(None, "members/pg1"), "/service/batman/members/pg1");
        assert_eq!(p.key(Some(1), "leader"), "/service/batman/1/leader");
        assert_eq!(ClusterPath::new(Some(""), "b").base(), "/b/");
        assert_eq!(ClusterPath::new(Some("/ns/"), "/b/").base(), "/ns/b/");
    }

    #[test]
    fn group_dirs_follow_the_regex() {
        let cases = [
            ("0", Some(0)),
            ("1", Some(1)),
            ("10", Some(10)),
            ("4294967295", Some(u32::MAX)),
            ("4294967296", None),
            ("00", None),
            ("01", None),
            ("-1", None),
            ("+1", None),
            ("1a", None),
            (" 1", None),
            ("", None),
            ("members", None),
        ];
        for (dir, want) in cases {
            assert_eq!(parse_group_dir(dir), want, "{dir:?}");
        }
    }

    #[test]
    fn formation_split_ignores_everything_else() {
        let e = |key: &str| Entry {
            key: key.into(),
            value: "v".into(),
            version: "1".into(),
            session: None,
        };
        let groups = split_formation([
            e("1/leader"),
            e("0/members/c1"),
            e("0/leader"),
            e("leader"),
            e("01/leader"),
            e("x/leader"),
            e("2/"),
            e("config"),
            e("12/members/w"),
        ]);
        let got: Vec<(Option<u32>, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.group, g.entries.iter().map(|e| e.key.as_str()).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(0), vec!["members/c1", "leader"]),
                (Some(1), vec!["leader"]),
                (Some(12), vec!["members/w"]),
            ]
        );
    }
}
