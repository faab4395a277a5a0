//! The writer's thread: it takes every pending operation as one batch, commits it
//! (`commit.rs`), then publishes its progress and answers the batch's waiters. Changes of
//! replicated shards go to their groups instead, and count as durable once committed there.

use super::{
    CommitListener, CommitProgress, CommittedOutbox, EntityWrite, Refusal, RefusedTickets,
    RelayFeed, SharedReplication, WriteOp, ACK_FLUSH, COMMIT_SIBLINGS, MAX_BATCH,
    MAX_DEFERRED_ACKS,
};
use crate::cascade::Cascade;
use crate::record::EntityRecord;
use crate::replicated::{self, Outstanding, OutstandingChanges, ProposalOutcome, ShardReplication};
use crate::rows::RowOp;
use crate::{Store, StoreError};
use agora_actors::host::EntityState;
use agora_actors::EntityRef;
use redb::ReadableTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

pub(super) enum Done {
    Unit(oneshot::Sender<Result<(), StoreError>>),
    Load(
        oneshot::Sender<Result<Option<EntityRecord>, StoreError>>,
        Result<Option<EntityRecord>, StoreError>,
    ),
}

pub(super) struct WriterThread {
    pub(super) store: Store,
    pub(super) rx: mpsc::UnboundedReceiver<(u64, WriteOp)>,
    pub(super) progress: watch::Sender<CommitProgress>,
    pub(super) relay: tokio::sync::mpsc::UnboundedSender<RelayFeed>,
    pub(super) refused: Arc<Mutex<RefusedTickets>>,
    pub(super) listeners: Arc<Vec<Arc<dyn CommitListener>>>,
    pub(super) next_outbox: u64,
    pub(super) next_dead: u64,
    pub(super) epochs: HashMap<u32, u64>,
    /// The gather before a commit under load.
    pub(super) commit_delay: Option<std::time::Duration>,
    /// Early deliveries in flight, and how long a commit may wait for them.
    pub(super) cascade: Arc<Cascade>,
    /// The node's replication groups, once set.
    pub(super) replication: SharedReplication,
    /// Changes handed to their groups and not yet committed.
    pub(super) outstanding: OutstandingChanges,
    /// The highest ticket committed here or handed to a group.
    pub(super) max_ticket: u64,
    /// Where groups' answers come back (weak: the writer stops when every handle is gone).
    pub(super) answers: mpsc::WeakUnboundedSender<(u64, WriteOp)>,
    /// Whether the writer may block its thread (its own OS thread) to gather; otherwise it
    /// waits as a task (the simulator's, on virtual time).
    pub(super) may_block: bool,
    /// Operations in the last batch.
    pub(super) last_batch: usize,
    /// The last batch's buffer, emptied, for the next one: a fresh buffer per commit made
    /// the allocator fault in new pages on this thread under load.
    pub(super) spare: Vec<(u64, WriteOp)>,
}

#[derive(Default)]
pub(super) struct BatchResult {
    pub(super) done: Vec<Done>,
    pub(super) refused: Vec<(oneshot::Sender<Result<(), StoreError>>, StoreError)>,
    pub(super) outbox: CommittedOutbox,
    pub(super) states: Vec<(EntityRef, EntityState)>,
    pub(super) wrote: bool,
}

impl WriterThread {
    /// Moves every pending operation into `batch`, up to `MAX_BATCH`.
    fn drain_into(&mut self, batch: &mut Vec<(u64, WriteOp)>) {
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
    }

