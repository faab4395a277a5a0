//! The outbox relay: delivers every committed outbox message at least once, in order per
//! destination, at or after its due time (durable timers are outbox rows with a due time).
//! A delivered row is deleted; a refused one becomes a dead letter; an unreachable
//! destination is retried with backoff. Rows are reloaded from the store at start, so timers
//! and undelivered messages survive restarts.
//!
//! Early delivery: a message due now to an entity of this node is delivered as soon as its
//! sender hands its change to the writer, not after the commit. The receiver's change gets a
//! later ticket, so it is never durable without the sender's, and names the sender's ticket,
//! so it is refused if the sender's change is. The row is deleted once both the delivery is
//! done and the row is committed; a message whose sender's change was refused is dropped
//! (it never existed). Messages to other nodes and outside services wait for the commit.

use super::entity::BatchItem;
use super::external::ExternalServices;
use crate::Deliver;
use agora_actors::client::AskError;
use agora_actors::message::Body;
use agora_actors::seams::Clock;
use agora_actors::{Destination, OutboxMessage};
use agora_store::cascade::CascadeHold;
use agora_store::record::{DeadLetter, FORMAT_VERSION};
use agora_store::writer::{CommittedOutbox, RelayFeed};
use agora_store::{Store, StoreError, WriteOp, Writer};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

/// Most deliveries in flight at once.
const MAX_CONCURRENT: usize = 512;
/// Most messages to one entity delivered (and stored) together.
const MAX_BATCH: usize = 256;
/// Longest wait between retries.
const MAX_BACKOFF_MS: u64 = 5_000;
/// How much sooner the next due time must be before the relay's timer is moved.
const TIMER_SLACK: Duration = Duration::from_millis(1);

struct Item {
    /// The row's key; `None` while an early delivery's row is not yet known to be committed.
    key: Option<Vec<u8>>,
    msg: OutboxMessage,
    attempts: u32,
    /// The sender's change, for an early delivery (0 when the row was committed first).
    after: u64,
    /// For an early delivery starting at once: keeps the writer's next commit waiting for
    /// the receiver's change (moved into the delivery when it starts).
    hold: Option<CascadeHold>,
}

/// Where an early delivery stands, until both it and its row's commit are done.
enum Early {
    /// Queued or being delivered; the row's key once committed.
    Pending(Option<Vec<u8>>),
    /// Delivered; the row is deleted when its commit is seen.
    Delivered,
    /// Refused by the receiver; a dead letter once the row's commit is seen.
    Refused(String),
    /// Taken by the receiver in the sender's own transaction (no row was written), while
    /// the delivery's answer is still awaited: nothing is left to do when it comes.
    Consumed,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Item>,
    busy: bool,
    waiting_retry: bool,
}

/// How a delivery attempt ended: per-message results (an error is a refusal, so the
/// message becomes a dead letter), or a transient failure of the whole attempt (retried).
type Delivery = Result<Vec<Result<(), String>>, String>;

/// Everything the relay needs.
pub struct RelayDeps {
    /// Committed reads at start.
    pub store: Store,
    /// Acks and dead letters.
    pub writer: Writer,
    /// Entity destinations, wherever they live.
    pub region: Arc<dyn Deliver>,
    /// Outside destinations.
    pub external: ExternalServices,
    /// Time seam.
    pub clock: Arc<dyn Clock>,
    /// Whether the stored rows are delivered from the start (false when shards are
    /// replicated: a shard's rows are handed over when this node starts leading it).
    pub stored_rows_at_start: bool,
}

/// Starts the relay: loads every stored outbox row, then follows new commits.
pub fn start(
    deps: RelayDeps,
    committed: UnboundedReceiver<RelayFeed>,
) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let rows = if deps.stored_rows_at_start {
        deps.store.outbox_rows()?
    } else {
        Vec::new()
    };
    tracing::info!(pending = rows.len(), "outbox relay starting");
    let mut relay = Relay {
        deps,
        lanes: HashMap::new(),
        ready: VecDeque::new(),
        timers: BTreeMap::new(),
        retries: BTreeMap::new(),
        acks: Vec::new(),
        running: JoinSet::new(),
        backlog: 0,
        early: HashMap::new(),
    };
    let now = relay.deps.clock.now_ms();
    for (key, rec) in rows {
        if agora_seams::planted::is_planted(agora_seams::planted::Bug::ForgetTimers)
            && rec.message.deliver_at_ms > now
        {
            continue;
        }
        relay.add(key, rec.message);
    }
    Ok(tokio::spawn(relay.run(committed)))
}

