//! Shard handoff: moving a shard from this node (its owner) to another. The owner freezes the
//! shard (its entities stop; new messages wait in the shard), makes every change durable,
//! streams the shard's rows to the new owner, which stores them under the next epoch, and
//! then proposes the move to the Raft group. Once the new map is applied, the new owner hosts
//! the shard, the old copy is dropped and fenced (its store refuses writes under the old
//! epoch), and the messages that waited are forwarded to the new owner. If anything fails
//! before the move is agreed, the shard thaws and stays here.

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

/// Stores a part of a shard streamed to this node (gateway side); returns the shard, its
/// epoch here, and whether it was the stream's first part.
pub async fn install(writer: &Writer, bytes: &[u8]) -> Result<(u32, u64, bool), String> {
    let (data, epoch, index, count): ShardPart = decode(bytes).map_err(|e| e.to_string())?;
    if index >= count {
        return Err(format!("part {index} of a stream of {count}"));
    }
    let rows = data.rows();
    let shard = data.shard;
    let first = index == 0;
    let (done, rx) = oneshot::channel();
    writer
        .submit(WriteOp::InstallShard {
            data: Box::new(data),
            epoch,
            first,
            done,
        })
        .map_err(|e| e.to_string())?;
    rx.await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!(
        shard,
        epoch,
        rows,
        part = index + 1,
        of = count,
        "installed a part of a shard handed to this node"
    );
    Ok((shard, epoch, first))
}

/// Drops a shard an aborted handoff installed here (gateway side): never one the map gives
/// this node. The shard's fence moves to `fence`, so a late copy of that handoff is refused.
pub async fn discard(
    writer: &Writer,
    map: &crate::shard_map::SharedShardMap,
    me: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let (shard, fence): (u32, u64) = decode(bytes).map_err(|e| e.to_string())?;
    let owner = map
        .read()
        .map_err(|_| "shard map lock poisoned".to_string())?
        .owner(shard);
    if owner == Some(me) {
        return Err(format!("shard {shard} is this node's under the agreed map"));
    }
    let (done, rx) = oneshot::channel();
    writer
        .submit(WriteOp::DropShard {
            shard,
            epoch: fence,
            done,
        })
        .map_err(|e| e.to_string())?;
    rx.await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!(shard, fence, "discarded the copy of an aborted handoff");
    Ok(())
}

