//! Storage on redb: entity records with their applied-message marks, the outbox, dead
//! letters and metadata,
//! written by one group-commit writer (see `writer`). A change is acknowledged only after
//! the transaction that holds it is committed with `Durability::Immediate`.

pub mod backend;
pub mod cascade;
pub mod keys;
pub mod migrate;
pub mod record;
pub mod replicated;
pub mod rows;
pub mod writer;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::Arc;

pub use rows::{RowOp, RowTable, RowWrite};
pub use writer::{CommitProgress, RelayFeed, StorageExecutor, WriteOp, Writer};

/// Entity records (entity key → `EntityRecord`) and, right after each record, the ids of the
/// messages that took effect on it (dedup key → time applied, see `keys::dedup_key`).
pub const ENTITIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entities");
/// Outbox rows: outbox key → `OutboxRecord`.
pub const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox");
/// Dead letters: sequence → `DeadLetter`.
pub const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
/// Node metadata: name → bytes.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Replication groups' log entries: group (u32, big-endian) and index (u64, big-endian) →
/// encoded entry.
pub const GROUP_LOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("group_log");
/// Replication groups' metadata: group (u32, big-endian) and name → encoded value.
pub const GROUP_META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("group_meta");
/// Shard epochs: shard → the epoch under which this node owns it.
pub const SHARD_EPOCHS: TableDefinition<u32, u64> = TableDefinition::new("shard_epochs");

/// Storage errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("storage: {0}")]
    Redb(String),
    /// A record did not encode or decode.
    #[error("record codec: {0}")]
    Codec(String),
    /// The write was made under an epoch older than the shard's current one (fencing).
    #[error("stale epoch {got} for shard {shard} (current {current})")]
    StaleEpoch {
        /// The shard.
        shard: u32,
        /// The writer's epoch.
        got: u64,
        /// The shard's epoch.
        current: u64,
    },
    /// The write was derived from a write that was refused (a message delivered before its
    /// sender's change was durable, or an earlier change of the same entity): it never
    /// happened either.
    #[error("refused: it depends on change {ticket}, which was refused")]
    DependencyRefused {
        /// The refused change it depended on.
        ticket: u64,
    },
    /// A replicated shard's group did not commit a change (this node lost its lead, or the
    /// outcome is unknown).
    #[error("replication: {0}")]
    Replication(String),
    /// The writer stopped (after a failed commit the node stops taking writes).
    #[error("the store is closed")]
    Closed,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Redb(e.to_string()) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The node's store.
#[derive(Clone)]
pub struct Store {
    db: Arc<redb::Database>,
}

