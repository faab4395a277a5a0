//! The shard region: the shards hosted on this node, by shard number. It starts and stops
//! shard actors as ownership changes (handoff), and delivers commands to hosted shards;
//! routing between nodes is the cluster router's job.

use super::entity::{BatchItem, BatchResults, EntityMsg, ReplyTo, UntilTaken};
use super::shard::{HotEntities, ShardActor, ShardArgs, ShardMsg, ShardStats};
use super::RuntimeContext;
use agora_actors::client::{AskError, EntityClient, Pending};
use agora_actors::{Command, EntityRef, Reply};
use async_trait::async_trait;
use ractor::{Actor, ActorRef};
use std::sync::{Arc, RwLock};
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

/// A hosted shard: its actor, and its active entities for direct sends.
#[derive(Clone)]
struct Hosted {
    actor: ActorRef<ShardMsg>,
    hot: Arc<HotEntities>,
}

type Slots = Arc<RwLock<Vec<Option<Hosted>>>>;

/// The shards hosted on this node.
#[derive(Clone)]
pub struct Region {
    shards: Slots,
    shard_count: u32,
    rt: RuntimeContext,
    in_flight: Arc<Semaphore>,
    limits: RegionLimits,
    /// Held while a shard actor starts: one start at a time (see [`Region::host`]).
    starting: Arc<tokio::sync::Mutex<()>>,
}

