//! Citus's own replication slots, which Keel must never drop.
//!
//! Shard moves and splits stream through logical slots that Citus creates and
//! drops itself: `citus_shard_move_slot_<n>_<n>[_<n>]` with the `pgoutput`
//! plugin and `citus_shard_split_slot_<n>_<n>[_<n>]` with Citus's own `citus`
//! plugin, in the Citus database; each `<n>` a number without a leading zero.

use keel_sdk::mpp::Slot;

/// Whether `slot` is one of Citus's in the Citus database `database`.
///
/// The host asks only about slots on its primary (Patroni checks that itself).
pub fn is_citus_slot(slot: &Slot, database: &str) -> bool {
    if slot.slot_type != "logical" || slot.database.as_deref() != Some(database) {
        return false;
    }
    let expected_plugin = if let Some(numbers) = slot.name.strip_prefix("citus_shard_move_slot") {
        numbered(numbers).then_some("pgoutput")
    } else if let Some(numbers) = slot.name.strip_prefix("citus_shard_split_slot") {
        numbered(numbers).then_some("citus")
    } else {
        None
    };
    expected_plugin.is_some_and(|plugin| slot.plugin.as_deref() == Some(plugin))
}

/// `_<n>_<n>` or `_<n>_<n>_<n>`, each `<n>` digits without a leading zero.
fn numbered(rest: &str) -> bool {
    let Some(rest) = rest.strip_prefix('_') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|n| !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, kind: &str, plugin: Option<&str>, database: Option<&str>) -> Slot {
        Slot {
            name: name.into(),
            slot_type: kind.into(),
            plugin: plugin.map(Into::into),
            database: database.map(Into::into),
        }
    }

    fn logical(name: &str, plugin: &str) -> Slot {
        slot(name, "logical", Some(plugin), Some("citus"))
    }

    #[test]
    fn citus_move_and_split_slots_are_kept() {
        for s in [
            logical("citus_shard_move_slot_1_2", "pgoutput"),
            logical("citus_shard_move_slot_10_20_30", "pgoutput"),
            logical("citus_shard_split_slot_7_8", "citus"),
            logical("citus_shard_split_slot_7_8_9", "citus"),
        ] {
            assert!(is_citus_slot(&s, "citus"), "{s:?}");
        }
    }

    #[test]
    fn anything_else_is_not_citus_s() {
        for s in [
            // wrong plugin for the kind of slot
            logical("citus_shard_move_slot_1_2", "citus"),
            logical("citus_shard_split_slot_1_2", "pgoutput"),
            // numbers: count, leading zeros, non-digits
            logical("citus_shard_move_slot_1", "pgoutput"),
            logical("citus_shard_move_slot_1_2_3_4", "pgoutput"),
            logical("citus_shard_move_slot_01_2", "pgoutput"),
            logical("citus_shard_move_slot_0_2", "pgoutput"),
            logical("citus_shard_move_slot_1_x", "pgoutput"),
            logical("citus_shard_move_slot_1__2", "pgoutput"),
            logical("citus_shard_move_slot_1_2_", "pgoutput"),
            logical("citus_shard_move_slot1_2", "pgoutput"),
            logical("citus_shard_copy_slot_1_2", "pgoutput"),
            logical("my_cdc_slot", "pgoutput"),
            // another database, a physical slot
            slot(
                "citus_shard_move_slot_1_2",
                "logical",
                Some("pgoutput"),
                Some("postgres"),
            ),
            slot("citus_shard_move_slot_1_2", "physical", None, None),
        ] {
            assert!(!is_citus_slot(&s, "citus"), "{s:?}");
        }
    }
}
