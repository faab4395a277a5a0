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
        route: Route,
        payload: Payload,
    ) -> Result<ReplyPayload, AskError> {
        let Route {
            shard,
            node: owner,
            epoch,
        } = route;
        if self.liveness.status(owner) == super::liveness::PeerStatus::Down {
            return Err(AskError::not_served_here(
                format!("node {owner} (owner of shard {shard}) is down"),
                None,
            ));
        }
        let gateway = self.directory.gateway(owner).ok_or_else(|| {
            AskError::not_served_here(
                format!("node {owner} (owner of shard {shard}) is not connected"),
                None,
            )
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

    /// Hosts a shard the agreed map gives this node if the map follower has not yet. An
    /// unreplicated shard the map gives another node is never hosted here, whatever named
    /// this node: its rows are not here, and its entities would start empty.
    async fn ensure_hosted(&self, shard: u32, epoch: u64) {
        if self.region.hosts(shard) {
            return;
        }
        if !self.holds_replica(shard) && !self.map_gives_me(shard) {
            return;
        }
        if let Err(e) = self.region.host(shard, epoch).await {
            tracing::error!(shard, error = %e, "could not host a shard this node owns");
        }
    }

    /// Whether this node holds a replica of `shard` (its group then decides who serves).
    fn holds_replica(&self, shard: u32) -> bool {
        self.leaders.as_ref().and_then(|g| g.raft(shard)).is_some()
    }

    /// Whether this node's agreed map gives `shard` to this node.
    fn map_gives_me(&self, shard: u32) -> bool {
        self.map
            .read()
            .is_ok_and(|m| m.owner(shard) == Some(self.me))
    }

    /// The leader a refusal named, if this node may follow it: one that names this node is
    /// followed only while this node's own view agrees (a peer with a stale map names the
    /// node that handed it the shard).
    fn followable(&self, to: &EntityRef, named: Option<u64>) -> Option<u64> {
        named.filter(|&l| l != self.me || self.owner(to).is_ok_and(|(_, o, _)| o == self.me))
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

    /// Sends by `send` to the node that serves `to`'s shard, again while the node asked
    /// refuses having delivered nothing (`AskError::NotServedHere`): at once to the leader it
    /// names, or after a short pause while a lead changes hands.
    async fn retrying<T, F, Fut>(&self, to: &EntityRef, mut send: F) -> Result<T, AskError>
    where
        F: FnMut(Route) -> Fut,
        Fut: std::future::Future<Output = Result<T, AskError>>,
    {
        let mut retry = Retry::default();
        loop {
            let route = self.route(to, retry.leader)?;
            match send(route).await {
                Err(AskError::NotServedHere { why, leader }) => {
                    let leader = self.followable(to, leader);
                    match retry.after_refusal(route.node, leader) {
                        Next::GiveUp => return Err(AskError::Unavailable(why)),
                        Next::Send => {}
                        Next::Pause(pause, refused) => {
                            let started = tokio::time::Instant::now();
                            self.await_other_leader(route.shard, &refused, pause).await;
                            retry.paused_for(started.elapsed().as_millis() as u64);
                        }
                    }
                    metrics::counter!("agora_cluster_ask_retries_total").increment(1);
                    tracing::debug!(
                        me = self.me,
                        shard = route.shard,
                        refused_by = route.node,
                        named = ?leader,
                        pauses = retry.pauses,
                        %why,
                        "ask refused undelivered; sending it again"
                    );
                }
                answer => return answer,
            }
        }
    }

    /// Waits up to `pause` for this node's view of `shard`'s leader to name a node other
    /// than those that just `refused` (just `pause` when this node holds no replica).
    async fn await_other_leader(&self, shard: u32, refused: &[u64], pause: Duration) {
        match self.leaders.as_ref().and_then(|g| g.raft(shard)) {
            // The leader this node knows refused, and it is up: it has just been elected (it
            // serves once it has applied its term's first entry, a round later) or is
            // renewing its lease. Waiting for another leader would wait out the whole pause
            // (up to 400 ms at the end of a failover, measured); it is asked again soon.
            Some(raft) if self.leader_refused(&raft, refused) => {
                tokio::time::sleep(pause.min(Duration::from_millis(FIRST_RETRY_PAUSE_MS))).await;
            }
            Some(raft) => {
                let other = |m: &openraft::RaftMetrics<u64, openraft::BasicNode>| {
                    m.current_leader.is_some_and(|l| !refused.contains(&l))
                };
                // A timeout is the pause running out: the view is asked again either way.
                let _ = raft
                    .wait(Some(pause))
                    .metrics(other, "another leader")
                    .await;
            }
            None => tokio::time::sleep(pause).await,
        }
    }

    /// Whether the leader `raft`'s member here knows is one of the nodes that `refused`, and
    /// is up (this node, or a peer the failure detector hears).
    fn leader_refused(&self, raft: &agora_replication::ShardRaft, refused: &[u64]) -> bool {
        let leader = raft.metrics().borrow().current_leader;
        leader.is_some_and(|l| {
            refused.contains(&l)
                && (l == self.me || self.liveness.status(l) == super::liveness::PeerStatus::Up)
        })
    }

    /// Where an ask for `to` goes: to `leader` if a refusal named one, else as this node
    /// knows the shard's owner.
    fn route(&self, to: &EntityRef, leader: Option<u64>) -> Result<Route, AskError> {
        let (shard, owner, epoch) = self.owner(to)?;
        Ok(Route {
            shard,
            node: leader.unwrap_or(owner),
            epoch,
        })
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
        let mut after = Some(after);
        self.retrying(&to, |route| {
            let (to, cmd, msg_id, after) = (to.clone(), cmd.clone(), msg_id.clone(), after.take());
            async move {
                let after = after.unwrap_or_default();
                if route.node == self.me {
                    self.ensure_hosted(route.shard, route.epoch).await;
                    // A refused dependent change cannot go again: its dependency is gone.
                    let dependent = after.ticket != 0;
                    return match self.region.deliver_after(to, cmd, msg_id, after).await {
                        Err(AskError::NotServedHere { why, .. }) if dependent => {
                            Err(AskError::Unavailable(why))
                        }
                        answer => answer,
                    };
                }
                // Another node would keep the command even if this node lost `after`.
                self.region.settle(after).await?;
                self.remote_request(to, route, cmd, msg_id).await
            }
        })
        .await
    }

    /// Sends one request to the node `route` names.
    async fn remote_request(
        &self,
        to: EntityRef,
        route: Route,
        cmd: Command,
        msg_id: Option<String>,
    ) -> Result<Reply, AskError> {
        match self
            .remote(to, route, Payload::Request { cmd, msg_id })
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
        if items.iter().any(|i| i.sender > 0 || i.hold.is_some()) {
            // Tied to changes of this node: sent once, as they are.
            let route = self.route(&to, None)?;
            return match self.deliver_batch_once(to, route, items).await {
                Err(AskError::NotServedHere { why, .. }) => Err(AskError::Unavailable(why)),
                answer => answer,
            };
        }
        let durable: Vec<(Command, String)> =
            items.into_iter().map(|i| (i.cmd, i.msg_id)).collect();
        self.retrying(&to, |route| {
            let items = durable
                .iter()
                .map(|(cmd, id)| BatchItem::durable(cmd.clone(), id.clone()))
                .collect();
            let to = to.clone();
            async move { self.deliver_batch_once(to, route, items).await }
        })
        .await
    }

    async fn deliver_batch_once(
        &self,
        to: EntityRef,
        route: Route,
        items: Vec<BatchItem>,
    ) -> Result<BatchResults, AskError> {
        if route.node == self.me {
            self.ensure_hosted(route.shard, route.epoch).await;
            return self.region.deliver_batch(to, items).await;
        }
        if items.iter().any(|i| i.sender > 0) {
            return Err(AskError::Unavailable(format!(
                "{to} lives on node {}: sent once its senders' changes are durable",
                route.node
            )));
        }
        match self
            .remote(
                to,
                route,
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

/// How long an ask refused by nodes that delivered nothing waits in all (it goes again at
/// once to a leader a refusal names, else after a pause): the pauses' schedule, 25 + 50 +
/// 100 + 200 + 400 + 400 ms, about a failover after a crash. One that takes longer answers
/// 503 then, never a hang.
const PATIENCE_MS: u64 = 1_175;

/// Pauses per ask at most, however short (a bound on sends besides the time).
const PAUSES_PER_ASK: u32 = 64;

/// The first pause; doubled each time up to `LAST_RETRY_PAUSE_MS`. Also the pause before
/// asking again a leader that refused because it does not serve yet.
const FIRST_RETRY_PAUSE_MS: u64 = 25;

/// The longest pause between two sends of an ask.
const LAST_RETRY_PAUSE_MS: u64 = 400;

/// Where one send of an ask goes.
#[derive(Debug, Clone, Copy)]
struct Route {
    shard: u32,
    node: u64,
    epoch: u64,
}

/// The retries of one ask.
#[derive(Debug, Default)]
struct Retry {
    pauses: u32,
    pause_ms: u64,
    leader: Option<u64>,
    /// The nodes that refused since the last pause (views may disagree for a moment, and
    /// two nodes naming each other must not be asked in turn without a pause).
    refused: Vec<u64>,
    /// How long its pauses took so far, in ms.
    waited_ms: u64,
}

/// What an ask does after a refusal.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Send again at once, to the leader the refusal named.
    Send,
    /// Send again after a pause of at most this long, which ends early once this node's
    /// view of the leader names none of these nodes (they refused since the last pause).
    Pause(Duration, Vec<u64>),
    /// Answer with the refusal: the pauses are spent.
    GiveUp,
}

impl Retry {
    /// After `node` refused, naming `named` as the leader.
    fn after_refusal(&mut self, node: u64, named: Option<u64>) -> Next {
        self.refused.push(node);
        self.leader = named.filter(|l| !self.refused.contains(l));
        if self.leader.is_some() {
            return Next::Send;
        }
        if self.waited_ms >= PATIENCE_MS || self.pauses >= PAUSES_PER_ASK {
            return Next::GiveUp;
        }
        self.pauses += 1;
        self.pause_ms = (self.pause_ms * 2).clamp(FIRST_RETRY_PAUSE_MS, LAST_RETRY_PAUSE_MS);
        let pause = Duration::from_millis(self.pause_ms);
        Next::Pause(pause, std::mem::take(&mut self.refused))
    }

    /// Counts a pause that took `ms`.
    fn paused_for(&mut self, ms: u64) {
        self.waited_ms = self.waited_ms.saturating_add(ms);
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
        self.retrying(&to, |route| {
            let (to, cmd) = (to.clone(), cmd.clone());
            async move {
                if route.node == self.me {
                    self.ensure_hosted(route.shard, route.epoch).await;
                    return self.region.deliver_early(to, cmd).await;
                }
                let reply = self.remote_request(to, route, cmd, None).await?;
                Ok((reply, Pending::default()))
            }
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pause_ms(next: Next) -> u64 {
        match next {
            Next::Pause(p, _) => p.as_millis() as u64,
            other => panic!("expected a pause, got {other:?}"),
        }
    }

    #[test]
    fn a_named_leader_is_asked_at_once_and_pauses_double_up_to_the_cap() {
        let mut retry = Retry::default();
        assert_eq!(retry.after_refusal(3, Some(2)), Next::Send);
        assert_eq!(retry.leader, Some(2));
        // Naming itself (a stale view) is no lead: pause and ask this node's view again.
        let pauses: Vec<u64> = (0..6)
            .map(|_| {
                let p = pause_ms(retry.after_refusal(2, Some(2)));
                retry.paused_for(p);
                p
            })
            .collect();
        assert_eq!(pauses, [25, 50, 100, 200, 400, 400]);
        assert_eq!(pauses.iter().sum::<u64>(), PATIENCE_MS);
        assert_eq!(retry.after_refusal(2, None), Next::GiveUp);
    }

    #[test]
    fn short_pauses_use_up_the_patience_by_time_not_by_count() {
        let mut retry = Retry::default();
        // A new leader that does not serve yet is asked again after 25 ms each time: the
        // ask waits as long as a full schedule would, no longer.
        let mut sends = 0;
        while retry.after_refusal(1, None) != Next::GiveUp {
            retry.paused_for(FIRST_RETRY_PAUSE_MS);
            sends += 1;
        }
        assert_eq!(sends, PATIENCE_MS.div_ceil(FIRST_RETRY_PAUSE_MS) as usize);
    }

    #[test]
    fn two_nodes_naming_each_other_are_asked_again_only_after_a_pause() {
        let mut retry = Retry::default();
        assert_eq!(retry.after_refusal(1, Some(2)), Next::Send);
        // The pause lasts while this node's view names either of them.
        assert_eq!(
            retry.after_refusal(2, Some(1)),
            Next::Pause(Duration::from_millis(25), vec![1, 2])
        );
        // After the pause, a named node is followed at once again, and costs no pause.
        assert_eq!(retry.after_refusal(1, Some(2)), Next::Send);
        assert_eq!(retry.leader, Some(2));
        assert_eq!(retry.pauses, 1);
    }
}