impl Region {
    /// Starts the shard actors of the `owned` shards (of `shard_count`) under `epoch`, and a
    /// passivation ticker.
    pub async fn start(
        shard_count: u32,
        owned: &[u32],
        epoch: u64,
        rt: RuntimeContext,
        limits: RegionLimits,
    ) -> Result<Self, ractor::SpawnErr> {
        let region = Self {
            shards: Arc::new(RwLock::new(vec![None; shard_count as usize])),
            shard_count,
            rt: rt.clone(),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits,
            starting: Arc::new(tokio::sync::Mutex::new(())),
        };
        for shard in owned {
            region.host(*shard, epoch).await?;
        }
        let tick = (rt.passivate_after / 2).max(Duration::from_millis(100));
        let ticking = region.shards.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                let hosted: Vec<ActorRef<ShardMsg>> = match ticking.read() {
                    Ok(s) => s.iter().flatten().map(|h| h.actor.clone()).collect(),
                    Err(_) => return,
                };
                for s in hosted {
                    let _ = s.send_message(ShardMsg::Tick);
                }
            }
        });
        Ok(region)
    }

    /// Requests waiting for an entity's answer on this node (its mailboxes' depth, summed).
    pub fn in_flight(&self) -> usize {
        self.limits
            .max_in_flight
            .saturating_sub(self.in_flight.available_permits())
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    fn slot(&self, shard: u32) -> Option<ActorRef<ShardMsg>> {
        self.hosted(shard).map(|h| h.actor)
    }

    fn hosted(&self, shard: u32) -> Option<Hosted> {
        self.shards.read().ok()?.get(shard as usize)?.clone()
    }

    /// Whether `shard` is hosted here.
    pub fn hosts(&self, shard: u32) -> bool {
        self.slot(shard).is_some()
    }

    /// Whether this node may serve `shard` now (its guard, if any, agrees).
    pub fn may_serve(&self, shard: u32) -> bool {
        self.rt
            .serve_guard
            .as_ref()
            .is_none_or(|g| g.may_serve(shard))
    }

    /// The node this node just handed `shard`'s lead to, while that handover runs.
    pub fn handed_to(&self, shard: u32) -> Option<u64> {
        self.rt.serve_guard.as_ref()?.handed_to(shard)
    }

    /// Starts hosting `shard`, writing under `epoch` (no-op if already hosted, or if this
    /// node may not serve it now). Returns whether this call started it.
    ///
    /// Starts are taken one at a time: two callers that both found the shard unhosted (the
    /// map follower and a request's router, on the node a shard just moved to) would
    /// otherwise start two shard actors, whose entities would each hold a copy of the same
    /// state and overwrite each other's changes.
    pub async fn host(&self, shard: u32, epoch: u64) -> Result<bool, ractor::SpawnErr> {
        let _one_start_at_a_time = self.starting.lock().await;
        if self.hosts(shard) || shard >= self.shard_count || !self.may_serve(shard) {
            return Ok(false);
        }
        let hot = Arc::new(HotEntities::default());
        let (actor, _) = Actor::spawn(
            None,
            ShardActor,
            ShardArgs {
                shard,
                epoch,
                rt: self.rt.clone(),
                hot: hot.clone(),
            },
        )
        .await?;
        if let Ok(mut s) = self.shards.write() {
            if let Some(slot) = s.get_mut(shard as usize) {
                // Only a start fills a slot, and starts wait for each other.
                assert!(slot.is_none(), "shard {shard} started twice on this node");
                *slot = Some(Hosted { actor, hot });
            }
        }
        tracing::debug!(shard, epoch, "hosting shard");
        Ok(true)
    }

    /// Stops taking new work for `shard`: its entities stop (their writes are handed to the
    /// writer), later messages wait in the shard. Resolves once every entity has stopped.
    pub async fn freeze(&self, shard: u32) -> Result<(), AskError> {
        let actor = self
            .slot(shard)
            .ok_or_else(|| AskError::Unavailable(format!("shard {shard} is not hosted here")))?;
        let (tx, rx) = oneshot::channel();
        actor
            .send_message(ShardMsg::Freeze(tx))
            .map_err(|_| AskError::Unavailable("shard stopped".into()))?;
        rx.await
            .map_err(|_| AskError::Unavailable("shard stopped while freezing".into()))
    }

    /// Resumes a frozen shard here (a move that did not happen).
    pub fn thaw(&self, shard: u32) {
        if let Some(actor) = self.slot(shard) {
            let _ = actor.send_message(ShardMsg::Thaw);
        }
    }

    /// Stops hosting `shard` and returns the messages that waited while it was frozen.
    pub async fn release(&self, shard: u32) -> Vec<(EntityRef, EntityMsg)> {
        let hosted = match self.shards.write() {
            Ok(mut s) => s.get_mut(shard as usize).and_then(Option::take),
            Err(_) => None,
        };
        let Some(Hosted { actor, .. }) = hosted else {
            return Vec::new();
        };
        let (tx, rx) = oneshot::channel();
        if actor.send_message(ShardMsg::Release(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
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
        let shard = to.shard(self.shard_count);
        if !self.may_serve(shard) {
            metrics::counter!("agora_region_unserved_requests_total").increment(1);
            return Err(AskError::not_served_here(
                format!("shard {shard}: this node does not serve it now"),
                self.handed_to(shard),
            ));
        }
        let hosted = self.hosted(shard).ok_or_else(|| {
            AskError::not_served_here(format!("shard {shard} is not hosted here"), None)
        })?;
        let (reply, rx) = oneshot::channel();
        // An active entity takes it straight into its mailbox; otherwise the shard actor
        // activates it (or holds the message while it stops or the shard is frozen).
        if let Some(msg) = hosted
            .hot
            .try_send(&to, make(reply), self.rt.clock.now_ms())
        {
            hosted
                .actor
                .send_message(ShardMsg::Deliver { to, msg })
                .map_err(|_| AskError::Unavailable(format!("shard {shard} stopped")))?;
        }
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
        self.deliver_after(to, cmd, msg_id, Pending::default())
            .await
    }

    /// Delivers `cmd`, derived from the pending change `after`, to `to`.
    pub async fn deliver_after(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: Option<String>,
        after: Pending,
    ) -> Result<Reply, AskError> {
        self.send(to, |reply| EntityMsg::Request {
            cmd,
            msg_id,
            after,
            reply: UntilTaken::new(ReplyTo::Durable(reply)),
        })
        .await
    }

    /// Delivers `cmd` to `to` and takes the answer as soon as its change is handed over.
    pub async fn deliver_early(
        &self,
        to: EntityRef,
        cmd: Command,
    ) -> Result<(Reply, Pending), AskError> {
        self.send(to, |reply| EntityMsg::Request {
            cmd,
            msg_id: None,
            after: Pending::default(),
            reply: UntilTaken::new(ReplyTo::Early(reply)),
        })
        .await
    }

    /// Waits until `change` is durable (refused or store failed: unavailable).
    pub async fn settle(&self, change: Pending) -> Result<(), AskError> {
        let Pending { ticket, hold } = change;
        drop(hold);
        let writer = &self.rt.writer;
        if ticket == 0 || (writer.durable(ticket).await && !writer.was_refused(ticket)) {
            Ok(())
        } else {
            Err(AskError::Unavailable(
                "a change this depends on was not stored".into(),
            ))
        }
    }

    /// Delivers relayed messages to `to` in order, their effects stored in one write (refused
    /// if a sender's change it names is).
    pub async fn deliver_batch(
        &self,
        to: EntityRef,
        items: Vec<BatchItem>,
    ) -> Result<BatchResults, AskError> {
        self.send(to, |reply| EntityMsg::Batch {
            items,
            reply: UntilTaken::new(reply),
        })
        .await
    }

    /// Counts per hosted shard, with the shard number.
    pub async fn stats(&self) -> Vec<(u32, ShardStats)> {
        let hosted: Vec<(u32, ActorRef<ShardMsg>)> = match self.shards.read() {
            Ok(s) => s
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.as_ref().map(|h| (i as u32, h.actor.clone())))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut out = Vec::with_capacity(hosted.len());
        for (shard, s) in hosted {
            let (tx, rx) = oneshot::channel();
            let stats = if s.send_message(ShardMsg::Stats(tx)).is_ok() {
                rx.await.unwrap_or_default()
            } else {
                ShardStats::default()
            };
            out.push((shard, stats));
        }
        out
    }

    /// Stops every shard (and so every entity).
    pub fn stop(&self) {
        if let Ok(s) = self.shards.read() {
            for h in s.iter().flatten() {
                h.actor.stop(Some("node stopping".into()));
            }
        }
    }
}

#[async_trait]
impl EntityClient for Region {
    async fn ask(&self, to: EntityRef, cmd: Command) -> Result<Reply, AskError> {
        self.deliver(to, cmd, None).await
    }

    async fn ask_early(&self, to: EntityRef, cmd: Command) -> Result<(Reply, Pending), AskError> {
        self.deliver_early(to, cmd).await
    }

    async fn ask_after(
        &self,
        to: EntityRef,
        cmd: Command,
        after: Pending,
    ) -> Result<Reply, AskError> {
        self.deliver_after(to, cmd, None, after).await
    }

    async fn durable(&self, change: Pending) -> Result<(), AskError> {
        self.settle(change).await
    }

    async fn ask_once(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: String,
    ) -> Result<Reply, AskError> {
        self.deliver(to, cmd, Some(msg_id)).await
    }
}
