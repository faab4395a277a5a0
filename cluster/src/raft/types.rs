//! The Raft type configuration of the shard-map group, and the commands it agrees on.

use crate::shard_map::{ReplicaRecord, ShardMap};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A member's id in the Raft group: its node id from the cluster file.
pub type NodeId = u64;

/// A shard map as it travels in the Raft log and rests in the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapRecord {
    /// The map's epoch.
    pub epoch: u64,
    /// Owner node id per shard.
    pub owners: Vec<NodeId>,
}

impl From<&ShardMap> for MapRecord {
    fn from(m: &ShardMap) -> Self {
        Self {
            epoch: m.epoch,
            owners: m.owners.clone(),
        }
    }
}

impl From<MapRecord> for ShardMap {
    fn from(r: MapRecord) -> Self {
        Self {
            epoch: r.epoch,
            owners: r.owners,
            replicas: ReplicaRecord::default(),
        }
    }
}

/// What the shard-map group agrees on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapCommand {
    /// Sets the first map; ignored once a map exists.
    Initialize(MapRecord),
    /// Gives `shard` to node `to` under the next epoch.
    Move {
        /// The shard.
        shard: u32,
        /// Its new owner.
        to: NodeId,
    },
    /// Gives `shard` to node `to` only if the map's epoch is still `epoch` (a handoff that
    /// began under that epoch); refused otherwise.
    MoveAt {
        /// The shard.
        shard: u32,
        /// Its new owner.
        to: NodeId,
        /// The epoch the handoff began under.
        epoch: u64,
    },
    /// Settles a handoff whose outcome is unknown: if the map's epoch is still `epoch`, bump
    /// it (owners unchanged) so a `MoveAt` for that epoch can never apply afterwards.
    AbortMove {
        /// The shard.
        shard: u32,
        /// The epoch the handoff began under.
        epoch: u64,
    },
    /// Sets where every shard's replicas should be, if the agreed placement is still
    /// `version` (so two balancers never undo each other); refused otherwise.
    Place {
        /// The placement this one replaces.
        version: u64,
        /// Per shard, the nodes to hold a replica, the preferred leader first.
        replicas: Vec<Vec<NodeId>>,
    },
    /// Removes a node for good: placement leaves it out from now on.
    RemoveNode {
        /// The node.
        node: NodeId,
    },
    /// Removes a node for good (as `RemoveNode`) only if at least `min_remaining` members
    /// that are not removed would remain; refused otherwise. Checked where the removal is
    /// agreed, so two removals racing through different nodes cannot both pass.
    RemoveNodeKeeping {
        /// The node.
        node: NodeId,
        /// How many members must remain (the replication factor).
        min_remaining: usize,
    },
}

/// How a refused `RemoveNodeKeeping` begins: the admin endpoint answers 409 on it.
pub const TOO_FEW_MEMBERS: &str = "too few members would remain";

/// What applying one log entry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapOutcome {
    /// The map changed; it now has this epoch.
    Applied {
        /// The map's epoch after the change.
        epoch: u64,
    },
    /// The command changed nothing (a map already existed, or the shard already has that
    /// owner).
    Unchanged {
        /// The map's epoch.
        epoch: u64,
    },
    /// The command was refused; the map is unchanged.
    Rejected(String),
    /// The entry was not a command (a leader's blank entry or a membership change).
    NotACommand,
}

openraft::declare_raft_types!(
    /// The shard-map group's Raft types.
    pub TypeConfig:
        D = MapCommand,
        R = MapOutcome,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// The handle to this node's member of the shard-map group.
pub type Raft = openraft::Raft<TypeConfig>;

/// A Raft log entry of the shard-map group.
pub type Entry = openraft::Entry<TypeConfig>;
