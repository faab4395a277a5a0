//! The Raft log and vote of the shard-map group, in the node's redb database (tables
//! `raft_log` and `raft_meta`). Every write is committed with `Durability::Immediate`
//! before openraft hears it is done.

use super::storage::{
    self, decode, encode, read_meta, RaftStoreError, KEY_PURGED, KEY_VOTE, RAFT_LOG, RAFT_META,
};
use super::types::{Entry, NodeId, TypeConfig};
use agora_actors::seams::BlockingPool;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// The log store (and, cloned, its reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    pool: Arc<dyn BlockingPool>,
}

fn read_err(e: RaftStoreError) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: RaftStoreError) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// Opens the log store in `db`, creating its tables; blocking work runs on `pool`.
    pub fn open(db: Arc<Database>, pool: Arc<dyn BlockingPool>) -> Result<Self, RaftStoreError> {
        storage::create_tables(&db)?;
        Ok(Self { db, pool })
    }

    /// Deletes the log entries with an index in `range` and, when given, records the last
    /// purged log id, in one durable transaction.
    async fn delete(
        &self,
        range: (Bound<u64>, Bound<u64>),
        purged: Option<LogId<NodeId>>,
    ) -> Result<(), RaftStoreError> {
        let db = self.db.clone();
        let purged = purged.map(|p| encode(&p)).transpose()?;
        storage::run(&self.pool, move || {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            {
                let mut log = tx.open_table(RAFT_LOG)?;
                log.retain_in::<u64, _>(range, |_, _| false)?;
                if let Some(p) = &purged {
                    tx.open_table(RAFT_META)?.insert(KEY_PURGED, p.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        storage::run(&self.pool, move || {
            let tx = db.begin_read()?;
            let t = tx.open_table(RAFT_LOG)?;
            let mut out = Vec::new();
            for row in t.range::<u64>(bounds)? {
                let (_, v) = row?;
                out.push(decode::<Entry>(v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        storage::run(&self.pool, move || {
            let purged: Option<LogId<NodeId>> = read_meta(&db, KEY_PURGED)?;
            let tx = db.begin_read()?;
            let t = tx.open_table(RAFT_LOG)?;
            let last = match t.last()? {
                Some((_, v)) => Some(decode::<Entry>(v.value())?.log_id),
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        storage::run(&self.pool, move || {
            storage::write_meta(&db, &[(KEY_VOTE, bytes)])
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        storage::run(&self.pool, move || read_meta(&db, KEY_VOTE))
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|e| encode(&e).map(|b| (e.log_id.index, b)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(write_err)?;
        let db = self.db.clone();
        let written = storage::run(&self.pool, move || {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            {
                let mut t = tx.open_table(RAFT_LOG)?;
                for (index, bytes) in &rows {
                    t.insert(*index, bytes.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.delete((Bound::Included(log_id.index), Bound::Unbounded), None)
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.delete(
            (Bound::Unbounded, Bound::Included(log_id.index)),
            Some(log_id),
        )
        .await
        .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::storage::Inline;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn open(path: &std::path::Path) -> LogStore {
        let db = Arc::new(Database::create(path).unwrap());
        LogStore::open(db, Arc::new(Inline)).unwrap()
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        use openraft::storage::RaftLogStorageExt;
        store.blocking_append(entries).await.unwrap();
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        store
            .try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn append_truncate_purge_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut s = open(&path);
            let st = s.get_log_state().await.unwrap();
            assert_eq!((st.last_purged_log_id, st.last_log_id), (None, None));
            append(&mut s, (1..=6).map(|i| entry(1, i)).collect()).await;
            assert_eq!(indexes(&mut s).await, vec![1, 2, 3, 4, 5, 6]);
            let part = s.try_get_log_entries(2..4).await.unwrap();
            assert_eq!(part, vec![entry(1, 2), entry(1, 3)]);

            s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 5))
                .await
                .unwrap();
            assert_eq!(indexes(&mut s).await, vec![1, 2, 3, 4]);
            s.purge(entry(1, 2).log_id).await.unwrap();
            assert_eq!(indexes(&mut s).await, vec![3, 4]);
            let st = s.get_log_state().await.unwrap();
            assert_eq!(st.last_purged_log_id, Some(entry(1, 2).log_id));
            assert_eq!(st.last_log_id, Some(entry(1, 4).log_id));

            let vote = Vote::new_committed(3, 2);
            s.save_vote(&vote).await.unwrap();
        }
        // Everything survives reopening the file.
        let mut s = open(&path);
        assert_eq!(indexes(&mut s).await, vec![3, 4]);
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(entry(1, 2).log_id));
        assert_eq!(st.last_log_id, Some(entry(1, 4).log_id));
        assert_eq!(
            s.read_vote().await.unwrap(),
            Some(Vote::new_committed(3, 2))
        );

        // Purging everything leaves the purged id as the last log id.
        s.purge(entry(1, 4).log_id).await.unwrap();
        assert!(indexes(&mut s).await.is_empty());
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(entry(1, 4).log_id));
    }

    #[tokio::test]
    async fn a_garbage_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir.path().join("raft.redb"));
        let db = s.db.clone();
        let tx = db.begin_write().unwrap();
        tx.open_table(RAFT_LOG)
            .unwrap()
            .insert(1u64, [0xffu8, 0x13].as_slice())
            .unwrap();
        tx.commit().unwrap();
        assert!(s.try_get_log_entries(..).await.is_err());
    }
}
