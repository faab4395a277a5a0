//! Keeping this node's shards after start: replicated shards' groups started and placement
//! balanced; unreplicated copies settled against the current map; a newcomer's join; and
//! when the node counts as ready.

use crate::admin::AdminState;
use agora_cluster::directory::Directory;
use agora_cluster::Membership;
use agora_store::Writer;
use tokio::sync::watch;

/// Starts the shard groups placement gives this node, and (on the map's leader) the
/// placement balancer.
pub(super) fn start_replicas(
    replicas: crate::replicas::ReplicaStart,
    (admin, writer): (&AdminState, &Writer),
    (shard_count, factor, replica_timeout_ms): (u32, usize, u64),
    progress: crate::replica_moves::SharedProgress,
) {
    let placement = replicas.file_placement.clone();
    let events = (writer.clone(), admin.region.clone(), admin.handoff.clone());
    crate::replicas::start(replicas, events, progress);
    if let Some(raft) = &admin.raft {
        crate::placement_balancer::PlacementBalancer {
            me: admin.handoff.me,
            raft: raft.clone(),
            handoff: admin.handoff.clone(),
            directory: admin.directory.clone(),
            shard_count,
            factor,
            file_placement: placement,
            replica_timeout: std::time::Duration::from_millis(replica_timeout_ms),
            removed_waiting: Default::default(),
        }
        .spawn();
    }
}

/// Copies left by handoffs that a crash interrupted are kept or dropped by the map, once it
/// is current (a stale one may still give this node a shard it handed off).
pub(super) fn settle_stored_copies(admin: &AdminState, mut current: watch::Receiver<bool>) {
    let handoff = admin.handoff.clone();
    tokio::spawn(async move {
        if current.wait_for(|c| *c).await.is_ok() {
            if let Err(e) = handoff.watch_stored_copies() {
                tracing::error!(error = %e, "cannot list the shards stored here");
            }
        }
    });
}

/// A newcomer joins through a peer and takes its share of the shards, in the background.
pub(super) fn join(admin: &AdminState, membership: &Membership, join_token: Option<String>) {
    let handoff = admin.handoff.clone();
    let me = membership.me;
    let addr = admin.addrs(me).map(|n| n.cluster_addr).unwrap_or_default();
    tokio::spawn(async move {
        match handoff.join_and_take_share(addr, join_token).await {
            Ok(taken) => tracing::info!(taken, "joined the cluster"),
            Err(e) => tracing::error!(error = %e, "could not join the cluster"),
        }
    });
}

/// Ready when this node reaches a majority of the cluster (itself included), every shard
/// group it should lead has a leader, and (`map_current`, when unreplicated shards are
/// served only under a current map) its map is current.
pub(super) fn readiness(
    me: u64,
    membership: &Membership,
    directory: Directory,
    shards_ready: crate::replicas::ShardsReady,
    map_current: Option<watch::Receiver<bool>>,
) -> Box<dyn Fn() -> bool + Send + Sync> {
    let peers: Vec<u64> = membership
        .node_ids()
        .into_iter()
        .filter(|id| *id != me)
        .collect();
    let majority = membership.node_ids().len() / 2 + 1;
    Box::new(move || {
        1 + peers
            .iter()
            .filter(|p| directory.gateway(**p).is_some())
            .count()
            >= majority
            && shards_ready.all_led(|leader| directory.gateway(leader).is_some())
            && map_current.as_ref().is_none_or(|c| *c.borrow())
    })
}
