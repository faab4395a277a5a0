//! A group's state machine: applying a committed entry writes its rows to the shard's
//! tables, and the applied log id and membership to `group_meta`, in one write through the
//! node's writer. Every replica applies the same entries in the same order, so every
//! replica holds the same bytes. Applying does not wait for the fsync: the log already holds
//! the entry durably on a majority, and the writer commits in submission order, so after a
//! crash the applied state on disk is never ahead of the rows and openraft applies again
//! whatever is missing.
//!
//! A snapshot is the shard's export (the stream a handoff sends), with the applied state.
//! The shard's rows already live in the store, so a snapshot is never kept: building one
//! (openraft's cue to purge the log behind it) only makes the applied rows durable and
//! records how far they go, and the shard is exported when a follower needs it, at the
//! state machine's current applied state. Applying and exporting run on the same state
//! machine task, so the exported rows are exactly those of the applied state sent with them.

use crate::codec::{decode, encode};
use crate::keys::{self, meta_key};
use crate::log::{read_meta, run};
use crate::types::{Applied, Entry, GroupId, NodeId, ShardRow, ShardTable, ShardTypeConfig};
use crate::ReplicationError;
use agora_actors::seams::BlockingPool;
use agora_store::keys::parse_outbox_key;
use agora_store::{RowOp, RowTable, RowWrite, ShardData, Store, Writer};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;

/// What a group has applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// A snapshot's data: the applied state and the shard's rows.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    applied: AppliedState,
    shard: ShardData,
}

/// Whether `key` of `table` belongs to `shard`.
pub fn row_of_shard(table: ShardTable, key: &[u8], shard: GroupId) -> bool {
    match table {
        ShardTable::Entities => key.get(..4) == Some(shard.to_be_bytes().as_slice()),
        ShardTable::Outbox => parse_outbox_key(key).is_some_and(|(s, _)| s == shard),
    }
}

pub(crate) fn store_table(table: ShardTable) -> RowTable {
    match table {
        ShardTable::Entities => RowTable::Entities,
        ShardTable::Outbox => RowTable::Outbox,
    }
}

/// One group's state machine.
pub struct GroupState {
    group: GroupId,
    store: Store,
    writer: Writer,
    pool: Arc<dyn BlockingPool>,
    applied: AppliedState,
    /// Snapshots built or exported so far (each gets its own id).
    snapshots_built: u64,
    /// Whether openraft has built or installed a snapshot since this state machine opened.
    /// Until then there is no snapshot to export: at start openraft asks for the current
    /// one and, when its log was purged, builds one (cheap, see the builder).
    has_snapshot: bool,
}

fn sm_err(e: ReplicationError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn snapshot_err(e: ReplicationError) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

impl GroupState {
    /// Opens `group`'s state machine, with the applied state stored in `store`.
    pub fn open(
        group: GroupId,
        store: Store,
        writer: Writer,
        pool: Arc<dyn BlockingPool>,
    ) -> Result<Self, ReplicationError> {
        let applied = read_meta(&store, group, keys::APPLIED)?.unwrap_or_default();
        Ok(Self {
            group,
            store,
            writer,
            pool,
            applied,
            snapshots_built: 0,
            has_snapshot: false,
        })
    }

    /// What the group has applied.
    pub fn applied(&self) -> &AppliedState {
        &self.applied
    }

    /// The rows of one entry, checked to belong to this group's shard.
    fn entry_rows(&mut self, entry: Entry, out: &mut Vec<RowOp>) -> Result<(), ReplicationError> {
        if let Some(last) = self.applied.last_applied {
            assert!(
                entry.log_id > last,
                "entries are applied in log order, once"
            );
        }
        self.applied.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
            }
            EntryPayload::Normal(e) if !e.applies_in(entry.log_id.leader_id.term) => {
                // Made by a proposer of an ended leadership: skipped on every replica.
                metrics::counter!("agora_replication_fenced_entries_total").increment(1);
                tracing::debug!(
                    group = self.group,
                    log_id = %entry.log_id,
                    proposer_term = ?e.proposer_term,
                    rows = e.rows.len(),
                    "skipped an entry appended under another leadership"
                );
            }
            EntryPayload::Normal(e) => {
                for ShardRow { table, key, value } in e.rows {
                    if !row_of_shard(table, &key, self.group) {
                        return Err(ReplicationError::ForeignRow { group: self.group });
                    }
                    out.push(RowOp {
                        table: store_table(table),
                        key,
                        value,
                    });
                }
            }
        }
        Ok(())
    }

    fn applied_row(&self) -> Result<RowOp, ReplicationError> {
        Ok(RowOp::put(
            RowTable::GroupMeta,
            meta_key(self.group, keys::APPLIED),
            encode(&self.applied)?,
        ))
    }
}

