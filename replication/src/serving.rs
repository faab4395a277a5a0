//! Which shards this node serves. A shard's entities run on its group's leader, and only
//! while the leader holds a lease: a majority acknowledged it less than `lease_ms` ago.
//! openraft's followers refuse to vote for anyone else until their own leader lease
//! (`election_timeout_max` after they last heard from the leader) runs out, and `lease_ms`
//! is shorter than that, so a deposed leader's lease ends before a newer term can serve.
//!
//! A node starts serving a shard once it leads the group and has applied every entry in
//! its log (its term's first, blank entry included, hence every entry of earlier terms):
//! its entities then load the committed state. It stops when it loses the lead, when the
//! term changes, or when a proposal fails (the outcome of that change is unknown: the shard
//! starts again here once the log says what happened).
//!
//! `Serving` is also the writer's `ShardReplication`: a change of a served shard goes to
//! that term's proposer; a change of a shard not served here is refused at once.

use crate::proposer::Proposer;
use crate::types::{GroupId, NodeId, ShardRaft, ShardRow, ShardTable};
use agora_store::replicated::{ProposalDone, ProposalOutcome, ShardReplication};
use agora_store::{RowOp, RowTable};
use async_trait::async_trait;
use openraft::{RaftMetrics, ServerState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// A shard group's metrics as its member here sees them.
type GroupMetrics = RaftMetrics<NodeId, openraft::BasicNode>;

/// Whether a look at a group's metrics is at a snapshot published since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Snapshot {
    /// Published since the last look: its `millis_since_quorum_ack` was measured about now.
    New,
    /// Seen before (the group's core published nothing since: it may be stalled, waiting on
    /// its disk): how long ago a majority acknowledged is unknown now.
    SeenBefore,
}

/// Until when (ms since `Serving`'s origin, `now_ms` now) a majority's acknowledgement
/// `since_ack_ms` ago lets this node serve, for a lease of `lease_ms`. Only a snapshot
/// published just now counts: `millis_since_quorum_ack` was measured when it was published,
/// so a snapshot seen again would make an old acknowledgement look recent (a leader whose
/// core stalled on a slow disk while the others elected a new leader would serve again).
fn lease_until_ms(
    now_ms: u64,
    lease_ms: u64,
    since_ack_ms: Option<u64>,
    snapshot: Snapshot,
) -> Option<u64> {
    match (since_ack_ms, snapshot) {
        (Some(since_ack_ms), Snapshot::New) => {
            Some((now_ms + lease_ms).saturating_sub(since_ack_ms))
        }
        _ => None,
    }
}

/// What the node does when it starts or stops serving a shard.
#[async_trait]
pub trait LeadershipEvents: Send + Sync + 'static {
    /// This node now serves `shard` under `term`.
    async fn lead(&self, shard: GroupId, term: u64);
    /// This node no longer serves `shard`: its entities must stop.
    async fn step_down(&self, shard: GroupId);
    /// This node's lead of `shard` is about to move: its entities finish what they hold and
    /// stop, and later messages wait (answered by `step_down`). Resolves once they stopped.
    async fn quiesce(&self, _shard: GroupId) {}
}

/// Told each time this node lets a shard's entities run (a `may_serve` that says yes), with
/// the group term it serves under.
pub use agora_seams::ServedLog;

mod handover;
use handover::Handover;
pub use handover::{Balancing, TransferRefused};

/// How serving behaves.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// How long a majority's acknowledgement lets this node serve (below the election
    /// timeout's minimum).
    pub lease_ms: u64,
    /// Longest a proposal may take before its outcome counts as unknown.
    pub commit_timeout_ms: u64,
    /// How large one entry may grow.
    pub entry_limits: crate::proposer::EntryLimits,
    /// How often leadership is looked at even when nothing changes.
    pub check_every_ms: u64,
}

impl ServingConfig {
    /// The settings for groups timed by `config`: the lease ends a heartbeat before the
    /// shortest election timeout.
    pub fn for_groups(config: &crate::GroupConfig) -> Self {
        let lease_ms = config
            .election_timeout_ms
            .0
            .saturating_sub(config.heartbeat_ms)
            .max(1);
        Self {
            lease_ms,
            commit_timeout_ms: 2_000,
            entry_limits: crate::proposer::EntryLimits::default(),
            check_every_ms: config.heartbeat_ms,
        }
    }
}

