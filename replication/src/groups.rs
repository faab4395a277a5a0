//! The shard groups a node runs: starting one (its log and state machine in the node's
//! store), finding one, and serving the Raft requests its peers send to any of them.

use crate::codec::decode;
use crate::election_holds::ElectionHold;
use crate::log::GroupLog;
use crate::membership::AppliedMembers;
use crate::network::{encode_reply, GroupNetwork, GroupRpc, GroupRpcReply, GroupTransport};
use crate::state::GroupState;
use crate::types::{GroupId, NodeId, ShardRaft};
use crate::ReplicationError;
use agora_actors::seams::BlockingPool;
use agora_store::{Store, Writer};
use openraft::error::{InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Timings of every shard group of a node.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The cluster's name.
    pub cluster_name: String,
    /// How often a leader sends heartbeats.
    pub heartbeat_ms: u64,
    /// The election timeout range: a follower that hears no leader for a random time in
    /// it calls an election (failover time is about its middle).
    pub election_timeout_ms: (u64, u64),
    /// Largest request the transport carries, bytes: an append that would be larger is
    /// sent as several smaller ones.
    pub max_message_bytes: usize,
}

/// Room left in a cluster frame for what wraps a group request.
pub const FRAME_OVERHEAD_BYTES: usize = 64 * 1024;

impl GroupConfig {
    /// The largest group request a cluster frame of `max_frame_bytes` carries.
    pub fn message_bytes_for_frame(max_frame_bytes: u64) -> usize {
        let frame = usize::try_from(max_frame_bytes).unwrap_or(usize::MAX);
        assert!(
            frame > 2 * FRAME_OVERHEAD_BYTES,
            "a cluster frame holds more than its overhead"
        );
        frame - FRAME_OVERHEAD_BYTES
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            cluster_name: "agora".into(),
            heartbeat_ms: 50,
            election_timeout_ms: (250, 500),
            max_message_bytes: Self::message_bytes_for_frame(16 * 1024 * 1024),
        }
    }
}

/// Why a group could not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// Its storage could not be opened.
    #[error(transparent)]
    Storage(#[from] ReplicationError),
    /// The Raft configuration is invalid.
    #[error("group raft config: {0}")]
    Config(String),
    /// openraft failed.
    #[error("group raft: {0}")]
    Fatal(String),
}

/// The shard groups of one node.
#[derive(Clone)]
pub struct Groups {
    me: NodeId,
    store: Store,
    writer: Writer,
    pool: Arc<dyn BlockingPool>,
    transport: Arc<dyn GroupTransport>,
    config: Arc<openraft::Config>,
    /// Largest request sent to a peer, bytes.
    max_message_bytes: usize,
    rafts: Arc<RwLock<BTreeMap<GroupId, ShardRaft>>>,
    /// Groups whose replica here is being rebuilt, with the commit index its first leader
    /// announced (`None` until one spoke): they grant no votes until they hold it.
    rebuilding: Arc<Mutex<BTreeMap<GroupId, Option<u64>>>>,
    /// What replicas here received from peers: snapshots and rebuilding log entries.
    received: Arc<crate::rebuild_progress::RebuildProgress>,
    /// Why replicas here call no elections.
    holds: crate::election_holds::ElectionHolds,
    /// When a peer that stepped aside last asked this node's replica of each group to call
    /// an election (a handover to this node).
    asked_to_lead: Arc<Mutex<BTreeMap<GroupId, tokio::time::Instant>>>,
    /// Groups whose replica here heard from a leader (an append it took) since it started.
    heard_a_leader: Arc<Mutex<std::collections::BTreeSet<GroupId>>>,
}

/// How long a peer has to say how far its log of a group goes.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// What came of asking a peer to call an election (`Groups::ask_to_elect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectAsk {
    /// It called one.
    Called,
    /// It refused, failed or did not answer in time: it may or may not have called one.
    Refused,
    /// The request was never sent (no connection to the peer): it called none on our ask.
    NotSent,
}

