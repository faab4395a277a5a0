//! One commit of the writer: a batch's operations applied in one redb transaction, in the
//! order they were submitted, then committed with one fsync (none when the batch only
//! answers or reads).

use super::thread::{BatchResult, Done, WriterThread};
use super::{early_candidate, CommittedOutbox, CommittedRow, EntityWrite, Refusal, WriteOp};
use crate::keys::{dedup_key, dedup_value, outbox_key};
use crate::record::{self, DeadLetter, EntityRecord, OutboxRecord, FORMAT_VERSION};
use crate::replicated;
use crate::rows::{RowOp, RowTable, RowTables, RowWrite};
use crate::{
    ShardData, StoreError, DEAD_LETTERS, ENTITIES, GROUP_LOG, GROUP_META, META, OUTBOX,
    SHARD_EPOCHS,
};
use agora_actors::EntityRef;
use redb::{Durability, ReadableTable};
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;

/// A byte-keyed table of the store.
type BytesTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// The tables of one commit, and what its operations so far have done to them.
struct Batch<'t> {
    entities: BytesTable<'t>,
    outbox: BytesTable<'t>,
    dead: redb::Table<'t, u64, &'static [u8]>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
    epochs: redb::Table<'t, u32, u64>,
    group_log: BytesTable<'t>,
    group_meta: BytesTable<'t>,
    /// Entity keys written so far in this batch: a load of one waits for the commit.
    written: HashSet<Vec<u8>>,
    /// Whether a whole shard was installed, dropped or replaced: every load waits.
    shards_rewritten: bool,
    staged: StagedOutbox,
}

impl<'t> Batch<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            entities: tx.open_table(ENTITIES)?,
            outbox: tx.open_table(OUTBOX)?,
            dead: tx.open_table(DEAD_LETTERS)?,
            meta: tx.open_table(META)?,
            epochs: tx.open_table(SHARD_EPOCHS)?,
            group_log: tx.open_table(GROUP_LOG)?,
            group_meta: tx.open_table(GROUP_META)?,
            written: HashSet::new(),
            shards_rewritten: false,
            staged: StagedOutbox::default(),
        })
    }
}

/// A failed commit: the error, and every waiter of the batch to tell.
type CommitFailure = (StoreError, Vec<Done>);

impl WriterThread {
    /// Applies and commits `batch` (emptied); on failure, every waiter is returned.
    pub(super) fn commit(
        &mut self,
        batch: &mut Vec<(u64, WriteOp)>,
    ) -> Result<BatchResult, CommitFailure> {
        let mut r = BatchResult::default();
        let mut ops = batch.drain(..);
        let result = (|| -> Result<redb::WriteTransaction, StoreError> {
            let mut tx = self.store.db().begin_write()?;
            tx.set_durability(Durability::Immediate)
                .map_err(|e| StoreError::Redb(e.to_string()))?;
            let mut b = Batch::open(&tx)?;
            for (ticket, op) in ops.by_ref() {
                if !matches!(op, WriteOp::Entity(_) | WriteOp::Load { .. }) {
                    // Whole-shard operations scan the outbox table: it must be complete.
                    b.staged.flush(&mut b.outbox, &mut r.outbox)?;
                }
                self.apply_op(&mut b, &mut r, ticket, op)?;
            }
            b.staged.flush(&mut b.outbox, &mut r.outbox)?;
            drop(b);
            Ok(tx)
        })();
        match result {
            Ok(tx) => {
                if r.wrote {
                    if let Err(e) = tx.commit() {
                        return Err(failed(e.into(), r, ops));
                    }
                } else {
                    tx.abort().map_err(|e| (StoreError::from(e), Vec::new()))?;
                }
                Ok(r)
            }
            Err(e) => Err(failed(e, r, ops)),
        }
    }

