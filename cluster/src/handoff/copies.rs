//! Copies of a shard stored by a handoff: kept, or dropped once the agreed map says the
//! shard is another node's; and the region kept hosting the shards the map gives this node.

use super::*;

impl Handoff {
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
    pub(super) fn discard_on(&self, to: u64, shard: u32, fence: u64) {
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