impl Groups {
    /// Node `me`'s groups, stored in `store` through `writer`, reaching peers over
    /// `transport`.
    pub fn new(
        me: NodeId,
        store: Store,
        writer: Writer,
        pool: Arc<dyn BlockingPool>,
        transport: Arc<dyn GroupTransport>,
        config: &GroupConfig,
    ) -> Result<Self, GroupError> {
        let raft_config = openraft::Config {
            cluster_name: config.cluster_name.clone(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_ms.0,
            election_timeout_max: config.election_timeout_ms.1,
            // A snapshot is a whole shard: give each chunk time (the default is 200 ms).
            install_snapshot_timeout: 5_000,
            // Building a snapshot only makes applied rows durable (see `state`), so build one
            // every 1,000 entries: the log openraft keeps (up to 1,000 entries behind the
            // snapshot) stays bounded; the default, 5,000, let each group keep up to 6,000.
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| GroupError::Config(e.to_string()))?;
        Ok(Self {
            me,
            store,
            writer,
            pool,
            transport,
            config: Arc::new(raft_config),
            max_message_bytes: config.max_message_bytes,
            rafts: Arc::new(RwLock::new(BTreeMap::new())),
            rebuilding: Arc::new(Mutex::new(BTreeMap::new())),
            holds: Default::default(),
            received: Arc::default(),
            asked_to_lead: Arc::default(),
            heard_a_leader: Arc::default(),
        })
    }

    /// This node's member of `group`, if it runs one.
    pub fn raft(&self, group: GroupId) -> Option<ShardRaft> {
        self.rafts.read().ok()?.get(&group).cloned()
    }

    /// The leader of `group` as this node's member knows it (`None` if it runs none, or
    /// knows no leader now).
    pub fn leader(&self, group: GroupId) -> Option<NodeId> {
        self.raft(group)?.metrics().borrow().current_leader
    }

    /// Whether a peer handed this node the lead of `group` (asked it to call an election)
    /// less than `within` ago.
    pub fn asked_to_lead_within(&self, group: GroupId, within: Duration) -> bool {
        self.asked_to_lead
            .lock()
            .is_ok_and(|a| a.get(&group).is_some_and(|at| at.elapsed() < within))
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The groups this node runs, ascending.
    pub fn ids(&self) -> Vec<GroupId> {
        self.rafts
            .read()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Starts this node's member of `group` (or returns the running one). A replica being
    /// rebuilt does not call elections: with its log gone, its terms would only unsettle
    /// the leader it is catching up from.
    pub async fn start(&self, group: GroupId) -> Result<ShardRaft, GroupError> {
        let raft = self.start_member(group).await?;
        if self.is_rebuilding(group) {
            self.holds.set(group, &raft, ElectionHold::Rebuilding, true);
        } else if raft.metrics().borrow().last_log_index.is_some() {
            self.hold_until_a_leader_speaks(group, &raft);
        } else {
            self.holds.apply(group, &raft);
        }
        Ok(raft)
    }

    /// A replica started again on its log calls no elections until it hears from a leader
    /// (takes an append: the vote it kept may name one that is gone), for at most six
    /// election timeouts (`ElectionHold::Starting`).
    fn hold_until_a_leader_speaks(&self, group: GroupId, raft: &ShardRaft) {
        self.holds.set(group, raft, ElectionHold::Starting, true);
        let longest = Duration::from_millis(self.config.election_timeout_max.saturating_mul(6));
        let (this, raft) = (self.clone(), raft.clone());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while !this.heard_a_leader(group) && started.elapsed() < longest {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::debug!(
                group,
                heard_a_leader = this.heard_a_leader(group),
                "a restarted replica may call elections again"
            );
            this.holds.set(group, &raft, ElectionHold::Starting, false);
        });
    }

    /// Whether this node's replica of `group` took an append from a leader since it started.
    pub fn heard_a_leader(&self, group: GroupId) -> bool {
        self.heard_a_leader.lock().is_ok_and(|h| h.contains(&group))
    }

    /// Puts `hold` on or off this node's replica of `group` (if it runs one): it calls
    /// elections only when nothing holds it (`ElectionHolds`).
    pub fn hold_elections(&self, group: GroupId, hold: ElectionHold, on: bool) {
        if let Some(raft) = self.raft(group) {
            self.holds.set(group, &raft, hold, on);
        }
    }

    /// Whether this node's replica of `group` may call elections now: nothing holds it, or
    /// it was released to stand (`ElectionHolds`).
    pub fn calls_elections(&self, group: GroupId) -> bool {
        self.holds.holds(group).is_empty() || self.holds.is_released(group)
    }

    async fn start_member(&self, group: GroupId) -> Result<ShardRaft, GroupError> {
        if let Some(raft) = self.raft(group) {
            return Ok(raft);
        }
        let log = GroupLog::new(
            group,
            self.store.clone(),
            self.writer.clone(),
            self.pool.clone(),
        );
        let state = GroupState::open(
            group,
            self.store.clone(),
            self.writer.clone(),
            self.pool.clone(),
        )?;
        let network = GroupNetwork::new(group, self.transport.clone(), self.max_message_bytes);
        let raft = ShardRaft::new(self.me, self.config.clone(), network, log, state)
            .await
            .map_err(|e| GroupError::Fatal(e.to_string()))?;
        let mut rafts = self
            .rafts
            .write()
            .map_err(|_| GroupError::Fatal("group table lock poisoned".into()))?;
        // Another caller may have started it meanwhile: keep the first.
        Ok(rafts.entry(group).or_insert(raft).clone())
    }

    /// Makes `members` the first membership of `group` (on one member only; a group that
    /// already has a log keeps it).
    pub async fn initialize(
        &self,
        group: GroupId,
        members: BTreeMap<NodeId, BasicNode>,
    ) -> Result<(), GroupError> {
        let raft = self.start(group).await?;
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(GroupError::Fatal(e.to_string())),
        }
    }

    /// Makes the nodes `members` the first membership of `group` (see `initialize`).
    pub async fn initialize_members(
        &self,
        group: GroupId,
        members: &[NodeId],
    ) -> Result<(), GroupError> {
        let members = members.iter().map(|id| (*id, BasicNode::default()));
        self.initialize(group, members.collect()).await
    }

    /// The index of the last entry of `group`'s log on this node's disk, if any.
    pub async fn last_log_index(&self, group: GroupId) -> Result<Option<u64>, GroupError> {
        let mut log = GroupLog::new(
            group,
            self.store.clone(),
            self.writer.clone(),
            self.pool.clone(),
        );
        let state = log
            .get_log_state()
            .await
            .map_err(|e| GroupError::Fatal(e.to_string()))?;
        Ok(state.last_log_id.map(|l| l.index))
    }

    /// How far `peer`'s log of `group` goes: `Some(None)` for an empty log, `None` when the
    /// peer did not answer.
    pub async fn peer_log_index(&self, group: GroupId, peer: NodeId) -> Option<Option<u64>> {
        match self.ask(peer, &GroupRpc::Status(group)).await? {
            GroupRpcReply::Status(last) => Some(last),
            _ => None,
        }
    }

    /// Sends `rpc` to `peer` and decodes its answer (`None`: no answer).
    async fn ask(&self, peer: NodeId, rpc: &GroupRpc) -> Option<GroupRpcReply> {
        let request = crate::codec::encode(rpc).ok()?;
        let answer = self
            .transport
            .call(peer, request, STATUS_TIMEOUT)
            .await
            .ok()?;
        decode::<GroupRpcReply>(&answer).ok()
    }

    /// Asks `peer` to call an election in `group` now (this node, its leader, stepped aside
    /// for it); what came of it.
    pub async fn ask_to_elect(&self, group: GroupId, peer: NodeId) -> ElectAsk {
        let Ok(request) = crate::codec::encode(&GroupRpc::Elect(group)) else {
            return ElectAsk::NotSent;
        };
        match self.transport.call(peer, request, STATUS_TIMEOUT).await {
            Ok(answer) => match decode::<GroupRpcReply>(&answer) {
                Ok(GroupRpcReply::Elect) => ElectAsk::Called,
                _ => ElectAsk::Refused,
            },
            Err(crate::network::TransportError::Unreachable(_)) => ElectAsk::NotSent,
            Err(_) => ElectAsk::Refused,
        }
    }

    /// Whether a connection to `peer` is up now (a call to it would be sent).
    pub fn connected(&self, peer: NodeId) -> bool {
        self.transport.connected(peer)
    }

    /// Marks this node's replica of `group` as being rebuilt from its peers (its disk was
    /// replaced): it grants no votes until it holds everything its first leader had
    /// committed, so it never helps elect a leader that lacks an acknowledged change.
    pub fn mark_rebuilding(&self, group: GroupId) {
        if agora_seams::planted::is_planted(agora_seams::planted::Bug::RebuildFromLagging) {
            return;
        }
        if let Ok(mut r) = self.rebuilding.lock() {
            r.insert(group, None);
        }
    }

    /// What replicas here received from peers, by group (see `RebuildProgress`).
    pub fn received(&self) -> Vec<(GroupId, crate::rebuild_progress::RebuildReceipt)> {
        self.received.all()
    }

    /// Counts and logs a snapshot chunk of `group` arriving.
    fn snapshot_chunk(&self, group: GroupId, offset: u64, chunk_bytes: usize, done: bool) {
        let chunk_bytes = chunk_bytes as u64;
        let receipt = self
            .received
            .snapshot_chunk(group, offset, chunk_bytes, done);
        metrics::counter!("agora_replication_snapshot_bytes_received_total").increment(chunk_bytes);
        tracing::info!(
            shard = group,
            snapshot_bytes = receipt.snapshot_bytes,
            chunks = receipt.snapshot_chunks,
            done,
            "receiving a replica's snapshot"
        );
    }

    /// Counts the rows of log entries a rebuilding replica of `group` received.
    fn rebuilding_entries(
        &self,
        group: GroupId,
        entries: &[openraft::Entry<crate::ShardTypeConfig>],
    ) {
        let rows_bytes: usize = entries
            .iter()
            .filter_map(|e| match &e.payload {
                openraft::EntryPayload::Normal(entry) => Some(entry.size_bytes()),
                _ => None,
            })
            .sum();
        if rows_bytes > 0 {
            let receipt = self.received.log_entries(group, rows_bytes as u64);
            metrics::counter!("agora_replication_rebuild_log_bytes_received_total")
                .increment(rows_bytes as u64);
            tracing::debug!(
                shard = group,
                log_bytes = receipt.log_bytes,
                "rebuilding from log entries"
            );
        }
    }

    /// The groups whose replica here is still being rebuilt.
    pub fn rebuilding(&self) -> Vec<GroupId> {
        self.rebuilding
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    fn is_rebuilding(&self, group: GroupId) -> bool {
        self.rebuilding.lock().is_ok_and(|r| r.contains_key(&group))
    }

    /// Notes the commit index the first leader to reach a rebuilding replica announced.
    fn rebuild_target(&self, group: GroupId, leader_commit: Option<u64>) {
        if let Ok(mut r) = self.rebuilding.lock() {
            if let Some(target @ None) = r.get_mut(&group) {
                *target = Some(leader_commit.unwrap_or(0));
            }
        }
    }

    /// Ends a replica's rebuild once it has applied its target.
    fn check_rebuilt(&self, group: GroupId, raft: &ShardRaft) {
        let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
        let Ok(mut r) = self.rebuilding.lock() else {
            return;
        };
        if let Some(Some(target)) = r.get(&group).copied() {
            if applied.is_some_and(|a| a >= target) {
                r.remove(&group);
                self.holds.set(group, raft, ElectionHold::Rebuilding, false);
                tracing::info!(
                    group,
                    target,
                    left = r.len(),
                    "replica rebuilt from its peers"
                );
            }
        }
    }

    /// Serves one encoded request from a peer with the named group; garbage or an unknown
    /// group gets a `Refused` answer, never a panic.
    pub async fn serve(&self, bytes: &[u8]) -> Vec<u8> {
        let rpc = match decode::<GroupRpc>(bytes) {
            Ok(rpc) => rpc,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable group request");
                return encode_reply(&GroupRpcReply::Refused(format!("undecodable: {e}")));
            }
        };
        let group = match &rpc {
            GroupRpc::AppendEntries(g, _)
            | GroupRpc::Vote(g, _)
            | GroupRpc::InstallSnapshot(g, _)
            | GroupRpc::Status(g)
            | GroupRpc::Elect(g)
            | GroupRpc::Members(g) => *g,
        };
        if let GroupRpc::Members(_) = rpc {
            return encode_reply(&match self.applied_members(group).await {
                Ok(members) => GroupRpcReply::Members(members),
                Err(e) => GroupRpcReply::Refused(e.to_string()),
            });
        }
        if let GroupRpc::Status(_) = rpc {
            return encode_reply(&match self.last_log_index(group).await {
                Ok(last) => GroupRpcReply::Status(last),
                Err(e) => GroupRpcReply::Refused(e.to_string()),
            });
        }
        let Some(raft) = self.raft(group) else {
            return encode_reply(&GroupRpcReply::Refused(format!(
                "node {} runs no member of group {group}",
                self.me
            )));
        };
        encode_reply(&self.serve_raft(group, &raft, rpc).await)
    }

    async fn serve_raft(&self, group: GroupId, raft: &ShardRaft, rpc: GroupRpc) -> GroupRpcReply {
        let rebuilding = self.is_rebuilding(group);
        let reply = match rpc {
            GroupRpc::Vote(..) if rebuilding => {
                return GroupRpcReply::Refused(format!(
                    "node {} is rebuilding its replica of group {group}: no votes yet",
                    self.me
                ));
            }
            GroupRpc::AppendEntries(_, r) => {
                if rebuilding {
                    self.rebuilding_entries(group, &r.entries);
                    self.rebuild_target(group, r.leader_commit.map(|l| l.index));
                }
                let answer = raft.append_entries(r).await;
                if matches!(&answer, Ok(a) if !matches!(a, openraft::raft::AppendEntriesResponse::HigherVote(_)))
                {
                    if let Ok(mut heard) = self.heard_a_leader.lock() {
                        heard.insert(group);
                    }
                }
                GroupRpcReply::AppendEntries(answer)
            }
            GroupRpc::Vote(_, r) => {
                let candidate_last = r.last_log_id;
                let answer = raft.vote(r).await;
                if let Ok(refused) = &answer {
                    self.campaign_if_candidates_lack_entries(group, raft, candidate_last, refused);
                }
                GroupRpcReply::Vote(answer)
            }
            GroupRpc::InstallSnapshot(_, r) => {
                self.snapshot_chunk(group, r.offset, r.data.len(), r.done);
                if rebuilding {
                    self.rebuild_target(group, r.meta.last_log_id.map(|l| l.index));
                }
                GroupRpcReply::InstallSnapshot(raft.install_snapshot(r).await)
            }
            GroupRpc::Elect(_) if rebuilding => {
                return GroupRpcReply::Refused("rebuilding: it may not lead yet".into());
            }
            GroupRpc::Elect(_) => match raft.trigger().elect().await {
                Ok(()) => {
                    if let Ok(mut asked) = self.asked_to_lead.lock() {
                        asked.insert(group, tokio::time::Instant::now());
                    }
                    GroupRpcReply::Elect
                }
                Err(e) => GroupRpcReply::Refused(e.to_string()),
            },
            GroupRpc::Status(_) | GroupRpc::Members(_) => {
                GroupRpcReply::Refused("answered above".into())
            }
        };
        if rebuilding {
            self.check_rebuilt(group, raft);
        }
        reply
    }

    /// A replica held out of elections (leaving, or just stepped aside) that refuses a
    /// candidate for lacking entries it holds stands in elections again for a while: while it
    /// is the only one holding them, no candidate can win without it, and the group would
    /// stay without a leader (membership seed 23, session 21: a leaving replica alone held a
    /// joint configuration's entry). It stands through openraft's own election timer, as any
    /// replica does: not while a leader's heartbeats reach it (that leader may still serve
    /// on its acknowledgement), and at a term it learns from the candidates it refuses
    /// (calling an election at once, on the request, ran at the candidate's own term each
    /// time and never won). Once it leads, it steps aside for a replica that stays.
    fn campaign_if_candidates_lack_entries(
        &self,
        group: GroupId,
        raft: &ShardRaft,
        candidate_last: Option<openraft::LogId<NodeId>>,
        answer: &openraft::raft::VoteResponse<NodeId>,
    ) {
        let held = !self.holds.holds(group).is_empty();
        if answer.vote_granted || !held || answer.last_log_id <= candidate_last {
            return;
        }
        if self.holds.is_released(group) {
            return;
        }
        tracing::info!(
            group,
            candidate_last = ?candidate_last,
            last_log = ?answer.last_log_id,
            "a candidate lacks entries this held replica holds: it stands in elections for a while"
        );
        metrics::counter!("agora_replication_held_campaigns_total").increment(1);
        let stand = Duration::from_millis(self.config.election_timeout_max.saturating_mul(10));
        self.holds.release(group, raft, stand);
    }

    /// The membership this node's replica of `group` has applied, from its disk: `None` if
    /// it applied none.
    pub async fn applied_members(
        &self,
        group: GroupId,
    ) -> Result<Option<AppliedMembers>, GroupError> {
        let store = self.store.clone();
        let applied: Option<crate::state::AppliedState> = crate::log::run(&self.pool, move || {
            crate::log::read_meta(&store, group, crate::keys::APPLIED)
        })
        .await?;
        Ok(applied.map(|a| AppliedMembers {
            log_id: *a.membership.log_id(),
            nodes: a
                .membership
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
            voters: a.membership.membership().voter_ids().collect(),
        }))
    }

    /// The membership `peer` has applied for `group` (`None`: no answer, or it applied
    /// none).
    pub async fn peer_members(&self, group: GroupId, peer: NodeId) -> Option<AppliedMembers> {
        match self.ask(peer, &GroupRpc::Members(group)).await? {
            GroupRpcReply::Members(members) => members,
            _ => None,
        }
    }

    /// Stops this node's member of `group` and deletes its replica (log, vote, applied
    /// state and the shard's rows) in one durable write: the group committed a membership
    /// without this node.
    pub async fn remove(&self, group: GroupId) -> Result<(), GroupError> {
        let raft = match self.rafts.write() {
            Ok(mut r) => r.remove(&group),
            Err(_) => return Err(GroupError::Fatal("group table lock poisoned".into())),
        };
        if let Some(raft) = raft {
            raft.shutdown()
                .await
                .map_err(|e| GroupError::Fatal(e.to_string()))?;
        }
        if let Ok(mut r) = self.rebuilding.lock() {
            r.remove(&group);
        }
        self.holds.forget(group);
        // Entries the member applied before it stopped may still wait in the writer (applies
        // are submitted, not awaited): let them land first, or an outbox row they add would
        // miss the export below and outlive the replica (entities go by range, rows by key).
        self.writer
            .write_rows(agora_store::RowWrite::rows(Vec::new()))
            .await
            .map_err(|e| GroupError::Storage(ReplicationError::Store(e)))?;
        let store = self.store.clone();
        let outbox =
            crate::log::run(&self.pool, move || Ok(store.export_shard(group)?.outbox)).await?;
        let next = group
            .checked_add(1)
            .ok_or_else(|| GroupError::Fatal(format!("group {group} has no successor key")))?;
        let (start, end) = agora_store::keys::shard_range(group);
        let write = agora_store::RowWrite {
            remove_ranges: vec![
                (agora_store::RowTable::Entities, start, end),
                (
                    agora_store::RowTable::GroupLog,
                    crate::keys::log_key(group, 0).to_vec(),
                    Some(crate::keys::log_key(next, 0).to_vec()),
                ),
                (
                    agora_store::RowTable::GroupMeta,
                    group.to_be_bytes().to_vec(),
                    Some(next.to_be_bytes().to_vec()),
                ),
            ],
            rows: outbox
                .into_iter()
                .map(|(k, _)| agora_store::RowOp::remove(agora_store::RowTable::Outbox, k))
                .collect(),
        };
        self.writer
            .write_rows(write)
            .await
            .map_err(|e| GroupError::Storage(ReplicationError::Store(e)))?;
        tracing::info!(group, "replica removed from this node");
        Ok(())
    }

    /// Stops every group of this node.
    pub async fn shutdown(&self) {
        let rafts: Vec<ShardRaft> = match self.rafts.write() {
            Ok(mut r) => std::mem::take(&mut *r).into_values().collect(),
            Err(_) => return,
        };
        for raft in rafts {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(error = %e, "a group did not shut down cleanly");
            }
        }
    }
}
