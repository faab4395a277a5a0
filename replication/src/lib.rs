//! Replicated shards: each shard is one openraft group (multi-Raft) whose members are the
//! nodes holding a replica. Every group of a node shares the node's redb file and its
//! group-commit writer, so one fsync carries the log appends and applied changes of many
//! groups at once; groups reach their peers through one `GroupTransport`, which the cluster
//! implements over its connections.
//!
//! - `types`: the Raft type configuration, and what a group's log carries (`ShardEntry`:
//!   the rows one committed change writes to the shard's data).
//! - `codec`: how group records are stored and sent (a format byte, then bincode with a
//!   size limit).
//! - `log`: a group's log and vote, written through the writer.
//! - `log_cache`: the tail of a group's log kept in memory for the reads that follow an append.
//! - `state`: a group's state machine: applying an entry writes its rows to the shard's
//!   tables in the same order on every replica.
//! - `network`: RPCs between a group's members over a `GroupTransport`.
//! - `group_exists`: whether a new disk's member joins a new group or rebuilds.
//! - `groups`: the groups a node runs, and serving their peers' RPCs.
//! - `memory`: a transport inside one process (tests, the replication benchmark).
//! - `proposer`: a shard's changes become entries, one proposal in flight per group.
//! - `serving`: which shards this node serves (leader with a lease), and the writer's way
//!   into their groups; `serving::handover` moves a lead between replicas (balancing, an
//!   operator's transfer, a stopping node's hand-off).
//! - `membership`: changing a group's replicas (learner, catch up, voter) and leaving one.
//! - `placement`: which nodes hold each shard's replicas and where leaders should be.

pub mod codec;
pub mod election_holds;
pub mod group_exists;
pub mod groups;
pub mod keys;
pub mod log;
pub mod log_cache;
pub mod membership;
pub mod memory;
pub mod migrate;
pub mod network;
pub mod placement;
pub mod proposer;
pub mod rebuild_progress;
pub mod serving;
pub mod state;
pub mod types;

pub use groups::{GroupConfig, Groups};
pub use proposer::{EntryLimits, ProposeError, Proposer};
pub use serving::{LeadershipEvents, ServedLog, Serving, ServingConfig, TransferRefused};
pub use types::{GroupId, NodeId, ShardEntry, ShardRaft, ShardTypeConfig};

/// Errors of a group's storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicationError {
    /// The node's store failed.
    #[error(transparent)]
    Store(#[from] agora_store::StoreError),
    /// A record did not encode or decode.
    #[error("replication record codec: {0}")]
    Codec(String),
    /// The storage executor dropped a job.
    #[error("the storage executor dropped a replication storage job")]
    Executor,
    /// An entry writes a row outside its group's shard.
    #[error("an entry of group {group} writes a row of another shard")]
    ForeignRow {
        /// The group.
        group: GroupId,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for ReplicationError {
            fn from(e: $t) -> Self {
                ReplicationError::Store(agora_store::StoreError::Redb(e.to_string()))
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError);