    fn apply_op(
        &mut self,
        b: &mut Batch<'_>,
        r: &mut BatchResult,
        ticket: u64,
        op: WriteOp,
    ) -> Result<(), StoreError> {
        match op {
            WriteOp::Entity(w) => match self.replicating(w.shard) {
                Some(group) => self.hand_to_group(ticket, w, group.as_ref(), r)?,
                None => self.write_entity(b, r, ticket, *w)?,
            },
            WriteOp::Load { key, reply } => load(b, r, key, reply),
            WriteOp::GroupAnswered { ticket, outcome } => {
                self.group_answered(ticket, outcome, r)?
            }
            WriteOp::OutboxAcked(keys) => {
                let keys = self.replicate_outbox_removals(keys);
                for k in &keys {
                    b.outbox.remove(k.as_slice())?;
                }
                r.wrote |= !keys.is_empty();
            }
            WriteOp::ForgetMarks { keys, before_ms } => self.forget_marks(b, r, keys, before_ms)?,
            WriteOp::DeadLetter { key, letter } => self.dead_letter(b, r, key, &letter)?,
            WriteOp::DiscardDeadLetter { seq, done } => {
                r.wrote |= b.dead.remove(seq)?.is_some();
                r.done.push(Done::Unit(done));
            }
            WriteOp::PutMeta { name, value, done } => {
                b.meta.insert(name.as_str(), value.as_slice())?;
                r.done.push(Done::Unit(done));
                r.wrote = true;
            }
            WriteOp::InstallShard {
                data,
                epoch,
                first,
                done,
            } => self.install_shard(b, r, &data, (epoch, first), done)?,
            WriteOp::Rows { write, done } => {
                self.write_rows(b, &write)?;
                r.done.extend(done.map(Done::Unit));
                r.wrote = true;
            }
            WriteOp::DropShard { shard, epoch, done } => {
                b.shards_rewritten = true;
                clear_shard(&mut b.entities, shard)?;
                clear_shard_outbox(&mut b.outbox, shard)?;
                let current = self.epoch_of(&b.epochs, shard)?;
                let fenced = current.max(epoch);
                b.epochs.insert(shard, fenced)?;
                self.epochs.insert(shard, fenced);
                r.done.push(Done::Unit(done));
                r.wrote = true;
            }
        }
        Ok(())
    }

    /// Why `w` must not be written, if it must not: a stale epoch (the shard moved on) or
    /// an earlier change it depends on that was refused.
    fn refusal(
        &mut self,
        b: &Batch<'_>,
        w: &EntityWrite,
    ) -> Result<Option<StoreError>, StoreError> {
        let current = self.epoch_of(&b.epochs, w.shard)?;
        if w.epoch < current
            && !agora_seams::planted::is_planted(agora_seams::planted::Bug::StaleEpochWriter)
        {
            metrics::counter!("agora_store_fenced_writes_total").increment(1);
            return Ok(Some(StoreError::StaleEpoch {
                shard: w.shard,
                got: w.epoch,
                current,
            }));
        }
        Ok(self
            .refused
            .lock()
            .map_err(|_| StoreError::Closed)?
            .first_refused(&w.after)
            .map(|t| StoreError::DependencyRefused { ticket: t }))
    }

    /// Writes an entity's change of an unreplicated shard: its record, the marks of the
    /// messages it took, and its outbox rows (staged).
    fn write_entity(
        &mut self,
        b: &mut Batch<'_>,
        r: &mut BatchResult,
        ticket: u64,
        w: EntityWrite,
    ) -> Result<(), StoreError> {
        if let Some(e) = self.refusal(b, &w)? {
            // Recorded before the batch's progress is published, so no one answers from it.
            let why = match e {
                StoreError::StaleEpoch { .. } => Refusal::NotHere,
                _ => Refusal::Dependency,
            };
            self.refused
                .lock()
                .map_err(|_| StoreError::Closed)?
                .insert(ticket, why);
            if let (Some(fence), StoreError::StaleEpoch { .. }) = (&w.fence, &e) {
                tracing::warn!(error = %e, "write refused; fencing shard");
                fence.store(true, std::sync::atomic::Ordering::Release);
            }
            if let Some(done) = w.done {
                r.refused.push((done, e));
            }
            return Ok(());
        }
        if w.epoch > self.epoch_of(&b.epochs, w.shard)? {
            b.epochs.insert(w.shard, w.epoch)?;
            self.epochs.insert(w.shard, w.epoch);
        }
        b.entities.insert(w.key.as_slice(), w.record.as_slice())?;
        b.written.insert(w.key.clone());
        for id in &w.msg_ids {
            b.entities.insert(
                dedup_key(&w.key, id).as_slice(),
                dedup_value(w.now_ms).as_slice(),
            )?;
            b.staged.consumed(id, &w.entity);
        }
        for m in w.outbox {
            let k = outbox_key(w.shard, self.next_outbox);
            self.next_outbox += 1;
            let row = record::encode(&OutboxRecord {
                format: FORMAT_VERSION,
                epoch: w.epoch,
                message: m.clone(),
            })?;
            let early = early_candidate(&m, w.now_ms);
            let committed = CommittedRow {
                ticket,
                key: k.to_vec(),
                message: m,
                stored: true,
            };
            b.staged.push(committed, row, early);
        }
        if let Some(s) = w.state_for_listeners {
            r.states.push((w.entity, s));
        }
        if let Some(done) = w.done {
            r.done.push(Done::Unit(done));
        }
        r.wrote = true;
        Ok(())
    }

