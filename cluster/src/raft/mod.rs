//! The shard map agreed through Raft (openraft): every node of the cluster file is a voter;
//! the log, the vote and the state machine rest in the node's redb database. The node
//! with the lowest id bootstraps the group (a member on a new disk first learns whether the
//! group exists and, if so, rebuilds before it votes: `rebuild`); whoever leads proposes the first map if there
//! is none; every node adopts each applied map into the `SharedShardMap` the router and the
//! gateway read. A node whose shards are not replicated serves them only once its map is
//! current (`catch_up`): a stored map may be stale after a crash.

pub mod catch_up;
pub mod log_store;
pub mod network;
pub mod rebuild;
pub mod state_machine;
pub mod storage;
pub mod types;

pub use types::{MapCommand, MapOutcome, MapRecord, NodeId, Raft, TypeConfig};

use crate::directory::Directory;
use crate::shard_map::{ShardMap, SharedShardMap};
use crate::Membership;
use agora_actors::seams::BlockingPool;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Raft heartbeat interval (ms).
const HEARTBEAT_MS: u64 = 250;
/// Election timeout range (ms): generous, as nodes share small machines.
const ELECTION_MS: (u64, u64) = (1_500, 3_000);
/// Longest wait for one snapshot chunk to be installed (ms).
const SNAPSHOT_TIMEOUT_MS: u64 = 1_000;
/// How often a leader without a map retries proposing one.
const PROPOSE_RETRY: Duration = Duration::from_secs(1);

/// Why the Raft member could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    /// The storage could not be opened.
    #[error(transparent)]
    Storage(#[from] storage::RaftStoreError),
    /// The Raft configuration is invalid.
    #[error("raft config: {0}")]
    Config(String),
    /// openraft failed to start.
    #[error("raft: {0}")]
    Fatal(String),
}

/// What an operator sees of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Index of the last applied log entry.
    pub last_applied: Option<u64>,
}

/// Reads the group's status from `raft`'s metrics.
pub fn status(raft: &Raft) -> RaftStatus {
    let m = raft.metrics();
    let m = m.borrow();
    RaftStatus {
        leader: m.current_leader,
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index),
    }
}

/// Takes `node` out of the shard-map group (a node removed for good), through this
/// node's member, which must lead.
pub async fn remove_voter(raft: &Raft, node: NodeId) -> Result<(), String> {
    let gone = [node].into_iter().collect();
    raft.change_membership(openraft::ChangeMembers::RemoveVoters(gone), false)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Waits until this member's core stops on a storage error or a panic, and says why; `None`
/// if it stopped on purpose (shut down) or is gone.
pub async fn core_failure(raft: &Raft) -> Option<String> {
    let mut metrics = raft.metrics();
    let stopped = metrics
        .wait_for(|m| m.running_state.is_err())
        .await
        .ok()?
        .running_state
        .clone();
    match stopped {
        Err(e @ (openraft::error::Fatal::StorageError(_) | openraft::error::Fatal::Panicked)) => {
            Some(e.to_string())
        }
        _ => None,
    }
}

/// Keeps this node's member of the shard-map group out of the lead for good (a node
/// removed for good): it calls no elections and, if it leads, sends no heartbeats, so a
/// member that stays takes over (and then takes this node out of the group).
pub fn stay_out_of_the_lead(raft: &Raft) {
    let config = raft.runtime_config();
    config.elect(false);
    config.heartbeat(false);
}

/// Whether this node's member counts itself a voter of the group (a leader that committed
/// a membership without itself is not one, though it may lead for a while).
pub fn is_voter_here(raft: &Raft) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    m.membership_config
        .membership()
        .voter_ids()
        .any(|v| v == m.id)
}

/// The voters of the shard-map group as this node's member knows them.
pub fn voters(raft: &Raft) -> std::collections::BTreeSet<NodeId> {
    let m = raft.metrics();
    let voters = m
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters
}

