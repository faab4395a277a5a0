//! The router: sends each request to the node that owns the target's shard — the local
//! region, or a peer's gateway in an envelope. A shard whose owner is unreachable answers
//! `Unavailable` at once (the edge turns it into 503 with `Retry-After`), never a hang.

use super::directory::{Directory, GatewayRpc, PeerCallError};
use super::envelope::{
    decode, encode, Envelope, Payload, ReplyPayload, WireReply, ENVELOPE_VERSION,
};
use super::shard_map::SharedShardMap;
use agora_actors::client::{AskError, EntityClient, Pending};
use agora_actors::seams::Clock;
use agora_actors::{Command, EntityRef, Reply};
use agora_runtime::entity::{BatchItem, BatchResults};
use agora_runtime::region::Region;
use agora_runtime::Deliver;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Routes requests to shard owners.
#[derive(Clone)]
pub struct Router {
    me: u64,
    region: Region,
    map: SharedShardMap,
    directory: Directory,
    clock: Arc<dyn Clock>,
    call_timeout: Duration,
    correlation: Arc<AtomicU64>,
    liveness: super::liveness::Liveness,
    /// Replicated shards: this node's group members, whose leader a request goes to.
    leaders: Option<agora_replication::Groups>,
}

impl Router {
    /// A router for node `me`.
    pub fn new(
        me: u64,
        region: Region,
        map: SharedShardMap,
        directory: Directory,
        clock: Arc<dyn Clock>,
        liveness: super::liveness::Liveness,
    ) -> Self {
        Self {
            me,
            region,
            map,
            directory,
            clock,
            // Long enough for a parked checkout (5 s), short enough to fail a silent peer.
            call_timeout: Duration::from_secs(6),
            correlation: Arc::new(AtomicU64::new(1)),
            liveness,
            leaders: None,
        }
    }

    /// Routes requests for replicated shards to their group's leader, as this node's
    /// member of the group knows it (the map for shards this node holds no replica of).
    pub fn route_by_leaders(&mut self, groups: agora_replication::Groups) {
        self.leaders = Some(groups);
    }

