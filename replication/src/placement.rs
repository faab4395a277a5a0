//! Placement: which nodes hold each shard's replicas, and which of them should lead. A pure
//! function of the live nodes, the replication factor and the current placement, so the
//! shard-map group can agree on its output and the balancer can apply the difference.
//!
//! What it guarantees, for any input:
//! - each shard has `min(factor, nodes)` distinct replicas, all on live nodes;
//! - replica counts of any two nodes differ by at most one, and so do leader counts;
//! - replicas already on live nodes stay where they are unless balance needs them to move,
//!   and a balanced placement of the same nodes comes back unchanged (no needless copies).

use crate::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Each shard's replicas, its preferred leader first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// Per shard, the nodes holding a replica; the first is where the leader should be.
    pub replicas: Vec<Vec<NodeId>>,
}

impl Placement {
    /// Replicas held per node (every node of `nodes` listed, zero included).
    pub fn replica_counts(&self, nodes: &[NodeId]) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
        for node in self.replicas.iter().flatten() {
            *counts.entry(*node).or_default() += 1;
        }
        counts
    }

    /// Preferred leaderships per node (every node of `nodes` listed, zero included).
    pub fn leader_counts(&self, nodes: &[NodeId]) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
        for leader in self.replicas.iter().filter_map(|r| r.first()) {
            *counts.entry(*leader).or_default() += 1;
        }
        counts
    }
}

/// The placement of `shard_count` shards with `factor` replicas on `nodes`, starting from
/// `current` (empty for a new cluster).
pub fn place(shard_count: u32, nodes: &[NodeId], factor: usize, current: &Placement) -> Placement {
    let live: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let nodes: Vec<NodeId> = live.iter().copied().collect();
    let want = factor.min(nodes.len());
    let mut replicas: Vec<Vec<NodeId>> = (0..shard_count as usize)
        .map(|s| keep_live(current.replicas.get(s), &live, want))
        .collect();
    if nodes.is_empty() {
        return Placement { replicas };
    }
    fill(&mut replicas, &nodes, want);
    balance_replicas(&mut replicas, &nodes, current);
    balance_leaders(&mut replicas, &nodes);
    let placement = Placement { replicas };
    check(&placement, &nodes, want);
    placement
}

/// The replicas of one shard still on live nodes, at most `want`, order kept.
fn keep_live(current: Option<&Vec<NodeId>>, live: &BTreeSet<NodeId>, want: usize) -> Vec<NodeId> {
    let mut kept = Vec::new();
    for n in current.into_iter().flatten() {
        if live.contains(n) && !kept.contains(n) && kept.len() < want {
            kept.push(*n);
        }
    }
    kept
}

/// Gives every shard `want` replicas, each time on the node with the fewest.
fn fill(replicas: &mut [Vec<NodeId>], nodes: &[NodeId], want: usize) {
    let mut counts = Placement {
        replicas: replicas.to_vec(),
    }
    .replica_counts(nodes);
    for shard in replicas.iter_mut() {
        while shard.len() < want {
            let Some(node) = nodes
                .iter()
                .filter(|n| !shard.contains(n))
                .min_by_key(|n| (counts[*n], **n))
            else {
                break;
            };
            shard.push(*node);
            *counts.entry(*node).or_default() += 1;
        }
    }
}

/// Moves replicas from the fullest node to the emptiest until they differ by at most one,
/// a replica placed in this round first (it costs no copy to move), then an existing one.
fn balance_replicas(replicas: &mut [Vec<NodeId>], nodes: &[NodeId], current: &Placement) {
    loop {
        let counts = Placement {
            replicas: replicas.to_vec(),
        }
        .replica_counts(nodes);
        let (max_node, max) = extreme(&counts, true);
        let (min_node, min) = extreme(&counts, false);
        if max <= min + 1 {
            return;
        }
        // The fullest node holds more shards than the emptiest, so one of them lacks it.
        let existed = |s: usize| {
            current
                .replicas
                .get(s)
                .is_some_and(|r| r.contains(&max_node))
        };
        let movable = |r: &Vec<NodeId>| r.contains(&max_node) && !r.contains(&min_node);
        let pick = (0..replicas.len())
            .filter(|s| movable(&replicas[*s]))
            .min_by_key(|s| (existed(*s), *s));
        let Some(shard) = pick.map(|s| &mut replicas[s]) else {
            unreachable!("a fuller node always holds a shard the emptier one lacks");
        };
        for n in shard.iter_mut() {
            if *n == max_node {
                *n = min_node;
            }
        }
    }
}

/// Moves preferred leaderships along chains of replicas until leader counts differ by at
/// most one: from a node with the most, through shards it leads where another node also
/// holds a replica, to a node with at least two fewer.
fn balance_leaders(replicas: &mut [Vec<NodeId>], nodes: &[NodeId]) {
    loop {
        let counts = Placement {
            replicas: replicas.to_vec(),
        }
        .leader_counts(nodes);
        let (_, most) = extreme(&counts, true);
        // A chain may start at any node with the most leaderships.
        let found = counts
            .iter()
            .filter(|(_, c)| **c == most)
            .find_map(|(from, _)| leader_path(replicas, &counts, *from, most));
        let Some(path) = found else {
            return;
        };
        // Each shard on the path is led by its successor on the path instead.
        for (shard, to) in path {
            let r = &mut replicas[shard];
            let Some(i) = r.iter().position(|n| *n == to) else {
                unreachable!("a path only names replicas of the shard");
            };
            r.swap(0, i);
        }
    }
}

