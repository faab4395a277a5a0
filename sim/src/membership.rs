//! Membership changes' checkers (profile `membership`): a node whose removal the cluster
//! acknowledged (202) ends with no shard rows, so every acknowledged change is on the nodes
//! that remain (the other checkers read only what is left), and out of the shard map's
//! group; a node that joined and was not removed ends holding replicas.

use crate::check::{Violation, World};
use crate::workload::{Op, Outcome};
use std::collections::BTreeSet;

/// The nodes whose removal the cluster acknowledged.
pub fn removed(history: &[Op]) -> BTreeSet<u64> {
    history
        .iter()
        .filter(|op| op.kind == "remove-node" && op.outcome == Outcome::Ok)
        .map(|op| op.quantity)
        .collect()
}

/// The removed nodes the operator saw out of the shard map's group.
fn left_map_group(history: &[Op]) -> BTreeSet<u64> {
    history
        .iter()
        .filter(|op| op.kind == crate::workload::MAP_GROUP_LEFT)
        .map(|op| op.quantity)
        .collect()
}

/// Whether the membership changes are over: every removed node holds no rows and left the
/// shard map's group, and every node in `joined` (started to join) that was not removed
/// holds some.
pub fn settled(world: &World, history: &[Op], joined: &BTreeSet<u64>) -> bool {
    check(world, history, joined).is_empty()
}

/// A violation for each removed node that still holds rows or still votes in the shard
/// map's group, and each joined node that holds none.
pub fn check(world: &World, history: &[Op], joined: &BTreeSet<u64>) -> Vec<Violation> {
    let removed = &removed(history);
    let left = left_map_group(history);
    let rows = |node: &u64| world.entities_by_node.get(node).copied().unwrap_or(0);
    let still_voting = removed.difference(&left).map(|n| Violation {
        invariant: "removed-node-out-of-map-group",
        detail: format!("node {n} was removed (202) but still votes in the shard map's group"),
    });
    let still_held = removed.iter().filter(|n| rows(n) > 0).map(|n| Violation {
        invariant: "removed-node-empty",
        detail: format!(
            "node {n} was removed (202) but still holds {} rows",
            rows(n)
        ),
    });
    let never_placed = joined
        .difference(removed)
        .filter(|n| rows(n) == 0)
        .map(|n| Violation {
            invariant: "joined-node-placed",
            detail: format!("node {n} joined but holds no replica"),
        });
    still_held.chain(still_voting).chain(never_placed).collect()
}

/// A violation if the cluster acknowledged (202) removals that leave fewer than `factor` of
/// the `members` nodes that were ever members (founders and joiners): a removal racing
/// another, answered by a node whose map lagged, must still be refused (409).
pub fn check_enough_remain(history: &[Op], members: usize, factor: usize) -> Option<Violation> {
    let removed = removed(history);
    let remaining = members.saturating_sub(removed.len());
    (remaining < factor).then(|| Violation {
        invariant: "enough-members-remain",
        detail: format!(
            "removals of nodes {removed:?} were acknowledged: {remaining} of {members} members \
             remain for {factor} replicas of each shard"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: &'static str, quantity: u64) -> Op {
        Op {
            client: "operator".into(),
            kind,
            invoke_ms: 0,
            end_ms: 0,
            outcome: Outcome::Ok,
            status: 200,
            key: None,
            order_id: None,
            sku: None,
            quantity,
            status_seen: None,
            replayed: false,
            shown: crate::workload::Shown::Nothing,
            refused_why: None,
        }
    }

    #[test]
    fn a_removed_node_with_rows_or_a_map_vote_and_a_joiner_without_rows_are_named() {
        let mut w = World::default();
        w.entities_by_node.insert(1, 5);
        w.entities_by_node.insert(2, 9);
        let mut history = vec![op("remove-node", 1)];
        let joined = [4].into();
        let found: Vec<&str> = check(&w, &history, &joined)
            .iter()
            .map(|v| v.invariant)
            .collect();
        assert_eq!(
            found,
            [
                "removed-node-empty",
                "removed-node-out-of-map-group",
                "joined-node-placed"
            ]
        );
        w.entities_by_node.insert(1, 0);
        w.entities_by_node.insert(4, 3);
        assert!(!settled(&w, &history, &joined), "node 1 still votes");
        history.push(op(crate::workload::MAP_GROUP_LEFT, 1));
        assert!(settled(&w, &history, &joined));
        // A refused removal asks nothing of the node.
        let mut refused = op("remove-node", 2);
        refused.outcome = Outcome::Fail;
        history.push(refused);
        assert!(settled(&w, &history, &joined));
    }

    #[test]
    fn acknowledged_removals_that_leave_fewer_members_than_replicas_are_named() {
        // Four members (three founders and a joiner), three replicas: one removal may pass.
        let mut history = vec![op("remove-node", 1)];
        assert!(check_enough_remain(&history, 4, 3).is_none());
        // A repeated acknowledgement of the same removal removes nobody else.
        history.push(op("remove-node", 1));
        assert!(check_enough_remain(&history, 4, 3).is_none());
        let mut refused = op("remove-node", 2);
        refused.outcome = Outcome::Fail;
        history.push(refused);
        assert!(check_enough_remain(&history, 4, 3).is_none());
        history.push(op("remove-node", 3));
        let v = check_enough_remain(&history, 4, 3).map(|v| v.invariant);
        assert_eq!(v, Some("enough-members-remain"));
    }
}