    /// The local region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    fn owner(&self, to: &EntityRef) -> Result<(u32, u64, u64), AskError> {
        let map = self
            .map
            .read()
            .map_err(|_| AskError::Unavailable("shard map lock poisoned".into()))?;
        let shard = to.shard(map.owners.len() as u32);
        if let Some(raft) = self.leaders.as_ref().and_then(|g| g.raft(shard)) {
            // A replica that knows no leader (a new one, or during an election) falls back
            // to the map: the owner's own guard decides whether it may answer.
            if let Some(leader) = raft.metrics().borrow().current_leader {
                return Ok((shard, leader, map.epoch));
            }
        }
        let owner = map
            .owner(shard)
            .ok_or_else(|| AskError::Unavailable(format!("no owner for shard {shard}")))?;
        Ok((shard, owner, map.epoch))
    }

    async fn remote(
        &self,
        to: EntityRef,
        shard: u32,
        owner: u64,
        epoch: u64,
        payload: Payload,
    ) -> Result<ReplyPayload, AskError> {
        if self.liveness.status(owner) == super::liveness::PeerStatus::Down {
            return Err(AskError::Unavailable(format!(
                "node {owner} (owner of shard {shard}) is down"
            )));
        }
        let gateway = self.directory.gateway(owner).ok_or_else(|| {
            AskError::Unavailable(format!(
                "node {owner} (owner of shard {shard}) is not connected"
            ))
        })?;
        let env = Envelope {
            version: ENVELOPE_VERSION,
            from_node: self.me,
            to_node: owner,
            target: to,
            shard,
            epoch,
            correlation: self.correlation.fetch_add(1, Ordering::Relaxed),
            deadline_ms: self.clock.now_ms() + self.call_timeout.as_millis() as u64,
            payload,
        };
        let bytes = encode(&env)?;
        metrics::counter!("agora_cluster_remote_calls_total").increment(1);
        let answer = gateway
            .call(GatewayRpc::Deliver, bytes, self.call_timeout)
            .await
            .map_err(|e| match e {
                PeerCallError::Timeout => AskError::Timeout,
                e => AskError::Unavailable(format!("node {owner}: {e}")),
            })?;
        decode::<WireReply>(&answer)?
    }

    /// Whether `to` lives on this node (the agreed map gives its shard to this node).
    pub fn is_local(&self, to: &EntityRef) -> bool {
        self.owner(to).is_ok_and(|(_, owner, _)| owner == self.me)
    }

    /// Hosts a shard the agreed map gives this node if the map follower has not yet.
    async fn ensure_hosted(&self, shard: u32, epoch: u64) {
        if !self.region.hosts(shard) {
            if let Err(e) = self.region.host(shard, epoch).await {
                tracing::error!(shard, error = %e, "could not host a shard this node owns");
            }
        }
    }

    /// Delivers `cmd` to `to` wherever it lives; `msg_id` makes it take effect at most once.
    pub async fn deliver(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: Option<String>,
    ) -> Result<Reply, AskError> {
        self.deliver_after(to, cmd, msg_id, Pending::default())
            .await
    }

    /// Delivers `cmd`, derived from this node's pending change `after`, to `to` wherever it
    /// lives: with the dependency on this node, once `after` is durable elsewhere.
    pub async fn deliver_after(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: Option<String>,
        after: Pending,
    ) -> Result<Reply, AskError> {
        let (shard, owner, epoch) = self.owner(&to)?;
        if owner == self.me {
            self.ensure_hosted(shard, epoch).await;
            return self.region.deliver_after(to, cmd, msg_id, after).await;
        }
        // Another node would keep the command even if this node lost `after`.
        self.region.settle(after).await?;
        match self
            .remote(to, shard, owner, epoch, Payload::Request { cmd, msg_id })
            .await?
        {
            ReplyPayload::Reply(r) => Ok(r),
            ReplyPayload::Batch(_) => {
                Err(AskError::Unavailable("a batch answer to a request".into()))
            }
        }
    }

    /// Delivers relayed messages to `to` wherever it lives, stored in one write. Messages
    /// whose senders' changes are not yet durable (`after` not empty) go only to an entity of
    /// this node: another node would keep them even if this one lost their senders.
    pub async fn deliver_batch(
        &self,
        to: EntityRef,
        items: Vec<BatchItem>,
    ) -> Result<BatchResults, AskError> {
        let (shard, owner, epoch) = self.owner(&to)?;
        if owner == self.me {
            self.ensure_hosted(shard, epoch).await;
            return self.region.deliver_batch(to, items).await;
        }
        if items.iter().any(|i| i.sender > 0) {
            return Err(AskError::Unavailable(format!(
                "{to} lives on node {owner}: sent once its senders' changes are durable"
            )));
        }
        match self
            .remote(
                to,
                shard,
                owner,
                epoch,
                Payload::Batch(items.into_iter().map(|i| (i.cmd, i.msg_id)).collect()),
            )
            .await?
        {
            ReplyPayload::Batch(r) => Ok(r),
            ReplyPayload::Reply(_) => {
                Err(AskError::Unavailable("a request answer to a batch".into()))
            }
        }
    }
}

#[async_trait]
impl Deliver for Router {
    async fn deliver(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: Option<String>,
    ) -> Result<Reply, AskError> {
        Router::deliver(self, to, cmd, msg_id).await
    }

    async fn deliver_batch(
        &self,
        to: EntityRef,
        items: Vec<BatchItem>,
    ) -> Result<BatchResults, AskError> {
        Router::deliver_batch(self, to, items).await
    }

    fn is_local(&self, to: &EntityRef) -> bool {
        Router::is_local(self, to)
    }
}

#[async_trait]
impl EntityClient for Router {
    async fn ask(&self, to: EntityRef, cmd: Command) -> Result<Reply, AskError> {
        self.deliver(to, cmd, None).await
    }

    async fn ask_early(&self, to: EntityRef, cmd: Command) -> Result<(Reply, Pending), AskError> {
        let (shard, owner, epoch) = self.owner(&to)?;
        if owner == self.me {
            self.ensure_hosted(shard, epoch).await;
            return self.region.deliver_early(to, cmd).await;
        }
        Ok((self.deliver(to, cmd, None).await?, Pending::default()))
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
        self.region.settle(change).await
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
