//! Where Patroni's keys live in etcd.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_patroni() {
        let plain = Paths::new("/service/", "batman", None);
        assert_eq!(plain.key("leader"), "/service/batman/leader");
        let worker = Paths::new("/service/", "demo", Some(2));
        assert_eq!(worker.key("members/w1"), "/service/demo/2/members/w1");
        assert_eq!(Paths::new("/", "x", None).cluster, "/x/");
    }
}
