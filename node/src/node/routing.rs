//! Where a node stands in the cluster at start: the shards it hosts (its region), the shard
//! map, its peers (the directory and the cluster transport), the map's Raft member, the shard
//! groups, liveness, the router and the gateway that serves its peers.

use super::{ClusterSpec, PeerNetwork};
use agora_actors::seams::Clock;
use agora_catalog::CatalogProjection;
use agora_cluster::directory::Directory;
use agora_cluster::gateway::{Gateway, GatewayArgs, GatewayMsg};
use agora_cluster::router::Router;
use agora_cluster::shard_map::ShardMap;
use agora_cluster::{transport, Membership};
use agora_cluster_config::NodeSettings;
use agora_runtime::region::{Region, RegionLimits};
use agora_runtime::RuntimeContext;
use agora_seams::BlockingPool;
use agora_store::{Store, Writer};
use anyhow::Context;
use ractor::{Actor, ActorRef};
use std::sync::{Arc, RwLock};

/// What `start` brought up.
pub(super) struct Routing {
    /// The shard map (the agreed one once the map's Raft applies it).
    pub map: Arc<RwLock<ShardMap>>,
    /// The shards hosted here.
    pub region: Region,
    /// The node's peers.
    pub directory: Directory,
    /// The map group's member (clusters only).
    pub raft: Option<agora_cluster::raft::Raft>,
    /// The shard groups (clusters only; which run here is placement's decision).
    pub groups: Option<agora_replication::Groups>,
    /// Which peers answer.
    pub liveness: agora_cluster::liveness::Liveness,
    /// Who may join (clusters only).
    pub join_policy: Option<agora_cluster::join_token::JoinPolicy>,
    /// Routes each request to the node serving its entity.
    pub router: Router,
    /// This node's gateway, which serves its peers.
    pub gateway: ActorRef<GatewayMsg>,
    /// The handoff, set once the admin state that holds it exists.
    pub handoff_cell: Arc<std::sync::OnceLock<agora_cluster::handoff::Handoff>>,
    /// When the gateway last took a call.
    pub gateway_traffic: Arc<agora_cluster::gateway::GatewayTraffic>,
}

/// Hosts this node's shards and connects it to its peers.
pub(super) async fn start(
    settings: &NodeSettings,
    (cluster, membership, joining, new_store): (Option<&ClusterSpec>, &Membership, bool, bool),
    rt: RuntimeContext,
    (store, writer, catalog): (&Store, &Writer, &Arc<CatalogProjection>),
    (network, blocking, clock): (&PeerNetwork, Arc<dyn BlockingPool>, Arc<dyn Clock>),
    (leadership, group_config, map_current_tx): (
        Option<&agora_replication::Serving>,
        &agora_replication::GroupConfig,
        tokio::sync::watch::Sender<bool>,
    ),
) -> anyhow::Result<Routing> {
    let me = membership.me;
    let replication_factor = cluster.map_or(1, |c| c.replication_factor);
    let map = if joining {
        // A newcomer owns nothing and knows nothing yet: it routes by a guess (refused by
        // any node that is not the owner) until the agreed map arrives through Raft.
        let others: Vec<u64> = membership
            .node_ids()
            .into_iter()
            .filter(|id| *id != me)
            .collect();
        ShardMap {
            epoch: 0,
            ..ShardMap::spread(settings.shard_count, &others)
        }
    } else {
        ShardMap::spread(settings.shard_count, &membership.node_ids())
    };
    let owned = map.shards_of(me);
    let region = Region::start(
        settings.shard_count,
        &owned,
        map.epoch,
        rt,
        RegionLimits::default(),
    )
    .await?;
    let map = Arc::new(RwLock::new(map));
    let directory = match &network {
        PeerNetwork::Cluster(_) => Directory::new(&membership.cluster_name),
        PeerNetwork::Links(links) => Directory::with_links(links.clone()),
    };
    // The shard map agreed through Raft replaces the static spread when it is applied;
    // nothing waits for it (a single node runs no Raft).
    let map_rebuild = agora_cluster::raft::rebuild::MapRebuild::default();
    let raft = match &cluster {
        Some(c) => Some(
            agora_cluster::raft::start(
                &c.membership,
                store.db().clone(),
                blocking.clone(),
                (settings.shard_count, map.clone()),
                directory.clone(),
                (map_current_tx, map_rebuild.clone(), new_store),
            )
            .await
            .context("cannot start the shard-map raft member")?,
        ),
        None => None,
    };
    // Shard replication groups: peers' group requests are served from the start; which
    // groups run here is placement's decision.
    let groups = match &cluster {
        Some(_) => Some(agora_replication::Groups::new(
            me,
            store.clone(),
            writer.clone(),
            blocking.clone(),
            Arc::new(agora_cluster::group_transport::DirectoryTransport::new(
                directory.clone(),
            )),
            group_config,
        )?),
        None => None,
    };
    let liveness = if cluster.is_some() {
        agora_cluster::liveness::Liveness::start(directory.clone())
    } else {
        agora_cluster::liveness::Liveness::default()
    };
    let join_policy = cluster
        .as_ref()
        .map(|c| agora_cluster::join_token::JoinPolicy {
            members: membership.node_ids(),
            cluster_name: membership.cluster_name.clone(),
            secret: c.secret.clone(),
        });
    let mut router = Router::new(
        me,
        region.clone(),
        map.clone(),
        directory.clone(),
        clock.clone(),
        liveness.clone(),
    );
    if let (Some(_), Some(groups)) = (leadership, &groups) {
        router.route_by_leaders(groups.clone());
    }
    let handoff_cell = Arc::new(std::sync::OnceLock::new());
    let gateway_traffic = agora_cluster::gateway::GatewayTraffic::new(clock.clone());
    let (gateway, _) = Actor::spawn(
        None,
        Gateway,
        GatewayArgs {
            me,
            region: region.clone(),
            map: map.clone(),
            catalog: catalog.clone(),
            raft: raft.clone(),
            map_rebuild,
            groups: groups.clone(),
            writer: writer.clone(),
            handoff: handoff_cell.clone(),
            replicated: leadership.is_some(),
            join_policy: join_policy.clone(),
            clock: clock.clone(),
            traffic: gateway_traffic.clone(),
        },
    )
    .await?;
    if let Some(scope) = directory.scope() {
        ractor::pg::join_scoped(scope, Directory::group(me), vec![gateway.get_cell()]);
    }
    if let (Some(c), PeerNetwork::Cluster(nodes)) = (&cluster, &network) {
        let addrs = nodes
            .iter()
            .map(|n| (n.id, n.cluster_addr.clone()))
            .collect();
        let tls = match &c.tls {
            Some(files) => Some(agora_cluster::tls::load(
                files,
                &c.membership.cluster_name,
                c.membership.me,
            )?),
            None => None,
        };
        transport::start(
            &c.membership,
            (&c.secret, &addrs),
            directory.clone(),
            tls,
            c.cluster_connections,
        )
        .await?;
    }
    if cluster.is_some() {
        agora_cluster::catalog_sync::start(directory.clone(), catalog.clone());
    }
    if leadership.is_none() {
        tracing::info!(
            node = me,
            shards = owned.len(),
            of = settings.shard_count,
            "hosting shards"
        );
    } else {
        tracing::info!(
            node = me,
            replication_factor,
            of = settings.shard_count,
            "shards are replicated: each is served by its group's leader"
        );
    }
    Ok(Routing {
        map,
        region,
        directory,
        raft,
        groups,
        liveness,
        join_policy,
        router,
        gateway,
        handoff_cell,
        gateway_traffic,
    })
}