struct Relay {
    deps: RelayDeps,
    lanes: HashMap<String, Lane>,
    ready: VecDeque<String>,
    timers: BTreeMap<(u64, Vec<u8>), OutboxMessage>,
    /// Lanes waiting to retry, by when (monotonic: a wall clock stepped back must not hold
    /// a retry back by the step).
    retries: BTreeMap<(tokio::time::Instant, String), ()>,
    acks: Vec<Vec<u8>>,
    running: JoinSet<(String, Vec<Item>, Delivery)>,
    backlog: usize,
    /// Early deliveries by (sender's ticket, message id).
    early: HashMap<(u64, String), Early>,
}

fn lane_of(msg: &OutboxMessage) -> String {
    match &msg.to {
        Destination::Entity(e) => e.to_string(),
        Destination::External => format!("external:{}", msg.id),
    }
}

async fn deliver(
    region: Arc<dyn Deliver>,
    external: ExternalServices,
    items: &[Item],
    holds: Vec<Option<CascadeHold>>,
    writer: &Writer,
) -> Delivery {
    let Some(first) = items.first() else {
        return Ok(Vec::new());
    };
    match &first.msg.to {
        Destination::Entity(to) => {
            let mut batch = Vec::with_capacity(items.len());
            for (item, hold) in items.iter().zip(holds) {
                match &item.msg.body {
                    Body::Command(cmd) => batch.push(BatchItem {
                        cmd: cmd.clone(),
                        msg_id: item.msg.id.clone(),
                        // Only a sender's change not yet durable makes this an early delivery.
                        sender: if item.after > 0 && !writer.is_durable(item.after) {
                            item.after
                        } else {
                            0
                        },
                        hold,
                    }),
                    Body::External(_) => {
                        return Ok(items
                            .iter()
                            .map(|_| Err("an outside call addressed to an entity".to_string()))
                            .collect())
                    }
                }
            }
            match region.deliver_batch(to.clone(), batch).await {
                // Fault point: the answer is lost after the delivery took effect, so the
                // batch is delivered again (deduplication must absorb it).
                Ok(_) if agora_actors::buggify!(0.03) => Err("buggify: answer lost".into()),
                Ok(results) => Ok(results
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect()),
                Err(AskError::Domain(e)) => Ok(items.iter().map(|_| Err(e.to_string())).collect()),
                Err(e) => Err(e.to_string()),
            }
        }
        Destination::External => {
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                match &item.msg.body {
                    Body::External(call) => external.call(call).await.map_err(|e| e.to_string())?,
                    Body::Command(_) => {
                        results.push(Err("a command addressed to no entity".to_string()));
                        continue;
                    }
                }
                results.push(Ok(()));
            }
            Ok(results)
        }
    }
}

/// How one more delivery of a dead letter's message ended (see [`redeliver`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redelivery {
    /// The receiver took the message, or had taken it already (it dedupes by message id).
    Accepted,
    /// The receiver refused the message, for this reason: it would be dead-lettered again.
    Refused(String),
    /// The receiver could not be reached (no owner or leader, a timeout, an outside service
    /// down): the relay would retry; the caller may try again later.
    Unreachable(String),
}

impl Redelivery {
    /// What one delivery attempt of a single message came to.
    fn of(delivery: Delivery) -> Self {
        match delivery {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(())) => Redelivery::Accepted,
                Some(Err(reason)) => Redelivery::Refused(reason),
                None => Redelivery::Unreachable("the receiver gave no answer".into()),
            },
            Err(reason) => Redelivery::Unreachable(reason),
        }
    }
}

