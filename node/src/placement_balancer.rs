//! The placement balancer, run by the shard-map group's leader of a replicated cluster: it
//! places replicas on the group's members (joined nodes included, removed nodes and nodes
//! gone longer than `replica_timeout_ms` left out, as long as enough nodes remain), and
//! proposes the result when it differs from the agreed placement. The groups' leaders then
//! carry it out (`replica_moves`). Nodes removed for good also leave the map's group.
//! Every node counts its peers' absences all the time, so a new leader of the map's group
//! replaces a node gone too long without counting the timeout again from zero.

use agora_cluster::directory::Directory;
use agora_cluster::handoff::Handoff;
use agora_cluster::raft::Raft;
use agora_replication::placement::{place, Placement};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// How often the map's leader looks at placement.
const BALANCE_EVERY: Duration = Duration::from_secs(1);

/// What the balancer needs.
pub struct PlacementBalancer {
    /// This node.
    pub me: u64,
    /// This node's member of the shard-map group.
    pub raft: Raft,
    /// Proposes to the map's group.
    pub handoff: Handoff,
    /// Which peers are connected.
    pub directory: Directory,
    /// Shards in the cluster.
    pub shard_count: u32,
    /// Replicas per shard.
    pub factor: usize,
    /// The placement the cluster file gives (until the map agrees one).
    pub file_placement: Placement,
    /// How long a node may be gone before its replicas are rebuilt elsewhere.
    pub replica_timeout: Duration,
    /// Since when each removed node has been waited for to catch up with the map's group.
    pub removed_waiting: std::sync::Mutex<BTreeMap<u64, Instant>>,
}

/// The nodes to place replicas on: the members, less those gone longer than the timeout
/// when enough remain for every replica (pure: unit-tested).
pub fn placement_nodes(
    members: &BTreeSet<u64>,
    gone_since: &BTreeMap<u64, Instant>,
    timeout: Duration,
    factor: usize,
    now: Instant,
) -> Vec<u64> {
    let live: Vec<u64> = members
        .iter()
        .copied()
        .filter(|n| {
            gone_since
                .get(n)
                .is_none_or(|t| now.saturating_duration_since(*t) < timeout)
        })
        .collect();
    if live.len() >= factor {
        live
    } else {
        members.iter().copied().collect()
    }
}

impl PlacementBalancer {
    /// Runs the balancer for as long as the node runs: every node counts absences, and the
    /// leader of the map's group acts on them.
    pub fn spawn(self) {
        tokio::spawn(async move {
            let mut gone_since: BTreeMap<u64, Instant> = BTreeMap::new();
            loop {
                tokio::time::sleep(BALANCE_EVERY).await;
                let Ok(map) = self.handoff.map.read().map(|m| m.clone()) else {
                    continue;
                };
                let voters = agora_cluster::raft::voters(&self.raft);
                let members: BTreeSet<u64> =
                    voters.difference(&map.replicas.removed).copied().collect();
                count_absences(&mut gone_since, &members, Instant::now(), |n| {
                    n == self.me || self.directory.gateway(n).is_some()
                });
                if map.replicas.removed.contains(&self.me) {
                    agora_cluster::raft::stay_out_of_the_lead(&self.raft);
                }
                if self.raft.metrics().borrow().current_leader == Some(self.me) {
                    self.round(&map, (&voters, &members), &gone_since).await;
                }
            }
        });
    }

    /// One look: propose a new placement if the members or their liveness call for one;
    /// once the agreed placement holds, drop removed nodes from the map's group (after the
    /// placement, so a removed node still learns it and hands its replicas on).
    async fn round(
        &self,
        map: &agora_cluster::shard_map::ShardMap,
        (voters, members): (&BTreeSet<u64>, &BTreeSet<u64>),
        gone_since: &BTreeMap<u64, Instant>,
    ) {
        let removed = &map.replicas.removed;
        let now = Instant::now();
        let nodes = placement_nodes(members, gone_since, self.replica_timeout, self.factor, now);
        let current = if map.replicas.version > 0 {
            Placement {
                replicas: map.replicas.replicas.clone(),
            }
        } else {
            self.file_placement.clone()
        };
        let target = place(self.shard_count, &nodes, self.factor, &current);
        if target != current {
            let moved = moved_replicas(&current, &target);
            match self
                .handoff
                .place(map.replicas.version, target.replicas)
                .await
            {
                Ok(()) => tracing::info!(
                    version = map.replicas.version + 1,
                    nodes = ?nodes,
                    moved,
                    "agreed a new replica placement"
                ),
                Err(e) => tracing::warn!(error = %e, "could not agree a new replica placement"),
            }
            return;
        }
        // The leader never takes itself out: openraft would keep it leading a group it is no
        // longer in. A removed leader stays out of the lead instead (above), and the next
        // leader takes it out.
        let leaving = voters.intersection(removed).find(|n| **n != self.me);
        if let Some(node) = leaving.filter(|n| self.may_leave_map_group(**n, now)) {
            match agora_cluster::raft::remove_voter(&self.raft, *node).await {
                Ok(()) => tracing::info!(node, "removed node left the shard map's group"),
                Err(e) => {
                    tracing::warn!(node, error = %e, "could not drop a removed node from the map's group")
                }
            }
        }
    }
}

/// Longest a removed node that stays connected is waited for to hold the map's latest
/// entries before it is taken out of the map's group anyway.
const REMOVED_CATCH_UP: Duration = Duration::from_secs(60);

