//! What the rules read from other members' keys.

use std::collections::BTreeMap;

use keel_config::Tags;
use keel_model::Member;

/// A member's tags, read leniently: a peer with unparsable tags is treated as
/// untagged (Patroni reads peers' tags the same forgiving way).
pub fn tags_of(member: &Member) -> Tags {
    let map: BTreeMap<_, _> = member
        .data
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Tags::parse(&map).map(|(t, _)| t).unwrap_or_default()
}

/// The member publishes `state: running`.
pub(crate) fn is_running(member: &Member) -> bool {
    member.data.state.as_deref() == Some("running")
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::MemberData;

    #[test]
    fn garbage_tags_read_as_untagged() {
        let member = Member {
            name: "a".into(),
            data: MemberData::parse(r#"{"tags":{"nofailover":"maybe"}}"#, "a"),
            ..Member::default()
        };
        assert!(!tags_of(&member).nofailover());
        let member = Member {
            name: "b".into(),
            data: MemberData::parse(r#"{"tags":{"nofailover":true}}"#, "b"),
            ..Member::default()
        };
        assert!(tags_of(&member).nofailover());
    }
}