    /// Forgets the applied-message marks among `keys` still older than `before_ms`; those
    /// of replicated shards go through their groups.
    fn forget_marks(
        &mut self,
        b: &mut Batch<'_>,
        r: &mut BatchResult,
        keys: Vec<Vec<u8>>,
        before_ms: u64,
    ) -> Result<(), StoreError> {
        let mut forgotten = 0u64;
        let mut replicated: Vec<RowOp> = Vec::new();
        for k in keys {
            let old = b
                .entities
                .get(k.as_slice())?
                .is_some_and(|v| crate::keys::parse_dedup_value(v.value()) < before_ms);
            if !old || !crate::keys::is_dedup_key(&k) {
                continue;
            }
            forgotten += 1;
            match replicated::entity_key_shard(&k) {
                Some(shard) if self.replicating(shard).is_some() => {
                    replicated.push(RowOp::remove(RowTable::Entities, k))
                }
                _ => drop(b.entities.remove(k.as_slice())?),
            }
        }
        self.propose_removals(replicated);
        metrics::counter!("agora_store_marks_forgotten_total").increment(forgotten);
        r.wrote |= forgotten > 0;
        Ok(())
    }

    /// Moves an undeliverable outbox row to the dead letters.
    fn dead_letter(
        &mut self,
        b: &mut Batch<'_>,
        r: &mut BatchResult,
        key: Vec<u8>,
        letter: &DeadLetter,
    ) -> Result<(), StoreError> {
        for k in self.replicate_outbox_removals(vec![key]) {
            b.outbox.remove(k.as_slice())?;
        }
        b.dead
            .insert(self.next_dead, record::encode(letter)?.as_slice())?;
        self.next_dead += 1;
        r.wrote = true;
        Ok(())
    }

    /// Installs a part of a shard streamed from its previous owner, to own it under `epoch`
    /// (`first`: the part that replaces whatever the shard held here).
    fn install_shard(
        &mut self,
        b: &mut Batch<'_>,
        r: &mut BatchResult,
        data: &ShardData,
        (epoch, first): (u64, bool),
        done: oneshot::Sender<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        b.shards_rewritten = true;
        let current = self.epoch_of(&b.epochs, data.shard)?;
        if epoch < current || (!first && epoch != current) {
            // A late copy of a handoff that was aborted and discarded, or a later part whose
            // first part was not installed.
            let stale = StoreError::StaleEpoch {
                shard: data.shard,
                got: epoch,
                current,
            };
            r.refused.push((done, stale));
            return Ok(());
        }
        // Replace, never merge: rows left by an earlier, failed move of this shard must not
        // survive. Later parts add to the first.
        if first {
            clear_shard(&mut b.entities, data.shard)?;
            clear_shard_outbox(&mut b.outbox, data.shard)?;
        }
        for (k, v) in &data.entities {
            b.entities.insert(k.as_slice(), v.as_slice())?;
            if let (Some((_, entity)), Ok(rec)) = (
                crate::keys::parse_entity_key(k),
                record::decode::<EntityRecord>(v),
            ) {
                if self.listeners.iter().any(|l| l.wants(entity.kind)) {
                    r.states.push((entity, rec.state));
                }
            }
        }
        for (k, v) in &data.outbox {
            // Rows keep the previous owner's sequence numbers: ours continue above them, so a
            // new row never overwrites one.
            if let Some((_, seq)) = crate::keys::parse_outbox_key(k) {
                self.next_outbox = self.next_outbox.max(seq + 1);
            }
            b.outbox.insert(k.as_slice(), v.as_slice())?;
            r.outbox.push(CommittedRow {
                ticket: 0,
                key: k.clone(),
                message: record::decode::<OutboxRecord>(v)?.message,
                stored: true,
            });
        }
        for (k, at) in &data.dedup {
            b.entities
                .insert(k.as_slice(), dedup_value(*at).as_slice())?;
        }
        b.epochs.insert(data.shard, epoch)?;
        self.epochs.insert(data.shard, epoch);
        r.done.push(Done::Unit(done));
        r.wrote = true;
        Ok(())
    }

    /// Writes rows as given (a group's log, vote and applied entries).
    fn write_rows(&mut self, b: &mut Batch<'_>, write: &RowWrite) -> Result<(), StoreError> {
        // Outbox rows a group applies carry the sequence numbers of the node that led it:
        // ours continue above them, so a row this node writes once it leads never takes
        // (and an ack never deletes) another message's key.
        for row in write
            .rows
            .iter()
            .filter(|r| r.table == RowTable::Outbox && r.value.is_some())
        {
            if let Some((_, seq)) = crate::keys::parse_outbox_key(&row.key) {
                self.next_outbox = self.next_outbox.max(seq + 1);
            }
        }
        let mut tables = RowTables {
            entities: &mut b.entities,
            outbox: &mut b.outbox,
            group_log: &mut b.group_log,
            group_meta: &mut b.group_meta,
        };
        b.shards_rewritten |= tables.apply(write, &mut b.written)?;
        Ok(())
    }
}