/// Starts this node's member of the shard-map group, and the tasks that bootstrap it,
/// propose the first map, adopt applied maps into `map` and set `current` once this
/// member's map is known to be current. A member on a `new_store` rebuilds first (see
/// `rebuild`; `rebuild_flag` tells the gateway). Returns without waiting for an election.
pub async fn start(
    membership: &Membership,
    db: Arc<redb::Database>,
    pool: Arc<dyn BlockingPool>,
    (shard_count, map): (u32, SharedShardMap),
    directory: Directory,
    (current, rebuild_flag, new_store): (watch::Sender<bool>, rebuild::MapRebuild, bool),
) -> Result<Raft, RaftStartError> {
    let me = membership.me;
    let ids = membership.node_ids();
    let log = log_store::LogStore::open(db.clone(), pool.clone())?;
    let sm = state_machine::StateMachine::open(db, pool)?;
    let agreed = sm.subscribe();
    // The stored map and placement hold from the first moment (replicas start from them).
    if let Some(stored) = agreed.borrow().clone() {
        install(&map, stored, shard_count, true);
    }
    adopt(agreed.clone(), map.clone(), shard_count);
    let config = openraft::Config {
        cluster_name: membership.cluster_name.clone(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_MS.0,
        election_timeout_max: ELECTION_MS.1,
        install_snapshot_timeout: SNAPSHOT_TIMEOUT_MS,
        ..Default::default()
    }
    .validate()
    .map_err(|e| RaftStartError::Config(e.to_string()))?;
    let raft = Raft::new(
        me,
        Arc::new(config),
        network::Network::new(directory.clone()),
        log,
        sm,
    )
    .await
    .map_err(|e| RaftStartError::Fatal(e.to_string()))?;
    let current_rx = current.subscribe();
    tokio::spawn(
        catch_up::CatchUp {
            raft: raft.clone(),
            me,
            directory: directory.clone(),
            agreed: agreed.clone(),
            map: map.clone(),
            shard_count,
            current,
        }
        .run(),
    );

    let members: BTreeMap<NodeId, BasicNode> = membership
        .nodes
        .iter()
        .map(|n| (n.id, BasicNode::new(n.cluster_addr.to_string())))
        .collect();
    rebuild::Guard {
        raft: raft.clone(),
        me,
        members,
        directory: directory.clone(),
        rebuild: rebuild_flag,
        current: current_rx,
    }
    .start(new_store);
    propose_first_map(
        raft.clone(),
        me,
        agreed,
        ShardMap::spread(shard_count, &ids),
    );
    Ok(raft)
}

/// While this node leads and no map is agreed yet, proposes `first`.
fn propose_first_map(
    raft: Raft,
    me: NodeId,
    mut agreed: watch::Receiver<Option<ShardMap>>,
    first: ShardMap,
) {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        loop {
            if agreed.borrow_and_update().is_some() {
                return;
            }
            let leading = metrics.borrow_and_update().current_leader == Some(me);
            if leading {
                match raft
                    .client_write(MapCommand::Initialize(MapRecord::from(&first)))
                    .await
                {
                    Ok(r) => tracing::info!(outcome = ?r.data, "proposed the first shard map"),
                    Err(e) => tracing::debug!(error = %e, "proposing the first shard map failed"),
                }
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                changed = agreed.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(PROPOSE_RETRY) => {}
            }
        }
    });
}

/// Copies every applied map into `map` (the router's and the gateway's view).
fn adopt(mut agreed: watch::Receiver<Option<ShardMap>>, map: SharedShardMap, shard_count: u32) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let next = agreed.borrow_and_update().clone();
            if let Some(next) = next {
                install(&map, next, shard_count, first);
                first = false;
            }
            if agreed.changed().await.is_err() {
                return;
            }
        }
    });
}

fn install(map: &SharedShardMap, next: ShardMap, shard_count: u32, first: bool) {
    if next.owners.len() != shard_count as usize {
        tracing::error!(
            agreed = next.owners.len(),
            configured = shard_count,
            "the agreed shard map has another shard count; keeping the current map"
        );
        return;
    }
    let Ok(mut current) = map.write() else {
        tracing::error!("shard map lock poisoned; the agreed map is not adopted");
        return;
    };
    if current.epoch != next.epoch || first {
        tracing::info!(
            from = current.epoch,
            epoch = next.epoch,
            "adopted the shard map agreed through raft"
        );
    }
    if current.epoch == next.epoch && current.owners != next.owners {
        tracing::warn!(
            epoch = next.epoch,
            "the agreed shard map differs from this node's under the same epoch"
        );
    }
    *current = next;
}