impl Store {
    /// Opens (or creates) the database at `path` and its tables.
    /// After a failed sync the file takes nothing more (see `backend`).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // What `Builder::create(path)` does, with the guard around the file.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::Redb(format!("cannot open {}: {e}", path.display())))?;
        let file = redb::backends::FileBackend::new(file)?;
        let db = redb::Database::builder()
            .set_cache_size(256 * 1024 * 1024)
            .create_with_backend(backend::FailStopBackend::new(file))?;
        Self::with_tables(db)
    }

    /// Opens (or creates) the database on `backend` (the simulator's disk) and its tables;
    /// after a failed sync the backend takes nothing more (see `backend`).
    pub fn open_backend(backend: impl redb::StorageBackend) -> Result<Self, StoreError> {
        let db = redb::Database::builder()
            .set_cache_size(16 * 1024 * 1024)
            .create_with_backend(backend::FailStopBackend::new(backend))?;
        Self::with_tables(db)
    }

    fn with_tables(db: redb::Database) -> Result<Self, StoreError> {
        let tx = db.begin_write()?;
        tx.open_table(ENTITIES)?;
        tx.open_table(OUTBOX)?;
        tx.open_table(DEAD_LETTERS)?;
        tx.open_table(META)?;
        tx.open_table(SHARD_EPOCHS)?;
        tx.open_table(GROUP_LOG)?;
        tx.open_table(GROUP_META)?;
        tx.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The database (for the writer).
    pub fn db(&self) -> &Arc<redb::Database> {
        &self.db
    }

    /// Whether `msg_id` already took effect on the entity at `entity_key` (committed data).
    pub fn dedup_seen(&self, entity_key: &[u8], msg_id: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        Ok(t.get(keys::dedup_key(entity_key, msg_id).as_slice())?
            .is_some())
    }

    /// Reads a metadata value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(name)?.map(|v| v.value().to_vec()))
    }

    /// Writes a metadata value in its own transaction: only at start, before the writer runs.
    pub fn put_meta_now(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.insert(name, value)?;
        tx.commit()?;
        Ok(())
    }

    /// Every outbox row, in key order (for the relay at start).
    pub fn outbox_rows(&self) -> Result<Vec<(Vec<u8>, record::OutboxRecord)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OUTBOX)?;
        let mut rows = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            rows.push((k.value().to_vec(), record::decode(v.value())?));
        }
        Ok(rows)
    }

    /// Every entity record of the given kinds (for projections at start), in key order.
    pub fn scan_entities(
        &self,
        kinds: &[agora_actors::EntityKind],
        mut f: impl FnMut(agora_actors::EntityRef, record::EntityRecord),
    ) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        let mut n = 0;
        for row in t.iter()? {
            let (k, v) = row?;
            if let Some((_, entity)) = keys::parse_entity_key(k.value()) {
                if kinds.contains(&entity.kind) {
                    f(entity, record::decode(v.value())?);
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Reads one entity record (committed data).
    pub fn entity(&self, key: &[u8]) -> Result<Option<record::EntityRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        match t.get(key)? {
            Some(v) => Ok(Some(record::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Counts of rows per table, for metrics and the admin endpoint: entity rows (records and
    /// applied-message marks), outbox rows, dead letters.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let tx = self.db.begin_read()?;
        Ok((
            tx.open_table(ENTITIES)?.len()?,
            tx.open_table(OUTBOX)?.len()?,
            tx.open_table(DEAD_LETTERS)?.len()?,
        ))
    }

    /// The latest dead letters, newest first, each with its sequence number (its id).
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<(u64, record::DeadLetter)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DEAD_LETTERS)?;
        let mut out = Vec::new();
        for row in t.iter()?.rev().take(limit) {
            let (k, v) = row?;
            out.push((k.value(), record::decode(v.value())?));
        }
        Ok(out)
    }

    /// Dead letter `seq`, if it is kept.
    pub fn dead_letter(&self, seq: u64) -> Result<Option<record::DeadLetter>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DEAD_LETTERS)?;
        let found = t.get(seq)?;
        found.map(|v| record::decode(v.value())).transpose()
    }
}

impl Store {
    /// Message ids applied to the entity at `entity_key` (newest by key order last), at most
    /// `limit`, with the time each was applied.
    pub fn applied_messages(
        &self,
        entity_key: &[u8],
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = keys::dedup_key(entity_key, "");
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        let mut out = Vec::new();
        for row in t.range(prefix.as_slice()..)? {
            let (k, v) = row?;
            let Some(id) = k.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            out.push((
                String::from_utf8_lossy(id).into_owned(),
                keys::parse_dedup_value(v.value()),
            ));
        }
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }
}

/// Everything one shard has stored, in key order: what a handoff streams to the new owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardData {
    /// The shard.
    pub shard: u32,
    /// Entity records: key and encoded `EntityRecord`.
    #[serde(with = "row_bytes")]
    pub entities: Rows,
    /// Outbox rows: key and encoded `OutboxRecord`.
    #[serde(with = "row_bytes")]
    pub outbox: Rows,
    /// Applied message ids: key and time applied.
    pub dedup: Vec<(Vec<u8>, u64)>,
}

/// Rows encoded as byte strings (one length and the bytes) rather than as sequences of
/// numbers: the same bytes in bincode, encoded and decoded in one step instead of one call
/// per byte.
mod row_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    /// Encodes `rows` as pairs of byte strings.
    pub fn serialize<S: Serializer>(rows: &super::Rows, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(rows.iter().map(|(k, v)| (Bytes::new(k), Bytes::new(v))))
    }

    /// Decodes pairs of byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Rows, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(d)?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
            .collect())
    }
}

impl ShardData {
    /// How many rows it holds.
    pub fn rows(&self) -> usize {
        self.entities.len() + self.outbox.len() + self.dedup.len()
    }

    /// Bytes of keys and values it holds.
    pub fn bytes(&self) -> usize {
        let rows = |r: &Rows| r.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let dedup: usize = self.dedup.iter().map(|(k, _)| k.len() + 8).sum();
        rows(&self.entities) + rows(&self.outbox) + dedup
    }

