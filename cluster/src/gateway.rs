//! The Gateway: the one remotable actor of a node. It takes envelopes from peers, checks that
//! this node owns the target shard under the envelope's epoch (fencing), delivers to the
//! local shard, and answers with the encoded reply. It also carries the shard-map group's
//! Raft requests to the local Raft member.

use super::envelope::{
    decode, encode, Envelope, Payload, ReplyPayload, WireReply, ENVELOPE_VERSION,
};
use super::shard_map::SharedShardMap;
use agora_actors::client::AskError;
use agora_runtime::entity::BatchItem;
use agora_runtime::region::Region;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

/// Messages the gateway takes, from this node or a peer.
#[derive(RactorClusterMessage)]
pub enum GatewayMsg {
    /// An encoded `Envelope`; answered with an encoded `WireReply`.
    #[rpc]
    Deliver(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded catalog version; answered with the encoded `FactsSince` of this node's
    /// shards.
    #[rpc]
    CatalogSince(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded Raft request of the shard-map group; answered with the encoded answer.
    #[rpc]
    Raft(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded part of a shard, `(ShardData, epoch, index, count)`, streamed by its
    /// previous owner; answered with an encoded `Result<(), String>` once it is durable here.
    #[rpc]
    InstallShard(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded `MapCommand` to propose to the shard-map group; answered with an encoded
    /// `super::handoff::ProposeAnswer`.
    #[rpc]
    Propose(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded `JoinRequest`; answered with an encoded `ProposeAnswer`.
    #[rpc]
    Join(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded `MoveRequest` for one of this node's shards; answered with an encoded
    /// `Result<u64, MoveError>` once the move is done.
    #[rpc]
    RequestMove(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded `(shard, fence epoch)`: drop what an aborted handoff installed here (refused
    /// if the map gives this node the shard); answered with an encoded `Result<(), String>`.
    #[rpc]
    DiscardShard(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded request of a shard's replication group; answered with the encoded answer.
    #[rpc]
    Group(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A request (empty) for the shard-map group's read index; answered with an encoded
    /// `super::raft::catch_up::ReadIndexAnswer`.
    #[rpc]
    ReadIndex(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// When the gateway last took a call: a stopping node keeps answering until its peers have
/// stopped calling (they learn that its gateway left), so a call in flight is answered
/// rather than cut off by the exit.
pub struct GatewayTraffic {
    clock: std::sync::Arc<dyn agora_actors::seams::Clock>,
    last_call_ms: std::sync::atomic::AtomicU64,
}

impl GatewayTraffic {
    /// A tracker reading `clock`.
    pub fn new(clock: std::sync::Arc<dyn agora_actors::seams::Clock>) -> std::sync::Arc<Self> {
        let now = clock.now_ms();
        std::sync::Arc::new(Self {
            clock,
            last_call_ms: std::sync::atomic::AtomicU64::new(now),
        })
    }

    /// Notes a call.
    fn heard(&self) {
        self.last_call_ms
            .fetch_max(self.clock.now_ms(), std::sync::atomic::Ordering::AcqRel);
    }

    /// Milliseconds since the last call.
    pub fn quiet_for_ms(&self) -> u64 {
        let last = self.last_call_ms.load(std::sync::atomic::Ordering::Acquire);
        self.clock.now_ms().saturating_sub(last)
    }
}

/// Start arguments and state.
pub struct GatewayArgs {
    /// This node's id.
    pub me: u64,
    /// The local shards.
    pub region: Region,
    /// The shard map.
    pub map: SharedShardMap,
    /// The listing projection (served to peers).
    pub catalog: std::sync::Arc<agora_catalog::CatalogProjection>,
    /// This node's member of the shard-map group (`None` for a single node).
    pub raft: Option<super::raft::Raft>,
    /// Whether that member is rebuilding on a new disk (it grants no votes meanwhile).
    pub map_rebuild: super::raft::rebuild::MapRebuild,
    /// This node's shard replication groups (`None` for a single node).
    pub groups: Option<agora_replication::Groups>,
    /// The store's writer (installs shards handed to this node).
    pub writer: agora_store::Writer,
    /// Moves this node's shards (set once the node is assembled).
    pub handoff: std::sync::Arc<std::sync::OnceLock<super::handoff::Handoff>>,
    /// Whether shards are replicated: a shard is then served by its group's leased leader,
    /// whatever the map says.
    pub replicated: bool,
    /// Who may join the map's Raft group through this node (`None` for a single node).
    pub join_policy: Option<super::join_token::JoinPolicy>,
    /// The time seam (join token expiry).
    pub clock: std::sync::Arc<dyn agora_actors::seams::Clock>,
    /// When the last call came.
    pub traffic: std::sync::Arc<GatewayTraffic>,
}

/// The actor.
pub struct Gateway;

/// Checks an envelope against this node's view; `Ok` means deliver it here.
/// Returns the map's epoch when admitted.
fn admit(args: &GatewayArgs, env: &Envelope) -> Result<u64, AskError> {
    if env.version != ENVELOPE_VERSION {
        return Err(AskError::Unavailable(format!(
            "envelope version {} is not {ENVELOPE_VERSION}",
            env.version
        )));
    }
    if env.to_node != args.me {
        return Err(AskError::Unavailable(format!(
            "envelope for node {} reached node {}",
            env.to_node, args.me
        )));
    }
    let map = args
        .map
        .read()
        .map_err(|_| AskError::Unavailable("shard map lock poisoned".into()))?;
    if env.target.shard(map.owners.len() as u32) != env.shard {
        return Err(AskError::Unavailable(
            "envelope shard does not match its target".into(),
        ));
    }
    if args.replicated {
        // The group decides who serves; the map only helps nodes outside the group route.
        return if args.region.may_serve(env.shard) {
            Ok(map.epoch)
        } else {
            metrics::counter!("agora_cluster_refused_envelopes_total").increment(1);
            let leader = args
                .region
                .handed_to(env.shard)
                .or_else(|| args.groups.as_ref().and_then(|g| g.leader(env.shard)));
            Err(AskError::not_served_here(
                format!("node {} does not lead shard {} now", args.me, env.shard),
                leader.filter(|&l| l != args.me),
            ))
        };
    }
    // The owner is authoritative: a sender routing under an older map still reached the right
    // node; a sender with a newer map than ours means ours is stale, so refuse.
    if !agora_seams::planted::is_planted(agora_seams::planted::Bug::StaleEpochGateway)
        && (env.epoch > map.epoch || map.owner(env.shard) != Some(args.me))
    {
        metrics::counter!("agora_cluster_refused_envelopes_total").increment(1);
        // A map older than the sender's names no owner: the owner it knows may be the
        // sender itself, which handed the shard here.
        let owner = map
            .owner(env.shard)
            .filter(|&o| o != args.me && env.epoch <= map.epoch);
        return Err(AskError::not_served_here(
            format!(
                "shard {} is not owned here under epoch {}",
                env.shard, env.epoch
            ),
            owner,
        ));
    }
    Ok(map.epoch)
}

async fn serve(region: Region, env: Envelope, epoch: u64) -> WireReply {
    // The map gives this node the shard (admitted above): host it if the follower has not yet.
    if !region.hosts(env.shard) {
        if let Err(e) = region.host(env.shard, epoch).await {
            return Err(AskError::Unavailable(format!(
                "cannot host shard {}: {e}",
                env.shard
            )));
        }
    }
    match env.payload {
        Payload::Request { cmd, msg_id } => region
            .deliver(env.target, cmd, msg_id)
            .await
            .map(ReplyPayload::Reply),
        Payload::Batch(items) => region
            .deliver_batch(
                env.target,
                items
                    .into_iter()
                    .map(|(cmd, id)| BatchItem::durable(cmd, id))
                    .collect(),
            )
            .await
            .map(ReplyPayload::Batch),
    }
}

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayArgs;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<GatewayMsg>,
        args: GatewayArgs,
    ) -> Result<GatewayArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        args: &mut GatewayArgs,
    ) -> Result<(), ActorProcessingErr> {
        args.traffic.heard();
        match msg {
            GatewayMsg::Deliver(bytes, reply) => {
                let env = match decode::<Envelope>(&bytes) {
                    Ok(env) => env,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable envelope; answered with an error");
                        metrics::counter!("agora_cluster_dead_letters_total").increment(1);
                        let answer: WireReply = Err(e);
                        let _ = reply.send(encode(&answer).unwrap_or_default());
                        return Ok(());
                    }
                };
                let epoch = match admit(args, &env) {
                    Ok(epoch) => epoch,
                    Err(e) => {
                        let answer: WireReply = Err(e);
                        let _ = reply.send(encode(&answer).unwrap_or_default());
                        return Ok(());
                    }
                };
                let region = args.region.clone();
                tokio::spawn(async move {
                    let answer = serve(region, env, epoch).await;
                    let _ = reply.send(encode(&answer).unwrap_or_default());
                });
                Ok(())
            }
            GatewayMsg::CatalogSince(bytes, reply) => {
                let since = decode::<u64>(&bytes).unwrap_or(0);
                let _ = reply.send(
                    encode(&args.catalog.since(since, super::catalog_sync::PAGE_BYTES))
                        .unwrap_or_default(),
                );
                Ok(())
            }
            GatewayMsg::Raft(bytes, reply) => {
                // Raft may wait on storage: answer from a task, never block the gateway.
                let (raft, rebuild) = (args.raft.clone(), args.map_rebuild.clone());
                tokio::spawn(async move {
                    let answer = super::raft::network::serve(raft.as_ref(), &rebuild, &bytes).await;
                    let _ = reply.send(answer);
                });
                Ok(())
            }
            GatewayMsg::Group(bytes, reply) => {
                let groups = args.groups.clone();
                tokio::spawn(async move {
                    let answer = match groups {
                        Some(g) => g.serve(&bytes).await,
                        None => agora_replication::network::refuse("this node runs no groups"),
                    };
                    let _ = reply.send(answer);
                });
                Ok(())
            }
            GatewayMsg::InstallShard(bytes, reply) => {
                let writer = args.writer.clone();
                let handoff = args.handoff.clone();
                tokio::spawn(async move {
                    let answer = super::handoff::install(&writer, &bytes).await;
                    // The first part starts a copy here: settle it if the move never wins.
                    if let (Ok((shard, epoch, true)), Some(handoff)) = (&answer, handoff.get()) {
                        handoff.watch_copy(*shard, *epoch);
                    }
                    let _ = reply.send(encode(&answer.map(|_| ())).unwrap_or_default());
                });
                Ok(())
            }
            GatewayMsg::DiscardShard(bytes, reply) => {
                let (writer, map, me) = (args.writer.clone(), args.map.clone(), args.me);
                tokio::spawn(async move {
                    let answer = super::handoff::discard(&writer, &map, me, &bytes).await;
                    let _ = reply.send(encode(&answer).unwrap_or_default());
                });
                Ok(())
            }
            GatewayMsg::Join(bytes, reply) => {
                let (raft, policy) = (args.raft.clone(), args.join_policy.clone());
                let now_ms = args.clock.now_ms();
                let removed = args
                    .map
                    .read()
                    .map(|m| m.replicas.removed.clone())
                    .unwrap_or_default();
                tokio::spawn(async move {
                    let answer = super::handoff::join_locally(
                        raft.as_ref(),
                        policy.as_ref(),
                        (now_ms, &removed),
                        &bytes,
                    )
                    .await;
                    let _ = reply.send(encode(&answer).unwrap_or_default());
                });
                Ok(())
            }
            GatewayMsg::RequestMove(bytes, reply) => {
                let handoff = args.handoff.clone();
                tokio::spawn(async move {
                    let answer = super::handoff::serve_move_request(handoff.get(), &bytes).await;
                    let _ = reply.send(encode(&answer).unwrap_or_default());
                });
                Ok(())
            }
            GatewayMsg::ReadIndex(_, reply) => {
                let raft = args.raft.clone();
                tokio::spawn(async move {
                    let answer = super::raft::catch_up::read_index_locally(raft.as_ref()).await;
                    let _ = reply.send(encode(&answer).unwrap_or_default());
                });
                Ok(())
            }
            GatewayMsg::Propose(bytes, reply) => {
                let raft = args.raft.clone();
                tokio::spawn(async move {
                    let answer = super::handoff::propose_locally(raft.as_ref(), &bytes).await;
                    let _ = reply.send(encode(&answer).unwrap_or_default());
                });
                Ok(())
            }
        }
    }
}