/// Proposes an encoded command to the local Raft member (gateway side).
pub async fn propose_locally(raft: Option<&Raft>, bytes: &[u8]) -> ProposeAnswer {
    let Some(raft) = raft else {
        return ProposeAnswer::Failed("no raft group on this node".into());
    };
    let cmd: MapCommand = match decode(bytes) {
        Ok(c) => c,
        Err(e) => return ProposeAnswer::Failed(e.to_string()),
    };
    match raft.client_write(cmd).await {
        Ok(r) => match r.data {
            super::raft::MapOutcome::Applied { epoch } => ProposeAnswer::Applied(Some(epoch)),
            super::raft::MapOutcome::Rejected(why) => ProposeAnswer::Rejected(why),
            _ => ProposeAnswer::Applied(None),
        },
        Err(e) => match e.forward_to_leader() {
            Some(f) => ProposeAnswer::NotLeader(f.leader_id),
            None => ProposeAnswer::Failed(e.to_string()),
        },
    }
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
    /// rebuilt elsewhere and the map's group drops it.
    pub async fn remove_node(&self, node: u64) -> Result<(), MoveError> {
        self.propose(&MapCommand::RemoveNode { node }).await
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

    /// Moves `shard` from this node to node `to`. The move runs as its own task: a caller
    /// that stops waiting (an admin request whose client hung up) never cancels it halfway,
    /// which would leave the shard frozen.
    pub async fn move_shard(&self, shard: u32, to: u64) -> Result<u64, MoveError> {
        let this = self.clone();
        tokio::spawn(async move { this.move_shard_to_end(shard, to).await })
            .await
            .map_err(|e| MoveError::Failed(format!("the move task failed: {e}")))?
    }

    async fn move_shard_to_end(&self, shard: u32, to: u64) -> Result<u64, MoveError> {
        if self.replicated {
            return Err(MoveError::Refused(REPLICATED_NO_MOVES.into()));
        }
        let (owner, epoch) = self.owner_and_epoch(shard)?;
        match owner {
            None => return Err(MoveError::Refused(format!("there is no shard {shard}"))),
            Some(o) if o == to => {
                return Err(MoveError::Refused(format!(
                    "shard {shard} is already on node {to}"
                )))
            }
            Some(o) if o != self.me => {
                return Err(MoveError::Refused(format!(
                    "shard {shard} is owned by node {o}; ask that node"
                )))
            }
            Some(_) => {}
        }
        if self.raft.is_none() {
            return Err(MoveError::Refused(
                "a single node has nowhere to move shards".into(),
            ));
        }
        if self.directory.gateway(to).is_none() {
            return Err(MoveError::Refused(format!("node {to} is not connected")));
        }
        // The map follower may not have started the shard yet (just after a start).
        self.region
            .host(shard, epoch)
            .await
            .map_err(|e| MoveError::Failed(e.to_string()))?;
        let started = Instant::now();
        tracing::info!(shard, to, epoch, "moving shard");
        if !agora_seams::planted::is_planted(agora_seams::planted::Bug::StaleEpochHandoff) {
            self.region
                .freeze(shard)
                .await
                .map_err(|e| MoveError::Failed(e.to_string()))?;
        }
        let result = match self.stream_and_agree(shard, to, epoch).await {
            Ok(()) => Ok(()),
            Err(e) => self.settle(shard, to, epoch, e).await,
        };
        if let Err(e) = &result {
            tracing::warn!(shard, to, error = %e, "move failed; the shard stays here");
            self.region.thaw(shard);
            return Err(e.clone());
        }
        // Agreed: hand the held messages to the new owner, drop and fence the old copy.
        let new_epoch = epoch + 1;
        let held = self.region.release(shard).await;
        let (done, rx) = oneshot::channel();
        if self
            .writer
            .submit(WriteOp::DropShard {
                shard,
                epoch: new_epoch,
                done,
            })
            .is_ok()
        {
            if let Ok(Err(e)) = rx.await {
                tracing::error!(shard, error = %e, "could not drop the handed-off shard");
            }
        }
        let forwarded = held.len();
        for (to_entity, msg) in held {
            self.forward(to_entity, msg);
        }
        metrics::counter!("agora_handoffs_total").increment(1);
        tracing::info!(
            shard,
            to,
            epoch = new_epoch,
            forwarded,
            ms = started.elapsed().as_millis() as u64,
            "shard moved"
        );
        Ok(new_epoch)
    }

    async fn stream_and_agree(&self, shard: u32, to: u64, epoch: u64) -> Result<(), MoveError> {
        // Every change the shard's entities handed to the writer is durable after a barrier.
        self.writer
            .put_meta("handoff_barrier", shard.to_be_bytes().to_vec())
            .await
            .map_err(|e| MoveError::Failed(e.to_string()))?;
        let data = self
            .writer
            .store()
            .export_shard(shard)
            .map_err(|e| MoveError::Failed(e.to_string()))?;
        let (rows, shard_bytes) = (data.rows(), data.bytes());
        let parts = data.into_parts(HANDOFF_PART_BYTES);
        let count = u32::try_from(parts.len()).map_err(|e| MoveError::Failed(e.to_string()))?;
        for (index, part) in (0..count).zip(parts) {
            let sent: ShardPart = (part, epoch + 1, index, count);
            let bytes = encode(&sent).map_err(|e| MoveError::Failed(e.to_string()))?;
            let reply = self
                .call(to, GatewayRpc::InstallShard, bytes, Duration::from_secs(30))
                .await?;
            decode::<Result<(), String>>(&reply)
                .map_err(|e| MoveError::Failed(e.to_string()))?
                .map_err(MoveError::Failed)?;
            tracing::debug!(
                shard,
                to,
                part = index + 1,
                of = count,
                "shard part streamed"
            );
        }
        tracing::info!(
            shard,
            to,
            rows,
            shard_bytes,
            parts = count,
            "shard streamed"
        );
        self.propose(&MapCommand::MoveAt { shard, to, epoch })
            .await?;
        let deadline = Instant::now() + AGREEMENT_TIMEOUT;
        loop {
            if self.owner_and_epoch(shard)?.0 == Some(to) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(MoveError::Failed(
                    "the agreed map did not show the move in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A handoff failed after its shard may have reached `to` and its move may have been
    /// proposed: the outcome is unknown, and serving the shard here again could split it in
    /// two. Settle it through the group first (the shard stays frozen meanwhile): abort the
    /// handoff's epoch, which a late `MoveAt` can no longer pass, then read the map. If the
    /// move won, it is finished (`Ok`); otherwise `to` discards what it installed.
    async fn settle(
        &self,
        shard: u32,
        to: u64,
        epoch: u64,
        why: MoveError,
    ) -> Result<(), MoveError> {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.propose(&MapCommand::AbortMove { shard, epoch }).await {
                Ok(()) | Err(MoveError::Refused(_)) => break,
                Err(e) => {
                    tracing::warn!(shard, error = %e, "handoff outcome unknown; the shard stays frozen until the group answers");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        // The abort (or the move before it) is agreed; wait for this node to apply it.
        while self.owner_and_epoch(shard)?.1 <= epoch {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.owner_and_epoch(shard)?.0 == Some(to) {
            tracing::info!(shard, to, "the handoff's move was agreed after all");
            return Ok(());
        }
        self.discard_on(to, shard, epoch + 2);
        Err(why)
    }

    /// Watches this node's copy of `shard`, stored under `stored_epoch`, until the agreed map
    /// says whose it is: kept if the map gives the shard to this node, dropped once the map
    /// has moved past the handoff that stored it and gives the shard to another node. A copy
    /// is installed by a handoff before its move is agreed; if the handoff's source crashes
    /// before settling it, nobody else would (the copy would stay as an orphan, with a second
    /// set of the shard's rows): after a while this node settles it by aborting that move.
    pub fn watch_copy(&self, shard: u32, stored_epoch: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.settle_copy(shard, stored_epoch).await {
                tracing::warn!(shard, error = %e, "could not settle a copy of a shard");
            }
        });
    }

    async fn settle_copy(&self, shard: u32, stored_epoch: u64) -> Result<(), MoveError> {
        // The handoff that stored the copy proposes its move at the map epoch before.
        let handoff_epoch = stored_epoch.saturating_sub(1);
        let settle_after = Instant::now() + 2 * AGREEMENT_TIMEOUT;
        let mut proposed_abort = false;
        loop {
            let (owner, epoch) = self.owner_and_epoch(shard)?;
            if owner == Some(self.me) {
                return Ok(());
            }
            if owner.is_some() && epoch > handoff_epoch {
                // Decided, and not for this node: every entry after that epoch is ordered
                // after the handoff's move, which can no longer pass.
                let (done, rx) = oneshot::channel();
                self.writer
                    .submit(WriteOp::DropShard {
                        shard,
                        epoch: handoff_epoch + 2,
                        done,
                    })
                    .map_err(|e| MoveError::Failed(e.to_string()))?;
                rx.await
                    .map_err(|e| MoveError::Failed(e.to_string()))?
                    .map_err(|e| MoveError::Failed(e.to_string()))?;
                metrics::counter!("agora_orphan_shard_copies_dropped_total").increment(1);
                tracing::info!(
                    shard,
                    stored_epoch,
                    owner,
                    "dropped a copy of a shard another node owns"
                );
                return Ok(());
            }
            if !proposed_abort && Instant::now() > settle_after {
                proposed_abort = true;
                tracing::info!(
                    shard,
                    handoff_epoch,
                    "a handoff to this node was never settled; aborting it"
                );
                if let Err(e) = self
                    .propose(&MapCommand::AbortMove {
                        shard,
                        epoch: handoff_epoch,
                    })
                    .await
                {
                    tracing::warn!(shard, error = %e, "could not abort the unsettled handoff");
                    proposed_abort = false;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Watches every shard with rows in this node's store that the agreed map may not give
    /// this node (at start: copies left by handoffs interrupted by a crash).
    pub fn watch_stored_copies(&self) -> Result<(), agora_store::StoreError> {
        let store = self.writer.store();
        for shard in store.shards_with_rows(self.region.shard_count())? {
            self.watch_copy(shard, store.shard_epoch(shard)?);
        }
        Ok(())
    }

    /// Asks `to` to drop its copy of `shard` (retrying in the background until it answers).
    fn discard_on(&self, to: u64, shard: u32, fence: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(bytes) = encode(&(shard, fence)) else {
                return;
            };
            let mut pause = Duration::from_millis(200);
            for _ in 0..200 {
                let answer = this
                    .call(
                        to,
                        GatewayRpc::DiscardShard,
                        bytes.clone(),
                        Duration::from_secs(5),
                    )
                    .await
                    .and_then(|r| {
                        decode::<Result<(), String>>(&r)
                            .map_err(|e| MoveError::Failed(e.to_string()))
                    });
                match answer {
                    Ok(Ok(())) => return,
                    Ok(Err(why)) => {
                        tracing::warn!(shard, to, why, "the target refused to discard its copy");
                        return;
                    }
                    Err(e) => tracing::debug!(shard, to, error = %e, "discard not delivered yet"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            tracing::error!(
                shard,
                to,
                "gave up asking node {to} to discard its copy of shard {shard}"
            );
        });
    }

    fn forward(&self, to: agora_actors::EntityRef, msg: EntityMsg) {
        let router = self.router.clone();
        tokio::spawn(async move {
            match msg {
                EntityMsg::Request {
                    cmd,
                    msg_id,
                    after,
                    reply,
                } => {
                    let answer = router.deliver_after(to, cmd, msg_id, after).await;
                    match reply {
                        ReplyTo::Durable(tx) => drop(tx.send(answer)),
                        // Answered by another node: durable already.
                        ReplyTo::Early(tx) => {
                            drop(tx.send(answer.map(|r| (r, Pending::default()))))
                        }
                    }
                }
                EntityMsg::Batch { items, reply } => {
                    // Early deliveries go back to the relay, which sends them again once their
                    // senders' changes are durable (never to the new owner before).
                    let _ = reply.send(router.deliver_batch(to, items).await);
                }
                EntityMsg::Stop => {}
            }
        });
    }
}

/// Keeps the local region hosting every shard the agreed map gives this node.
pub fn follow_map(me: u64, region: Region, map: SharedShardMap) {
    tokio::spawn(async move {
        loop {
            let (mine, epoch) = match map.read() {
                Ok(m) => (m.shards_of(me), m.epoch),
                Err(_) => return,
            };
            for shard in mine {
                if !region.hosts(shard) {
                    if let Err(e) = region.host(shard, epoch).await {
                        tracing::error!(shard, error = %e, "could not host a shard given to this node");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

impl Handoff {
    /// Moves every shard of this node to the other connected nodes, the least loaded first,
    /// one at a time (bounding how many shards move at once). Returns how many moved.
    pub async fn drain(
        &self,
        draining: &std::sync::atomic::AtomicBool,
    ) -> Result<usize, MoveError> {
        if self.replicated {
            return Err(MoveError::Refused(REPLICATED_NO_MOVES.into()));
        }
        draining.store(true, std::sync::atomic::Ordering::Release);
        let mine = self
            .map
            .read()
            .map_err(|_| MoveError::Failed("shard map lock poisoned".into()))?
            .shards_of(self.me);
        tracing::info!(shards = mine.len(), "draining this node");
        let mut moved = 0;
        for shard in mine {
            let target = {
                let map = self
                    .map
                    .read()
                    .map_err(|_| MoveError::Failed("shard map lock poisoned".into()))?;
                let mut ids: Vec<u64> = map
                    .owners
                    .iter()
                    .copied()
                    .filter(|o| *o != self.me)
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let mut candidates: Vec<(usize, u64)> = ids
                    .into_iter()
                    .filter(|id| self.directory.gateway(*id).is_some())
                    .map(|id| (map.shards_of(id).len(), id))
                    .collect();
                candidates.sort_unstable();
                candidates.first().map(|(_, id)| *id)
            };
            let Some(to) = target else {
                return Err(MoveError::Failed(
                    "no other node is connected to take the shards".into(),
                ));
            };
            self.move_shard(shard, to).await?;
            moved += 1;
        }
        tracing::info!(moved, "drained");
        Ok(moved)
    }
}

/// A node asking to join: its id and cluster address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining node's id.
    pub id: u64,
    /// Its cluster address.
    pub cluster_addr: String,
    /// A join token minted for it (needed unless the admitting node's cluster file lists
    /// it).
    pub token: Option<String>,
}

/// Adds a node to the Raft group as a voter, if this node leads (gateway side).
pub async fn join_locally(
    raft: Option<&Raft>,
    policy: Option<&super::join_token::JoinPolicy>,
    (now_ms, removed): (u64, &std::collections::BTreeSet<u64>),
    bytes: &[u8],
) -> ProposeAnswer {
    let (Some(raft), Some(policy)) = (raft, policy) else {
        return ProposeAnswer::Failed("no raft group on this node".into());
    };
    let req: JoinRequest = match decode(bytes) {
        Ok(r) => r,
        Err(e) => return ProposeAnswer::Failed(e.to_string()),
    };
    // A removed id stays removed, even for a node its cluster file still lists.
    let admitted = if removed.contains(&req.id) {
        Err(super::join_token::JoinRefused::Removed(req.id))
    } else {
        policy.admit(req.id, req.token.as_deref(), now_ms)
    };
    if let Err(refused) = admitted {
        tracing::warn!(node = req.id, addr = %req.cluster_addr, reason = %refused, "join refused");
        metrics::counter!("agora_cluster_joins_refused_total").increment(1);
        return ProposeAnswer::Rejected(refused.to_string());
    }
    let node = openraft::BasicNode::new(req.cluster_addr.clone());
    if let Err(e) = raft.add_learner(req.id, node, true).await {
        return match e.forward_to_leader() {
            Some(f) => ProposeAnswer::NotLeader(f.leader_id),
            None => ProposeAnswer::Failed(e.to_string()),
        };
    }
    let voters: std::collections::BTreeSet<u64> = [req.id].into_iter().collect();
    match raft
        .change_membership(openraft::ChangeMembers::AddVoterIds(voters), true)
        .await
    {
        Ok(_) => {
            tracing::info!(node = req.id, "node joined the raft group");
            ProposeAnswer::Applied(None)
        }
        Err(e) => match e.forward_to_leader() {
            Some(f) => ProposeAnswer::NotLeader(f.leader_id),
            None => ProposeAnswer::Failed(e.to_string()),
        },
    }
}

/// A request to move one of the receiving node's shards to another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveRequest {
    /// The shard.
    pub shard: u32,
    /// Its new owner.
    pub to: u64,
}

impl Handoff {
    /// Joins the Raft group through any connected peer (following the leader), retrying for a
    /// bounded time, then takes this node's share of the shards from the most loaded nodes.
    pub async fn join_and_take_share(
        &self,
        cluster_addr: String,
        token: Option<String>,
    ) -> Result<usize, MoveError> {
        let bytes = encode(&JoinRequest {
            id: self.me,
            cluster_addr,
            token,
        })
        .map_err(|e| MoveError::Failed(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ask = None;
        loop {
            if Instant::now() > deadline {
                return Err(MoveError::Failed(
                    "could not join the raft group in a minute".into(),
                ));
            }
            let target = ask.or_else(|| self.directory.connected_peers().first().copied());
            let Some(target) = target else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let answer = match self
                .call(
                    target,
                    GatewayRpc::Join,
                    bytes.clone(),
                    Duration::from_secs(20),
                )
                .await
            {
                Ok(reply) => {
                    decode::<ProposeAnswer>(&reply).map_err(|e| MoveError::Failed(e.to_string()))?
                }
                Err(e) => ProposeAnswer::Failed(e.to_string()),
            };
            match answer {
                ProposeAnswer::Applied(_) => break,
                ProposeAnswer::NotLeader(leader) => ask = leader,
                ProposeAnswer::Rejected(e) => {
                    // Not admitted: retrying with the same request cannot help.
                    return Err(MoveError::Refused(e));
                }
                ProposeAnswer::Failed(e) => {
                    tracing::debug!(error = %e, "join attempt failed");
                    ask = None;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        if self.replicated {
            // Replicas come to it through placement: the map's leader places some here and
            // each group's leader adds this node as a learner, then as a voter.
            tracing::info!(
                node = self.me,
                "joined the cluster; replicas follow placement"
            );
            return Ok(0);
        }
        // Wait for the agreed map to reach this node, then take a share.
        while self.owner_and_epoch(0)?.1 == 0 {
            if Instant::now() > deadline {
                return Err(MoveError::Failed(
                    "the agreed shard map did not arrive".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut taken = 0;
        loop {
            let (shard, from, share) = {
                let map = self
                    .map
                    .read()
                    .map_err(|_| MoveError::Failed("shard map lock poisoned".into()))?;
                let mut owners: Vec<u64> = map.owners.clone();
                owners.sort_unstable();
                owners.dedup();
                let nodes = owners.iter().filter(|o| **o != self.me).count() + 1;
                let share = map.owners.len() / nodes;
                let mine = map.shards_of(self.me).len();
                if mine >= share {
                    break;
                }
                let Some(from) = owners
                    .iter()
                    .copied()
                    .filter(|o| *o != self.me)
                    .max_by_key(|o| (map.shards_of(*o).len(), u64::MAX - o))
                else {
                    break;
                };
                let Some(shard) = map.shards_of(from).last().copied() else {
                    break;
                };
                (shard, from, share)
            };
            let bytes = encode(&MoveRequest { shard, to: self.me })
                .map_err(|e| MoveError::Failed(e.to_string()))?;
            let reply = self
                .call(
                    from,
                    GatewayRpc::RequestMove,
                    bytes,
                    Duration::from_secs(60),
                )
                .await?;
            decode::<Result<u64, MoveError>>(&reply)
                .map_err(|e| MoveError::Failed(e.to_string()))??;
            taken += 1;
            // Wait until this node's own map shows the move before choosing the next one.
            let deadline = Instant::now() + AGREEMENT_TIMEOUT;
            while self.owner_and_epoch(shard)?.0 != Some(self.me) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::info!(shard, from, taken, share, "took a shard");
        }
        tracing::info!(taken, "joined and took this node's share");
        Ok(taken)
    }
}

/// Serves a peer's request to move one of this node's shards (gateway side).
pub async fn serve_move_request(handoff: Option<&Handoff>, bytes: &[u8]) -> Result<u64, MoveError> {
    let handoff = handoff.ok_or_else(|| MoveError::Failed("this node is still starting".into()))?;
    let req: MoveRequest = decode(bytes).map_err(|e| MoveError::Failed(e.to_string()))?;
    handoff.move_shard(req.shard, req.to).await
}
