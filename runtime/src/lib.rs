//! The entity runtime: the entity actor, the shard actor that activates, passivates and
//! supervises entities, the region that routes by shard, the outbox relay and the adapters
//! that call outside services. It knows nothing of other nodes: the relay and the callbacks
//! reach entities through `Deliver`, which the cluster's router implements.

pub mod callbacks;
pub mod entity;
pub mod external;
pub mod region;
pub mod relay;
pub mod shard;

use agora_actors::client::AskError;
use agora_actors::entity::DomainConfig;
use agora_actors::seams::Clock;
use agora_actors::{Command, EntityRef, Reply};
use async_trait::async_trait;
use entity::{BatchItem, BatchResults};
use std::sync::Arc;
use std::time::Duration;

/// What every entity and shard of a node shares.
#[derive(Clone)]
pub struct RuntimeContext {
    /// The store's writer.
    pub writer: agora_store::Writer,
    /// The store, for committed reads (dedup).
    pub store: agora_store::Store,
    /// The clock seam.
    pub clock: Arc<dyn Clock>,
    /// Domain timings.
    pub domain: Arc<DomainConfig>,
    /// Idle time after which an entity is passivated.
    pub passivate_after: Duration,
    /// Most entities active at once in one shard (`usize::MAX`: no cap).
    pub max_active_per_shard: usize,
    /// Whether this node may serve a shard now (replicated shards: their group's leader,
    /// within its lease); `None`: every shard the map gives this node.
    pub serve_guard: Option<Arc<dyn ServeGuard>>,
    /// This node's id and where it reports each message an unreplicated shard's entity
    /// takes, with the shard's owner epoch (the simulator's one-owner checker); `None` in
    /// production and for replicated shards (their leadership reports them).
    pub served_log: Option<(u64, Arc<dyn agora_seams::ServedLog>)>,
}

/// Says whether this node may serve a shard at this moment.
pub trait ServeGuard: Send + Sync + 'static {
    /// Whether `shard`'s entities may run and answer here now.
    fn may_serve(&self, shard: u32) -> bool;
    /// The node this node just handed `shard`'s lead to, while that handover runs.
    fn handed_to(&self, _shard: u32) -> Option<u64> {
        None
    }
}

/// The per-shard share of a node's cap on active entities (0: no cap).
pub fn max_active_per_shard(max_active_entities: u64, shard_count: u32) -> usize {
    if max_active_entities == 0 {
        return usize::MAX;
    }
    let share = max_active_entities / u64::from(shard_count.max(1));
    usize::try_from(share.max(16)).unwrap_or(usize::MAX)
}

/// Delivers messages to entities wherever they live: the one verb of the outbox relay and of
/// outside services' callbacks (the cluster's router implements it).
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Delivers `cmd` to `to`; `msg_id` makes it take effect at most once.
    async fn deliver(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: Option<String>,
    ) -> Result<Reply, AskError>;

    /// Delivers relayed messages to `to`, stored in one write; messages whose senders'
    /// changes are not yet durable go only to an entity of this node.
    async fn deliver_batch(
        &self,
        to: EntityRef,
        items: Vec<BatchItem>,
    ) -> Result<BatchResults, AskError>;

    /// Whether `to` lives on this node.
    fn is_local(&self, to: &EntityRef) -> bool;
}
