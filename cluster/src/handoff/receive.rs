//! The receiving side of handoffs (gateway calls): storing a streamed shard's parts,
//! discarding a copy whose move was not agreed, proposing a map change for a peer, and
//! serving a peer's request to move one of this node's shards.

use super::*;

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
            crate::raft::MapOutcome::Applied { epoch } => ProposeAnswer::Applied(Some(epoch)),
            crate::raft::MapOutcome::Rejected(why) => ProposeAnswer::Rejected(why),
            _ => ProposeAnswer::Applied(None),
        },
        Err(e) => match e.forward_to_leader() {
            Some(f) => ProposeAnswer::NotLeader(f.leader_id),
            None => ProposeAnswer::Failed(e.to_string()),
        },
    }
}

/// Serves a peer's request to move one of this node's shards (gateway side).
pub async fn serve_move_request(handoff: Option<&Handoff>, bytes: &[u8]) -> Result<u64, MoveError> {
    let handoff = handoff.ok_or_else(|| MoveError::Failed("this node is still starting".into()))?;
    let req: MoveRequest = decode(bytes).map_err(|e| MoveError::Failed(e.to_string()))?;
    handoff.move_shard(req.shard, req.to).await
}
