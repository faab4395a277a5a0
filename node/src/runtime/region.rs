//! The shard region: the node's routing table from entity to shard actor. It is the
//! `EntityClient` the edge, the relay and the outside-service callbacks use.

use super::entity::{BatchResults, EntityMsg};
use super::shard::{ShardActor, ShardArgs, ShardMsg, ShardStats};
use super::RuntimeContext;
use agora_actors::client::{AskError, EntityClient};
use agora_actors::{Command, EntityRef, Reply};
use async_trait::async_trait;
use ractor::{Actor, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Limits of the region.
#[derive(Debug, Clone)]
pub struct RegionLimits {
    /// Most asks in flight at once; beyond it asks fail fast with `Overloaded`.
    pub max_in_flight: usize,
    /// How long an ask waits for its reply.
    pub ask_timeout: Duration,
}

impl Default for RegionLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 20_000,
            ask_timeout: Duration::from_secs(10),
        }
    }
}

/// Routes commands to the shards hosted on this node.
#[derive(Clone)]
pub struct Region {
    shards: Arc<Vec<Option<ActorRef<ShardMsg>>>>,
    in_flight: Arc<Semaphore>,
    limits: RegionLimits,
}

impl Region {
    /// Starts the shard actors of the `owned` shards (of `shard_count`) and a passivation
    /// ticker.
    pub async fn start(
        shard_count: u32,
        owned: &[u32],
        epoch: u64,
        rt: RuntimeContext,
        limits: RegionLimits,
    ) -> Result<Self, ractor::SpawnErr> {
        let mut shards = Vec::with_capacity(shard_count as usize);
        for shard in 0..shard_count {
            if !owned.contains(&shard) {
                shards.push(None);
                continue;
            }
            let (actor, _) = Actor::spawn(
                None,
                ShardActor,
                ShardArgs {
                    shard,
                    epoch,
                    rt: rt.clone(),
                },
            )
            .await?;
            shards.push(Some(actor));
        }
        let shards = Arc::new(shards);
        let tick = (rt.passivate_after / 2).max(Duration::from_millis(100));
        let ticking = shards.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                for s in ticking.iter().flatten() {
                    if s.send_message(ShardMsg::Tick).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            shards,
            limits,
        })
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    async fn send<T>(
        &self,
        to: EntityRef,
        make: impl FnOnce(oneshot::Sender<Result<T, AskError>>) -> EntityMsg,
    ) -> Result<T, AskError> {
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| AskError::Overloaded)?;
        let shard = to.shard(self.shard_count());
        let actor = self
            .shards
            .get(shard as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| AskError::Unavailable(format!("shard {shard} is not hosted here")))?;
        let (reply, rx) = oneshot::channel();
        actor
            .send_message(ShardMsg::Deliver {
                to,
                msg: make(reply),
            })
            .map_err(|_| AskError::Unavailable(format!("shard {shard} stopped")))?;
        match tokio::time::timeout(self.limits.ask_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(AskError::Unavailable(
                "the entity stopped before answering".into(),
            )),
            Err(_) => Err(AskError::Timeout),
        }
    }

    /// Delivers `cmd` to `to`; `msg_id` makes it take effect at most once.
    pub async fn deliver(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: Option<String>,
    ) -> Result<Reply, AskError> {
        self.send(to, |reply| EntityMsg::Request { cmd, msg_id, reply })
            .await
    }

    /// Delivers relayed messages to `to` in order, their effects stored in one write.
    pub async fn deliver_batch(
        &self,
        to: EntityRef,
        items: Vec<(Command, String)>,
    ) -> Result<BatchResults, AskError> {
        self.send(to, |reply| EntityMsg::Batch { items, reply })
            .await
    }

    /// Counts per hosted shard.
    pub async fn stats(&self) -> Vec<ShardStats> {
        let mut out = Vec::with_capacity(self.shards.len());
        for s in self.shards.iter().flatten() {
            let (tx, rx) = oneshot::channel();
            let stats = if s.send_message(ShardMsg::Stats(tx)).is_ok() {
                rx.await.unwrap_or_default()
            } else {
                ShardStats::default()
            };
            out.push(stats);
        }
        out
    }

    /// Stops every shard (and so every entity).
    pub fn stop(&self) {
        for s in self.shards.iter().flatten() {
            s.stop(Some("node stopping".into()));
        }
    }
}

#[async_trait]
impl EntityClient for Region {
    async fn ask(&self, to: EntityRef, cmd: Command) -> Result<Reply, AskError> {
        self.deliver(to, cmd, None).await
    }
}
