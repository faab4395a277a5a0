//! Where the shard-map group rests in the node's redb database: its tables, the record
//! codec (a format byte, then bincode), and running blocking redb work on the storage
//! executor.

use agora_actors::seams::BlockingPool;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// The Raft log: index → encoded entry.
pub const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft metadata: name → encoded value (vote, last purged log id, state machine, snapshot).
pub const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// Metadata key of the vote.
pub const KEY_VOTE: &str = "vote";
/// Metadata key of the last purged log id.
pub const KEY_PURGED: &str = "last_purged";
/// Metadata key of the state machine (the map, the applied log id, the membership).
pub const KEY_STATE: &str = "state_machine";
/// Metadata key of the latest snapshot (meta and data).
pub const KEY_SNAPSHOT: &str = "snapshot";

/// Format version written before every stored Raft record.
const FORMAT: u8 = 1;

/// Errors of the Raft storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RaftStoreError {
    /// redb failed.
    #[error("raft storage: {0}")]
    Redb(String),
    /// A record did not encode or decode.
    #[error("raft record codec: {0}")]
    Codec(String),
    /// The storage executor dropped the job.
    #[error("the storage executor dropped a raft storage job")]
    Executor,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for RaftStoreError {
            fn from(e: $t) -> Self { RaftStoreError::Redb(e.to_string()) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Encodes a stored record.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, RaftStoreError> {
    let mut out = vec![FORMAT];
    let body = bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| RaftStoreError::Codec(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a stored record; a wrong format byte or garbage is an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RaftStoreError> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => {
            let limited =
                bincode::config::standard().with_limit::<{ crate::envelope::MAX_MESSAGE_BYTES }>();
            bincode::serde::decode_from_slice(body, limited)
                .map(|(v, _)| v)
                .map_err(|e| RaftStoreError::Codec(e.to_string()))
        }
        Some((f, _)) => Err(RaftStoreError::Codec(format!(
            "raft record format {f} is not {FORMAT}"
        ))),
        None => Err(RaftStoreError::Codec("empty raft record".into())),
    }
}

/// Creates the Raft tables if they are missing.
pub fn create_tables(db: &Database) -> Result<(), RaftStoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    tx.open_table(RAFT_LOG)?;
    tx.open_table(RAFT_META)?;
    tx.commit()?;
    Ok(())
}

/// Reads and decodes one metadata value.
pub fn read_meta<T: DeserializeOwned>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, RaftStoreError> {
    let tx = db.begin_read()?;
    let t = tx.open_table(RAFT_META)?;
    match t.get(key)? {
        Some(v) => decode(v.value()).map(Some),
        None => Ok(None),
    }
}

/// Reads one metadata value as stored (still encoded).
pub fn read_raw(db: &Database, key: &str) -> Result<Option<Vec<u8>>, RaftStoreError> {
    let tx = db.begin_read()?;
    let t = tx.open_table(RAFT_META)?;
    Ok(t.get(key)?.map(|v| v.value().to_vec()))
}

/// Writes encoded metadata values in one durable transaction.
pub fn write_meta(db: &Database, values: &[(&str, Vec<u8>)]) -> Result<(), RaftStoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut t = tx.open_table(RAFT_META)?;
        for (k, v) in values {
            t.insert(*k, v.as_slice())?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Runs blocking redb work on the storage executor and awaits its result; a write
/// transaction begins and ends inside `f`, never across an await.
pub async fn run<T: Send + 'static>(
    pool: &Arc<dyn BlockingPool>,
    f: impl FnOnce() -> Result<T, RaftStoreError> + Send + 'static,
) -> Result<T, RaftStoreError> {
    agora_actors::seams::run_blocking(pool, f)
        .await
        .map_err(|_| RaftStoreError::Executor)?
}

/// A storage executor that runs each job at once on the calling thread (for tests).
#[cfg(test)]
pub struct Inline;

#[cfg(test)]
impl BlockingPool for Inline {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        job()
    }
}
