//! The group-commit writer: one OS thread (the storage executor in production) takes every
//! pending change, writes them all in one redb transaction, commits it durably with one
//! fsync, and only then answers. Changes are applied in the order they were submitted, so a
//! later change never lands without an earlier one. This module is the writer's handle
//! (what callers submit and wait for); `thread.rs` is the thread that batches and answers,
//! and `commit.rs` applies one batch in one transaction.

mod commit;
mod thread;

use thread::WriterThread;

use super::cascade::{Cascade, CascadeHold};
use super::record::{DeadLetter, EntityRecord};
use super::replicated::{OutstandingChanges, ShardReplication};
use super::rows::{RowTable, RowWrite};
use super::{Store, StoreError, DEAD_LETTERS, OUTBOX};
use agora_actors::host::EntityState;
use agora_actors::{EntityRef, OutboxMessage};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;
use tokio::sync::{oneshot, watch};

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 8192;
/// Longest a delivered outbox row waits for its delete to ride along with another commit.
const ACK_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);
/// A batch at least this large means the writer is busy: the next one may gather briefly.
const COMMIT_SIBLINGS: usize = 16;
/// The gather under load, unless `AGORA_COMMIT_DELAY_US` says otherwise (0: none).
const COMMIT_DELAY_US: u64 = 500;
/// The longest wait for early deliveries in flight before a commit, unless
/// `AGORA_CASCADE_GATHER_US` says otherwise (0: none).
const CASCADE_GATHER_US: u64 = 300;

/// A wait of the writer thread: microseconds from the environment variable `name`, else
/// `default` (at most 10 ms; 0: none).
fn wait_from_env(name: &str, default: u64) -> Option<std::time::Duration> {
    let us = std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(default)
        .min(10_000);
    (us > 0).then(|| std::time::Duration::from_micros(us))
}

/// Most deferred outbox deletes before they are committed anyway.
const MAX_DEFERRED_ACKS: usize = 50_000;

