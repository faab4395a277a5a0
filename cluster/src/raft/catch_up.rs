//! A node serves the shards of the agreed map only once its copy of the map is current.
//!
//! At start a node's stored map may be stale: the group may have committed a move of one
//! of its shards that this node never applied (it crashed in between, or its disk failed
//! before the entry was written). Serving from that stale map would put the shard on two
//! nodes. So before serving, the node asks the group's leader for a read index (the leader
//! confirms its leadership with a quorum, as for a linearizable read: openraft's
//! `get_read_log_id`), waits until its own member has applied that index, installs the
//! map it then holds, and only then opens its `MapCurrent` guard. Until then every shard
//! answers `Unavailable` (503 with `Retry-After`). A node that cannot reach a majority
//! never opens it: it cannot know whom the map gives its shards.

use super::types::{NodeId, Raft};
use crate::directory::{Directory, GatewayRpc};
use crate::envelope::decode;
use crate::shard_map::{ShardMap, SharedShardMap};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

/// Longest wait for the leader's answer to a read-index request.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for this node's member to apply up to the read index, per attempt.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause between two attempts; it doubles up to `RETRY_PAUSE_MAX`.
const RETRY_PAUSE_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two attempts.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

/// A member's answer to a read-index request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadIndexAnswer {
    /// This member leads, confirmed by a quorum: a reader is current once it has applied
    /// the entry at this index (0: the log is empty).
    At(u64),
    /// This member does not lead; the leader it knows of, if any.
    NotLeader(Option<NodeId>),
    /// It failed.
    Failed(String),
}

/// Answers a read-index request from this node's member (gateway side, and the local
/// first try).
pub async fn read_index_locally(raft: Option<&Raft>) -> ReadIndexAnswer {
    let Some(raft) = raft else {
        return ReadIndexAnswer::Failed("no raft group on this node".into());
    };
    match raft.get_read_log_id().await {
        Ok((read, _applied)) => ReadIndexAnswer::At(read.map_or(0, |l| l.index)),
        Err(e) => match e.forward_to_leader() {
            Some(f) => ReadIndexAnswer::NotLeader(f.leader_id),
            None => ReadIndexAnswer::Failed(e.to_string()),
        },
    }
}

/// The read index of the group, from this member if it leads, else from the leader it
/// knows of.
async fn read_index(raft: &Raft, me: NodeId, directory: &Directory) -> Result<u64, String> {
    let leader = match read_index_locally(Some(raft)).await {
        ReadIndexAnswer::At(index) => return Ok(index),
        ReadIndexAnswer::NotLeader(Some(leader)) if leader != me => leader,
        ReadIndexAnswer::NotLeader(_) => return Err("no leader known yet".into()),
        ReadIndexAnswer::Failed(why) => return Err(why),
    };
    let gateway = directory
        .gateway(leader)
        .ok_or_else(|| format!("leader {leader} is not connected"))?;
    let reply = gateway
        .call(GatewayRpc::ReadIndex, Vec::new(), READ_INDEX_TIMEOUT)
        .await
        .map_err(|e| format!("leader {leader}: {e}"))?;
    match decode::<ReadIndexAnswer>(&reply).map_err(|e| e.to_string())? {
        ReadIndexAnswer::At(index) => Ok(index),
        other => Err(format!("leader {leader} answered {other:?}")),
    }
}

/// What the catch-up needs.
pub(super) struct CatchUp {
    /// This node's member.
    pub raft: Raft,
    /// This node.
    pub me: NodeId,
    /// Peers' gateways (the leader's).
    pub directory: Directory,
    /// The map as this member applies it.
    pub agreed: watch::Receiver<Option<ShardMap>>,
    /// The router's and the gateway's view of the map.
    pub map: SharedShardMap,
    /// The configured shard count.
    pub shard_count: u32,
    /// Set to `true` once the map is current.
    pub current: watch::Sender<bool>,
}

impl CatchUp {
    /// Retries until this member has applied the group's read index and a map is agreed,
    /// then installs that map and opens the guard.
    pub(super) async fn run(mut self) {
        let mut pause = RETRY_PAUSE_FIRST;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.attempt().await {
                Ok(index) => {
                    tracing::info!(
                        node = self.me,
                        read_index = index,
                        attempts,
                        "the shard map is current: serving the shards it gives this node"
                    );
                    let _ = self.current.send(true);
                    return;
                }
                Err(why) if attempts.is_multiple_of(20) => {
                    tracing::warn!(
                        node = self.me,
                        attempts,
                        why,
                        "the shard map is not known to be current yet; this node serves no shard"
                    )
                }
                Err(why) => tracing::debug!(node = self.me, attempts, why, "catching up"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    async fn attempt(&mut self) -> Result<u64, String> {
        let index = read_index(&self.raft, self.me, &self.directory).await?;
        self.raft
            .wait(Some(APPLY_TIMEOUT))
            .applied_index_at_least(Some(index), "catch up with the read index")
            .await
            .map_err(|e| format!("applying up to {index}: {e}"))?;
        let agreed = self.agreed.borrow_and_update().clone();
        let Some(agreed) = agreed else {
            return Err(format!("no map agreed at index {index}"));
        };
        // The adopting task may not have copied it yet: install it here, before serving.
        super::install(&self.map, agreed, self.shard_count, false);
        Ok(index)
    }
}

/// The guard of a node whose shards are not replicated: it serves the shards the map gives
/// it only once that map is current.
pub struct MapCurrent(pub watch::Receiver<bool>);

impl agora_runtime::ServeGuard for MapCurrent {
    fn may_serve(&self, _shard: u32) -> bool {
        *self.0.borrow()
    }
}