/// Delivers `msg` (a dead letter's message) once more, through the path the relay delivers
/// by: an entity wherever it lives (another node, a replicated shard's leader) by `region`,
/// an outside call by `external`. Nothing is stored here: the caller removes the dead letter
/// once this answers [`Redelivery::Accepted`]. The message keeps its id, so a receiver that
/// had taken it already answers without taking it twice.
pub async fn redeliver(
    region: Arc<dyn Deliver>,
    external: ExternalServices,
    writer: &Writer,
    msg: OutboxMessage,
) -> Redelivery {
    let item = Item {
        key: None,
        msg,
        attempts: 0,
        after: 0,
        hold: None,
    };
    Redelivery::of(deliver(region, external, &[item], vec![None], writer).await)
}

impl Relay {
    fn add(&mut self, key: Vec<u8>, msg: OutboxMessage) {
        self.backlog += 1;
        if msg.deliver_at_ms > self.deps.clock.now_ms() {
            self.timers.insert((msg.deliver_at_ms, key), msg);
        } else {
            self.enqueue(Item {
                key: Some(key),
                msg,
                attempts: 0,
                after: 0,
                hold: None,
            });
        }
    }

    /// A change handed to the writer: its messages to entities of this node go now.
    /// A message that can start at once keeps its hold (the writer waits for its receiver's
    /// change); one queued behind a busy lane drops it, since that lane waits for a commit.
    fn submitted(&mut self, ticket: u64, messages: Vec<OutboxMessage>, holds: Vec<CascadeHold>) {
        let mut holds = holds.into_iter();
        for msg in messages {
            let hold = holds.next();
            let local = match &msg.to {
                Destination::Entity(e) => self.deps.region.is_local(e),
                Destination::External => false,
            };
            if !local {
                continue;
            }
            let starts_now = self.running.len() < MAX_CONCURRENT
                && self
                    .lanes
                    .get(&lane_of(&msg))
                    .is_none_or(|l| !l.busy && !l.waiting_retry && l.queue.is_empty());
            self.backlog += 1;
            metrics::counter!("agora_outbox_early_total").increment(1);
            self.early
                .insert((ticket, msg.id.clone()), Early::Pending(None));
            self.enqueue(Item {
                key: None,
                msg,
                attempts: 0,
                after: ticket,
                hold: hold.filter(|_| starts_now),
            });
        }
    }

    /// Rows made durable: queued, or matched with their early delivery.
    fn committed(&mut self, rows: CommittedOutbox) {
        let now = self.deps.clock.now_ms();
        for row in rows {
            let (ticket, key, msg) = (row.ticket, row.key, row.message);
            let id = (ticket, msg.id.clone());
            if !row.stored {
                // Its receiver's change, committed with it, took the message: no row to
                // delete; a delivery still awaiting its answer has nothing left to do.
                if let Some(Early::Pending(_)) = self.early.remove(&id) {
                    self.early.insert(id, Early::Consumed);
                }
                continue;
            }
            match self.early.remove(&id) {
                None => self.add(key, msg),
                Some(Early::Consumed) => {}
                Some(Early::Pending(_)) => {
                    self.early.insert(id, Early::Pending(Some(key)));
                }
                Some(Early::Delivered) => self.acks.push(key),
                Some(Early::Refused(reason)) => self.dead_letter(
                    Item {
                        key: Some(key),
                        msg,
                        attempts: 0,
                        after: 0,
                        hold: None,
                    },
                    reason,
                    now,
                ),
            }
        }
    }

    fn enqueue(&mut self, item: Item) {
        let name = lane_of(&item.msg);
        let lane = self.lanes.entry(name.clone()).or_default();
        lane.queue.push_back(item);
        if !lane.busy && !lane.waiting_retry && lane.queue.len() == 1 {
            self.ready.push_back(name);
        }
    }