/// Reads an entity's record for a load: answered at once when no change of this batch
/// touches it, else once the batch is durable.
fn load(
    b: &Batch<'_>,
    r: &mut BatchResult,
    key: Vec<u8>,
    reply: oneshot::Sender<Result<Option<EntityRecord>, StoreError>>,
) {
    let v = match b.entities.get(key.as_slice()) {
        Ok(Some(v)) => record::decode(v.value()).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(StoreError::from(e)),
    };
    if b.shards_rewritten || b.written.contains(key.as_slice()) {
        // It reads a change of this batch: answered once durable.
        r.done.push(Done::Load(reply, v));
    } else {
        // Every earlier change of this key is in an earlier batch, already durable: no need
        // to wait for this batch's fsync.
        let _ = reply.send(v);
    }
}

/// Every waiter of a failed batch: those answered so far and those of the operations not
/// yet applied.
fn failed(
    e: StoreError,
    r: BatchResult,
    rest: std::vec::Drain<'_, (u64, WriteOp)>,
) -> CommitFailure {
    let mut pending = r.done;
    pending.extend(r.refused.into_iter().map(|(tx, _)| Done::Unit(tx)));
    for (_, op) in rest {
        match op {
            WriteOp::Entity(w) => pending.extend(w.done.map(Done::Unit)),
            WriteOp::Rows { done, .. } => pending.extend(done.map(Done::Unit)),
            WriteOp::PutMeta { done, .. }
            | WriteOp::DiscardDeadLetter { done, .. }
            | WriteOp::InstallShard { done, .. }
            | WriteOp::DropShard { done, .. } => pending.push(Done::Unit(done)),
            WriteOp::Load { reply, .. } => pending.push(Done::Load(reply, Err(StoreError::Closed))),
            _ => {}
        }
    }
    (e, pending)
}

/// The outbox rows of a batch being built, written at the end (or before an operation that
/// reads the outbox table): a row whose receiver took its message (delivered early) later in
/// the same transaction is never written, since the message took effect atomically with it.
/// That saves an insert now and a delete later for most saga hops under load.
#[derive(Default)]
struct StagedOutbox {
    rows: Vec<(CommittedRow, Vec<u8>)>,
    /// Early-deliverable rows not yet taken, by message id: index in `rows`.
    open: HashMap<String, usize>,
}

impl StagedOutbox {
    fn push(&mut self, row: CommittedRow, encoded: Vec<u8>, early: bool) {
        if early {
            self.open.insert(row.message.id.clone(), self.rows.len());
        }
        self.rows.push((row, encoded));
    }

    /// `entity`'s change in this batch records `msg_id` as taken.
    fn consumed(&mut self, msg_id: &str, entity: &EntityRef) {
        let Some(&i) = self.open.get(msg_id) else {
            return;
        };
        let Some((row, _)) = self.rows.get_mut(i) else {
            return;
        };
        if matches!(&row.message.to, agora_actors::Destination::Entity(to) if to == entity) {
            row.stored = false;
            self.open.remove(msg_id);
            metrics::counter!("agora_outbox_rows_elided_total").increment(1);
        }
    }

    /// Writes the rows still needed; every row goes to `committed` for the relay.
    fn flush(
        &mut self,
        table: &mut redb::Table<&'static [u8], &'static [u8]>,
        committed: &mut CommittedOutbox,
    ) -> Result<(), StoreError> {
        self.open.clear();
        for (row, encoded) in self.rows.drain(..) {
            if row.stored {
                table.insert(row.key.as_slice(), encoded.as_slice())?;
            }
            committed.push(row);
        }
        Ok(())
    }
}

/// Deletes every outbox row of `shard` (the shard is the key's suffix).
fn clear_shard_outbox(
    table: &mut redb::Table<&'static [u8], &'static [u8]>,
    shard: u32,
) -> Result<(), StoreError> {
    let mut doomed = Vec::new();
    for row in table.iter()? {
        let (k, _) = row?;
        if crate::keys::parse_outbox_key(k.value()).is_some_and(|(s, _)| s == shard) {
            doomed.push(k.value().to_vec());
        }
    }
    for k in doomed {
        table.remove(k.as_slice())?;
    }
    Ok(())
}

/// Deletes every row of `shard` from a shard-prefixed table.
fn clear_shard<V: redb::Value + 'static>(
    table: &mut redb::Table<&'static [u8], V>,
    shard: u32,
) -> Result<(), StoreError> {
    let (start, end) = crate::keys::shard_range(shard);
    let mut doomed = Vec::new();
    for row in table.range(start.as_slice()..)? {
        let (k, _) = row?;
        if end.as_deref().is_some_and(|e| k.value() >= e) {
            break;
        }
        doomed.push(k.value().to_vec());
    }
    for k in doomed {
        table.remove(k.as_slice())?;
    }
    Ok(())
}
