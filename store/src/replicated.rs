//! Changes of replicated shards: instead of writing an entity's change to the local tables,
//! the writer turns it into rows and hands them to the shard's replication group. The
//! change's ticket stays outstanding until the group says the rows are committed by a
//! majority of the shard's replicas and applied here (or refused): the writer's progress
//! never passes an outstanding ticket, so nothing answers from the change before then, and
//! everything built on ticket order (replies, reloads, refusals) keeps working unchanged.

use crate::keys::{dedup_key, dedup_value, outbox_key};
use crate::record::{self, OutboxRecord, FORMAT_VERSION};
use crate::rows::{RowOp, RowTable};
use crate::writer::{CommittedRow, EntityWrite};
use crate::StoreError;
use agora_actors::host::EntityState;
use agora_actors::EntityRef;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// What a shard's group answered for a proposed change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Committed by a majority of the shard's replicas and applied here.
    Committed,
    /// Certainly took no effect anywhere (never appended, or skipped by every replica).
    Refused,
    /// Not known to be committed: it may still take effect (a round that timed out).
    Unknown,
}

impl ProposalOutcome {
    /// Whether the change was committed.
    pub fn committed(self) -> bool {
        self == Self::Committed
    }
}

/// Called once with a proposal's outcome.
pub type ProposalDone = Box<dyn FnOnce(ProposalOutcome) + Send>;

/// Where the writer sends the changes of replicated shards (implemented by the node's
/// replication groups).
pub trait ShardReplication: Send + Sync + 'static {
    /// Whether `shard`'s changes go through its group instead of the local tables.
    fn replicates(&self, shard: u32) -> bool;
    /// Whether this node leads `shard`'s group now (serves the shard).
    fn leads(&self, shard: u32) -> bool;
    /// Proposes `rows` (all of `shard`) to its group; `done` is called exactly once.
    fn propose(&self, shard: u32, rows: Vec<RowOp>, done: ProposalDone);
}

/// A change handed to its group and not yet committed.
pub(crate) struct Outstanding {
    /// Its outbox rows, for the relay once committed.
    pub outbox: Vec<CommittedRow>,
    /// Its state, for commit listeners.
    pub state: Option<(EntityRef, EntityState)>,
    /// Its waiter.
    pub done: Option<oneshot::Sender<Result<(), StoreError>>>,
    /// Set when it is refused: the shard's copy here answers nothing more.
    pub fence: Option<Arc<AtomicBool>>,
}

/// The changes handed to groups and not yet committed, by ticket.
#[derive(Default)]
pub(crate) struct OutstandingChanges {
    by_ticket: BTreeMap<u64, Outstanding>,
}

impl OutstandingChanges {
    /// Records `ticket` as outstanding.
    pub fn insert(&mut self, ticket: u64, change: Outstanding) {
        assert!(ticket > 0, "an outstanding change has a ticket");
        let fresh = self.by_ticket.insert(ticket, change).is_none();
        assert!(fresh, "ticket {ticket} handed to a group twice");
    }

    /// Takes `ticket`'s change once its group answered.
    pub fn take(&mut self, ticket: u64) -> Option<Outstanding> {
        self.by_ticket.remove(&ticket)
    }

    /// The highest ticket the writer may report durable, given that every ticket up to
    /// `max_ticket` was committed locally or handed to a group.
    pub fn watermark(&self, max_ticket: u64) -> u64 {
        match self.by_ticket.keys().next() {
            Some(first) => max_ticket.min(first - 1),
            None => max_ticket,
        }
    }

    /// How many are outstanding.
    pub fn len(&self) -> usize {
        self.by_ticket.len()
    }
}

impl Outstanding {
    /// A refused change: its shard's copy here is fenced.
    pub fn refuse(self) {
        if let Some(fence) = &self.fence {
            fence.store(true, Ordering::Release);
        }
        if let Some(done) = self.done {
            let _ = done.send(Err(StoreError::Replication(
                "the shard's replication group did not commit the change".into(),
            )));
        }
    }
}

/// The rows an entity's change writes: its record, one applied-message mark per consumed
/// message, and its outbox rows (keys from `next_outbox`, which advances). Also returns the
/// outbox rows as the relay will see them once committed.
pub(crate) fn entity_rows(
    ticket: u64,
    w: &EntityWrite,
    next_outbox: &mut u64,
) -> Result<(Vec<RowOp>, Vec<CommittedRow>), StoreError> {
    let mut rows = Vec::with_capacity(1 + w.msg_ids.len() + w.outbox.len());
    rows.push(RowOp::put(
        RowTable::Entities,
        w.key.clone(),
        w.record.clone(),
    ));
    for id in &w.msg_ids {
        rows.push(RowOp::put(
            RowTable::Entities,
            dedup_key(&w.key, id),
            dedup_value(w.now_ms).to_vec(),
        ));
    }
    let mut committed = Vec::with_capacity(w.outbox.len());
    for m in &w.outbox {
        let key = outbox_key(w.shard, *next_outbox).to_vec();
        *next_outbox += 1;
        let value = record::encode(&OutboxRecord {
            format: FORMAT_VERSION,
            epoch: w.epoch,
            message: m.clone(),
        })?;
        rows.push(RowOp::put(RowTable::Outbox, key.clone(), value));
        committed.push(CommittedRow {
            ticket,
            key,
            message: m.clone(),
            stored: true,
        });
    }
    Ok((rows, committed))
}

