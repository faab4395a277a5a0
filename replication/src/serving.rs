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

use crate::election_holds::ElectionHold;
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

/// Where leaders should be.
pub struct Balancing {
    /// The node's groups (to ask a follower to call an election).
    pub groups: crate::Groups,
}

/// A step aside: in which term, and when.
#[derive(Debug, Clone, Copy)]
struct Handover {
    term: u64,
    at: Instant,
    to: NodeId,
}

/// How long a leader that stepped aside waits for the new leader before serving again.
const HANDOVER_WAIT: Duration = Duration::from_secs(2);
/// Longest a lead that moves waits for its shard's work in progress to commit and for the
/// replica it hands over to to hold every entry.
const QUIESCE_MAX: Duration = Duration::from_millis(500);
/// Least time between two balancing handovers of one group.
const HANDOVER_EVERY: Duration = Duration::from_secs(5);

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

    /// Starts balancing leaders: each group's leader steps aside for its preferred leader
    /// once that one is caught up.
    pub fn balance(&self, balancing: Balancing) {
        let _ = self.inner.balancing.set(balancing);
    }

    /// The replica this node stepped aside for in `shard`, while it waits for it to lead.
    pub fn handed_to(&self, shard: GroupId) -> Option<NodeId> {
        let handovers = self.inner.handovers.lock().ok()?;
        let h = handovers.get(&shard)?;
        (h.at.elapsed() < HANDOVER_WAIT).then_some(h.to)
    }

    /// Whether this node stepped aside in `term` of `shard` recently (it waits for the
    /// follower it chose rather than serve again at once).
    fn stepped_aside(&self, shard: GroupId, term: u64) -> bool {
        self.inner.handovers.lock().is_ok_and(|h| {
            h.get(&shard)
                .is_some_and(|h| h.term == term && h.at.elapsed() < HANDOVER_WAIT)
        })
    }

    /// Sets where each group's replicas should be (`placement[shard]`, the preferred leader
    /// first): a leader steps aside for the preferred one, and a leader left out steps aside
    /// for any replica that stays.
    pub fn set_placement(&self, placement: &[Vec<NodeId>]) {
        if let Ok(mut desired) = self.inner.desired.write() {
            *desired = placement
                .iter()
                .enumerate()
                .map(|(shard, nodes)| (shard as GroupId, nodes.clone()))
                .collect();
        }
    }

    /// The replicas placement wants for `shard`, the preferred leader first.
    pub fn desired(&self, shard: GroupId) -> Option<Vec<NodeId>> {
        self.inner.desired.read().ok()?.get(&shard).cloned()
    }

    /// The replica this leader should step aside for now, if any: the preferred leader, or,
    /// when this node is to leave the group, any replica that stays; always a voter holding
    /// every entry of the log, and no handover of the group was tried lately.
    fn balance_target(
        &self,
        shard: GroupId,
        m: &RaftMetrics<NodeId, openraft::BasicNode>,
    ) -> Option<NodeId> {
        let balancing = self.inner.balancing.get()?;
        // A replica that just handed this node the lead is leaving (a SIGTERM), or an
        // operator moved the lead here: handing it back at once would undo that.
        if balancing.groups.asked_to_lead_within(shard, HANDOVER_EVERY) {
            return None;
        }
        let desired = self.desired(shard)?;
        let me = self.inner.me;
        let voters = crate::membership::voters(m);
        // A peer whose connection is gone is no target, however caught up it looks: an idle
        // group's log does not move, so a replica killed a moment ago still "holds every
        // entry" (the failover bench: a lead handed to a node killed 430 ms before, and the
        // shard unserved for the two-second handover wait).
        let eligible = |n: &&NodeId| {
            **n != me && voters.contains(n) && caught_up(m, **n) && balancing.groups.connected(**n)
        };
        let target = if desired.contains(&me) {
            desired.first().filter(eligible).copied()
        } else {
            desired.iter().find(eligible).copied()
        }?;
        let recent = self.inner.handovers.lock().ok()?.get(&shard).copied();
        recent
            .is_none_or(|h| h.at.elapsed() >= HANDOVER_EVERY)
            .then_some(target)
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

    /// Stops serving `shard` and asks `to` (a caught-up follower) to call an election now:
    /// its vote request reaches this node, whose own lease on the others has lapsed, so it
    /// wins with this node's vote in one round.
    async fn step_aside(
        &self,
        shard: GroupId,
        m: &RaftMetrics<NodeId, openraft::BasicNode>,
        to: NodeId,
        events: &dyn LeadershipEvents,
    ) {
        let Some(balancing) = self.inner.balancing.get() else {
            return;
        };
        if let Ok(mut h) = self.inner.handovers.lock() {
            let handover = Handover {
                term: m.current_term,
                at: Instant::now(),
                to,
            };
            h.insert(shard, handover);
        }
        let quiet = self.quiesce(shard, to, events).await;
        tracing::info!(
            shard,
            to,
            term = m.current_term,
            quiet,
            "stepping aside for another replica"
        );
        self.stop_serving(shard, events).await;
        self.keep_out_of_elections(shard, &balancing.groups);
        let asked = balancing.groups.ask_to_elect(shard, to).await;
        metrics::counter!("agora_replication_handovers_total").increment(1);
        match asked {
            crate::groups::ElectAsk::Called => {}
            crate::groups::ElectAsk::Refused => {
                tracing::debug!(shard, to, "the replica did not call an election");
            }
            // Never sent (its connection went while the shard quiesced): it calls no
            // election on this ask, so this node, still the group's leader, serves again at
            // once instead of waiting out the handover for a leader that is not coming.
            crate::groups::ElectAsk::NotSent => {
                tracing::info!(shard, to, "the replica is gone: serving the shard again");
                if let Ok(mut h) = self.inner.handovers.lock() {
                    h.remove(&shard);
                }
                balancing
                    .groups
                    .hold_elections(shard, ElectionHold::SteppedAside, false);
            }
        }
    }

    /// Before a lead moves to `to`: the shard's entities finish what they hold and stop,
    /// their changes commit, and `to` comes to hold every entry (else this node would refuse
    /// it the vote it needs). At most `QUIESCE_MAX`; whether all that happened.
    async fn quiesce(&self, shard: GroupId, to: NodeId, events: &dyn LeadershipEvents) -> bool {
        let started = Instant::now();
        let _ = tokio::time::timeout(QUIESCE_MAX, events.quiesce(shard)).await;
        let (Some(lead), Some(raft)) = (self.lead(shard), self.raft_of(shard)) else {
            return false;
        };
        let quiet = loop {
            if lead.proposer.idle() && caught_up(&raft.metrics().borrow(), to) {
                break true;
            }
            if started.elapsed() >= QUIESCE_MAX || lead.proposer.failed() {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        metrics::histogram!("agora_replication_handover_quiesce_seconds")
            .record(started.elapsed().as_secs_f64());
        quiet
    }

    /// Whether a connection to `peer` is up (always, before balancing starts).
    fn connected(&self, peer: NodeId) -> bool {
        self.inner
            .balancing
            .get()
            .is_none_or(|b| b.groups.connected(peer))
    }

    /// This node's member of `shard`'s group, if it runs one.
    fn raft_of(&self, shard: GroupId) -> Option<ShardRaft> {
        self.inner
            .rafts
            .read()
            .ok()
            .and_then(|r| r.get(&shard).cloned())
    }

    /// After stepping aside this node calls no election of `shard` for a while (it still
    /// votes): openraft 0.9 has no leader transfer, and the target's first election is
    /// refused while the replicas' leases run, so the old leader's own timer would often win
    /// the race that follows and take the lead back. The quiet lasts five leases.
    ///
    /// A leader that placement leaves out of the group stays out of elections for good: in a
    /// joint configuration the replica it chose may not win the first round, and a leaving
    /// leader that took the lead back each time would hold the membership change off forever
    /// (it still votes; the group's next leader completes the change and it leaves).
    fn keep_out_of_elections(&self, shard: GroupId, groups: &crate::Groups) {
        let leaving = self
            .desired(shard)
            .is_some_and(|d| !d.contains(&self.inner.me));
        if leaving {
            // Until placement keeps it after all (the node's replica moves end the hold).
            groups.hold_elections(shard, ElectionHold::Leaving, true);
            return;
        }
        groups.hold_elections(shard, ElectionHold::SteppedAside, true);
        let quiet = std::time::Duration::from_millis(self.inner.config.lease_ms.saturating_mul(5));
        let groups = groups.clone();
        tokio::spawn(async move {
            tokio::time::sleep(quiet).await;
            groups.hold_elections(shard, ElectionHold::SteppedAside, false);
        });
    }

    /// Hands the lead of `shard` to replica `to` (an operator's leadership transfer): this
    /// node stops serving the shard, then asks `to` to call an election. No data moves.
    pub async fn transfer(&self, shard: GroupId, to: NodeId) -> Result<(), TransferRefused> {
        let (m, events) = self.transferable(shard, to)?;
        self.step_aside(shard, &m, to, events.as_ref()).await;
        Ok(())
    }

    /// Refuses at once a leadership transfer that cannot be made (`transfer`'s checks).
    pub fn check_transfer(&self, shard: GroupId, to: NodeId) -> Result<(), TransferRefused> {
        self.transferable(shard, to).map(|_| ())
    }

    /// The shard's group metrics and the leadership events, when this node may hand the
    /// shard's lead to `to`.
    fn transferable(
        &self,
        shard: GroupId,
        to: NodeId,
    ) -> Result<(GroupMetrics, Arc<dyn LeadershipEvents>), TransferRefused> {
        let raft = self.raft_of(shard);
        let me = self.inner.me;
        let not_leader = |leader| TransferRefused::NotLeader { me, shard, leader };
        if self.inner.balancing.get().is_none() {
            return Err(TransferRefused::Starting { shard });
        }
        let (Some(raft), Some(events)) = (raft, self.inner.events.get().cloned()) else {
            return Err(not_leader(None));
        };
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(me) {
            return Err(not_leader(m.current_leader));
        }
        if to == me {
            return Err(TransferRefused::AlreadyLeads { shard, to });
        }
        if !caught_up(&m, to) {
            return Err(TransferRefused::NotCaughtUp { shard, to });
        }
        if !self.connected(to) {
            return Err(TransferRefused::NotConnected { shard, to });
        }
        Ok((m, events))
    }

    /// Hands every shard this node leads to a caught-up follower (a node about to stop),
    /// then waits, at most `wait`, until none is led here. Returns how many are still led.
    pub async fn step_aside_all(&self, wait: Duration) -> usize {
        let Some(events) = self.inner.events.get().cloned() else {
            return 0;
        };
        let rafts: Vec<(GroupId, ShardRaft)> = match self.inner.rafts.read() {
            Ok(r) => r.iter().map(|(g, r)| (*g, r.clone())).collect(),
            Err(_) => return 0,
        };
        let me = self.inner.me;
        self.inner.leaving.store(true, Ordering::Release);
        for (shard, raft) in &rafts {
            let m = raft.metrics().borrow().clone();
            if m.current_leader != Some(me) {
                continue;
            }
            // The replica furthest along (it catches up while the shard quiesces).
            let voters = crate::membership::voters(&m);
            let target = m.replication.as_ref().and_then(|r| {
                r.iter()
                    .filter(|(peer, _)| {
                        **peer != me && voters.contains(peer) && self.connected(**peer)
                    })
                    .max_by_key(|(peer, matched)| {
                        (matched.map(|l| l.index), std::cmp::Reverse(**peer))
                    })
                    .map(|(peer, _)| *peer)
            });
            match target {
                Some(to) => self.step_aside(*shard, &m, to, events.as_ref()).await,
                None => self.stop_serving(*shard, events.as_ref()).await,
            }
        }
        let deadline = Instant::now() + wait;
        let mut still = 0;
        for (_, raft) in &rafts {
            let left = deadline.saturating_duration_since(Instant::now());
            let handed = raft
                .wait(Some(left))
                .metrics(|m| m.current_leader != Some(me), "led elsewhere")
                .await;
            still += usize::from(handed.is_err());
        }
        still
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
        if let Ok(mut leads) = self.inner.leads.write() {
            let fresh = leads.insert(shard, lead).is_none();
            assert!(fresh, "shard {shard} started serving twice");
        }
        metrics::counter!("agora_replication_leads_total").increment(1);
        tracing::info!(
            shard,
            term = m.current_term,
            "serving shard as its group's leader"
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

/// Why a leadership transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefused {
    /// This node does not lead the shard (`leader`, if known, does: ask it).
    #[error("node {me} does not lead shard {shard}{}", leader.map(|l| format!("; node {l} does: ask it")).unwrap_or_default())]
    NotLeader {
        /// This node.
        me: NodeId,
        /// The shard.
        shard: GroupId,
        /// Its leader, as this node knows it.
        leader: Option<NodeId>,
    },
    /// The target leads the shard already.
    #[error("node {to} leads shard {shard} already")]
    AlreadyLeads {
        /// The shard.
        shard: GroupId,
        /// The target.
        to: NodeId,
    },
    /// This node's groups are still starting.
    #[error("shard {shard}'s groups are still starting here: try again shortly")]
    Starting {
        /// The shard.
        shard: GroupId,
    },
    /// The target is not a replica holding every entry of the shard's log.
    #[error("node {to} is not a caught-up replica of shard {shard}")]
    NotCaughtUp {
        /// The shard.
        shard: GroupId,
        /// The target.
        to: NodeId,
    },
    /// This node has no connection to the target (it is down or cut off).
    #[error("node {to} is not connected to this node: it cannot take shard {shard}'s lead now")]
    NotConnected {
        /// The shard.
        shard: GroupId,
        /// The target.
        to: NodeId,
    },
}

/// Whether the leader's metrics `m` say `peer` holds every entry of its log.
fn caught_up(m: &RaftMetrics<NodeId, openraft::BasicNode>, peer: NodeId) -> bool {
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&peer).copied().flatten());
    matched.is_some_and(|l| Some(l.index) == m.last_log_index)
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
