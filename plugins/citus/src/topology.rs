//! One group of `pg_dist_node`, and the safe path from one state of it to another.
//!
//! Citus imposes four rules on the rows of a group, and [`transition`] is built
//! around them (it follows Patroni 4's `PgDistGroup.transition`):
//!
//! * `nodename:nodeport` is unique across the table, so before an address moves
//!   to another row, the row holding it must let go of it (the primary goes to
//!   `<host>-demoted`, a deliberately unresolvable name);
//! * the primary row keeps its nodeid: shard placements hang off it;
//! * adding or removing a row syncs metadata to every primary in a two-phase
//!   commit, which fails while a primary is being changed; so after a failover
//!   rows are only reused (updated), and additions or removals wait for the next
//!   cycle;
//! * updating a row always works.
//!
//! Example, a switchover from `a` (primary, nodeid 4) to `b` (secondary, nodeid 5):
//! `4 → a-demoted`, `5 → a`, `4 → b`, in one transaction.
//!
//! Nothing here does I/O: [`transition`] only says which calls to make.

/// What a row is, as far as the transition is concerned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `noderole = 'primary'`.
    Primary,
    /// `noderole = 'secondary'`.
    Secondary,
    /// The primary row, pointed at `<host>-demoted` so traffic to the group
    /// pauses; stored in Citus as a `primary` row.
    Demoted,
    /// Any other `noderole` (`unavailable`), kept as read.
    Other(String),
}

impl Role {
    /// The role of a row as `pg_dist_node` shows it.
    pub fn from_noderole(noderole: &str) -> Self {
        match noderole {
            "primary" => Self::Primary,
            "secondary" => Self::Secondary,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The primary row of its group (paused or not).
    pub fn is_primary(&self) -> bool {
        matches!(self, Self::Primary | Self::Demoted)
    }

    /// The `noderole` to register a new row with.
    pub fn noderole(&self) -> &str {
        match self {
            Self::Primary | Self::Demoted => "primary",
            Self::Secondary => "secondary",
            Self::Other(role) => role,
        }
    }
}

/// One row, wanted or registered. Identity is the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `nodename` (without the `-demoted` suffix for [`Role::Demoted`]).
    pub host: String,
    /// `nodeport`.
    pub port: u16,
    /// What the row is.
    pub role: Role,
    /// `nodeid`, once the row exists.
    pub nodeid: Option<i32>,
}

/// `nodename:nodeport`, the unique key of `pg_dist_node`.
pub type Address = (String, u16);

impl Node {
    /// A node without a row yet.
    pub fn new(host: impl Into<String>, port: u16, role: Role) -> Self {
        Self {
            host: host.into(),
            port,
            role,
            nodeid: None,
        }
    }

    /// Its unique key.
    pub fn address(&self) -> Address {
        (self.host.clone(), self.port)
    }