/// A shard served here.
struct Lead {
    term: u64,
    proposer: Proposer,
    /// Milliseconds since `Serving`'s origin until which the lease holds.
    lease_until_ms: AtomicU64,
}

struct Inner {
    me: NodeId,
    shard_count: u32,
    config: ServingConfig,
    origin: Instant,
    leads: RwLock<BTreeMap<GroupId, Arc<Lead>>>,
    /// The groups to ask (set once balancing starts).
    balancing: OnceLock<Balancing>,
    /// Each group's replicas as placement wants them, its preferred leader first.
    desired: RwLock<BTreeMap<GroupId, Vec<NodeId>>>,
    /// The last time this node stepped aside in each group, and in which term.
    handovers: Mutex<BTreeMap<GroupId, Handover>>,
    /// This node's member of each group it follows.
    rafts: RwLock<BTreeMap<GroupId, ShardRaft>>,
    /// What the node does on leading and stepping down.
    events: OnceLock<Arc<dyn LeadershipEvents>>,
    /// Who is told of each shard served here (the simulator's checker).
    served_log: OnceLock<Arc<dyn ServedLog>>,
    /// The proposer of each group's last lead here, with its term, once it stopped.
    retired: Mutex<BTreeMap<GroupId, (u64, Proposer)>>,
    /// Set when the node is about to stop: it hands its leads on and takes none again.
    leaving: AtomicBool,
}

/// The shards this node serves, and the writer's way into their groups.
#[derive(Clone)]
pub struct Serving {
    inner: Arc<Inner>,
}

/// Whether a member with metrics `m` may start serving: it leads, and everything in its
/// log is applied, its term's first entry included.
pub fn ready_to_serve(me: NodeId, m: &RaftMetrics<NodeId, openraft::BasicNode>) -> bool {
    m.state == ServerState::Leader
        && m.current_leader == Some(me)
        && m.last_applied.is_some_and(|l| {
            l.leader_id.term == m.current_term && Some(l.index) == m.last_log_index
        })
}