/// Splits outbox keys into those of replicated shards (as removal rows, by shard) and the
/// rest.
pub(crate) fn split_outbox_keys(
    keys: Vec<Vec<u8>>,
    replication: &dyn ShardReplication,
) -> (BTreeMap<u32, Vec<RowOp>>, Vec<Vec<u8>>) {
    let mut replicated: BTreeMap<u32, Vec<RowOp>> = BTreeMap::new();
    let mut local = Vec::new();
    for key in keys {
        match crate::keys::parse_outbox_key(&key) {
            Some((shard, _)) if replication.replicates(shard) => replicated
                .entry(shard)
                .or_default()
                .push(RowOp::remove(RowTable::Outbox, key)),
            _ => local.push(key),
        }
    }
    (replicated, local)
}

/// How long a failed removal of delivered outbox rows waits before it is proposed again.
const REMOVAL_RETRY_MS: u64 = 500;

/// Proposes the removal of delivered outbox rows of `shard` until its group commits it or
/// this node no longer leads the shard. A removal that is lost while this node still leads
/// would leave the rows in every replica for good, since this relay has forgotten them; once
/// another node leads, it adopts the rows and delivers them again (deduplicated), then
/// removes them itself.
pub(crate) fn remove_delivered(group: Arc<dyn ShardReplication>, shard: u32, rows: Vec<RowOp>) {
    assert!(
        rows.iter()
            .all(|r| r.table == RowTable::Outbox && r.value.is_none()),
        "only removals of outbox rows are proposed again"
    );
    let (again, copy) = (group.clone(), rows.clone());
    group.propose(
        shard,
        rows,
        Box::new(move |outcome| {
            if outcome.committed() || !again.leads(shard) {
                return;
            }
            metrics::counter!("agora_replication_removal_retries_total").increment(1);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(REMOVAL_RETRY_MS)).await;
                remove_delivered(again, shard, copy);
            });
        }),
    );
}

