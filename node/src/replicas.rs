//! Replicated shards on a cluster node (`replication_factor` above one): each shard this
//! node holds a replica of runs as a member of the shard's group; the node serves the shards
//! whose groups it leads (within the lease), claims them in the shard map so requests are
//! routed here, and stops their entities when it stops leading.

use agora_cluster::handoff::Handoff;
use agora_cluster::shard_map::ShardMap;
use agora_replication::placement::{place, Placement};
use agora_replication::{Groups, LeadershipEvents, Serving};
use agora_runtime::region::Region;
use agora_runtime::ServeGuard;
use agora_store::Writer;
use async_trait::async_trait;
use std::sync::Arc;

/// The region's guard: a replicated shard is served only by its group's leased leader.
pub struct LeaderGuard(pub Serving);

impl ServeGuard for LeaderGuard {
    fn may_serve(&self, shard: u32) -> bool {
        self.0.may_serve(shard)
    }
}

/// What this node does when it starts or stops leading a shard's group.
struct NodeLeadership {
    writer: Writer,
    region: Region,
    handoff: Handoff,
}

#[async_trait]
impl LeadershipEvents for NodeLeadership {
    async fn lead(&self, shard: u32, term: u64) {
        // Messages and timers the group stored while another node led it.
        match self.writer.adopt_outbox(shard).await {
            Ok(rows) => tracing::debug!(shard, term, rows, "adopted the shard's outbox"),
            Err(e) => tracing::error!(shard, error = %e, "could not adopt the shard's outbox"),
        }
        if let Err(e) = self.handoff.claim(shard).await {
            tracing::warn!(shard, term, error = %e, "could not claim the shard in the map");
        }
    }

    async fn step_down(&self, shard: u32) {
        // Messages waiting in the shard are dropped: their callers see the shard unavailable
        // and retry against the new leader.
        let waiting = self.region.release(shard).await;
        tracing::debug!(shard, dropped = waiting.len(), "stopped serving the shard");
    }
}

/// Which nodes hold each shard's replicas for a cluster of `nodes` with `factor`.
pub fn placement(shard_count: u32, nodes: &[u64], factor: usize) -> Placement {
    place(shard_count, nodes, factor, &Placement::default())
}

/// Starts this node's member of every group it holds a replica of, initialising the groups
/// whose first owner in `first_map` is this node, and serves those it leads.
pub async fn start(
    me: u64,
    placement: &Placement,
    first_map: &ShardMap,
    groups: &Groups,
    serving: &Serving,
    events: (Writer, Region, Handoff),
) -> anyhow::Result<usize> {
    let (writer, region, handoff) = events;
    let events: Arc<dyn LeadershipEvents> = Arc::new(NodeLeadership {
        writer,
        region,
        handoff,
    });
    let mut started = 0;
    for (shard, replicas) in placement.replicas.iter().enumerate() {
        let shard = shard as u32;
        if !replicas.contains(&me) {
            continue;
        }
        let raft = groups.start(shard).await?;
        let owner = first_map.owner(shard).filter(|o| replicas.contains(o));
        if owner.or(replicas.first().copied()) == Some(me) {
            groups.initialize_members(shard, replicas).await?;
        }
        serving.watch(shard, raft, events.clone());
        started += 1;
    }
    tracing::info!(
        node = me,
        replicas = started,
        of = placement.replicas.len(),
        "shard replicas started"
    );
    Ok(started)
}

/// Whether every replicated shard is served: for the readiness check, so that a node says
/// it is ready only once requests for any shard reach a serving leader.
pub struct ShardsReady {
    /// This node's groups (`None`: shards are not replicated, nothing to wait for).
    pub groups: Option<Groups>,
    /// The agreed map.
    pub map: agora_cluster::shard_map::SharedShardMap,
}

impl ShardsReady {
    /// Whether every group this node is a member of has a leader, and the map routes its
    /// shard to that leader.
    pub fn all_led(&self) -> bool {
        let Some(groups) = &self.groups else {
            return true;
        };
        let Ok(map) = self.map.read() else {
            return false;
        };
        groups.ids().into_iter().all(|shard| {
            let leader = groups
                .raft(shard)
                .and_then(|raft| raft.metrics().borrow().current_leader);
            leader.is_some() && leader == map.owner(shard)
        })
    }
}