    fn fire_due(&mut self) {
        let now = self.deps.clock.now_ms();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, key), msg) = entry.remove_entry();
            self.enqueue(Item {
                key: Some(key),
                msg,
                attempts: 0,
                after: 0,
                hold: None,
            });
        }
        let monotonic_now = tokio::time::Instant::now();
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > monotonic_now {
                break;
            }
            let ((_, name), ()) = entry.remove_entry();
            if let Some(lane) = self.lanes.get_mut(&name) {
                lane.waiting_retry = false;
                self.ready.push_back(name);
            }
        }
    }

    fn start_ready(&mut self) {
        while self.running.len() < MAX_CONCURRENT {
            let Some(name) = self.ready.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&name) else {
                continue;
            };
            if lane.busy || lane.waiting_retry {
                continue;
            }
            if lane.queue.is_empty() {
                self.lanes.remove(&name);
                continue;
            }
            let n = lane.queue.len().min(MAX_BATCH);
            let drained: Vec<Item> = lane.queue.drain(..n).collect();
            // An early delivery whose sender's change was refused never happened: drop it.
            let writer = &self.deps.writer;
            let (items, dropped): (Vec<Item>, Vec<Item>) = drained
                .into_iter()
                .partition(|i| i.after == 0 || !writer.was_refused(i.after));
            for item in dropped {
                self.backlog -= 1;
                metrics::counter!("agora_outbox_early_dropped_total").increment(1);
                self.early.remove(&(item.after, item.msg.id));
            }
            if items.is_empty() {
                self.ready.push_back(name);
                continue;
            }
            lane.busy = true;
            let region = self.deps.region.clone();
            let external = self.deps.external.clone();
            let writer = self.deps.writer.clone();
            let mut items = items;
            let holds = items.iter_mut().map(|i| i.hold.take()).collect();
            self.running.spawn(async move {
                let r = deliver(region, external, &items, holds, &writer).await;
                (name, items, r)
            });
        }
    }

    /// The row key of a delivered item, or `None` while its row's commit is not yet seen (the
    /// outcome is then kept for when it is).
    fn settle_early(&mut self, item: &Item, outcome: Early) -> Option<Vec<u8>> {
        if let Some(key) = &item.key {
            return Some(key.clone());
        }
        let id = (item.after, item.msg.id.clone());
        match self.early.remove(&id) {
            Some(Early::Pending(Some(key))) => Some(key),
            Some(Early::Consumed) => None,
            _ if self.deps.writer.was_refused(item.after) => None,
            _ => {
                self.early.insert(id, outcome);
                None
            }
        }
    }

    fn dead_letter(&mut self, item: Item, reason: String, now: u64) {
        let Some(key) = item.key else {
            return;
        };
        tracing::warn!(msg_id = %item.msg.id, topic = %item.msg.topic, reason, "message refused; dead-lettered");
        metrics::counter!("agora_dead_letters_total").increment(1);
        let letter = Box::new(DeadLetter {
            format: FORMAT_VERSION,
            at_ms: now,
            reason,
            message: item.msg,
        });
        if let Err(e) = self.deps.writer.submit(WriteOp::DeadLetter { key, letter }) {
            tracing::error!(error = %e, "cannot record a dead letter");
        }
    }

    fn finished(&mut self, name: String, items: Vec<Item>, result: Delivery) {
        let now = self.deps.clock.now_ms();
        match result {
            Ok(results) => {
                for (mut item, r) in items.into_iter().zip(results) {
                    self.backlog -= 1;
                    match r {
                        Ok(()) => {
                            metrics::counter!("agora_outbox_delivered_total").increment(1);
                            if let Some(key) = self.settle_early(&item, Early::Delivered) {
                                self.acks.push(key);
                            }
                        }
                        Err(reason) => {
                            item.key = self.settle_early(&item, Early::Refused(reason.clone()));
                            self.dead_letter(item, reason, now);
                        }
                    }
                }
            }
            Err(reason) => {
                let Some(lane) = self.lanes.get_mut(&name) else {
                    return;
                };
                let attempts = items.first().map_or(1, |i| i.attempts + 1);
                metrics::counter!("agora_outbox_retries_total").increment(1);
                tracing::debug!(lane = %name, attempts, reason, "delivery failed; will retry");
                for mut item in items.into_iter().rev() {
                    item.attempts = attempts;
                    lane.queue.push_front(item);
                }
                lane.busy = false;
                lane.waiting_retry = true;
                let backoff = (50u64 << attempts.min(10)).min(MAX_BACKOFF_MS);
                let at = tokio::time::Instant::now() + Duration::from_millis(backoff);
                self.retries.insert((at, name), ());
                return;
            }
        }
        let Some(lane) = self.lanes.get_mut(&name) else {
            return;
        };
        lane.busy = false;
        if lane.queue.is_empty() {
            self.lanes.remove(&name);
        } else {
            self.ready.push_back(name);
        }
    }

    fn flush_acks(&mut self) {
        if !self.acks.is_empty() {
            let keys = std::mem::take(&mut self.acks);
            if let Err(e) = self.deps.writer.submit(WriteOp::OutboxAcked(keys)) {
                tracing::error!(error = %e, "cannot delete delivered outbox rows");
            }
        }
        metrics::gauge!("agora_outbox_backlog").set(self.backlog as f64);
    }

    fn next_wake(&self) -> Duration {
        let now = self.deps.clock.now_ms();
        let timer = self
            .timers
            .keys()
            .next()
            .map(|(t, _)| Duration::from_millis(t.saturating_sub(now)));
        let retry = self
            .retries
            .keys()
            .next()
            .map(|(at, _)| at.saturating_duration_since(tokio::time::Instant::now()));
        timer
            .into_iter()
            .chain(retry)
            .min()
            .map_or(Duration::from_secs(3600), |d| {
                d.max(Duration::from_millis(1))
            })
    }

    /// Takes one feed from the writer.
    fn feed(&mut self, feed: RelayFeed) {
        match feed {
            RelayFeed::Submitted {
                ticket,
                messages,
                holds,
            } => self.submitted(ticket, messages, holds),
            RelayFeed::Committed(rows) => self.committed(rows),
        }
    }

    /// Takes the end of one delivery task.
    fn joined(&mut self, done: Result<(String, Vec<Item>, Delivery), tokio::task::JoinError>) {
        match done {
            Ok((name, items, result)) => self.finished(name, items, result),
            Err(e) => tracing::error!(error = %e, "a delivery task failed"),
        }
    }

    async fn run(mut self, mut committed: UnboundedReceiver<RelayFeed>) {
        // One timer for the next due message or retry, moved only when that comes sooner
        // (a fresh timer per turn of the loop cost a timer-wheel insert and removal each).
        let timer = tokio::time::sleep(self.next_wake());
        tokio::pin!(timer);
        loop {
            self.fire_due();
            self.start_ready();
            self.flush_acks();
            let due = tokio::time::Instant::now() + self.next_wake();
            if timer.is_elapsed() || due + TIMER_SLACK < timer.deadline() {
                timer.as_mut().reset(due);
            }
            tokio::select! {
                feed = committed.recv() => match feed {
                    Some(feed) => self.feed(feed),
                    None => return,
                },
                Some(done) = self.running.join_next(), if !self.running.is_empty() => self.joined(done),
                _ = &mut timer => {}
            }
            // Whatever else is ready joins this turn, so the upkeep above runs once for all
            // of it.
            for _ in 0..MAX_BATCH {
                match committed.try_recv() {
                    Ok(feed) => self.feed(feed),
                    Err(_) => break,
                }
            }
            while let Some(done) = self.running.try_join_next() {
                self.joined(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_is_accepted_refused_or_unreachable_as_the_relay_would_count_it() {
        assert_eq!(Redelivery::of(Ok(vec![Ok(())])), Redelivery::Accepted);
        assert_eq!(
            Redelivery::of(Ok(vec![Err("not found: account u1".into())])),
            Redelivery::Refused("not found: account u1".into())
        );
        // A transient failure of the attempt (the relay retries it) is not a refusal.
        assert_eq!(
            Redelivery::of(Err("no leader for shard 3".into())),
            Redelivery::Unreachable("no leader for shard 3".into())
        );
        assert!(matches!(
            Redelivery::of(Ok(Vec::new())),
            Redelivery::Unreachable(_)
        ));
    }
}