    /// The shard split into parts of at most `max_bytes` of keys and values each (a row
    /// larger than that travels alone), rows in their order; always at least one part, so
    /// an empty shard is still installed.
    pub fn into_parts(self, max_bytes: usize) -> Vec<ShardData> {
        let mut parts = PartSplitter {
            shard: self.shard,
            max_bytes,
            filled_bytes: 0,
            parts: vec![ShardData {
                shard: self.shard,
                ..ShardData::default()
            }],
        };
        for (k, v) in self.entities {
            let n = k.len() + v.len();
            parts.room_for(n).entities.push((k, v));
        }
        for (k, v) in self.outbox {
            let n = k.len() + v.len();
            parts.room_for(n).outbox.push((k, v));
        }
        for (k, at) in self.dedup {
            let n = k.len() + 8;
            parts.room_for(n).dedup.push((k, at));
        }
        parts.parts
    }
}

/// Fills the parts of a shard in order (see `ShardData::into_parts`).
struct PartSplitter {
    shard: u32,
    max_bytes: usize,
    filled_bytes: usize,
    parts: Vec<ShardData>,
}

impl PartSplitter {
    /// The part a row of `n` bytes goes in: the last one, or a new one if it is full.
    fn room_for(&mut self, n: usize) -> &mut ShardData {
        if self.filled_bytes > 0 && self.filled_bytes + n > self.max_bytes {
            self.parts.push(ShardData {
                shard: self.shard,
                ..ShardData::default()
            });
            self.filled_bytes = 0;
        }
        self.filled_bytes += n;
        let last = self.parts.len() - 1;
        &mut self.parts[last]
    }
}

/// Raw key–value rows of one table.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn scan_bytes(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    shard: u32,
) -> Result<Rows, StoreError> {
    let (start, end) = keys::shard_range(shard);
    let rows = match &end {
        Some(end) => t.range(start.as_slice()..end.as_slice())?,
        None => t.range(start.as_slice()..)?,
    };
    let mut out = Vec::new();
    for row in rows {
        let (k, v) = row?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

impl Store {
    /// Reads everything shard `shard` has stored (committed data) as one unit.
    pub fn export_shard(&self, shard: u32) -> Result<ShardData, StoreError> {
        let tx = self.db.begin_read()?;
        let mut entities = Vec::new();
        let mut dedup = Vec::new();
        for (k, v) in scan_bytes(&tx.open_table(ENTITIES)?, shard)? {
            if keys::is_dedup_key(&k) {
                dedup.push((k, keys::parse_dedup_value(&v)));
            } else {
                entities.push((k, v));
            }
        }
        let mut outbox = Vec::new();
        for row in tx.open_table(OUTBOX)?.iter()? {
            let (k, v) = row?;
            if keys::parse_outbox_key(k.value()).is_some_and(|(s, _)| s == shard) {
                outbox.push((k.value().to_vec(), v.value().to_vec()));
            }
        }
        Ok(ShardData {
            shard,
            entities,
            outbox,
            dedup,
        })
    }

    /// Up to `limit` applied-message marks of `shard` recorded before `before_ms`.
    pub fn expired_marks(
        &self,
        shard: u32,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        let (start, end) = keys::shard_range(shard);
        let mut out = Vec::new();
        for row in t.range(start.as_slice()..)? {
            let (k, v) = row?;
            if end.as_deref().is_some_and(|e| k.value() >= e) || out.len() >= limit {
                break;
            }
            if keys::is_dedup_key(k.value()) && keys::parse_dedup_value(v.value()) < before_ms {
                out.push(k.value().to_vec());
            }
        }
        Ok(out)
    }

    /// The shards (of `shard_count`) with at least one entity row here.
    pub fn shards_with_rows(&self, shard_count: u32) -> Result<Vec<u32>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        let mut out = Vec::new();
        for shard in 0..shard_count {
            let (start, end) = keys::shard_range(shard);
            if let Some(row) = t.range(start.as_slice()..)?.next() {
                let (k, _) = row?;
                if end.as_deref().is_none_or(|e| k.value() < e) {
                    out.push(shard);
                }
            }
        }
        Ok(out)
    }

    /// The epoch under which this node last owned `shard` (0 if never).
    pub fn shard_epoch(&self, shard: u32) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SHARD_EPOCHS)?;
        Ok(t.get(shard)?.map_or(0, |v| v.value()))
    }
}