impl Serving {
    /// Node `me`'s serving of `shard_count` replicated shards.
    pub fn new(me: NodeId, shard_count: u32, config: ServingConfig) -> Self {
        assert!(config.lease_ms > 0, "a lease lasts some time");
        Self {
            inner: Arc::new(Inner {
                me,
                shard_count,
                config,
                origin: Instant::now(),
                leads: RwLock::new(BTreeMap::new()),
                balancing: OnceLock::new(),
                desired: RwLock::new(BTreeMap::new()),
                handovers: Mutex::new(BTreeMap::new()),
                rafts: RwLock::new(BTreeMap::new()),
                events: OnceLock::new(),
                served_log: OnceLock::new(),
                retired: Mutex::new(BTreeMap::new()),
                leaving: AtomicBool::new(false),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.origin.elapsed().as_millis() as u64
    }

    fn lead(&self, shard: GroupId) -> Option<Arc<Lead>> {
        self.inner.leads.read().ok()?.get(&shard).cloned()
    }

    /// Tells `log` of every shard served here from now on.
    pub fn log_served(&self, log: Arc<dyn ServedLog>) {
        let _ = self.inner.served_log.set(log);
    }

    /// Whether this node may answer for `shard` now: it serves it, its lease holds, and no
    /// proposal of this term failed.
    pub fn may_serve(&self, shard: GroupId) -> bool {
        let Some(lead) = self.lead(shard) else {
            return false;
        };
        let leased = self.now_ms() < lead.lease_until_ms.load(Ordering::Acquire)
            || agora_seams::planted::is_planted(agora_seams::planted::Bug::ServeWithoutLease);
        let serves = leased && !lead.proposer.failed();
        if let (true, Some(log)) = (serves, self.inner.served_log.get()) {
            log.served(self.inner.me, shard, lead.term);
        }
        serves
    }

    /// The shards served here, ascending.
    pub fn served(&self) -> Vec<GroupId> {
        self.inner
            .leads
            .read()
            .map(|l| l.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Follows `raft` (this node's member of `shard`'s group): serves the shard while this
    /// node may, telling `events`. Ends when the group shuts down.
    pub fn watch(
        &self,
        shard: GroupId,
        raft: ShardRaft,
        events: Arc<dyn LeadershipEvents>,
    ) -> tokio::task::JoinHandle<()> {
        let _ = self.inner.events.set(events.clone());
        if let Ok(mut rafts) = self.inner.rafts.write() {
            rafts.insert(shard, raft.clone());
        }
        let this = self.clone();
        tokio::spawn(async move { this.follow(shard, raft, events).await })
    }

    async fn follow(&self, shard: GroupId, raft: ShardRaft, events: Arc<dyn LeadershipEvents>) {
        let mut metrics = raft.metrics();
        let every = Duration::from_millis(self.inner.config.check_every_ms);
        // The first look may be at metrics published long ago.
        let mut published = false;
        loop {
            // Published since the last look: woken by the change, or published while the
            // wait timed out (`changed` marks what it returns for as seen).
            let snapshot = if published || metrics.has_changed().unwrap_or(false) {
                Snapshot::New
            } else {
                Snapshot::SeenBefore
            };
            let m = metrics.borrow_and_update().clone();
            self.observe(shard, &raft, (&m, snapshot), events.as_ref())
                .await;
            published = tokio::select! {
                changed = metrics.changed() => match changed {
                    Ok(()) => true,
                    Err(_) => break,
                },
                _ = tokio::time::sleep(every) => false,
            };
        }
        self.stop_serving(shard, events.as_ref()).await;
    }

    /// Acts on one look at the group's metrics (`snapshot` says whether they were published
    /// since the last look).
    async fn observe(
        &self,
        shard: GroupId,
        raft: &ShardRaft,
        (m, snapshot): (&GroupMetrics, Snapshot),
        events: &dyn LeadershipEvents,
    ) {
        let leading = m.state == ServerState::Leader && m.current_leader == Some(self.inner.me);
        match self.lead(shard) {
            Some(lead) if leading && lead.term == m.current_term && !lead.proposer.failed() => {
                self.extend_lease(&lead, m, snapshot);
                if let Some(to) = self.balance_target(shard, m) {
                    self.step_aside(shard, m, to, events).await;
                }
            }
            Some(_) => self.stop_serving(shard, events).await,
            None if !self.inner.leaving.load(Ordering::Acquire)
                && ready_to_serve(self.inner.me, m)
                && !self.stepped_aside(shard, m.current_term)
                && self.predecessor_settled(shard, m.current_term) =>
            {
                self.start_serving(shard, raft, m, snapshot);
                events.lead(shard, m.current_term).await;
            }
            None => {}
        }
    }

    /// Whether the last lead of `shard` here, if it was of `term`, can append nothing more.
    /// An entry it handed to openraft and never heard of again passes the term's fence, so
    /// a successor in the same term waits for it: applied before the successor adopts the
    /// shard's outbox, or never appended.
    fn predecessor_settled(&self, shard: GroupId, term: u64) -> bool {
        self.inner.retired.lock().is_ok_and(|r| {
            r.get(&shard)
                .is_none_or(|(t, proposer)| *t != term || proposer.settled())
        })
    }

    /// Forgets this node's member of `shard` (the replica left the group).
    pub async fn forget(&self, shard: GroupId) {
        if let Ok(mut rafts) = self.inner.rafts.write() {
            rafts.remove(&shard);
        }
        if let Some(events) = self.inner.events.get().cloned() {
            self.stop_serving(shard, events.as_ref()).await;
        }
    }

    fn extend_lease(&self, lead: &Lead, m: &GroupMetrics, snapshot: Snapshot) {
        let lease_ms = self.inner.config.lease_ms;
        let ack = m.millis_since_quorum_ack;
        if let Some(until) = lease_until_ms(self.now_ms(), lease_ms, ack, snapshot) {
            lead.lease_until_ms.fetch_max(until, Ordering::AcqRel);
        }
    }

    fn start_serving(
        &self,
        shard: GroupId,
        raft: &ShardRaft,
        m: &GroupMetrics,
        snapshot: Snapshot,
    ) {
        let config = &self.inner.config;
        let lead = Arc::new(Lead {
            term: m.current_term,
            proposer: Proposer::start(
                shard,
                raft.clone(),
                m.current_term,
                config.entry_limits,
                Duration::from_millis(config.commit_timeout_ms),
            ),
            lease_until_ms: AtomicU64::new(0),
        });
        self.extend_lease(&lead, m, snapshot);
        // A leader openraft restored from its own persisted vote has no lease until a
        // majority acknowledges its term, which peers at a newer term never do: it answers
        // nothing meanwhile, and the log says so.
        let leased = self.now_ms() < lead.lease_until_ms.load(Ordering::Acquire);
        if let Ok(mut leads) = self.inner.leads.write() {
            let fresh = leads.insert(shard, lead).is_none();
            assert!(fresh, "shard {shard} started serving twice");
        }
        metrics::counter!("agora_replication_leads_total").increment(1);
        tracing::info!(
            shard,
            term = m.current_term,
            leased,
            "leading shard: serving it while a majority acknowledges this term"
        );
    }

    async fn stop_serving(&self, shard: GroupId, events: &dyn LeadershipEvents) {
        let removed = match self.inner.leads.write() {
            Ok(mut leads) => leads.remove(&shard),
            Err(_) => None,
        };
        if let Some(lead) = removed {
            tracing::info!(
                shard,
                term = lead.term,
                failed = lead.proposer.failed(),
                "no longer serving shard"
            );
            lead.proposer.retire();
            if let Ok(mut retired) = self.inner.retired.lock() {
                retired.insert(shard, (lead.term, lead.proposer.clone()));
            }
            metrics::counter!("agora_replication_step_downs_total").increment(1);
            events.step_down(shard).await;
        }
    }
}

/// A row of the writer's, as a group's log carries it.
fn shard_row(row: RowOp) -> ShardRow {
    let table = match row.table {
        RowTable::Entities => ShardTable::Entities,
        RowTable::Outbox => ShardTable::Outbox,
        other => panic!("the writer proposed a row of {other:?}, which no shard holds"),
    };
    ShardRow {
        table,
        key: row.key,
        value: row.value,
    }
}

impl ShardReplication for Serving {
    fn replicates(&self, shard: u32) -> bool {
        shard < self.inner.shard_count
    }

    fn leads(&self, shard: u32) -> bool {
        self.lead(shard).is_some()
    }

    fn propose(&self, shard: u32, rows: Vec<RowOp>, done: ProposalDone) {
        match self.lead(shard) {
            Some(lead) => lead.proposer.submit(
                rows.into_iter().map(shard_row).collect(),
                Box::new(move |answer| {
                    done(match answer {
                        Ok(()) => ProposalOutcome::Committed,
                        Err(e) if e.took_no_effect() => ProposalOutcome::Refused,
                        Err(_) => ProposalOutcome::Unknown,
                    })
                }),
            ),
            None => done(ProposalOutcome::Refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_snapshot_published_since_the_last_look_extends_the_lease() {
        // Published just now: a majority acknowledged 40 ms ago, the lease runs 200 ms.
        assert_eq!(
            lease_until_ms(1_000, 200, Some(40), Snapshot::New),
            Some(1_160)
        );
        // The same snapshot seen again 2 s later (the core stalled on its disk and published
        // nothing): its "40 ms ago" is 2 s old, so it extends nothing.
        assert_eq!(
            lease_until_ms(3_000, 200, Some(40), Snapshot::SeenBefore),
            None
        );
        // No acknowledgement from a majority yet.
        assert_eq!(lease_until_ms(1_000, 200, None, Snapshot::New), None);
        // An acknowledgement older than the lease gives one that already ended.
        assert_eq!(
            lease_until_ms(1_000, 200, Some(300), Snapshot::New),
            Some(900)
        );
    }
}
