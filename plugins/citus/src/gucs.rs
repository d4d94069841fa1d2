//! The parameters every Citus node needs, as Patroni sets them.
//!
//! * `citus` first in `shared_preload_libraries` (once; the others keep their order);
//! * `max_prepared_transactions` = 2 × `max_connections` when it is 0 or unset
//!   (Citus's own default rule; distributed transactions commit in two phases);
//! * `wal_level = logical` (shard moves and splits use logical replication);
//! * `citus.local_hostname`: how Citus reaches its own server, the host of the
//!   daemon's local connection (see [`local_hostname`]).
//!
//! Only parameters whose value changes are returned, so the result applied to the
//! input and adjusted again returns nothing: the adjustment is idempotent.

use keel_sdk::mpp::Parameter;

/// PostgreSQL's default `max_connections`.
const DEFAULT_MAX_CONNECTIONS: u64 = 100;

/// The parameters to change or add, given every computed one.
pub fn adjust(parameters: &[Parameter]) -> Vec<Parameter> {
    let get = |name: &str| {
        parameters
            .iter()
            .rev()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_str())
    };
    let mut wanted = vec![
        (
            "shared_preload_libraries",
            preload_citus_first(get("shared_preload_libraries").unwrap_or("")),
        ),
        ("wal_level", "logical".to_owned()),
        (
            "citus.local_hostname",
            local_hostname(get("listen_addresses")),
        ),
    ];
    let prepared = get("max_prepared_transactions").map(|v| v.trim().parse::<u64>());
    if matches!(prepared, None | Some(Ok(0))) {
        let connections = get("max_connections")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        wanted.push((
            "max_prepared_transactions",
            connections.saturating_mul(2).to_string(),
        ));
    }
    wanted
        .into_iter()
        .filter(|(name, value)| get(name) != Some(value.as_str()))
        .map(|(name, value)| Parameter {
            name: name.to_owned(),
            value,
        })
        .collect()
}

/// `citus` followed by every other library in its order.
fn preload_citus_first(current: &str) -> String {
    let others = current
        .split(',')
        .map(str::trim)
        .filter(|lib| !lib.is_empty() && *lib != "citus");
    std::iter::once("citus")
        .chain(others)
        .collect::<Vec<_>>()
        .join(",")
}

/// The host Patroni's local TCP connection uses: `localhost` when PostgreSQL
/// listens on every address or on loopback, else the first listen address.
///
/// Patroni uses the unix-socket directory instead when `postgresql.use_unix_socket`
/// is set; that flag is not a PostgreSQL parameter, so a handler cannot see it and
/// this one always answers with the TCP address (Citus connects to it just as well).
pub fn local_hostname(listen_addresses: Option<&str>) -> String {
    let Some(listen) = listen_addresses else {
        return "localhost".to_owned();
    };
    let addresses: Vec<&str> = listen.split(',').map(str::trim).collect();
    for address in &addresses {
        let lower = address.to_ascii_lowercase();
        if matches!(lower.as_str(), "*" | "localhost" | "0.0.0.0" | "127.0.0.1") {
            return "localhost".to_owned();
        }
    }
    match addresses.first() {
        Some(first) if !first.is_empty() => (*first).to_owned(),
        _ => "localhost".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<Parameter> {
        pairs
            .iter()
            .map(|(n, v)| Parameter {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect()
    }

    fn as_pairs(params: &[Parameter]) -> Vec<(&str, &str)> {
        params
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect()
    }

    /// `input` with `changes` applied, as the host writes postgresql.conf.
    fn apply(input: &[Parameter], changes: &[Parameter]) -> Vec<Parameter> {
        let mut out: Vec<Parameter> = input
            .iter()
            .filter(|p| !changes.iter().any(|c| c.name == p.name))
            .cloned()
            .collect();
        out.extend(changes.iter().cloned());
        out
    }

    #[test]
    fn a_plain_configuration_gets_everything_citus_needs() {
        let input = params(&[("max_connections", "100"), ("listen_addresses", "*")]);
        assert_eq!(
            as_pairs(&adjust(&input)),
            vec![
                ("shared_preload_libraries", "citus"),
                ("wal_level", "logical"),
                ("citus.local_hostname", "localhost"),
                ("max_prepared_transactions", "200"),
            ]
        );
    }

    #[test]
    fn citus_moves_to_the_front_once_and_other_libraries_keep_their_order() {
        let input = params(&[(
            "shared_preload_libraries",
            "pg_stat_statements, citus,auto_explain,,citus",
        )]);
        let out = adjust(&input);
        assert_eq!(
            out.iter()
                .find(|p| p.name == "shared_preload_libraries")
                .map(|p| p.value.as_str()),
            Some("citus,pg_stat_statements,auto_explain")
        );
    }

    #[test]
    fn max_prepared_transactions_follows_max_connections_only_when_zero_or_unset() {
        let pick = |input: &[(&str, &str)]| {
            adjust(&params(input))
                .into_iter()
                .find(|p| p.name == "max_prepared_transactions")
                .map(|p| p.value)
        };
        assert_eq!(pick(&[("max_connections", "50")]).as_deref(), Some("100"));
        assert_eq!(
            pick(&[
                ("max_connections", "300"),
                ("max_prepared_transactions", "0")
            ])
            .as_deref(),
            Some("600")
        );
        assert_eq!(pick(&[]).as_deref(), Some("200"), "default 100 connections");
        assert_eq!(
            pick(&[
                ("max_connections", "300"),
                ("max_prepared_transactions", "64")
            ]),
            None,
            "an explicit value stays"
        );
    }

    #[test]
    fn local_hostname_follows_patronis_tcp_address_rule() {
        assert_eq!(local_hostname(None), "localhost");
        assert_eq!(local_hostname(Some("*")), "localhost");
        assert_eq!(local_hostname(Some("10.0.0.5, 127.0.0.1")), "localhost");
        assert_eq!(local_hostname(Some("0.0.0.0")), "localhost");
        assert_eq!(local_hostname(Some("10.0.0.5,10.0.0.6")), "10.0.0.5");
        assert_eq!(local_hostname(Some("db1.example")), "db1.example");
    }

    #[test]
    fn adjusting_twice_changes_nothing_and_keeps_unrelated_parameters() {
        for input in [
            params(&[]),
            params(&[
                ("shared_preload_libraries", "auto_explain,citus"),
                ("max_connections", "40"),
                ("wal_level", "replica"),
                ("listen_addresses", "10.1.1.1"),
                ("work_mem", "8MB"),
            ]),
            params(&[
                ("shared_preload_libraries", "citus"),
                ("max_prepared_transactions", "7"),
                ("wal_level", "logical"),
                ("citus.local_hostname", "localhost"),
            ]),
        ] {
            let first = adjust(&input);
            assert!(
                first.iter().all(|p| p.name != "work_mem"),
                "unrelated parameters are not returned"
            );
            let applied = apply(&input, &first);
            assert_eq!(adjust(&applied), Vec::new(), "{input:?}");
        }
    }
}
