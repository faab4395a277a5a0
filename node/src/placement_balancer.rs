//! The placement balancer, run by the shard-map group's leader of a replicated cluster: it
//! places replicas on the group's members (joined nodes included, removed nodes and nodes
//! gone longer than `replica_timeout_ms` left out, as long as enough nodes remain), and
//! proposes the result when it differs from the agreed placement. The groups' leaders then
//! carry it out (`replica_moves`). Nodes removed for good also leave the map's group.

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
    /// Runs the balancer for as long as the node runs (it acts only while this node leads
    /// the map's group).
    pub fn spawn(self) {
        tokio::spawn(async move {
            let mut gone_since: BTreeMap<u64, Instant> = BTreeMap::new();
            loop {
                tokio::time::sleep(BALANCE_EVERY).await;
                let m = self.raft.metrics().borrow().clone();
                if m.current_leader != Some(self.me) {
                    // A new leader counts absences afresh.
                    gone_since.clear();
                    continue;
                }
                let voters = agora_cluster::raft::voters(&self.raft);
                self.round(&voters, &mut gone_since).await;
            }
        });
    }

    /// One look: propose a new placement if the members or their liveness call for one;
    /// once the agreed placement holds, drop removed nodes from the map's group (after the
    /// placement, so a removed node still learns it and hands its replicas on).
    async fn round(&self, voters: &BTreeSet<u64>, gone_since: &mut BTreeMap<u64, Instant>) {
        let Ok(map) = self.handoff.map.read().map(|m| m.clone()) else {
            return;
        };
        let removed = &map.replicas.removed;
        let members: BTreeSet<u64> = voters.difference(removed).copied().collect();
        let now = Instant::now();
        for n in &members {
            if *n == self.me || self.directory.gateway(*n).is_some() {
                gone_since.remove(n);
            } else {
                gone_since.entry(*n).or_insert(now);
            }
        }
        let nodes = placement_nodes(&members, gone_since, self.replica_timeout, self.factor, now);
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
        if let Some(node) = voters.intersection(removed).next() {
            match agora_cluster::raft::remove_voter(&self.raft, *node).await {
                Ok(()) => tracing::info!(node, "removed node left the shard map's group"),
                Err(e) => {
                    tracing::warn!(node, error = %e, "could not drop a removed node from the map's group")
                }
            }
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
