//! Shard handoff: moving a shard from this node (its owner) to another. The owner freezes the
//! shard (its entities stop; new messages wait in the shard), makes every change durable,
//! streams the shard's rows to the new owner, which stores them under the next epoch, and
//! then proposes the move to the Raft group. Once the new map is applied, the new owner hosts
//! the shard, the old copy is dropped and fenced (its store refuses writes under the old
//! epoch), and the messages that waited are forwarded to the new owner. If anything fails
//! before the move is agreed, the shard thaws and stays here.

mod copies;
mod drain;
mod join;
mod moves;
mod receive;

pub use copies::follow_map;
pub use join::{join_locally, JoinRequest, MoveRequest};
pub use receive::{discard, install, propose_locally, serve_move_request};

use super::directory::Directory;
use super::directory::GatewayRpc;
use super::envelope::{decode, encode};
use super::raft::{MapCommand, Raft};
use super::router::Router;
use super::shard_map::SharedShardMap;
use agora_actors::client::Pending;
use agora_runtime::entity::{EntityMsg, ReplyTo};
use agora_runtime::region::Region;
use agora_store::{ShardData, WriteOp, Writer};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a move waits for the agreed map to show the new owner.
const AGREEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of rows in one part of a streamed shard: well inside the smallest frame a
/// cluster accepts, so a shard of any size moves.
pub const HANDOFF_PART_BYTES: usize = 1024 * 1024;
const _: () = assert!(
    (HANDOFF_PART_BYTES as u64) * 2 <= agora_cluster_config::cluster::MIN_FRAME_BYTES,
    "a handoff part must fit the smallest frame with room for its encoding"
);

/// One part of a streamed shard: its rows, the epoch of the new ownership, and its place
/// in the stream (part `index` of `count`).
type ShardPart = (ShardData, u64, u32, u32);

/// Why a move did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MoveError {
    /// The request does not make sense (unknown node or shard, not the owner, already there).
    #[error("{0}")]
    Refused(String),
    /// A step failed; the shard stayed where it was.
    #[error("move failed: {0}")]
    Failed(String),
}

/// A proposal's answer from a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ProposeAnswer {
    /// Applied by the group, with the resulting epoch when it changed the map.
    Applied(Option<u64>),
    /// The group refused it (for example: no map agreed yet).
    Rejected(String),
    /// This node does not lead; ask the leader.
    NotLeader(Option<u64>),
    /// It failed.
    Failed(String),
}

/// What a move needs.
#[derive(Clone)]
pub struct Handoff {
    /// This node.
    pub me: u64,
    /// The local shards.
    pub region: Region,
    /// The store's writer.
    pub writer: Writer,
    /// The agreed map.
    pub map: SharedShardMap,
    /// Peers' gateways.
    pub directory: Directory,
    /// This node's Raft member.
    pub raft: Option<Raft>,
    /// Routes forwarded messages to the new owner.
    pub router: Router,
    /// Whether shards are replicated: their data is already on several nodes and their
    /// groups elect who serves, so nothing is streamed and moves are refused.
    pub replicated: bool,
    /// Held while a move of this node's runs: one at a time. Two moves of one shard at once
    /// would each freeze it, and the one that lost (refused: the map moved on) would thaw it
    /// while the winner hands it off, so the old copy would take writes the new owner never
    /// gets; moves of two shards at once would refuse each other anyway (a move needs the
    /// map's epoch unchanged).
    pub moving: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Why a move is refused for replicated shards.
const REPLICATED_NO_MOVES: &str = "shards are replicated: their groups elect who serves them, so shards are not moved (a move on the admin endpoint transfers a shard's lead instead); a stopping node (SIGTERM) hands its leaderships to other replicas";

impl Handoff {
    async fn call(
        &self,
        node: u64,
        rpc: GatewayRpc,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MoveError> {
        let gw = self
            .directory
            .gateway(node)
            .ok_or_else(|| MoveError::Failed(format!("node {node} is not connected")))?;
        gw.call(rpc, bytes, timeout)
            .await
            .map_err(|e| MoveError::Failed(format!("node {node}: {e}")))
    }

    /// Proposes `cmd` to the group, through the leader (waiting a bounded time for one).
    async fn propose(&self, cmd: &MapCommand) -> Result<(), MoveError> {
        let bytes = encode(cmd).map_err(|e| MoveError::Failed(e.to_string()))?;
        let deadline = Instant::now() + AGREEMENT_TIMEOUT;
        let mut answer = propose_locally(self.raft.as_ref(), &bytes).await;
        loop {
            match answer {
                ProposeAnswer::Applied(_) => return Ok(()),
                ProposeAnswer::Failed(e) => return Err(MoveError::Failed(e)),
                // The group has not agreed its first map yet: wait for it (bounded).
                ProposeAnswer::Rejected(why)
                    if why.contains("no shard map yet") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    answer = propose_locally(self.raft.as_ref(), &bytes).await;
                }
                ProposeAnswer::Rejected(why) => return Err(MoveError::Refused(why)),
                ProposeAnswer::NotLeader(_) if Instant::now() > deadline => {
                    return Err(MoveError::Failed(
                        "no raft leader accepted the move in time".into(),
                    ))
                }
                ProposeAnswer::NotLeader(None) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    answer = propose_locally(self.raft.as_ref(), &bytes).await;
                }
                ProposeAnswer::NotLeader(Some(leader)) => {
                    let reply = self
                        .call(
                            leader,
                            GatewayRpc::Propose,
                            bytes.clone(),
                            Duration::from_secs(5),
                        )
                        .await?;
                    answer = decode(&reply).map_err(|e| MoveError::Failed(e.to_string()))?;
                    if matches!(answer, ProposeAnswer::NotLeader(_)) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    /// Makes the agreed map name this node as `shard`'s owner without moving any data: for
    /// a replicated shard, whose data this node's replica already holds, when it starts
    /// leading the shard's group (requests are then routed here).
    pub async fn claim(&self, shard: u32) -> Result<(), MoveError> {
        self.propose(&MapCommand::Move { shard, to: self.me }).await
    }

    /// Agrees `replicas` as the placement replacing version `version` (see
    /// `MapCommand::Place`).
    pub async fn place(&self, version: u64, replicas: Vec<Vec<u64>>) -> Result<(), MoveError> {
        self.propose(&MapCommand::Place { version, replicas }).await
    }

    /// Removes `node` from the cluster for good: placement leaves it out, its replicas are
    /// rebuilt elsewhere and the map's group drops it. Unless `min_remaining` is 0, the map's
    /// group refuses it when fewer members would remain.
    pub async fn remove_node(&self, node: u64, min_remaining: usize) -> Result<(), MoveError> {
        match min_remaining {
            0 => self.propose(&MapCommand::RemoveNode { node }).await,
            _ => {
                let cmd = MapCommand::RemoveNodeKeeping {
                    node,
                    min_remaining,
                };
                self.propose(&cmd).await
            }
        }
    }

    /// Whether the agreed map, as this node last adopted it, names this node as `shard`'s
    /// owner.
    pub fn owns(&self, shard: u32) -> bool {
        self.owner_and_epoch(shard)
            .is_ok_and(|(owner, _)| owner == Some(self.me))
    }

    fn owner_and_epoch(&self, shard: u32) -> Result<(Option<u64>, u64), MoveError> {
        let map = self
            .map
            .read()
            .map_err(|_| MoveError::Failed("shard map lock poisoned".into()))?;
        Ok((map.owner(shard), map.epoch))
    }
}
