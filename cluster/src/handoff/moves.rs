//! Moving a shard from this node to another: freeze, make durable, stream, agree, settle;
//! messages that waited meanwhile are forwarded to the new owner.

use super::*;

impl Handoff {
    /// Moves `shard` from this node to node `to`. The move runs as its own task: a caller
    /// that stops waiting (an admin request whose client hung up) never cancels it halfway,
    /// which would leave the shard frozen.
    pub async fn move_shard(&self, shard: u32, to: u64) -> Result<u64, MoveError> {
        let this = self.clone();
        tokio::spawn(async move { this.move_shard_to_end(shard, to).await })
            .await
            .map_err(|e| MoveError::Failed(format!("the move task failed: {e}")))?
    }

    /// Refuses at once a move that cannot be made: replicated shards, an unknown shard, one
    /// already on `to` or owned by another node, a single node, or `to` not connected.
    /// Returns the shard's epoch.
    pub fn check_move(&self, shard: u32, to: u64) -> Result<u64, MoveError> {
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
        Ok(epoch)
    }

    pub(super) async fn move_shard_to_end(&self, shard: u32, to: u64) -> Result<u64, MoveError> {
        // Checked again once this move's turn comes: an earlier move may have taken the shard.
        let _one_move_at_a_time = self.moving.lock().await;
        let epoch = self.check_move(shard, to)?;
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

    pub(super) fn forward(&self, to: agora_actors::EntityRef, msg: EntityMsg) {
        let router = self.router.clone();
        tokio::spawn(async move {
            match msg {
                EntityMsg::Request {
                    cmd,
                    msg_id,
                    after,
                    reply,
                } => {
                    // Taken before it is sent on: from here it may take effect.
                    let reply = reply.take();
                    let answer = router.deliver_after(to, cmd, msg_id, after).await;
                    match reply {
                        Some(ReplyTo::Durable(tx)) => drop(tx.send(answer)),
                        // Answered by another node: durable already.
                        Some(ReplyTo::Early(tx)) => {
                            drop(tx.send(answer.map(|r| (r, Pending::default()))))
                        }
                        None => {}
                    }
                }
                EntityMsg::Batch { items, reply } => {
                    // Early deliveries go back to the relay, which sends them again once their
                    // senders' changes are durable (never to the new owner before).
                    let reply = reply.take();
                    let answer = router.deliver_batch(to, items).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(answer);
                    }
                }
                EntityMsg::Stop => {}
            }
        });
    }
}
