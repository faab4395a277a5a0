//! Shard hosting: the entity actor, the shard actor that activates, passivates and
//! supervises entities, the region that routes by shard, the outbox relay and the adapters
//! that call outside services.

pub mod callbacks;
pub mod entity;
pub mod external;
pub mod region;
pub mod relay;
pub mod shard;

use agora_actors::entity::DomainConfig;
use agora_actors::seams::Clock;
use std::sync::Arc;
use std::time::Duration;

/// What every entity and shard of a node shares.
#[derive(Clone)]
pub struct RuntimeContext {
    /// The store's writer.
    pub writer: crate::store::Writer,
    /// The store, for committed reads (dedup).
    pub store: crate::store::Store,
    /// The clock seam.
    pub clock: Arc<dyn Clock>,
    /// Domain timings.
    pub domain: Arc<DomainConfig>,
    /// Idle time after which an entity is passivated.
    pub passivate_after: Duration,
}