    fn at(&self, address: &Address) -> bool {
        self.host == address.0 && self.port == address.1
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match &self.role {
            Role::Demoted => "demoted",
            other => other.noderole(),
        };
        write!(f, "{}:{} {role}", self.host, self.port)?;
        if let Some(id) = self.nodeid {
            write!(f, " #{id}")?;
        }
        Ok(())
    }
}

/// One call on `pg_dist_node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `citus_add_node(host, port, group, role, 'default')`; answers the nodeid.
    Add {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// `noderole`.
        role: String,
    },
    /// `citus_update_node(nodeid, host, port, true, cooldown)`.
    Update {
        /// The row.
        nodeid: i32,
        /// Its new `nodename` (with `-demoted` when pausing).
        host: String,
        /// Its new `nodeport`.
        port: u16,
    },
    /// `citus_remove_node(host, port)`.
    Remove {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Change {
    /// The call that brings `node`'s row to what `node` says, if any: an update of
    /// a known row, else the addition of a new one (a paused primary that has no
    /// row is not added).
    fn write(node: &Node) -> Option<Self> {
        match (node.nodeid, &node.role) {
            (Some(nodeid), role) => Some(Self::Update {
                nodeid,
                host: if *role == Role::Demoted {
                    format!("{}-demoted", node.host)
                } else {
                    node.host.clone()
                },
                port: node.port,
            }),
            (None, Role::Demoted) => None,
            (None, role) => Some(Self::Add {
                host: node.host.clone(),
                port: node.port,
                role: role.noderole().to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Add { host, port, role } => write!(f, "add {host}:{port} as {role}"),
            Self::Update { nodeid, host, port } => write!(f, "update #{nodeid} to {host}:{port}"),
            Self::Remove { host, port } => write!(f, "remove {host}:{port}"),
        }
    }
}

/// The rows of one group: at most one primary, addresses unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The rows, in insertion order.
    pub nodes: Vec<Node>,
    /// The primary row changed in the transition that produced this state, so
    /// metadata is not yet synced and rows must not be added or removed.
    pub failover: bool,
}

impl Group {
    /// A group of these nodes; a node whose address is already present is ignored.
    pub fn of(nodes: impl IntoIterator<Item = Node>) -> Self {
        let mut group = Self::default();
        for node in nodes {
            group.insert(node);
        }
        group
    }

    /// Add `node` unless its address is present; whether it was added.
    pub fn insert(&mut self, node: Node) -> bool {
        if self.get(&node.address()).is_some() {
            return false;
        }
        self.nodes.push(node);
        true
    }

    /// The primary row (paused or not).
    pub fn primary(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.role.is_primary())
    }

    /// The node at `address`.
    pub fn get(&self, address: &Address) -> Option<&Node> {
        self.nodes.iter().find(|n| n.at(address))
    }

    fn get_mut(&mut self, address: &Address) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.at(address))
    }

    /// Record the nodeid Citus gave the row at `address`.
    pub fn set_nodeid(&mut self, address: &Address, nodeid: i32) {
        if let Some(node) = self.get_mut(address) {
            node.nodeid = Some(nodeid);
        }
    }

    /// Same addresses with the same roles (nodeids aside).
    pub fn same_as(&self, other: &Self) -> bool {
        let key = |g: &Self| {
            let mut k: Vec<(Address, Role)> = g
                .nodes
                .iter()
                .map(|n| (n.address(), n.role.clone()))
                .collect();
            k.sort();
            k
        };
        key(self) == key(other)
    }

    /// Give the row at `address` the nodeid `nodeid` and say how to write it.
    fn take_row(&mut self, address: &Address, nodeid: Option<i32>) -> Option<Change> {
        let node = self.get_mut(address)?;
        node.nodeid = nodeid;
        Change::write(node)
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", nodes.join(", "))
    }
}

/// The calls that take the registered group `old` to `new`, in order.
///
/// `new` is completed on the way: nodeids of the rows it reuses are filled in,
/// an old primary that has to stay registered for now is added to it, rows that
/// cannot be removed yet are kept in it and rows that cannot be added yet are
/// left out of it; its `failover` flag says whether the primary row changed. So
/// after the calls succeed, `new` is what `pg_dist_node` holds.
pub fn transition(new: &mut Group, old: &Group) -> Vec<Change> {
    new.failover = old.failover;
    let Some(new_primary) = new.primary().map(Node::address) else {
        return Vec::new();
    };
    let old_primary = old.primary().cloned();
    let old_primary_address = old_primary.as_ref().map(Node::address);
    let by_address = |a: &Node, b: &Node| a.address().cmp(&b.address());

    // Rows that go away, and secondaries that have no row yet.
    let mut gone: Vec<Node> = old
        .nodes
        .iter()
        .filter(|n| new.get(&n.address()).is_none())
        .filter(|n| Some(n.address()) != old_primary_address)
        .cloned()
        .collect();
    gone.sort_by(by_address);
    let mut added: Vec<Address> = new
        .nodes
        .iter()
        .filter(|n| old.get(&n.address()).is_none() && n.address() != new_primary)
        .map(Node::address)
        .collect();
    added.sort();

    let mut calls: Vec<Option<Change>> = Vec::new();
    match old_primary {
        None => calls.push(new.take_row(&new_primary, None)),
        Some(old_primary) if old_primary.address() == new_primary => {
            let paused_or_resumed =
                new.get(&new_primary).map(|n| &n.role) != Some(&old_primary.role);
            let write = new.take_row(&new_primary, old_primary.nodeid);
            if paused_or_resumed {
                new.failover = true;
                calls.push(write);
            }
        }
        Some(old_primary) => {
            new.failover = true;
            calls.extend(move_primary(new, old, old_primary, &mut gone, &mut added));
        }
    }

    // Secondaries that stay keep their rows.
    for node in new.nodes.iter_mut() {
        if node.role.is_primary() || node.nodeid.is_some() {
            continue;
        }
        if let Some(row) = old
            .nodes
            .iter()
            .find(|o| !o.role.is_primary() && o.at(&node.address()))
        {
            node.nodeid = row.nodeid;
        }
    }

    // Rows of gone secondaries are reused for added ones.
    while !gone.is_empty() && !added.is_empty() {
        let row = gone.remove(0);
        let address = added.remove(0);
        calls.push(new.take_row(&address, row.nodeid));
    }

    // Removing and adding rows only while metadata is in sync; otherwise the next
    // cycle does it.
    for row in gone {
        if new.failover {
            new.nodes.push(row);
        } else {
            calls.push(Some(Change::Remove {
                host: row.host,
                port: row.port,
            }));
        }
    }
    for address in added {
        if new.failover {
            new.nodes.retain(|n| !n.at(&address));
        } else {
            calls.push(new.get(&address).and_then(Change::write));
        }
    }
    calls.into_iter().flatten().collect()
}

