//! A group's log and vote, in the node's redb file (tables `group_log` and `group_meta`,
//! keys prefixed by the group). Writes go through the node's group-commit writer, so the
//! appends of every group that arrive together share one fsync; an append is reported done
//! to openraft only once the commit that holds it is durable.

use crate::codec::{decode, encode};
use crate::keys::{self, log_index, log_key, meta_key};
use crate::log_cache::TailCache;
use crate::types::{Entry, GroupId, NodeId, ShardTypeConfig};
use crate::ReplicationError;
use agora_actors::seams::BlockingPool;
use agora_store::{RowOp, RowTable, RowWrite, Store, Writer, GROUP_LOG, GROUP_META};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::ReadableDatabase;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// One group's log store (and, cloned, its reader).
#[derive(Clone)]
pub struct GroupLog {
    group: GroupId,
    store: Store,
    writer: Writer,
    pool: Arc<dyn BlockingPool>,
    tail: TailCache,
}

fn read_err(e: ReplicationError) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: ReplicationError) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

/// Runs blocking redb reads on the storage executor and awaits the result.
pub(crate) async fn run<T: Send + 'static>(
    pool: &Arc<dyn BlockingPool>,
    f: impl FnOnce() -> Result<T, ReplicationError> + Send + 'static,
) -> Result<T, ReplicationError> {
    agora_actors::seams::run_blocking(pool, f)
        .await
        .map_err(|_| ReplicationError::Executor)?
}

/// Reads and decodes metadata `name` of `group` (committed data).
pub(crate) fn read_meta<T: DeserializeOwned>(
    store: &Store,
    group: GroupId,
    name: &str,
) -> Result<Option<T>, ReplicationError> {
    let tx = store.db().begin_read()?;
    let t = tx.open_table(GROUP_META)?;
    let value = t.get(meta_key(group, name).as_slice())?;
    value.map(|v| decode(v.value())).transpose()
}

impl GroupLog {
    /// The log of `group` in `store`, written through `writer`; reads run on `pool`.
    pub fn new(group: GroupId, store: Store, writer: Writer, pool: Arc<dyn BlockingPool>) -> Self {
        Self {
            group,
            store,
            writer,
            pool,
            tail: TailCache::default(),
        }
    }

    /// Removes the entries with an index in `[from, to)` (`to` = `None`: to the end) and,
    /// when given, records the last purged log id, in one durable write.
    async fn remove(
        &self,
        from: u64,
        to: Option<u64>,
        purged: Option<LogId<NodeId>>,
    ) -> Result<(), ReplicationError> {
        let end = match to {
            Some(to) => log_key(self.group, to).to_vec(),
            None => log_key(self.group + 1, 0).to_vec(),
        };
        let mut rows = Vec::new();
        if let Some(p) = purged {
            rows.push(RowOp::put(
                RowTable::GroupMeta,
                meta_key(self.group, keys::PURGED),
                encode(&p)?,
            ));
        }
        let write = RowWrite {
            remove_ranges: vec![(
                RowTable::GroupLog,
                log_key(self.group, from).to_vec(),
                Some(end),
            )],
            rows,
        };
        Ok(self.writer.write_rows(write).await?)
    }
}

impl RaftLogReader<ShardTypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let group = self.group;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(entries) = end.and_then(|end| self.tail.get(start, end)) {
            return Ok(entries);
        }
        let store = self.store.clone();
        run(&self.pool, move || {
            let tx = store.db().begin_read()?;
            let t = tx.open_table(GROUP_LOG)?;
            let from = log_key(group, start);
            let to = match end {
                Some(e) => log_key(group, e).to_vec(),
                None => log_key(group + 1, 0).to_vec(),
            };
            let mut out = Vec::new();
            for row in t.range::<&[u8]>(from.as_slice()..to.as_slice())? {
                let (k, v) = row?;
                let entry: Entry = decode(v.value())?;
                assert_eq!(
                    log_index(group, k.value()),
                    Some(entry.log_id.index),
                    "a log row's key names its entry's index"
                );
                out.push(entry);
            }
            Ok(out)
        })
        .await
        .map_err(read_err)
    }
}

impl RaftLogStorage<ShardTypeConfig> for GroupLog {
    type LogReader = GroupLog;