/// One entity's change: its new record, the message id it consumed, the messages it emits.
pub struct EntityWrite {
    /// The entity's shard.
    pub shard: u32,
    /// The epoch the entity's owner holds.
    pub epoch: u64,
    /// The entity.
    pub entity: EntityRef,
    /// Its storage key.
    pub key: Vec<u8>,
    /// The encoded `EntityRecord`.
    pub record: Vec<u8>,
    /// The message ids consumed, recorded for dedup.
    pub msg_ids: Vec<String>,
    /// Messages to put in the outbox.
    pub outbox: Vec<OutboxMessage>,
    /// Earlier changes this one was derived from (the tickets of the senders of messages it
    /// consumed before they were durable, and the entity's own previous change): if any of
    /// them was refused, this one is refused too.
    pub after: Vec<u64>,
    /// The new state, for commit listeners (projections), when a listener wants this kind.
    pub state_for_listeners: Option<EntityState>,
    /// When the change was made.
    pub now_ms: u64,
    /// Answered once the change is durable (or refused); `None` when nobody waits on it (an
    /// entity answers from commit progress instead).
    pub done: Option<oneshot::Sender<Result<(), StoreError>>>,
    /// Set if the change is refused for a stale epoch (another node owns the shard now), before
    /// the batch's progress is published: the entity's copy of the shard answers nothing more.
    pub fence: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// An operation for the writer.
pub enum WriteOp {
    /// Write an entity's change.
    Entity(Box<EntityWrite>),
    /// Read an entity's record after every earlier write is durable.
    Load {
        /// The entity key.
        key: Vec<u8>,
        /// The answer.
        reply: oneshot::Sender<Result<Option<EntityRecord>, StoreError>>,
    },
    /// Delete delivered outbox rows.
    OutboxAcked(Vec<Vec<u8>>),
    /// Forget applied-message marks still older than `before_ms` (a mark written again since
    /// it was listed is kept).
    ForgetMarks {
        /// The marks' keys.
        keys: Vec<Vec<u8>>,
        /// Only marks recorded before this time go.
        before_ms: u64,
    },
    /// Move an undeliverable outbox row to the dead letters.
    DeadLetter {
        /// Its outbox key.
        key: Vec<u8>,
        /// The dead letter (boxed: it holds a whole message, and every queued operation
        /// would otherwise be its size).
        letter: Box<DeadLetter>,
    },
    /// Forget dead letter `seq` (an operator discarded it); nothing if it is not kept.
    DiscardDeadLetter {
        /// Its sequence number.
        seq: u64,
        /// Answered once durable.
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Write a metadata value.
    PutMeta {
        /// Name.
        name: String,
        /// Value.
        value: Vec<u8>,
        /// Answered once durable.
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Install a part of a shard streamed from its previous owner, to own it under `epoch`:
    /// the first part replaces whatever the shard held here, the others add to it.
    InstallShard {
        /// The part's rows.
        data: Box<super::ShardData>,
        /// The epoch of the new ownership.
        epoch: u64,
        /// Whether this is the stream's first part.
        first: bool,
        /// Answered once durable.
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Write rows as given (a replication group's log, vote and applied entries).
    Rows {
        /// The rows (boxed: queued operations stay small).
        write: Box<RowWrite>,
        /// Answered once durable; `None` when nobody waits (applied entries).
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
    /// A replicated change's group answered (sent by the writer's own proposals).
    GroupAnswered {
        /// The change.
        ticket: u64,
        /// What the group answered.
        outcome: crate::replicated::ProposalOutcome,
    },
    /// Delete a shard handed to another node, and refuse writes under epochs before `epoch`.
    DropShard {
        /// The shard.
        shard: u32,
        /// The epoch of the new owner.
        epoch: u64,
        /// Answered once durable.
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// How far the writer has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitProgress {
    /// Every operation with a ticket up to this one is durable (or was refused).
    pub committed: u64,
    /// A commit failed: the store takes no more writes.
    pub failed: bool,
}

/// Told about every committed entity state of the kinds it asked for.
pub trait CommitListener: Send + Sync + 'static {
    /// Whether this listener wants states of `kind`.
    fn wants(&self, kind: agora_actors::EntityKind) -> bool;
    /// A state was committed.
    fn committed(&self, entity: &EntityRef, state: &EntityState);
}

/// An outbox row of a committed batch, for the relay.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedRow {
    /// The change that emitted it (0 for rows of an installed shard).
    pub ticket: u64,
    /// Its outbox key.
    pub key: Vec<u8>,
    /// The message.
    pub message: OutboxMessage,
    /// False when its receiver took it (delivered early) in the same transaction: the row
    /// was never written, since the message had already taken effect atomically with it.
    pub stored: bool,
}

/// Committed outbox rows, in emission order.
pub type CommittedOutbox = Vec<CommittedRow>;

/// What the writer tells the outbox relay, in ticket order.
pub enum RelayFeed {
    /// Messages to entities, due now, handed to the writer under `ticket` and not yet durable:
    /// the relay may deliver them early to entities of this node (whose own changes get later
    /// tickets, so they can never be durable without the sender's), never elsewhere.
    Submitted {
        /// The sender's change.
        ticket: u64,
        /// Its messages due now to entities.
        messages: Vec<OutboxMessage>,
        /// One hold per message, counting it as in flight until dropped (see `cascade`).
        holds: Vec<CascadeHold>,
    },
    /// Outbox rows made durable (including those handed over early, now with their keys).
    Committed(CommittedOutbox),
}

/// Whether messages to local entities are delivered before their sender's commit
/// (`AGORA_EARLY_DELIVERY`, on unless `false` or `0`).
fn early_delivery_from_env() -> bool {
    !matches!(
        std::env::var("AGORA_EARLY_DELIVERY").as_deref(),
        Ok("false") | Ok("0")
    )
}

/// Most refused tickets remembered (refusals are rare: fencing after a shard moved).
const MAX_REFUSED: usize = 65_536;

/// Why a change was refused here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The shard's copy here may not write it (a stale epoch, or its group refused it before
    /// appending it): it took no effect and may go again, to the shard's current owner.
    NotHere,
    /// It was derived from a change that was refused: it took no effect, and cannot go again
    /// as it was, since what it was derived from is gone.
    Dependency,
    /// Its group did not answer in time: it is refused here, yet may still take effect.
    Unknown,
}

/// Tickets of refused changes, and why, shared by the writer thread (which adds them before
/// it publishes the batch's progress) and everyone who must not answer from them.
#[derive(Default)]
struct RefusedTickets {
    tickets: std::collections::BTreeMap<u64, Refusal>,
}

impl RefusedTickets {
    fn insert(&mut self, ticket: u64, why: Refusal) {
        assert!(ticket > 0, "a refused change has a ticket");
        let first = self.tickets.insert(ticket, why).is_none();
        assert!(first, "change {ticket} refused twice");
        while self.tickets.len() > MAX_REFUSED {
            self.tickets.pop_first();
        }
    }

    fn first_refused(&self, tickets: &[u64]) -> Option<u64> {
        if self.tickets.is_empty() {
            return None;
        }
        tickets
            .iter()
            .copied()
            .find(|t| self.tickets.contains_key(t))
    }
}

struct Submit {
    next_ticket: u64,
    tx: mpsc::UnboundedSender<(u64, WriteOp)>,
    relay: tokio::sync::mpsc::UnboundedSender<RelayFeed>,
    early_delivery: bool,
    /// Entity keys with a change handed over, and the ticket of the latest (pruned of
    /// durable ones as it grows).
    pending_keys: HashMap<Vec<u8>, u64>,
    /// Size after the last pruning: the next one comes at twice that.
    pending_pruned_at: usize,
    /// The ticket of the latest shard install or drop (or a group's snapshot).
    last_shard_op: u64,
}

/// Fewest pending keys before they are pruned.
const MIN_PENDING_PRUNE: usize = 1024;

/// Where the writer runs: the storage executor seam.
#[derive(Clone, Default)]
pub enum StorageExecutor {
    /// Its own OS thread (production): commits never block the async workers.
    #[default]
    Thread,
    /// A task on the current runtime, committing inline (the simulator), waiting `latency()`
    /// before each commit as the disk's time; its gathers (commit delay, cascade) are waited
    /// as a task too, so they run on the simulator's virtual time.
    Inline {
        /// The simulated time one commit takes.
        latency: Arc<dyn Fn() -> std::time::Duration + Send + Sync>,
    },
}

/// The handle through which actors submit changes.
#[derive(Clone)]
pub struct Writer {
    store: Store,
    submit: Arc<Mutex<Submit>>,
    progress: watch::Receiver<CommitProgress>,
    listeners: Arc<Vec<Arc<dyn CommitListener>>>,
    refused: Arc<Mutex<RefusedTickets>>,
    cascade: Arc<Cascade>,
    replication: SharedReplication,
}

/// The node's replication groups, once they exist (set once, read by the writer thread).
type SharedReplication = Arc<OnceLock<Arc<dyn ShardReplication>>>;

impl Writer {
    /// Starts the writer thread. Committed outbox rows go to `relay`.
    pub fn start(
        store: Store,
        relay: tokio::sync::mpsc::UnboundedSender<RelayFeed>,
        listeners: Vec<Arc<dyn CommitListener>>,
    ) -> Result<Self, StoreError> {
        Self::start_on(store, relay, listeners, StorageExecutor::Thread)
    }

    /// Starts the writer on `executor`.
    pub fn start_on(
        store: Store,
        relay: tokio::sync::mpsc::UnboundedSender<RelayFeed>,
        listeners: Vec<Arc<dyn CommitListener>>,
        executor: StorageExecutor,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(CommitProgress::default());
        let listeners = Arc::new(listeners);
        let refused = Arc::new(Mutex::new(RefusedTickets::default()));
        let cascade = Arc::new(Cascade::default());
        let replication: SharedReplication = Arc::new(OnceLock::new());
        let next_outbox = {
            let rtx = store.db().begin_read()?;
            let t = rtx.open_table(OUTBOX)?;
            let mut max = 0;
            for row in t.iter()? {
                let (k, _) = row?;
                if let Some((_, seq)) = super::keys::parse_outbox_key(k.value()) {
                    max = max.max(seq);
                }
            }
            max + 1
        };
        let next_dead = {
            let rtx = store.db().begin_read()?;
            let t = rtx.open_table(DEAD_LETTERS)?;
            let last = t.last()?.map(|(k, _)| k.value());
            last.map_or(1, |k| k + 1)
        };
        let mut thread = WriterThread {
            store: store.clone(),
            rx,
            progress: progress_tx,
            relay: relay.clone(),
            refused: refused.clone(),
            listeners: listeners.clone(),
            next_outbox,
            next_dead,
            epochs: HashMap::new(),
            commit_delay: None,
            cascade: cascade.clone(),
            replication: replication.clone(),
            outstanding: OutstandingChanges::default(),
            max_ticket: 0,
            answers: tx.downgrade(),
            may_block: false,
            last_batch: 0,
            spare: Vec::new(),
        };
        match executor {
            StorageExecutor::Thread => {
                thread.commit_delay = wait_from_env("AGORA_COMMIT_DELAY_US", COMMIT_DELAY_US);
                thread.may_block = true;
                cascade.set_gather(wait_from_env("AGORA_CASCADE_GATHER_US", CASCADE_GATHER_US));
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| StoreError::Redb(format!("cannot start the writer: {e}")))?;
                std::thread::Builder::new()
                    .name("agora-writer".into())
                    .spawn(move || rt.block_on(thread.run(None)))
                    .map_err(|e| {
                        StoreError::Redb(format!("cannot start the writer thread: {e}"))
                    })?;
            }
            StorageExecutor::Inline { latency } => {
                // The same gathers as in production, waited as a task: in the simulator they
                // run on virtual time, deterministically.
                thread.commit_delay = wait_from_env("AGORA_COMMIT_DELAY_US", COMMIT_DELAY_US);
                cascade.set_gather(wait_from_env("AGORA_CASCADE_GATHER_US", CASCADE_GATHER_US));
                tokio::spawn(async move { thread.run(Some(latency)).await });
            }
        }
        Ok(Self {
            store,
            submit: Arc::new(Mutex::new(Submit {
                next_ticket: 1,
                tx,
                relay,
                early_delivery: early_delivery_from_env(),
                pending_keys: HashMap::new(),
                pending_pruned_at: 0,
                last_shard_op: 0,
            })),
            progress,
            listeners,
            refused,
            cascade,
            replication,
        })
    }

    /// Sends the changes of shards `replication` replicates through their groups from now
    /// on. Early delivery stops: a change may take effect on another shard only once its
    /// own is committed by a majority (a receiver's group cannot take back an entry).
    pub fn set_replication(&self, replication: Arc<dyn ShardReplication>) {
        if self.replication.set(replication).is_ok() {
            if let Ok(mut s) = self.submit.lock() {
                s.early_delivery = false;
            }
        }
    }

    /// Whether an entity may answer a caller on this node before its change is durable
    /// (off once changes are replicated).
    pub fn early_answers(&self) -> bool {
        self.submit.lock().is_ok_and(|s| s.early_delivery)
    }

    /// Hands every outbox row of `shard` stored here to the relay, once everything written
    /// before is durable: for a node that starts leading a replicated shard, whose rows its
    /// group wrote while another node led. Returns how many.
    pub async fn adopt_outbox(&self, shard: u32) -> Result<usize, StoreError> {
        self.write_rows(RowWrite::rows(Vec::new())).await?;
        let rows: CommittedOutbox = self
            .store
            .outbox_rows()?
            .into_iter()
            .filter(|(k, _)| super::keys::parse_outbox_key(k).is_some_and(|(s, _)| s == shard))
            .map(|(key, rec)| CommittedRow {
                ticket: 0,
                key,
                message: rec.message,
                stored: true,
            })
            .collect();
        let n = rows.len();
        if n > 0 {
            let s = self.submit.lock().map_err(|_| StoreError::Closed)?;
            s.relay
                .send(RelayFeed::Committed(rows))
                .map_err(|_| StoreError::Closed)?;
        }
        Ok(n)
    }

    /// Submits an operation; returns its ticket (durable once `progress().committed >= ticket`,
    /// unless `was_refused(ticket)`). An entity change's messages due now to entities are
    /// handed to the relay at once (in ticket order), for early delivery on this node.
    pub fn submit(&self, op: WriteOp) -> Result<u64, StoreError> {
        let mut s = self.submit.lock().map_err(|_| StoreError::Closed)?;
        let ticket = s.next_ticket;
        let early = match &op {
            WriteOp::Entity(w) if s.early_delivery => early_messages(w),
            _ => Vec::new(),
        };
        match &op {
            WriteOp::Entity(w) => self.mark_pending(&mut s, w.key.clone(), ticket),
            WriteOp::InstallShard { .. } | WriteOp::DropShard { .. } => s.last_shard_op = ticket,
            // A group's applied entries (or snapshot) written as rows: an entity loaded before
            // they land would miss a committed change, and its next change would overwrite it.
            WriteOp::Rows { write, .. } if !write.remove_ranges.is_empty() => {
                s.last_shard_op = ticket
            }
            WriteOp::Rows { write, .. } => {
                for row in write.rows.iter().filter(|r| r.table == RowTable::Entities) {
                    self.mark_pending(&mut s, row.key.clone(), ticket);
                }
            }
            _ => {}
        }
        // Counted before the writer thread can see the change, so its commit waits for them.
        let holds = early.iter().map(|_| self.cascade.hold()).collect();
        s.tx.send((ticket, op)).map_err(|_| StoreError::Closed)?;
        s.next_ticket += 1;
        if !early.is_empty() {
            // A closed relay (node stopping) only loses the early copy: rows still commit.
            let _ = s.relay.send(RelayFeed::Submitted {
                ticket,
                messages: early,
                holds,
            });
        }
        Ok(ticket)
    }

    /// Records that `key` changes with `ticket` (a load waits for it), forgetting keys whose
    /// changes are durable whenever the record has doubled.
    fn mark_pending(&self, s: &mut Submit, key: Vec<u8>, ticket: u64) {
        s.pending_keys.insert(key, ticket);
        if s.pending_keys.len() >= (2 * s.pending_pruned_at).max(MIN_PENDING_PRUNE) {
            let committed = self.progress.borrow().committed;
            s.pending_keys.retain(|_, t| *t > committed);
            s.pending_pruned_at = s.pending_keys.len();
        }
    }

    /// Sets how long a commit may wait for early deliveries in flight (`None`: not at all);
    /// only a writer on its own thread waits.
    pub fn set_cascade_gather(&self, gather: Option<std::time::Duration>) {
        self.cascade.set_gather(gather);
    }

    /// Whether the writer is waiting now for early deliveries before a commit.
    pub fn gathering(&self) -> bool {
        self.cascade.waiters() > 0
    }

    /// Keeps the next commit waiting (briefly) until the returned hold is dropped: for a
    /// change about to be handed over that was derived from a pending one.
    pub fn hold_commit(&self) -> CascadeHold {
        self.cascade.hold()
    }

    /// Whether the change with `ticket` was refused (stale epoch, or derived from a refused
    /// change). Set before the batch's progress is published.
    pub fn was_refused(&self, ticket: u64) -> bool {
        self.refused
            .lock()
            .is_ok_and(|r| r.first_refused(&[ticket]).is_some())
    }

    /// Why the change with `ticket` was refused, if it was (and is still remembered).
    pub fn refusal(&self, ticket: u64) -> Option<Refusal> {
        self.refused
            .lock()
            .ok()
            .and_then(|r| r.tickets.get(&ticket).copied())
    }

    /// Whether `ticket` is durable and was not refused.
    pub fn is_durable(&self, ticket: u64) -> bool {
        self.progress.borrow().committed >= ticket && !self.was_refused(ticket)
    }

    /// The store this writer writes to.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// A receiver of commit progress.
    pub fn progress(&self) -> watch::Receiver<CommitProgress> {
        self.progress.clone()
    }

    /// Whether some listener wants committed states of `kind`.
    pub fn listened(&self, kind: agora_actors::EntityKind) -> bool {
        self.listeners.iter().any(|l| l.wants(kind))
    }

    /// Loads an entity record after every earlier write is durable: read at once when no
    /// change of the key (and no shard install or drop) is still on its way to disk, queued
    /// behind them otherwise.
    pub async fn load(&self, key: Vec<u8>) -> Result<Option<EntityRecord>, StoreError> {
        let waits_for = {
            let s = self.submit.lock().map_err(|_| StoreError::Closed)?;
            let committed = self.progress.borrow().committed;
            let latest = s
                .last_shard_op
                .max(s.pending_keys.get(&key).copied().unwrap_or(0));
            (latest > committed).then_some(latest)
        };
        let Some(latest) = waits_for else {
            metrics::counter!("agora_store_direct_loads_total").increment(1);
            return self.store.entity(&key);
        };
        if self.replication.get().is_some() {
            // A change handed to a group is written when its group applies it: read once
            // the writer's progress passes it.
            if !self.durable(latest).await {
                return Err(StoreError::Closed);
            }
            return self.store.entity(&key);
        }
        let (reply, rx) = oneshot::channel();
        self.submit(WriteOp::Load { key, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Writes a metadata value durably.
    pub async fn put_meta(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.submit(WriteOp::PutMeta {
            name: name.to_string(),
            value,
            done,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Forgets dead letter `seq` durably (nothing if it is not kept).
    pub async fn discard_dead_letter(&self, seq: u64) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.submit(WriteOp::DiscardDeadLetter { seq, done })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Writes `write`'s rows as given and waits until they are durable.
    pub async fn write_rows(&self, write: RowWrite) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.submit(WriteOp::Rows {
            write: Box::new(write),
            done: Some(done),
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Hands `write`'s rows to the writer without waiting; later operations commit with or
    /// after them. Returns the ticket.
    pub fn submit_rows(&self, write: RowWrite) -> Result<u64, StoreError> {
        self.submit(WriteOp::Rows {
            write: Box::new(write),
            done: None,
        })
    }

    /// Waits until the operation with `ticket` is durable; false if the store failed first.
    pub async fn durable(&self, ticket: u64) -> bool {
        wait_durable(self.progress.clone(), ticket).await
    }
}

/// The messages of `w` an entity of this node may take before `w` is durable: those to
/// entities, due now.
fn early_messages(w: &EntityWrite) -> Vec<OutboxMessage> {
    w.outbox
        .iter()
        .filter(|m| early_candidate(m, w.now_ms))
        .cloned()
        .collect()
}

/// Whether `m`, emitted by a change made at `now_ms`, may be delivered early: to an entity,
/// due now.
fn early_candidate(m: &OutboxMessage, now_ms: u64) -> bool {
    matches!(m.to, agora_actors::Destination::Entity(_)) && m.deliver_at_ms <= now_ms
}

/// Waits until `ticket` is durable; false if the store failed first.
pub async fn wait_durable(mut progress: watch::Receiver<CommitProgress>, ticket: u64) -> bool {
    match progress
        .wait_for(|p| p.failed || p.committed >= ticket)
        .await
    {
        Ok(p) => !p.failed,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every queued operation is as large as its largest variant, and a batch buffer holds
    /// thousands of them under load: large payloads stay boxed.
    #[test]
    fn a_queued_write_operation_stays_small() {
        let size = std::mem::size_of::<WriteOp>();
        assert!(
            size <= 64,
            "WriteOp is {size} bytes; box the variant that grew"
        );
    }
}