/// Builds a snapshot's meta: the applied rows made durable, and how far they go. openraft
/// keeps only the meta of a snapshot it builds (its data is dropped), so no data is made;
/// `get_current_snapshot` exports the shard when a follower needs it.
pub struct GroupSnapshotBuilder {
    group: GroupId,
    writer: Writer,
    applied: AppliedState,
    seq: u64,
}

/// The meta of a snapshot of `group` at `applied`, the `seq`-th of this state machine.
fn snapshot_meta(
    group: GroupId,
    applied: &AppliedState,
    seq: u64,
) -> SnapshotMeta<NodeId, BasicNode> {
    SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: format!(
            "{}-{}-{}",
            group,
            applied.last_applied.map_or(0, |l| l.index),
            seq
        ),
    }
}

impl RaftSnapshotBuilder<ShardTypeConfig> for GroupSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<ShardTypeConfig>, StorageError<NodeId>> {
        // Every applied entry submitted before this point is on disk once this write is, so
        // the log behind the snapshot may be purged.
        self.writer
            .write_rows(RowWrite::rows(Vec::new()))
            .await
            .map_err(|e| snapshot_err(e.into()))?;
        metrics::counter!("agora_replication_snapshots_built_total").increment(1);
        Ok(Snapshot {
            meta: snapshot_meta(self.group, &self.applied, self.seq),
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl RaftStateMachine<ShardTypeConfig> for GroupState {
    type SnapshotBuilder = GroupSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        let mut answers = Vec::new();
        for entry in entries {
            self.entry_rows(entry, &mut rows).map_err(sm_err)?;
            answers.push(Applied);
        }
        if !answers.is_empty() {
            rows.push(self.applied_row().map_err(sm_err)?);
            self.writer
                .submit_rows(RowWrite::rows(rows))
                .map_err(|e| sm_err(e.into()))?;
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        self.has_snapshot = true;
        GroupSnapshotBuilder {
            group: self.group,
            writer: self.writer.clone(),
            applied: self.applied.clone(),
            seq: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let read_err = |e: ReplicationError| -> StorageError<NodeId> {
            StorageIOError::read_snapshot(Some(meta.signature()), &e).into()
        };
        let data: SnapshotData = decode(&bytes).map_err(read_err)?;
        if data.shard.shard != self.group {
            return Err(read_err(ReplicationError::ForeignRow { group: self.group }));
        }
        let write = self.replace_shard(data.shard).await.map_err(snapshot_err)?;
        self.applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.has_snapshot = true;
        let mut write = write;
        write.rows.push(self.applied_row().map_err(snapshot_err)?);
        self.writer
            .write_rows(write)
            .await
            .map_err(|e| snapshot_err(e.into()))?;
        metrics::counter!("agora_replication_snapshots_installed_total").increment(1);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<ShardTypeConfig>>, StorageError<NodeId>> {
        if !self.has_snapshot || self.applied.last_applied.is_none() {
            return Ok(None);
        }
        // The applied rows are handed to the writer without waiting: an empty write after
        // them is durable only once they are, and nothing is applied meanwhile (this runs on
        // the state machine's task), so the export is the applied state exactly.
        self.writer
            .write_rows(RowWrite::rows(Vec::new()))
            .await
            .map_err(|e| snapshot_err(e.into()))?;
        let (group, store) = (self.group, self.store.clone());
        let shard = run(&self.pool, move || Ok(store.export_shard(group)?))
            .await
            .map_err(snapshot_err)?;
        assert_eq!(shard.shard, self.group, "a group exports its own shard");
        let data = encode(&SnapshotData {
            applied: self.applied.clone(),
            shard,
        })
        .map_err(snapshot_err)?;
        self.snapshots_built += 1;
        Ok(Some(Snapshot {
            meta: snapshot_meta(self.group, &self.applied, self.snapshots_built),
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

impl GroupState {
    /// A write that replaces every row of the shard with `data`'s (never a merge).
    async fn replace_shard(&self, data: ShardData) -> Result<RowWrite, ReplicationError> {
        let (group, store) = (self.group, self.store.clone());
        let old = run(&self.pool, move || Ok(store.export_shard(group)?)).await?;
        let (start, end) = agora_store::keys::shard_range(group);
        let mut rows: Vec<RowOp> = old
            .outbox
            .into_iter()
            .map(|(k, _)| RowOp::remove(RowTable::Outbox, k))
            .collect();
        rows.extend(
            data.entities
                .into_iter()
                .map(|(k, v)| RowOp::put(RowTable::Entities, k, v)),
        );
        rows.extend(data.dedup.into_iter().map(|(k, at)| {
            RowOp::put(
                RowTable::Entities,
                k,
                agora_store::keys::dedup_value(at).to_vec(),
            )
        }));
        rows.extend(
            data.outbox
                .into_iter()
                .map(|(k, v)| RowOp::put(RowTable::Outbox, k, v)),
        );
        Ok(RowWrite {
            remove_ranges: vec![(RowTable::Entities, start, end)],
            rows,
        })
    }
}
