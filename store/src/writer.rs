//! The group-commit writer: one OS thread (the storage executor in production) takes every
//! pending change, writes them all in one redb transaction, commits it durably with one
//! fsync, and only then answers. Changes are applied in the order they were submitted, so a
//! later change never lands without an earlier one.

use super::cascade::{Cascade, CascadeHold};
use super::keys::{dedup_key, dedup_value, outbox_key};
use super::record::{self, DeadLetter, EntityRecord, OutboxRecord, FORMAT_VERSION};
use super::replicated::{self, Outstanding, OutstandingChanges, ShardReplication};
use super::rows::{RowOp, RowTable, RowTables, RowWrite};
use super::{
    Store, StoreError, DEAD_LETTERS, ENTITIES, GROUP_LOG, GROUP_META, META, OUTBOX, SHARD_EPOCHS,
};
use agora_actors::host::EntityState;
use agora_actors::{EntityRef, OutboxMessage};
use redb::{Durability, ReadableDatabase, ReadableTable};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
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
        /// Whether a majority of the shard's replicas committed it.
        committed: bool,
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

/// Deletes every outbox row of `shard` (the shard is the key's suffix).
fn clear_shard_outbox(
    table: &mut redb::Table<&'static [u8], &'static [u8]>,
    shard: u32,
) -> Result<(), StoreError> {
    let mut doomed = Vec::new();
    for row in table.iter()? {
        let (k, _) = row?;
        if super::keys::parse_outbox_key(k.value()).is_some_and(|(s, _)| s == shard) {
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
    let (start, end) = super::keys::shard_range(shard);
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

/// Tickets of refused changes, shared by the writer thread (which adds them before it
/// publishes the batch's progress) and everyone who must not answer from them.
#[derive(Default)]
struct RefusedTickets {
    tickets: std::collections::BTreeSet<u64>,
}

impl RefusedTickets {
    fn insert(&mut self, ticket: u64) {
        self.tickets.insert(ticket);
        while self.tickets.len() > MAX_REFUSED {
            self.tickets.pop_first();
        }
    }

    fn first_refused(&self, tickets: &[u64]) -> Option<u64> {
        if self.tickets.is_empty() {
            return None;
        }
        tickets.iter().copied().find(|t| self.tickets.contains(t))
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
    /// after each commit as the disk's time.
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

enum Done {
    Unit(oneshot::Sender<Result<(), StoreError>>),
    Load(
        oneshot::Sender<Result<Option<EntityRecord>, StoreError>>,
        Result<Option<EntityRecord>, StoreError>,
    ),
}

struct WriterThread {
    store: Store,
    rx: mpsc::UnboundedReceiver<(u64, WriteOp)>,
    progress: watch::Sender<CommitProgress>,
    relay: tokio::sync::mpsc::UnboundedSender<RelayFeed>,
    refused: Arc<Mutex<RefusedTickets>>,
    listeners: Arc<Vec<Arc<dyn CommitListener>>>,
    next_outbox: u64,
    next_dead: u64,
    epochs: HashMap<u32, u64>,
    /// The gather before a commit under load (its own OS thread only).
    commit_delay: Option<std::time::Duration>,
    /// Early deliveries in flight, and how long a commit may wait for them.
    cascade: Arc<Cascade>,
    /// The node's replication groups, once set.
    replication: SharedReplication,
    /// Changes handed to their groups and not yet committed.
    outstanding: OutstandingChanges,
    /// The highest ticket committed here or handed to a group.
    max_ticket: u64,
    /// Where groups' answers come back (weak: the writer stops when every handle is gone).
    answers: mpsc::WeakUnboundedSender<(u64, WriteOp)>,
    /// Whether the writer may block its thread (its own OS thread only) to gather.
    may_block: bool,
    /// Operations in the last batch.
    last_batch: usize,
    /// The last batch's buffer, emptied, for the next one: a fresh buffer per commit made
    /// the allocator fault in new pages on this thread under load.
    spare: Vec<(u64, WriteOp)>,
}

struct BatchResult {
    done: Vec<Done>,
    refused: Vec<(oneshot::Sender<Result<(), StoreError>>, StoreError)>,
    outbox: CommittedOutbox,
    states: Vec<(EntityRef, EntityState)>,
    wrote: bool,
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
        let taken = Instant::now();
        let mut batch = std::mem::take(&mut self.spare);
        batch.push(first);
        self.drain_into(&mut batch);
        let mut gathered = false;
        if let (Some(gather), true) = (self.cascade.gather(), self.may_block) {
            if self.cascade.in_flight() > 0 {
                // Early deliveries of changes in this batch (or the last) are about to hand
                // over their receivers' changes: let them share this fsync.
                gathered = true;
                if !self.cascade.wait_settled(taken + gather) {
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
                std::thread::sleep(delay);
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

    async fn run(mut self, latency: Option<Arc<dyn Fn() -> std::time::Duration + Send + Sync>>) {
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

    fn finish(&mut self, r: BatchResult, max_ticket: u64) {
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
    fn replicating(&self, shard: u32) -> Option<Arc<dyn ShardReplication>> {
        self.replication
            .get()
            .filter(|r| r.replicates(shard))
            .cloned()
    }

    /// Hands an entity's change to its shard's group instead of the local tables; its
    /// ticket stays outstanding until the group answers.
    fn hand_to_group(
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
                .insert(ticket);
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
            Box::new(move |committed| {
                if let Some(tx) = answers.upgrade() {
                    let _ = tx.send((0, WriteOp::GroupAnswered { ticket, committed }));
                }
            }),
        );
        metrics::counter!("agora_replication_changes_proposed_total").increment(1);
        Ok(())
    }

    /// A group answered for an outstanding change: committed, it counts as durable with
    /// this batch; refused, it is recorded as refused before the batch's progress.
    fn group_answered(
        &mut self,
        ticket: u64,
        committed: bool,
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
        if committed {
            r.outbox.extend(change.outbox);
            r.states.extend(change.state);
            r.done.extend(change.done.map(Done::Unit));
        } else {
            self.refused
                .lock()
                .map_err(|_| StoreError::Closed)?
                .insert(ticket);
            metrics::counter!("agora_replication_changes_refused_total").increment(1);
            change.refuse();
        }
        Ok(())
    }

    /// Proposes the removal of outbox rows of replicated shards to their groups; returns the
    /// keys to remove here.
    fn replicate_outbox_removals(&self, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
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
    fn propose_removals(&self, rows: Vec<RowOp>) {
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

    fn epoch_of(&mut self, t: &redb::Table<u32, u64>, shard: u32) -> Result<u64, StoreError> {
        if let Some(e) = self.epochs.get(&shard) {
            return Ok(*e);
        }
        let e = t.get(shard)?.map_or(0, |v| v.value());
        self.epochs.insert(shard, e);
        Ok(e)
    }

    #[allow(clippy::type_complexity)]
    fn commit(
        &mut self,
        batch: &mut Vec<(u64, WriteOp)>,
    ) -> Result<BatchResult, (StoreError, Vec<Done>)> {
        let mut r = BatchResult {
            done: Vec::new(),
            refused: Vec::new(),
            outbox: Vec::new(),
            states: Vec::new(),
            wrote: false,
        };
        let mut ops = batch.drain(..);
        let result = (|| -> Result<redb::WriteTransaction, StoreError> {
            let mut tx = self.store.db().begin_write()?;
            tx.set_durability(Durability::Immediate)
                .map_err(|e| StoreError::Redb(e.to_string()))?;
            {
                let mut entities = tx.open_table(ENTITIES)?;
                let mut outbox = tx.open_table(OUTBOX)?;
                let mut dead = tx.open_table(DEAD_LETTERS)?;
                let mut meta = tx.open_table(META)?;
                let mut epochs = tx.open_table(SHARD_EPOCHS)?;
                let mut group_log = tx.open_table(GROUP_LOG)?;
                let mut group_meta = tx.open_table(GROUP_META)?;
                // Entity keys written so far in this batch, and whether a whole shard was
                // installed or dropped: a load of those waits for the commit.
                let mut written: HashSet<Vec<u8>> = HashSet::new();
                let mut shards_rewritten = false;
                let mut staged = StagedOutbox::default();
                for (ticket, op) in ops.by_ref() {
                    if !matches!(op, WriteOp::Entity(_) | WriteOp::Load { .. }) {
                        // Whole-shard operations scan the outbox table: it must be complete.
                        staged.flush(&mut outbox, &mut r.outbox)?;
                    }
                    match op {
                        WriteOp::Entity(w) => {
                            if let Some(group) = self.replicating(w.shard) {
                                self.hand_to_group(ticket, w, group.as_ref(), &mut r)?;
                                continue;
                            }
                            let current = self.epoch_of(&epochs, w.shard)?;
                            let refusal = if w.epoch < current
                                && !agora_seams::planted::is_planted(
                                    agora_seams::planted::Bug::StaleEpochWriter,
                                ) {
                                metrics::counter!("agora_store_fenced_writes_total").increment(1);
                                Some(StoreError::StaleEpoch {
                                    shard: w.shard,
                                    got: w.epoch,
                                    current,
                                })
                            } else {
                                self.refused
                                    .lock()
                                    .map_err(|_| StoreError::Closed)?
                                    .first_refused(&w.after)
                                    .map(|t| StoreError::DependencyRefused { ticket: t })
                            };
                            if let Some(e) = refusal {
                                // Recorded before the batch's progress is published, so no
                                // one answers from it.
                                self.refused
                                    .lock()
                                    .map_err(|_| StoreError::Closed)?
                                    .insert(ticket);
                                if let (Some(fence), StoreError::StaleEpoch { .. }) = (&w.fence, &e)
                                {
                                    tracing::warn!(error = %e, "write refused; fencing shard");
                                    fence.store(true, std::sync::atomic::Ordering::Release);
                                }
                                if let Some(done) = w.done {
                                    r.refused.push((done, e));
                                }
                                continue;
                            }
                            if w.epoch > current {
                                epochs.insert(w.shard, w.epoch)?;
                                self.epochs.insert(w.shard, w.epoch);
                            }
                            entities.insert(w.key.as_slice(), w.record.as_slice())?;
                            written.insert(w.key.clone());
                            for id in &w.msg_ids {
                                entities.insert(
                                    dedup_key(&w.key, id).as_slice(),
                                    dedup_value(w.now_ms).as_slice(),
                                )?;
                                staged.consumed(id, &w.entity);
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
                                staged.push(
                                    CommittedRow {
                                        ticket,
                                        key: k.to_vec(),
                                        message: m,
                                        stored: true,
                                    },
                                    row,
                                    early,
                                );
                            }
                            if let Some(s) = w.state_for_listeners {
                                r.states.push((w.entity, s));
                            }
                            if let Some(done) = w.done {
                                r.done.push(Done::Unit(done));
                            }
                            r.wrote = true;
                        }
                        WriteOp::Load { key, reply } => {
                            let v = match entities.get(key.as_slice()) {
                                Ok(Some(v)) => record::decode(v.value()).map(Some),
                                Ok(None) => Ok(None),
                                Err(e) => Err(StoreError::from(e)),
                            };
                            if shards_rewritten || written.contains(key.as_slice()) {
                                // It reads a change of this batch: answered once durable.
                                r.done.push(Done::Load(reply, v));
                            } else {
                                // Every earlier change of this key is in an earlier batch,
                                // already durable: no need to wait for this batch's fsync.
                                let _ = reply.send(v);
                            }
                        }
                        WriteOp::GroupAnswered { ticket, committed } => {
                            self.group_answered(ticket, committed, &mut r)?;
                        }
                        WriteOp::OutboxAcked(keys) => {
                            let keys = self.replicate_outbox_removals(keys);
                            for k in &keys {
                                outbox.remove(k.as_slice())?;
                            }
                            r.wrote |= !keys.is_empty();
                        }
                        WriteOp::ForgetMarks { keys, before_ms } => {
                            let mut forgotten = 0u64;
                            let mut replicated: Vec<RowOp> = Vec::new();
                            for k in keys {
                                let old = entities.get(k.as_slice())?.is_some_and(|v| {
                                    super::keys::parse_dedup_value(v.value()) < before_ms
                                });
                                if !old || !super::keys::is_dedup_key(&k) {
                                    continue;
                                }
                                forgotten += 1;
                                match replicated::entity_key_shard(&k) {
                                    Some(shard) if self.replicating(shard).is_some() => {
                                        replicated.push(RowOp::remove(RowTable::Entities, k))
                                    }
                                    _ => drop(entities.remove(k.as_slice())?),
                                }
                            }
                            self.propose_removals(replicated);
                            metrics::counter!("agora_store_marks_forgotten_total")
                                .increment(forgotten);
                            r.wrote |= forgotten > 0;
                        }
                        WriteOp::DeadLetter { key, letter } => {
                            for k in self.replicate_outbox_removals(vec![key]) {
                                outbox.remove(k.as_slice())?;
                            }
                            dead.insert(self.next_dead, record::encode(&letter)?.as_slice())?;
                            self.next_dead += 1;
                            r.wrote = true;
                        }
                        WriteOp::PutMeta { name, value, done } => {
                            meta.insert(name.as_str(), value.as_slice())?;
                            r.done.push(Done::Unit(done));
                            r.wrote = true;
                        }
                        WriteOp::InstallShard {
                            data,
                            epoch,
                            first,
                            done,
                        } => {
                            shards_rewritten = true;
                            let current = self.epoch_of(&epochs, data.shard)?;
                            if epoch < current || (!first && epoch != current) {
                                // A late copy of a handoff that was aborted and discarded,
                                // or a later part whose first part was not installed.
                                r.refused.push((
                                    done,
                                    StoreError::StaleEpoch {
                                        shard: data.shard,
                                        got: epoch,
                                        current,
                                    },
                                ));
                                continue;
                            }
                            // Replace, never merge: rows left by an earlier, failed move of
                            // this shard must not survive. Later parts add to the first.
                            if first {
                                clear_shard(&mut entities, data.shard)?;
                                clear_shard_outbox(&mut outbox, data.shard)?;
                            }
                            for (k, v) in &data.entities {
                                entities.insert(k.as_slice(), v.as_slice())?;
                                if let (Some((_, entity)), Ok(rec)) = (
                                    super::keys::parse_entity_key(k),
                                    record::decode::<EntityRecord>(v),
                                ) {
                                    if self.listeners.iter().any(|l| l.wants(entity.kind)) {
                                        r.states.push((entity, rec.state));
                                    }
                                }
                            }
                            for (k, v) in &data.outbox {
                                // Rows keep the previous owner's sequence numbers: ours
                                // continue above them, so a new row never overwrites one.
                                if let Some((_, seq)) = super::keys::parse_outbox_key(k) {
                                    self.next_outbox = self.next_outbox.max(seq + 1);
                                }
                                outbox.insert(k.as_slice(), v.as_slice())?;
                                r.outbox.push(CommittedRow {
                                    ticket: 0,
                                    key: k.clone(),
                                    message: record::decode::<OutboxRecord>(v)?.message,
                                    stored: true,
                                });
                            }
                            for (k, at) in &data.dedup {
                                entities.insert(k.as_slice(), dedup_value(*at).as_slice())?;
                            }
                            epochs.insert(data.shard, epoch)?;
                            self.epochs.insert(data.shard, epoch);
                            r.done.push(Done::Unit(done));
                            r.wrote = true;
                        }
                        WriteOp::Rows { write, done } => {
                            // Outbox rows a group applies carry the sequence numbers of the
                            // node that led it: ours continue above them, so a row this node
                            // writes once it leads never takes (and an ack never deletes)
                            // another message's key.
                            for row in write
                                .rows
                                .iter()
                                .filter(|r| r.table == RowTable::Outbox && r.value.is_some())
                            {
                                if let Some((_, seq)) = super::keys::parse_outbox_key(&row.key) {
                                    self.next_outbox = self.next_outbox.max(seq + 1);
                                }
                            }
                            let mut tables = RowTables {
                                entities: &mut entities,
                                outbox: &mut outbox,
                                group_log: &mut group_log,
                                group_meta: &mut group_meta,
                            };
                            shards_rewritten |= tables.apply(&write, &mut written)?;
                            r.done.extend(done.map(Done::Unit));
                            r.wrote = true;
                        }
                        WriteOp::DropShard { shard, epoch, done } => {
                            shards_rewritten = true;
                            clear_shard(&mut entities, shard)?;
                            clear_shard_outbox(&mut outbox, shard)?;
                            let current = self.epoch_of(&epochs, shard)?;
                            let fenced = current.max(epoch);
                            epochs.insert(shard, fenced)?;
                            self.epochs.insert(shard, fenced);
                            r.done.push(Done::Unit(done));
                            r.wrote = true;
                        }
                    }
                }
                staged.flush(&mut outbox, &mut r.outbox)?;
            }
            Ok(tx)
        })();
        let fail = |e: StoreError, r: BatchResult, rest: std::vec::Drain<'_, (u64, WriteOp)>| {
            let mut pending = r.done;
            pending.extend(r.refused.into_iter().map(|(tx, _)| Done::Unit(tx)));
            for (_, op) in rest {
                match op {
                    WriteOp::Entity(w) => pending.extend(w.done.map(Done::Unit)),
                    WriteOp::Rows { done, .. } => pending.extend(done.map(Done::Unit)),
                    WriteOp::PutMeta { done, .. }
                    | WriteOp::InstallShard { done, .. }
                    | WriteOp::DropShard { done, .. } => pending.push(Done::Unit(done)),
                    WriteOp::Load { reply, .. } => {
                        pending.push(Done::Load(reply, Err(StoreError::Closed)))
                    }
                    _ => {}
                }
            }
            (e, pending)
        };
        match result {
            Ok(tx) => {
                if r.wrote {
                    if let Err(e) = tx.commit() {
                        return Err(fail(e.into(), r, ops));
                    }
                } else {
                    tx.abort().map_err(|e| (StoreError::from(e), Vec::new()))?;
                }
                Ok(r)
            }
            Err(e) => Err(fail(e, r, ops)),
        }
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