    /// Takes the next batch: everything pending, up to `MAX_BATCH`. Deleting delivered outbox
    /// rows needs no fsync of its own (a lost delete only means a deduplicated redelivery),
    /// so acks ride along with the next batch that commits anyway, or go after `ACK_FLUSH`.
    async fn next_batch(
        &mut self,
        deferred_acks: &mut Vec<Vec<u8>>,
    ) -> Option<Vec<(u64, WriteOp)>> {
        let first = if deferred_acks.is_empty() {
            self.rx.recv().await?
        } else {
            match tokio::time::timeout(ACK_FLUSH, self.rx.recv()).await {
                Ok(Some(op)) => op,
                Err(_elapsed) => {
                    return Some(vec![(
                        0,
                        WriteOp::OutboxAcked(std::mem::take(deferred_acks)),
                    )])
                }
                Ok(None) => return None,
            }
        };
        let taken = (Instant::now(), tokio::time::Instant::now());
        let mut batch = std::mem::take(&mut self.spare);
        batch.push(first);
        self.drain_into(&mut batch);
        let mut gathered = false;
        if let Some(gather) = self.cascade.gather() {
            if self.cascade.in_flight() > 0 {
                // Early deliveries of changes in this batch (or the last) are about to hand
                // over their receivers' changes: let them share this fsync.
                gathered = true;
                let settled = if self.may_block {
                    self.cascade.wait_settled(taken.0 + gather)
                } else {
                    self.cascade.settled(taken.1 + gather).await
                };
                if !settled {
                    metrics::counter!("agora_store_cascade_gather_timeouts_total").increment(1);
                }
                metrics::counter!("agora_store_cascade_gathers_total").increment(1);
                self.drain_into(&mut batch);
            }
        }
        if let (Some(delay), false) = (self.commit_delay, gathered) {
            // Under load (the last batch was large) a short gather lets the writers that are
            // about to submit join this fsync instead of paying for the next one; at light
            // load (small batches) nothing waits.
            if self.last_batch >= COMMIT_SIBLINGS && batch.len() < self.last_batch {
                if self.may_block {
                    std::thread::sleep(delay);
                } else {
                    tokio::time::sleep(delay).await;
                }
                self.drain_into(&mut batch);
            }
        }
        self.last_batch = batch.len();
        let mut needs_commit = false;
        batch.retain_mut(|(_, op)| match op {
            WriteOp::OutboxAcked(keys) => {
                deferred_acks.append(keys);
                false
            }
            op => {
                needs_commit |= !matches!(op, WriteOp::Load { .. });
                true
            }
        });
        if needs_commit || deferred_acks.len() >= MAX_DEFERRED_ACKS {
            batch.push((0, WriteOp::OutboxAcked(std::mem::take(deferred_acks))));
        }
        Some(batch)
    }