impl Store {
    /// Orders of the shards in `shards` that are not terminal and were placed before
    /// `placed_before_ms`: sagas that should have ended by now.
    pub fn stuck_orders(
        &self,
        shards: &[u32],
        placed_before_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        use agora_actors::host::EntityState;
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        let mut stuck = Vec::new();
        for shard in shards {
            let mut prefix = shard.to_be_bytes().to_vec();
            prefix.push(agora_actors::EntityKind::Order.code());
            for row in t.range(prefix.as_slice()..)? {
                let (k, v) = row?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                if keys::is_dedup_key(k.value()) {
                    continue;
                }
                let rec: record::EntityRecord = record::decode(v.value())?;
                if let EntityState::Order(o) = rec.state {
                    let placed = o.placement.as_ref().map_or(u64::MAX, |p| p.placed_at_ms);
                    if placed < placed_before_ms
                        && o.status()
                            .is_some_and(|s| !s.is_terminal() && s.holds_reservation())
                    {
                        stuck
                            .push(String::from_utf8_lossy(&k.value()[prefix.len()..]).into_owned());
                    }
                }
            }
        }
        Ok(stuck)
    }
}

#[cfg(test)]
mod shard_data_tests {
    use super::*;

    fn sample(rows: u8) -> ShardData {
        let row = |i: u8| (vec![i; 10], vec![i; 90]);
        ShardData {
            shard: 7,
            entities: (0..rows).map(row).collect(),
            outbox: (0..rows).map(|i| row(i + 100)).collect(),
            dedup: (0..rows).map(|i| (vec![i; 12], u64::from(i))).collect(),
        }
    }

    /// The parts, put back together in order.
    fn joined(parts: &[ShardData]) -> ShardData {
        let mut all = ShardData {
            shard: parts[0].shard,
            ..ShardData::default()
        };
        for p in parts {
            assert_eq!(p.shard, all.shard);
            all.entities.extend(p.entities.iter().cloned());
            all.outbox.extend(p.outbox.iter().cloned());
            all.dedup.extend(p.dedup.iter().cloned());
        }
        all
    }

    #[test]
    fn a_shard_splits_into_bounded_parts_that_join_back_in_order() {
        let data = sample(50);
        let parts = data.clone().into_parts(1_000);
        assert!(parts.len() >= data.bytes() / 1_000, "{} parts", parts.len());
        for p in &parts {
            assert!(p.bytes() <= 1_000, "a part of {} bytes", p.bytes());
        }
        assert_eq!(joined(&parts), data);
        assert_eq!(
            parts.iter().map(ShardData::rows).sum::<usize>(),
            data.rows()
        );
    }

    #[test]
    fn an_empty_shard_is_one_part_and_a_large_row_travels_alone() {
        let empty = ShardData {
            shard: 3,
            ..ShardData::default()
        };
        assert_eq!(empty.clone().into_parts(100), vec![empty]);
        let parts = sample(3).into_parts(19);
        assert!(parts.iter().all(|p| p.rows() == 1), "{parts:?}");
        assert_eq!(joined(&parts), sample(3));
    }

    /// `ShardData` as it was encoded before its rows became byte strings.
    #[derive(serde::Serialize)]
    struct Plain {
        shard: u32,
        entities: Rows,
        outbox: Rows,
        dedup: Vec<(Vec<u8>, u64)>,
    }

    #[test]
    fn rows_as_byte_strings_are_the_same_bytes_in_bincode() {
        let rows: Rows = vec![(vec![0, 1, 2], vec![255; 300]), (vec![], vec![7])];
        let data = ShardData {
            shard: 5,
            entities: rows.clone(),
            outbox: rows.clone(),
            dedup: vec![(vec![9, 9], 42)],
        };
        let plain = Plain {
            shard: 5,
            entities: rows.clone(),
            outbox: rows,
            dedup: vec![(vec![9, 9], 42)],
        };
        let config = bincode::config::standard();
        let new = bincode::serde::encode_to_vec(&data, config).unwrap();
        let old = bincode::serde::encode_to_vec(&plain, config).unwrap();
        assert_eq!(new, old);
        let (back, _): (ShardData, usize) =
            bincode::serde::decode_from_slice(&old, config.with_limit::<1_000_000>()).unwrap();
        assert_eq!(back, data);
    }
}