/// The shard of a key of the entities table (its first four bytes).
pub(crate) fn entity_key_shard(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{RelayFeed, WriteOp};
    use crate::{RowWrite, Store, Writer};
    use agora_actors::{EntityKind, EntityRef};
    use std::sync::Mutex;

    /// A group that holds every proposal until the test answers it.
    #[derive(Default)]
    struct HeldGroup {
        proposals: Mutex<Vec<(u32, Vec<RowOp>, ProposalDone)>>,
        proposed: tokio::sync::Notify,
        deposed: AtomicBool,
    }

    impl ShardReplication for HeldGroup {
        fn replicates(&self, shard: u32) -> bool {
            shard == 3
        }
        fn leads(&self, shard: u32) -> bool {
            shard == 3 && !self.deposed.load(Ordering::Acquire)
        }
        fn propose(&self, shard: u32, rows: Vec<RowOp>, done: ProposalDone) {
            self.proposals.lock().unwrap().push((shard, rows, done));
            self.proposed.notify_one();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_removal_of_delivered_rows_is_proposed_again_while_this_node_leads() {
        let group = Arc::new(HeldGroup::default());
        let key = crate::keys::outbox_key(3, 7).to_vec();
        remove_delivered(
            group.clone(),
            3,
            vec![RowOp::remove(RowTable::Outbox, key.clone())],
        );
        group.proposed.notified().await;
        let (_, _, done) = group.take().remove(0);
        done(ProposalOutcome::Unknown);
        tokio::time::timeout(
            std::time::Duration::from_millis(REMOVAL_RETRY_MS * 4),
            group.proposed.notified(),
        )
        .await
        .expect("a removal the group lost is proposed again");
        let (shard, rows, done) = group.take().remove(0);
        assert_eq!((shard, rows[0].key.clone()), (3, key));
        // Deposed: the next leader adopts the rows, so this node stops trying.
        group.deposed.store(true, Ordering::Release);
        done(ProposalOutcome::Unknown);
        tokio::time::sleep(std::time::Duration::from_millis(REMOVAL_RETRY_MS * 4)).await;
        assert!(
            group.take().is_empty(),
            "a deposed leader proposes nothing more"
        );
    }

    impl HeldGroup {
        fn take(&self) -> Vec<(u32, Vec<RowOp>, ProposalDone)> {
            std::mem::take(&mut *self.proposals.lock().unwrap())
        }
    }

    fn change(shard: u32, id: &str, fence: &Arc<AtomicBool>) -> WriteOp {
        let entity = EntityRef::new(EntityKind::Cart, id);
        let key = crate::keys::entity_key(shard, &entity);
        WriteOp::Entity(Box::new(EntityWrite {
            shard,
            epoch: 1,
            entity,
            key,
            record: b"record".to_vec(),
            msg_ids: vec!["m1".into()],
            outbox: Vec::new(),
            after: Vec::new(),
            state_for_listeners: None,
            now_ms: 5,
            done: None,
            fence: Some(fence.clone()),
        }))
    }

    async fn settled(writer: &Writer) {
        // Every operation before this one has been through a commit.
        writer.write_rows(RowWrite::default()).await.unwrap();
    }

    #[tokio::test]
    async fn a_replicated_change_is_durable_only_once_its_group_commits_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.redb")).unwrap();
        let (relay, mut feed) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::start(store.clone(), relay, Vec::new()).unwrap();
        let group = Arc::new(HeldGroup::default());
        writer.set_replication(group.clone());
        assert!(!writer.early_answers());
        let fence = Arc::new(AtomicBool::new(false));
        let replicated = writer.submit(change(3, "a", &fence)).unwrap();
        let local = writer.submit(change(4, "b", &fence)).unwrap();
        settled(&writer).await;
        // The local change is on disk, yet neither counts as durable: ticket order holds.
        assert!(!writer.is_durable(replicated) && !writer.is_durable(local));
        let mut proposals = group.take();
        assert_eq!(proposals.len(), 1);
        let (shard, rows, done) = proposals.remove(0);
        assert_eq!(shard, 3);
        assert_eq!(rows.len(), 2, "the record and the message's mark");
        let key = rows[0].key.clone();
        assert!(
            store.entity(&key).unwrap().is_none(),
            "only the group writes it"
        );
        // The group applies the rows through the writer, then answers.
        writer.submit_rows(RowWrite::rows(rows)).unwrap();
        done(ProposalOutcome::Committed);
        assert!(writer.durable(local).await);
        assert!(writer.is_durable(replicated));
        assert!(store.dedup_seen(&key, "m1").unwrap());
        assert!(!fence.load(Ordering::Acquire));
        drop(writer);
        while let Ok(f) = feed.try_recv() {
            assert!(
                !matches!(f, RelayFeed::Submitted { .. }),
                "no early delivery"
            );
        }
    }

    #[tokio::test]
    async fn a_change_its_group_refuses_is_refused_and_fences_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.redb")).unwrap();
        let (relay, _feed) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::start(store, relay, Vec::new()).unwrap();
        let group = Arc::new(HeldGroup::default());
        writer.set_replication(group.clone());
        // A definite refusal and a round of unknown outcome: both refused here, and only
        // the second may still take effect.
        for (outcome, id) in [
            (ProposalOutcome::Refused, "a"),
            (ProposalOutcome::Unknown, "b"),
        ] {
            let fence = Arc::new(AtomicBool::new(false));
            let ticket = writer.submit(change(3, id, &fence)).unwrap();
            settled(&writer).await;
            let (_, _, done) = group.take().remove(0);
            done(outcome);
            assert!(writer.durable(ticket).await);
            assert!(writer.was_refused(ticket) && !writer.is_durable(ticket));
            let why = match outcome {
                ProposalOutcome::Unknown => crate::writer::Refusal::Unknown,
                _ => crate::writer::Refusal::NotHere,
            };
            assert_eq!(writer.refusal(ticket), Some(why));
            assert!(fence.load(Ordering::Acquire));
        }
    }

    fn pending() -> Outstanding {
        Outstanding {
            outbox: Vec::new(),
            state: None,
            done: None,
            fence: None,
        }
    }

    #[test]
    fn the_watermark_stops_below_the_first_outstanding_change() {
        let mut o = OutstandingChanges::default();
        assert_eq!(o.watermark(10), 10);
        o.insert(4, pending());
        o.insert(7, pending());
        assert_eq!(o.watermark(10), 3);
        assert_eq!(o.watermark(2), 2);
        assert!(o.take(4).is_some());
        assert_eq!(o.watermark(10), 6);
        assert!(o.take(7).is_some());
        assert_eq!(o.watermark(10), 10);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn a_refused_change_fences_its_shard_and_answers_its_waiter() {
        let fence = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = oneshot::channel();
        Outstanding {
            outbox: Vec::new(),
            state: None,
            done: Some(tx),
            fence: Some(fence.clone()),
        }
        .refuse();
        assert!(fence.load(Ordering::Acquire));
        assert!(matches!(rx.try_recv(), Ok(Err(StoreError::Replication(_)))));
    }
}