    pub(super) async fn run(
        mut self,
        latency: Option<Arc<dyn Fn() -> std::time::Duration + Send + Sync>>,
    ) {
        let mut deferred_acks = Vec::new();
        while let Some(mut batch) = self.next_batch(&mut deferred_acks).await {
            if batch.is_empty() {
                self.spare = batch;
                continue;
            }
            let max_ticket = batch.iter().map(|(t, _)| *t).max().unwrap_or(0);
            let size = batch.len();
            let started = Instant::now();
            if agora_actors::buggify!(0.01) {
                // Fault point: a commit stalls (a slow fsync).
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            if let Some(latency) = &latency {
                // The disk's time passes before the batch is durable (a crash meanwhile
                // loses it).
                tokio::time::sleep(latency()).await;
            }
            let committed = self.commit(&mut batch);
            self.spare = batch;
            match committed {
                Ok(r) => {
                    if r.wrote {
                        metrics::counter!("agora_store_commits_total").increment(1);
                        metrics::histogram!("agora_store_commit_seconds")
                            .record(started.elapsed().as_secs_f64());
                        metrics::histogram!("agora_store_batch_ops").record(size as f64);
                    }
                    self.finish(r, max_ticket);
                }
                Err((e, pending)) => {
                    tracing::error!(error = %e, "commit failed; the store takes no more writes");
                    metrics::counter!("agora_store_commit_failures_total").increment(1);
                    for d in pending {
                        match d {
                            Done::Unit(tx) => {
                                let _ = tx.send(Err(e.clone()));
                            }
                            Done::Load(tx, _) => {
                                let _ = tx.send(Err(e.clone()));
                            }
                        }
                    }
                    self.progress.send_modify(|p| p.failed = true);
                    return;
                }
            }
        }
    }

    pub(super) fn finish(&mut self, r: BatchResult, max_ticket: u64) {
        // The batch is durable: say so before any reply, so a caller holding a reply always
        // sees its ticket committed.
        self.max_ticket = self.max_ticket.max(max_ticket);
        let watermark = self.outstanding.watermark(self.max_ticket);
        self.progress
            .send_modify(|p| p.committed = p.committed.max(watermark));
        metrics::gauge!("agora_replication_outstanding_changes").set(self.outstanding.len() as f64);
        for d in r.done {
            match d {
                Done::Unit(tx) => {
                    let _ = tx.send(Ok(()));
                }
                Done::Load(tx, v) => {
                    let _ = tx.send(v);
                }
            }
        }
        for (tx, e) in r.refused {
            let _ = tx.send(Err(e));
        }
        for (entity, state) in &r.states {
            for l in self.listeners.iter() {
                if l.wants(entity.kind) {
                    l.committed(entity, state);
                }
            }
        }
        if !r.outbox.is_empty() {
            let _ = self.relay.send(RelayFeed::Committed(r.outbox));
        }
    }

    /// The node's replication groups, if they replicate `shard`.
    pub(super) fn replicating(&self, shard: u32) -> Option<Arc<dyn ShardReplication>> {
        self.replication
            .get()
            .filter(|r| r.replicates(shard))
            .cloned()
    }

    /// Hands an entity's change to its shard's group instead of the local tables; its
    /// ticket stays outstanding until the group answers.
    pub(super) fn hand_to_group(
        &mut self,
        ticket: u64,
        w: Box<EntityWrite>,
        group: &dyn ShardReplication,
        r: &mut BatchResult,
    ) -> Result<(), StoreError> {
        let refused_dependency = self
            .refused
            .lock()
            .map_err(|_| StoreError::Closed)?
            .first_refused(&w.after);
        if let Some(t) = refused_dependency {
            self.refused
                .lock()
                .map_err(|_| StoreError::Closed)?
                .insert(ticket, Refusal::Dependency);
            if let Some(done) = w.done {
                r.refused
                    .push((done, StoreError::DependencyRefused { ticket: t }));
            }
            return Ok(());
        }
        let (rows, outbox) = replicated::entity_rows(ticket, &w, &mut self.next_outbox)?;
        let EntityWrite {
            shard,
            entity,
            state_for_listeners,
            done,
            fence,
            ..
        } = *w;
        self.outstanding.insert(
            ticket,
            Outstanding {
                outbox,
                state: state_for_listeners.map(|s| (entity, s)),
                done,
                fence,
            },
        );
        let answers = self.answers.clone();
        group.propose(
            shard,
            rows,
            Box::new(move |outcome| {
                if let Some(tx) = answers.upgrade() {
                    let _ = tx.send((0, WriteOp::GroupAnswered { ticket, outcome }));
                }
            }),
        );
        metrics::counter!("agora_replication_changes_proposed_total").increment(1);
        Ok(())
    }

    /// A group answered for an outstanding change: committed, it counts as durable with
    /// this batch; refused (or of unknown outcome), it is recorded as refused before the
    /// batch's progress.
    pub(super) fn group_answered(
        &mut self,
        ticket: u64,
        outcome: ProposalOutcome,
        r: &mut BatchResult,
    ) -> Result<(), StoreError> {
        let change = self.outstanding.take(ticket);
        assert!(
            change.is_some(),
            "a group answered for change {ticket}, which is not outstanding"
        );
        let Some(change) = change else {
            return Ok(());
        };
        if outcome.committed() {
            r.outbox.extend(change.outbox);
            r.states.extend(change.state);
            r.done.extend(change.done.map(Done::Unit));
        } else {
            let why = match outcome {
                ProposalOutcome::Unknown => Refusal::Unknown,
                _ => Refusal::NotHere,
            };
            self.refused
                .lock()
                .map_err(|_| StoreError::Closed)?
                .insert(ticket, why);
            metrics::counter!("agora_replication_changes_refused_total").increment(1);
            change.refuse();
        }
        Ok(())
    }

    /// Proposes the removal of outbox rows of replicated shards to their groups; returns the
    /// keys to remove here.
    pub(super) fn replicate_outbox_removals(&self, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let Some(group) = self.replication.get() else {
            return keys;
        };
        let (replicated, local) = replicated::split_outbox_keys(keys, group.as_ref());
        for (shard, rows) in replicated {
            replicated::remove_delivered(group.clone(), shard, rows);
        }
        local
    }

    /// Proposes removals of rows of the entities table to their shards' groups.
    pub(super) fn propose_removals(&self, rows: Vec<RowOp>) {
        let Some(group) = self.replication.get() else {
            return;
        };
        let mut by_shard: std::collections::BTreeMap<u32, Vec<RowOp>> = Default::default();
        for row in rows {
            if let Some(shard) = replicated::entity_key_shard(&row.key) {
                by_shard.entry(shard).or_default().push(row);
            }
        }
        for (shard, rows) in by_shard {
            group.propose(shard, rows, Box::new(|_| {}));
        }
    }

    pub(super) fn epoch_of(
        &mut self,
        t: &redb::Table<u32, u64>,
        shard: u32,
    ) -> Result<u64, StoreError> {
        if let Some(e) = self.epochs.get(&shard) {
            return Ok(*e);
        }
        let e = t.get(shard)?.map_or(0, |v| v.value());
        self.epochs.insert(shard, e);
        Ok(e)
    }
}