/// The primary row moves from `old_primary` to `new`'s primary (a failover or a
/// switchover). Returns the calls; `gone` and `added` lose what it uses.
fn move_primary(
    new: &mut Group,
    old: &Group,
    mut old_primary: Node,
    gone: &mut Vec<Node>,
    added: &mut Vec<Address>,
) -> Vec<Option<Change>> {
    let mut calls = Vec::new();
    let new_primary = new.primary().map(Node::address);
    let promoted_row = new_primary.as_ref().and_then(|a| old.get(a)).cloned();
    // Where the old primary's address is written, if it stays registered.
    let mut old_primary_row = new
        .get(&old_primary.address())
        .map(|_| old_primary.address());

    if let Some(promoted_row) = &promoted_row {
        // The new primary was a secondary: its row must be freed first.
        let mut reused_for_added = false;
        if old_primary_row.is_none() && !added.is_empty() {
            // The old primary is gone and a secondary was added: it takes that row.
            let address = added.remove(0);
            calls.push(new.take_row(&address, promoted_row.nodeid));
            reused_for_added = true;
            old_primary.role = Role::Secondary;
        } else if old_primary.role == Role::Primary {
            // Free the old primary's address before writing it elsewhere.
            old_primary.role = Role::Demoted;
            calls.push(Change::write(&old_primary));
        }
        if old_primary_row.is_none() && !reused_for_added {
            // Gone, but rows cannot be removed before metadata is synced: the old
            // primary stays registered in the promoted secondary's row for now.
            new.insert(Node::new(
                old_primary.host.clone(),
                old_primary.port,
                promoted_row.role.clone(),
            ));
            old_primary_row = Some(old_primary.address());
        }
        if let Some(address) = &old_primary_row {
            calls.push(new.take_row(address, promoted_row.nodeid));
        }
    }

    if let Some(address) = &new_primary {
        calls.push(new.take_row(address, old_primary.nodeid));
    }

    if promoted_row.is_none() && !gone.is_empty() {
        // The new primary was never a secondary and secondaries went away. A
        // primary lost in the middle of a switchover (still paused) is parked in
        // a gone secondary's row, unless those rows are all needed for added ones.
        if old_primary_row.is_none()
            && old_primary.role == Role::Demoted
            && gone.len() > added.len()
        {
            new.insert(Node::new(
                old_primary.host.clone(),
                old_primary.port,
                Role::Secondary,
            ));
            old_primary_row = Some(old_primary.address());
        }
        if let Some(address) = &old_primary_row {
            let row = gone.remove(0);
            calls.push(new.take_row(address, row.nodeid));
        }
    }
    calls
}

#[cfg(test)]
mod tests;
