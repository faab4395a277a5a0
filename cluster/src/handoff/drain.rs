//! Draining a node: moving every shard it owns to the other connected nodes.

use super::*;

impl Handoff {
    /// Refuses at once a drain that cannot start: replicated shards are not moved, and a
    /// node with no connected peer has nowhere to move its shards. Returns how many shards
    /// this node owns (the drain's total).
    pub fn check_drain(&self) -> Result<usize, MoveError> {
        if self.replicated {
            return Err(MoveError::Refused(REPLICATED_NO_MOVES.into()));
        }
        let mine = self.shards_of_me()?;
        if !mine.is_empty() && self.least_loaded_peer()?.is_none() {
            return Err(MoveError::Refused(
                "no other node is connected to take the shards".into(),
            ));
        }
        Ok(mine.len())
    }

    /// Moves every shard of this node to the other connected nodes, the least loaded first,
    /// one at a time (bounding how many shards move at once). Returns how many moved.
    pub async fn drain(
        &self,
        draining: &std::sync::atomic::AtomicBool,
    ) -> Result<usize, MoveError> {
        self.drain_reporting(draining, &|_, _| {}).await
    }

    /// `drain`, calling `progress(moved, total)` before the first move and after each one.
    pub async fn drain_reporting(
        &self,
        draining: &std::sync::atomic::AtomicBool,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<usize, MoveError> {
        if self.replicated {
            return Err(MoveError::Refused(REPLICATED_NO_MOVES.into()));
        }
        draining.store(true, std::sync::atomic::Ordering::Release);
        let mine = self.shards_of_me()?;
        let total = mine.len();
        tracing::info!(shards = total, "draining this node");
        progress(0, total);
        let mut moved = 0;
        for shard in mine {
            let Some(to) = self.least_loaded_peer()? else {
                return Err(MoveError::Failed(
                    "no other node is connected to take the shards".into(),
                ));
            };
            self.move_shard(shard, to).await?;
            moved += 1;
            tracing::info!(shard, to, moved, of = total, "drain: shard moved");
            progress(moved, total);
        }
        tracing::info!(moved, "drained");
        Ok(moved)
    }

    /// The shards the agreed map gives this node.
    fn shards_of_me(&self) -> Result<Vec<u32>, MoveError> {
        Ok(self
            .map
            .read()
            .map_err(|_| MoveError::Failed("shard map lock poisoned".into()))?
            .shards_of(self.me))
    }

    /// The connected peer owning the fewest shards (the lowest id on a tie).
    fn least_loaded_peer(&self) -> Result<Option<u64>, MoveError> {
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
        Ok(candidates.first().map(|(_, id)| *id))
    }
}
