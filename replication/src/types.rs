//! The Raft type configuration of a shard's group, and what its log carries.

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A member's id: its node id from the cluster file.
pub type NodeId = u64;

/// A replication group's id: the shard it replicates.
pub type GroupId = u32;

/// A table of a shard's data that a committed change writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardTable {
    /// Entity records and their applied-message marks (keys start with the shard).
    Entities,
    /// Outbox rows (keys end with the shard).
    Outbox,
}

/// One row a committed change puts (`Some`) or removes (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRow {
    /// The table.
    pub table: ShardTable,
    /// The row's key (of the group's shard).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The new value, or `None` to remove the row.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// What a shard's group agrees on: the rows one round of its changes writes, applied in
/// log order on every replica, so every replica holds the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// The rows, in the order they are written.
    pub rows: Vec<ShardRow>,
}

impl ShardEntry {
    /// The bytes its rows carry (keys and values).
    pub fn size_bytes(&self) -> usize {
        self.rows
            .iter()
            .map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// What applying an entry answers (nothing: the rows are the effect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied;

openraft::declare_raft_types!(
    /// A shard group's Raft types.
    pub ShardTypeConfig:
        D = ShardEntry,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<ShardTypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<ShardTypeConfig>,
);

/// The handle to this node's member of one shard group.
pub type ShardRaft = openraft::Raft<ShardTypeConfig>;

/// A log entry of a shard group.
pub type Entry = openraft::Entry<ShardTypeConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `ShardRow` as it was encoded before its key and value became byte strings.
    #[derive(Serialize)]
    struct Plain {
        table: ShardTable,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    }

    #[test]
    fn rows_as_byte_strings_are_the_same_bytes_in_bincode() {
        let config = bincode::config::standard();
        for value in [Some(vec![1u8; 200]), None] {
            let row = ShardRow {
                table: ShardTable::Outbox,
                key: vec![0, 0, 0, 3, 255],
                value: value.clone(),
            };
            let plain = Plain {
                table: ShardTable::Outbox,
                key: row.key.clone(),
                value,
            };
            let new = bincode::serde::encode_to_vec(&row, config).unwrap();
            assert_eq!(new, bincode::serde::encode_to_vec(&plain, config).unwrap());
            let (back, _): (ShardRow, usize) =
                bincode::serde::decode_from_slice(&new, config.with_limit::<4096>()).unwrap();
            assert_eq!(back, row);
        }
    }
}