/// A chain of (shard, new leader) from `from` to a node with at most `most - 2`
/// leaderships, found breadth first; `None` when leaders are balanced.
fn leader_path(
    replicas: &[Vec<NodeId>],
    counts: &BTreeMap<NodeId, usize>,
    from: NodeId,
    most: usize,
) -> Option<Vec<(usize, NodeId)>> {
    let mut came_from: BTreeMap<NodeId, (usize, NodeId)> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(node) = queue.pop_front() {
        if node != from && counts[&node] + 2 <= most {
            let mut path = Vec::new();
            let mut at = node;
            while at != from {
                let (shard, prev) = came_from[&at];
                path.push((shard, at));
                at = prev;
            }
            return Some(path);
        }
        for (shard, r) in replicas.iter().enumerate() {
            if r.first() != Some(&node) {
                continue;
            }
            for next in &r[1..] {
                if *next != from && !came_from.contains_key(next) {
                    came_from.insert(*next, (shard, node));
                    queue.push_back(*next);
                }
            }
        }
    }
    None
}

/// The node with the largest (or smallest) count, lowest id first.
fn extreme(counts: &BTreeMap<NodeId, usize>, largest: bool) -> (NodeId, usize) {
    let pick = counts.iter().map(|(n, c)| (*n, *c));
    let found = if largest {
        pick.max_by_key(|(n, c)| (*c, std::cmp::Reverse(*n)))
    } else {
        pick.min_by_key(|(n, c)| (*c, *n))
    };
    found.unwrap_or((0, 0))
}

/// The guarantees, asserted on every placement made (they hold for any input).
fn check(p: &Placement, nodes: &[NodeId], want: usize) {
    for r in &p.replicas {
        assert_eq!(r.len(), want, "every shard has its replicas");
        let distinct: BTreeSet<&NodeId> = r.iter().collect();
        assert_eq!(distinct.len(), r.len(), "a shard's replicas are distinct");
        assert!(
            r.iter().all(|n| nodes.contains(n)),
            "replicas are on live nodes"
        );
    }
    for counts in [p.replica_counts(nodes), p.leader_counts(nodes)] {
        let (_, max) = extreme(&counts, true);
        let (_, min) = extreme(&counts, false);
        assert!(max <= min + 1, "counts differ by at most one: {counts:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: u64) -> Vec<NodeId> {
        (1..=n).collect()
    }

    #[test]
    fn a_new_cluster_spreads_replicas_and_leaders() {
        let p = place(16, &ids(3), 3, &Placement::default());
        assert_eq!(
            p.replica_counts(&ids(3))
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![16; 3]
        );
        let leaders: Vec<usize> = p.leader_counts(&ids(3)).values().copied().collect();
        assert!(leaders.iter().all(|c| (5..=6).contains(c)), "{leaders:?}");
    }

    #[test]
    fn a_lost_node_is_replaced_and_survivors_keep_their_replicas() {
        let before = place(12, &ids(4), 3, &Placement::default());
        let after = place(12, &[1, 2, 4], 3, &before);
        for (old, new) in before.replicas.iter().zip(&after.replicas) {
            for n in old.iter().filter(|n| **n != 3) {
                assert!(
                    new.contains(n),
                    "a surviving replica moved: {old:?} -> {new:?}"
                );
            }
            assert!(!new.contains(&3));
        }
    }

    #[test]
    fn fewer_nodes_than_the_factor_gives_every_node_every_shard() {
        let p = place(4, &ids(2), 3, &Placement::default());
        assert!(p.replicas.iter().all(|r| r.len() == 2));
    }

    proptest! {
        #[test]
        fn placements_are_balanced_and_stable(
            shards in 1u32..96,
            before_nodes in 1u64..7,
            after_nodes in prop::collection::btree_set(1u64..9, 1..7),
            factor in 1usize..5,
        ) {
            let nodes: Vec<NodeId> = after_nodes.into_iter().collect();
            let first = place(shards, &ids(before_nodes), factor, &Placement::default());
            // `place` asserts the guarantees itself; a second pass over its own output
            // must change nothing.
            let second = place(shards, &nodes, factor, &first);
            let third = place(shards, &nodes, factor, &second);
            prop_assert_eq!(&second, &third);
            // Copies made: replicas on a node that did not hold that shard before. At least
            // what the nodes that grew must receive; the balancing may at most double it.
            let before = first.replica_counts(&nodes);
            let after = second.replica_counts(&nodes);
            let needed: usize = nodes.iter().map(|n| after[n].saturating_sub(before[n])).sum();
            let copies: usize = first.replicas.iter().zip(&second.replicas)
                .map(|(a, b)| b.iter().filter(|n| !a.contains(n)).count())
                .sum();
            prop_assert!(copies <= 2 * needed, "{copies} copies where {needed} are needed");
        }
    }
}
