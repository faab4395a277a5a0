//! Draining a node: moving every shard it owns to the other connected nodes.

use super::*;

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