impl PlacementBalancer {
    /// Whether removed `node` may leave the map's group now: once it holds every entry this
    /// leader applied (so the placement without it too: a node taken out first would never
    /// learn it, and one of its replicas that leads a group would keep the group's old
    /// membership for good), or once it is unreachable (it learns nothing either way; its
    /// replicas ask their peers), or after `REMOVED_CATCH_UP`.
    fn may_leave_map_group(&self, node: u64, now: Instant) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let applied = m.last_applied.map(|l| l.index);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&node).cloned().flatten())
            .map(|l| l.index);
        let waited = self
            .removed_waiting
            .lock()
            .map(|mut w| now.saturating_duration_since(*w.entry(node).or_insert(now)))
            .unwrap_or(REMOVED_CATCH_UP);
        let reachable = self.directory.gateway(node).is_some();
        removed_may_leave((applied, matched), reachable, waited)
    }
}

/// The rule of `may_leave_map_group` (pure: unit-tested): the removed node holds every
/// entry the leader applied (`matched` ≥ `applied`), or it cannot be reached, or it has
/// been waited for `REMOVED_CATCH_UP`.
fn removed_may_leave(
    (applied, matched): (Option<u64>, Option<u64>),
    reachable: bool,
    waited: Duration,
) -> bool {
    let caught_up = applied.is_some() && matched >= applied;
    caught_up || !reachable || waited >= REMOVED_CATCH_UP
}

/// Notes since when each of `members` has been unreachable (`connected` says who answers
/// now): a member that answers is forgotten, one that does not keeps the first moment it
/// was missed; nodes no longer members are dropped (pure: unit-tested).
pub fn count_absences(
    gone_since: &mut BTreeMap<u64, Instant>,
    members: &BTreeSet<u64>,
    now: Instant,
    connected: impl Fn(u64) -> bool,
) {
    gone_since.retain(|n, _| members.contains(n));
    for n in members {
        if connected(*n) {
            gone_since.remove(n);
        } else {
            gone_since.entry(*n).or_insert(now);
        }
    }
}

/// How many replicas change node between two placements.
fn moved_replicas(from: &Placement, to: &Placement) -> usize {
    to.replicas
        .iter()
        .zip(from.replicas.iter().chain(std::iter::repeat(&Vec::new())))
        .map(|(t, f)| t.iter().filter(|n| !f.contains(n)).count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_node_leaves_the_map_group_once_caught_up_unreachable_or_waited_for() {
        let soon = Duration::from_secs(1);
        // Connected and behind the leader's applied entry: kept a while, so it learns the
        // placement without it.
        assert!(!removed_may_leave((Some(10), Some(9)), true, soon));
        assert!(!removed_may_leave((Some(10), None), true, soon));
        // Nothing applied yet: nothing to be caught up with, so not "caught up".
        assert!(!removed_may_leave((None, None), true, soon));
        // Caught up: may leave.
        assert!(removed_may_leave((Some(10), Some(10)), true, soon));
        assert!(removed_may_leave((Some(10), Some(12)), true, soon));
        // Unreachable: it learns nothing by waiting.
        assert!(removed_may_leave((Some(10), Some(3)), false, soon));
        // Waited long enough: taken out anyway.
        assert!(removed_may_leave(
            (Some(10), Some(3)),
            true,
            REMOVED_CATCH_UP
        ));
        assert!(!removed_may_leave(
            (Some(10), Some(3)),
            true,
            REMOVED_CATCH_UP - Duration::from_millis(1)
        ));
    }

    #[test]
    fn nodes_gone_too_long_are_left_out_only_if_enough_remain() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(300);
        let members: BTreeSet<u64> = [1, 2, 3, 4].into_iter().collect();
        let gone: BTreeMap<u64, Instant> = [(4, t0)].into_iter().collect();
        // Not gone long enough yet: kept.
        let soon = t0 + Duration::from_secs(299);
        assert_eq!(
            placement_nodes(&members, &gone, timeout, 3, soon),
            vec![1, 2, 3, 4]
        );
        // Gone longer than the timeout: left out, three remain for three replicas.
        let later = t0 + Duration::from_secs(301);
        assert_eq!(
            placement_nodes(&members, &gone, timeout, 3, later),
            vec![1, 2, 3]
        );
        // With two gone, two would remain for three replicas: nobody is left out.
        let gone: BTreeMap<u64, Instant> = [(3, t0), (4, t0)].into_iter().collect();
        assert_eq!(
            placement_nodes(&members, &gone, timeout, 3, later),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn an_absence_counts_from_the_first_miss_until_the_node_answers() {
        let t0 = Instant::now();
        let members: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
        let mut gone = BTreeMap::new();
        count_absences(&mut gone, &members, t0, |n| n != 3);
        let later = t0 + Duration::from_secs(10);
        count_absences(&mut gone, &members, later, |n| n != 3);
        assert_eq!(gone.get(&3), Some(&t0), "still counted from the first miss");
        count_absences(&mut gone, &members, later, |_| true);
        assert!(gone.is_empty(), "a node that answers is no longer gone");
        count_absences(&mut gone, &members, t0, |n| n != 2);
        let fewer: BTreeSet<u64> = [1, 3].into_iter().collect();
        count_absences(&mut gone, &fewer, later, |_| true);
        assert!(gone.is_empty(), "a node no longer a member is dropped");
    }

    #[test]
    fn moved_replicas_counts_new_homes() {
        let from = Placement {
            replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
        };
        let to = Placement {
            replicas: vec![vec![1, 2, 4], vec![2, 3, 1]],
        };
        assert_eq!(moved_replicas(&from, &to), 1);
        assert_eq!(moved_replicas(&from, &from), 0);
    }
}