    async fn get_log_state(&mut self) -> Result<LogState<ShardTypeConfig>, StorageError<NodeId>> {
        let (group, store) = (self.group, self.store.clone());
        run(&self.pool, move || {
            let purged: Option<LogId<NodeId>> = read_meta(&store, group, keys::PURGED)?;
            let tx = store.db().begin_read()?;
            let t = tx.open_table(GROUP_LOG)?;
            let first = log_key(group, 0);
            let end = log_key(group + 1, 0);
            let last = match t
                .range::<&[u8]>(first.as_slice()..end.as_slice())?
                .next_back()
            {
                Some(row) => Some(decode::<Entry>(row?.1.value())?.log_id),
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
        let vote_err = |e: ReplicationError| StorageIOError::write_vote(&e).into();
        let row = RowOp::put(
            RowTable::GroupMeta,
            meta_key(self.group, keys::VOTE),
            encode(vote).map_err(vote_err)?,
        );
        self.writer
            .write_rows(RowWrite::rows(vec![row]))
            .await
            .map_err(|e| vote_err(e.into()))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let (group, store) = (self.group, self.store.clone());
        run(&self.pool, move || read_meta(&store, group, keys::VOTE))
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<ShardTypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let group = self.group;
        let entries: Vec<Entry> = entries.into_iter().collect();
        let count = entries.len();
        let mut rows = entries
            .iter()
            .map(|e| {
                encode(e).map(|b| {
                    RowOp::put(
                        RowTable::GroupLog,
                        log_key(group, e.log_id.index).to_vec(),
                        b,
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(write_err)?;
        let sizes: Vec<usize> = rows
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .collect();
        if agora_seams::planted::is_planted(agora_seams::planted::Bug::ApplyUncommitted) {
            rows.extend(entries.iter().cloned().flat_map(uncommitted_rows));
        }
        match self.writer.write_rows(RowWrite::rows(rows)).await {
            Ok(()) => {
                metrics::counter!("agora_replication_log_appends_total").increment(count as u64);
                self.tail.appended(entries.into_iter().zip(sizes));
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e.into()))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.tail.truncate_from(log_id.index);
        self.remove(log_id.index, None, None)
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.tail.purge_to(log_id.index);
        self.remove(0, log_id.index.checked_add(1), Some(log_id))
            .await
            .map_err(write_err)
    }
}

/// The planted `apply-uncommitted`: an entry's rows written to the shard's tables as it is
/// appended, before any majority holds it.
fn uncommitted_rows(entry: Entry) -> Vec<RowOp> {
    match entry.payload {
        openraft::EntryPayload::Normal(e) => e
            .rows
            .into_iter()
            .map(|r| RowOp {
                table: crate::state::store_table(r.table),
                key: r.key,
                value: r.value,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    /// Runs each job at once on the calling thread.
    struct Inline;

    impl BlockingPool for Inline {
        fn run(&self, job: Box<dyn FnOnce() + Send>) {
            job()
        }
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn open(path: &std::path::Path, group: GroupId) -> GroupLog {
        let store = Store::open(path).unwrap();
        let (relay, _) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::start(store.clone(), relay, Vec::new()).unwrap();
        GroupLog::new(group, store, writer, Arc::new(Inline))
    }

    async fn indexes(log: &mut GroupLog) -> Vec<u64> {
        let entries = log.try_get_log_entries(..).await.unwrap();
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn append_truncate_purge_and_read_back_keep_groups_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let first = open(&path, 3);
        {
            let mut a = first.clone();
            let mut b = GroupLog::new(4, a.store.clone(), a.writer.clone(), Arc::new(Inline));
            a.blocking_append((1..=6).map(|i| entry(1, i)).collect::<Vec<_>>())
                .await
                .unwrap();
            b.blocking_append((1..=2).map(|i| entry(2, i)).collect::<Vec<_>>())
                .await
                .unwrap();
            assert_eq!(indexes(&mut a).await, vec![1, 2, 3, 4, 5, 6]);
            assert_eq!(indexes(&mut b).await, vec![1, 2]);
            assert_eq!(
                a.try_get_log_entries(2..=3).await.unwrap(),
                vec![entry(1, 2), entry(1, 3)]
            );

            a.truncate(entry(1, 5).log_id).await.unwrap();
            assert_eq!(indexes(&mut a).await, vec![1, 2, 3, 4]);
            a.purge(entry(1, 2).log_id).await.unwrap();
            assert_eq!(indexes(&mut a).await, vec![3, 4]);
            assert_eq!(
                indexes(&mut b).await,
                vec![1, 2],
                "another group's log is untouched"
            );
            a.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
            let st = a.get_log_state().await.unwrap();
            assert_eq!(st.last_purged_log_id, Some(entry(1, 2).log_id));
            assert_eq!(st.last_log_id, Some(entry(1, 4).log_id));
        }
        // A fresh log of the group (no state but the store) reads back what was written.
        let mut a = GroupLog::new(
            3,
            first.store.clone(),
            first.writer.clone(),
            Arc::new(Inline),
        );
        assert_eq!(indexes(&mut a).await, vec![3, 4]);
        assert_eq!(
            a.read_vote().await.unwrap(),
            Some(Vote::new_committed(3, 2))
        );
        // Purging everything leaves the purged id as the last log id.
        a.purge(entry(1, 4).log_id).await.unwrap();
        assert!(indexes(&mut a).await.is_empty());
        let st = a.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(entry(1, 4).log_id));
    }

    #[tokio::test]
    async fn a_garbage_log_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(&dir.path().join("node.redb"), 1);
        let row = RowOp::put(RowTable::GroupLog, log_key(1, 1).to_vec(), vec![0xff, 0x13]);
        log.writer
            .write_rows(RowWrite::rows(vec![row]))
            .await
            .unwrap();
        assert!(log.try_get_log_entries(..).await.is_err());
    }
}
