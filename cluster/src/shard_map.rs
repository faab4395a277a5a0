//! The shard map: for each shard, the node that owns it, under an epoch. The first map spreads
//! shards over the cluster file's nodes (shard `s` to the `s mod n`-th node by id) under epoch
//! 1; it is agreed through Raft (`cluster::raft`), and a move bumps the epoch. With replicated
//! shards the map also records where each shard's replicas should be (`ReplicaRecord`).

use std::collections::BTreeSet;
use std::sync::Arc;

/// Where replicated shards' replicas should be, as the shard-map group agreed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaRecord {
    /// Bumped by every agreed placement; 0 until the first (replicas are then placed from the
    /// cluster file).
    pub version: u64,
    /// Per shard, the nodes that should hold a replica, the preferred leader first (empty
    /// while `version` is 0).
    pub replicas: Vec<Vec<u64>>,
    /// Nodes an operator removed for good: placement leaves them out.
    pub removed: BTreeSet<u64>,
}

/// Who owns each shard, under which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// The map's epoch.
    pub epoch: u64,
    /// Owner node id per shard.
    pub owners: Vec<u64>,
    /// Where replicas should be (replicated shards only).
    pub replicas: ReplicaRecord,
}

impl ShardMap {
    /// Spreads `shard_count` shards evenly over `node_ids` (sorted).
    pub fn spread(shard_count: u32, node_ids: &[u64]) -> Self {
        assert!(!node_ids.is_empty(), "a shard map needs at least one node");
        let owners = (0..shard_count as usize)
            .map(|s| node_ids[s % node_ids.len()])
            .collect();
        Self {
            epoch: 1,
            owners,
            replicas: ReplicaRecord::default(),
        }
    }

    /// The owner of `shard`.
    pub fn owner(&self, shard: u32) -> Option<u64> {
        self.owners.get(shard as usize).copied()
    }

    /// The shards `node` owns.
    pub fn shards_of(&self, node: u64) -> Vec<u32> {
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == node)
            .map(|(s, _)| s as u32)
            .collect()
    }
}

/// A shared, replaceable shard map.
pub type SharedShardMap = Arc<std::sync::RwLock<ShardMap>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_even_and_total() {
        let m = ShardMap::spread(64, &[1, 2, 3]);
        let counts: Vec<usize> = [1, 2, 3].iter().map(|n| m.shards_of(*n).len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 64);
        assert!(counts.iter().all(|c| (21..=22).contains(c)));
        assert_eq!(m.owner(0), Some(1));
        assert_eq!(m.owner(64), None);
    }
}
