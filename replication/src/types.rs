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
///
/// An entry is fenced by the term of the leadership whose proposer made it: it applies only
/// if openraft appended it in that term. A proposer whose leadership ended may still hand
/// openraft an entry while this node leads a later term; fenced, that entry is skipped on
/// every replica, so a change built on one leadership's state never takes effect under
/// another (its outbox rows would reach no relay, and its record would overwrite what the
/// new leadership's entities wrote).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardEntry {
    /// The term of the leadership whose proposer made the entry; `None` in entries written
    /// before fences existed (they apply as they are).
    pub proposer_term: Option<u64>,
    /// The rows, in the order they are written.
    pub rows: Vec<ShardRow>,
}

/// A row as the log encodes it: a row of a table, or (first, at most once) the entry's
/// fence. Its first two tables have the indexes of [`ShardTable`]'s, so an entry without a
/// fence is the same bytes as one written before fences existed.
#[derive(Serialize, Deserialize)]
enum WireTable {
    Entities,
    Outbox,
    Fence,
}

#[derive(Serialize)]
struct WireRowRef<'a> {
    table: WireTable,
    #[serde(with = "serde_bytes")]
    key: &'a [u8],
    #[serde(with = "serde_bytes")]
    value: Option<&'a [u8]>,
}

#[derive(Deserialize)]
struct WireRow {
    table: WireTable,
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    value: Option<Vec<u8>>,
}

impl Serialize for ShardEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let fence = self.proposer_term.map(u64::to_be_bytes);
        let mut seq = s.serialize_seq(Some(self.rows.len() + usize::from(fence.is_some())))?;
        if let Some(term) = &fence {
            seq.serialize_element(&WireRowRef {
                table: WireTable::Fence,
                key: term,
                value: None,
            })?;
        }
        for r in &self.rows {
            let table = match r.table {
                ShardTable::Entities => WireTable::Entities,
                ShardTable::Outbox => WireTable::Outbox,
            };
            seq.serialize_element(&WireRowRef {
                table,
                key: &r.key,
                value: r.value.as_deref(),
            })?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ShardEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = Vec::<WireRow>::deserialize(d)?;
        let mut entry = ShardEntry {
            proposer_term: None,
            rows: Vec::with_capacity(wire.len()),
        };
        for (i, row) in wire.into_iter().enumerate() {
            let table = match row.table {
                WireTable::Entities => ShardTable::Entities,
                WireTable::Outbox => ShardTable::Outbox,
                WireTable::Fence => {
                    let term: [u8; 8] = row.key.as_slice().try_into().map_err(|_| {
                        D::Error::custom("an entry's fence holds a term of 8 bytes")
                    })?;
                    if i != 0 || row.value.is_some() {
                        return Err(D::Error::custom(
                            "an entry's fence comes first, once, with no value",
                        ));
                    }
                    entry.proposer_term = Some(u64::from_be_bytes(term));
                    continue;
                }
            };
            entry.rows.push(ShardRow {
                table,
                key: row.key,
                value: row.value,
            });
        }
        Ok(entry)
    }
}

impl ShardEntry {
    /// Whether the entry takes effect when appended in `term` (its fence allows it).
    pub fn applies_in(&self, term: u64) -> bool {
        self.proposer_term.is_none_or(|t| t == term)
    }

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

    /// `ShardEntry` as it was encoded before entries were fenced.
    #[derive(Serialize)]
    struct Unfenced {
        rows: Vec<ShardRow>,
    }

    fn rows() -> Vec<ShardRow> {
        vec![
            ShardRow {
                table: ShardTable::Entities,
                key: vec![0, 0, 0, 3, 1],
                value: Some(vec![7; 40]),
            },
            ShardRow {
                table: ShardTable::Outbox,
                key: vec![9, 0, 0, 0, 3],
                value: None,
            },
        ]
    }

    fn decode(bytes: &[u8]) -> Result<ShardEntry, bincode::error::DecodeError> {
        let config = bincode::config::standard().with_limit::<4096>();
        bincode::serde::decode_from_slice(bytes, config).map(|(e, _)| e)
    }

    #[test]
    fn an_unfenced_entry_is_the_same_bytes_as_before_fences() {
        let config = bincode::config::standard();
        let old = bincode::serde::encode_to_vec(Unfenced { rows: rows() }, config).unwrap();
        let entry = ShardEntry {
            proposer_term: None,
            rows: rows(),
        };
        assert_eq!(bincode::serde::encode_to_vec(&entry, config).unwrap(), old);
        assert_eq!(decode(&old).unwrap(), entry);
    }

    #[test]
    fn a_fenced_entry_round_trips_and_a_misplaced_fence_is_an_error() {
        let config = bincode::config::standard();
        let entry = ShardEntry {
            proposer_term: Some(0x0102_0304_0506_0708),
            rows: rows(),
        };
        let bytes = bincode::serde::encode_to_vec(&entry, config).unwrap();
        assert_eq!(decode(&bytes).unwrap(), entry);
        // Two fences: the second is not first.
        let twice = ShardEntry {
            proposer_term: Some(5),
            rows: Vec::new(),
        };
        let mut bytes = bincode::serde::encode_to_vec(&twice, config).unwrap();
        let fence_row = bytes[1..].to_vec();
        bytes[0] = 2;
        bytes.extend_from_slice(&fence_row);
        assert!(decode(&bytes).is_err());
    }
}
