//! Where Patroni's keys live in etcd, and how a formation read splits into groups.

use keel_sdk::dcs::{Entry, GroupEntries};
use keel_sdk::host::etcd::KeyValue;

/// Paths of one member's cluster (`/<namespace>/<scope>/`) and of its own group
/// (`/<namespace>/<scope>/<group>/` in an MPP formation, else the cluster path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The cluster path, ending in `/`.
    pub cluster: String,
    /// This member's group, if it belongs to a formation.
    pub group: Option<u32>,
}

impl Paths {
    /// Build from the host's settings (the namespace arrives normalised).
    pub fn new(namespace: &str, scope: &str, group: Option<u32>) -> Self {
        let namespace = namespace.trim_matches('/');
        let cluster = if namespace.is_empty() {
            format!("/{scope}/")
        } else {
            format!("/{namespace}/{scope}/")
        };
        Self { cluster, group }
    }

    /// The path of a group.
    pub fn group_path(&self, group: u32) -> String {
        format!("{}{group}/", self.cluster)
    }

    /// The path this member's own keys live under.
    pub fn own(&self) -> String {
        match self.group {
            Some(group) => self.group_path(group),
            None => self.cluster.clone(),
        }
    }

    /// The absolute key of `relative` in this member's own group.
    pub fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.own())
    }
}

/// An etcd key-value as a DCS entry, with its key made relative to `base`.
pub fn entry(base: &str, kv: &KeyValue) -> Option<Entry> {
    let key = kv.key.strip_prefix(base)?.to_owned();
    if key.is_empty() {
        return None;
    }
    Some(Entry {
        key,
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        version: kv.mod_revision.to_string(),
        session: (kv.lease != 0).then(|| kv.lease.to_string()),
    })
}

/// A group directory name: `0` or a decimal without leading zeros.
pub fn parse_group(name: &str) -> Option<u32> {
    let valid = name == "0"
        || (name.starts_with(|c: char| ('1'..='9').contains(&c))
            && name.chars().all(|c| c.is_ascii_digit()));
    valid.then(|| name.parse().ok()).flatten()
}

/// Split a read of the whole cluster path into groups, ascending; keys outside a
/// valid group directory are ignored, as Patroni's readers do.
pub fn split_formation(cluster: &str, kvs: &[KeyValue]) -> Vec<GroupEntries> {
    let mut groups: std::collections::BTreeMap<u32, Vec<Entry>> = Default::default();
    for kv in kvs {
        let Some(rest) = kv.key.strip_prefix(cluster) else {
            continue;
        };
        let Some((dir, _)) = rest.split_once('/') else {
            continue;
        };
        let Some(group) = parse_group(dir) else {
            continue;
        };
        if let Some(entry) = entry(&format!("{cluster}{dir}/"), kv) {
            groups.entry(group).or_default().push(entry);
        }
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

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: 1,
            mod_revision: 7,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn paths_follow_patroni() {
        let plain = Paths::new("/service/", "batman", None);
        assert_eq!(plain.key("leader"), "/service/batman/leader");
        let worker = Paths::new("/service/", "demo", Some(2));
        assert_eq!(worker.key("members/w1"), "/service/demo/2/members/w1");
        assert_eq!(Paths::new("/", "x", None).cluster, "/x/");
    }

    #[test]
    fn group_names_are_strict_decimals() {
        assert_eq!(parse_group("0"), Some(0));
        assert_eq!(parse_group("12"), Some(12));
        for bad in ["00", "01", "-1", "a", "", "1a"] {
            assert_eq!(parse_group(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_formation_splits_into_ascending_groups() {
        let kvs = [
            kv("/service/demo/1/leader"),
            kv("/service/demo/0/leader"),
            kv("/service/demo/0/members/c1"),
            kv("/service/demo/01/leader"),
            kv("/service/demo/leader"),
            kv("/service/demo/10/config"),
        ];
        let groups = split_formation("/service/demo/", &kvs);
        let shape: Vec<(Option<u32>, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.group, g.entries.iter().map(|e| e.key.as_str()).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (Some(0), vec!["leader", "members/c1"]),
                (Some(1), vec!["leader"]),
                (Some(10), vec!["config"])
            ]
        );
        assert_eq!(groups[0].entries[0].version, "7");
    }
}
