//! Assembles a node: store, writer, shards, router and gateway, relay, outside services, the
//! shop API and the admin endpoint. A single `agora dev` node is a cluster of one.

use crate::admin::{self, AdminState};
use crate::seed::AdminSeed;
use agora_actors::entity::DomainConfig;
use agora_actors::seams::{Clock, RandomSource};
use agora_cluster::Membership;
use agora_cluster_config::NodeSettings;
use agora_runtime::region::Region;
use agora_runtime::{relay, RuntimeContext};
use agora_seams::system::{OsRandom, SystemClock, TokioBlocking};
use agora_seams::BlockingPool;
use agora_store::{Store, WriteOp};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

mod edge;
mod listen;
mod routing;
mod seeding;
mod services;
mod shards;
mod storage;

/// Metadata key of the persisted token signing secret.
const META_JWT_SECRET: &str = "jwt_secret";
/// Bounds of the admin endpoint's connections (operators and scrapers, not shoppers).
const ADMIN_CONNECTIONS: agora_cluster_config::ConnectionLimits =
    agora_cluster_config::ConnectionLimits {
        max_total: 256,
        max_per_address: 64,
        idle_timeout_ms: 20_000,
    };
/// Metadata key set once the demo catalog was seeded.
const META_DEMO_SEEDED: &str = "demo_seeded";
/// Metadata key of the shard count the data directory was created with.
const META_SHARD_COUNT: &str = "shard_count";

/// A running node.
pub struct RunningNode {
    /// Where the shop API listens.
    pub http_addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// What seeding the admin did (with a generated password to show once); `None` when
    /// another node seeds, or seeding runs in the background.
    pub admin_seed: Option<AdminSeed>,
    /// The admin endpoint's token when it was generated at this start (to print once).
    pub generated_admin_token: Option<String>,
    shutdown: watch::Sender<bool>,
    /// How to drain this node (cluster members only).
    drainer: Option<Drain>,
    region: Region,
    servers: Vec<tokio::task::JoinHandle<()>>,
    store_failed: watch::Receiver<agora_store::CommitProgress>,
    /// The shard map's Raft member (cluster nodes): its core stopping on a storage error is
    /// a store failure too.
    map_raft: Option<agora_cluster::raft::Raft>,
    gateway: agora_cluster::directory::PeerGateway,
    /// How the gateway leaves its peers before the node stops (real clusters only).
    leave: Option<GatewayLeave>,
}

/// The gateway's process group, left before a cluster node stops, and its traffic.
struct GatewayLeave {
    scope: String,
    group: String,
    gateway: ractor::ActorCell,
    traffic: Arc<agora_cluster::gateway::GatewayTraffic>,
}

/// Calls to a leaving gateway stop for this long before the node stops.
const GATEWAY_QUIET: Duration = Duration::from_millis(100);
/// Longest a leaving gateway waits for its calls to stop.
const GATEWAY_LINGER_MAX: Duration = Duration::from_secs(1);

impl GatewayLeave {
    /// Leaves the process group (peers stop finding this gateway and route elsewhere), then
    /// answers what is still in flight until no call came for `GATEWAY_QUIET`, at most
    /// `GATEWAY_LINGER_MAX`: a call cut off by the exit has an unknown outcome, one refused
    /// is retried elsewhere.
    async fn linger(&self) {
        ractor::pg::leave_scoped(
            self.scope.clone(),
            self.group.clone(),
            vec![self.gateway.clone()],
        );
        let started = std::time::Instant::now();
        let quiet_ms = GATEWAY_QUIET.as_millis() as u64;
        while self.traffic.quiet_for_ms() < quiet_ms && started.elapsed() < GATEWAY_LINGER_MAX {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(
            lingered_ms = started.elapsed().as_millis() as u64,
            quiet_ms = self.traffic.quiet_for_ms(),
            "the gateway left its peers"
        );
    }
}

/// How a cluster node gives up its shards before it stops.
enum Drain {
    /// Stream each shard to another node (shards on one node each).
    Handoff(
        agora_cluster::handoff::Handoff,
        Arc<std::sync::atomic::AtomicBool>,
    ),
    /// Hand this node's leaderships to other replicas, then leave every shard group
    /// (replicated shards).
    LeaveGroups(agora_replication::Serving, agora_replication::Groups),
}

impl RunningNode {
    /// This node's own gateway (the simulator serves it to peers over its network).
    pub fn gateway(&self) -> agora_cluster::directory::PeerGateway {
        self.gateway.clone()
    }

    /// Resolves when the node's storage has failed (the node must stop: fail-stop): the
    /// store's writer stopped, or the shard map's Raft core stopped on a storage error (it
    /// never starts again by itself, and without it the node serves no shard).
    pub async fn store_failed(&mut self) {
        let map_failed = map_core_failed(self.map_raft.clone());
        tokio::select! {
            _ = self.store_failed.wait_for(|p| p.failed) => {}
            () = map_failed => {}
        }
    }

    /// Moves this node's shards to the others (a cluster member leaving); a single node has
    /// nothing to drain. Failures are logged: the node stops anyway, and its shards wait for
    /// it to come back.
    pub async fn drain(&self) {
        match &self.drainer {
            Some(Drain::Handoff(handoff, draining)) => match handoff.drain(draining).await {
                Ok(moved) => tracing::info!(moved, "drained before stopping"),
                Err(e) => {
                    tracing::error!(error = %e, "drain failed; stopping with shards still here")
                }
            },
            Some(Drain::LeaveGroups(leadership, groups)) => {
                // Each shard this node leads goes to a caught-up replica, which calls an
                // election at once; every change acknowledged here is on a majority already.
                let still_led = leadership.step_aside_all(Duration::from_secs(3)).await;
                groups.shutdown().await;
                tracing::info!(still_led, "left every shard group before stopping");
            }
            None => {}
        }
    }

    /// Stops serving and waits for the servers to finish their requests.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        if let Some(leave) = &self.leave {
            leave.linger().await;
        }
        self.region.stop();
    }
}

/// Settings from the environment that are secrets (never in flags).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `AGORA_ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
    /// `AGORA_JWT_SECRET`: the key access tokens are signed with (otherwise the cluster
    /// file's `jwt_secret`, or for a single node one generated once and kept in the store).
    pub jwt_secret: Option<String>,
    /// `AGORA_JWT_PREVIOUS_SECRETS` (comma-separated): keys of earlier rotations, whose
    /// tokens are still accepted.
    pub jwt_previous_secrets: Vec<String>,
    /// `AGORA_ADMIN_TOKEN` (otherwise the cluster file's, or generated at start and printed).
    pub admin_token: Option<String>,
    /// `AGORA_WEBHOOK_SECRET`: the secret payment webhooks are signed with (webhooks are
    /// refused without one).
    pub webhook_secret: Option<String>,
    /// `AGORA_GATEWAY_API_KEY`: the shop's API key at the HTTP payment gateway (needed with
    /// a payment gateway URL).
    pub gateway_api_key: Option<String>,
    /// `AGORA_GATEWAY_TOKEN_KEY`: the in-process simulated gateway's card token key (at least
    /// 32 bytes; otherwise derived from the cluster secret, or for a single node generated
    /// once and kept in the store).
    pub gateway_token_key: Option<String>,
}

/// How a node belongs to a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Who is in the cluster and who this node is.
    pub membership: Membership,
    /// The shared secret nodes authenticate with.
    pub secret: String,
    /// The admin token from the cluster file.
    pub admin_token: Option<String>,
    /// Whether mutating admin routes are enabled.
    pub admin_mutations: bool,
    /// Whether the admin endpoint may cut this node off from peers (chaos tests only).
    pub fault_injection: bool,
    /// Join a running cluster (this node is not in the first Raft group) and take a share of
    /// the shards.
    pub join: bool,
    /// TLS between nodes, from the cluster file.
    pub tls: Option<agora_cluster_config::cluster::TlsFiles>,
    /// The access-token signing key from the cluster file (never derived from `secret`).
    pub jwt_secret: Option<String>,
    /// Keys of earlier rotations from the cluster file.
    pub jwt_previous_secrets: Vec<String>,
    /// On how many nodes each shard's data lives (1: no replication).
    pub replication_factor: usize,
    /// How long a node may be unreachable before its replicas are rebuilt elsewhere.
    pub replica_timeout_ms: u64,
    /// With `join`: the token an operator minted for this node (needed unless the running
    /// nodes' cluster files list it).
    pub join_token: Option<String>,
    /// Bounds on the cluster port, from the cluster file.
    pub cluster_connections: agora_cluster_config::cluster::ClusterConnectionLimits,
}

/// What entities of this node run with: the store, the clock, the domain's rules and their
/// bounds, and who decides whether a shard may be served.
fn runtime_context(
    settings: &NodeSettings,
    (store, writer, clock): (&Store, &agora_store::Writer, Arc<dyn Clock>),
    serve_guard: Option<Arc<dyn agora_runtime::ServeGuard>>,
    served_log: Option<(u64, Arc<dyn agora_seams::ServedLog>)>,
) -> RuntimeContext {
    let domain = DomainConfig {
        reservation_ttl_ms: settings.reservation_ttl_ms,
        payment_timeout_ms: settings.payment_timeout_ms,
        lockout: agora_actors::session::LockoutPolicy {
            base_ms: settings.lockout_base_ms,
            ..Default::default()
        },
        ..DomainConfig::default()
    };
    RuntimeContext {
        writer: writer.clone(),
        store: store.clone(),
        clock,
        domain: Arc::new(domain),
        passivate_after: Duration::from_millis(settings.passivate_after_ms),
        max_active_per_shard: agora_runtime::max_active_per_shard(
            settings.max_active_entities,
            settings.shard_count,
        ),
        serve_guard,
        served_log,
    }
}

/// How this node gives up its shards before it stops: a cluster member with unreplicated
/// shards hands them off; one with replicated shards hands its leaderships on and leaves
/// every group; a single node has nothing to drain.
fn drainer(
    clustered: bool,
    (leadership, groups): (
        Option<&agora_replication::Serving>,
        Option<&agora_replication::Groups>,
    ),
    handoff: &agora_cluster::handoff::Handoff,
    draining: &Arc<std::sync::atomic::AtomicBool>,
) -> Option<Drain> {
    match (clustered, leadership) {
        (true, None) => Some(Drain::Handoff(handoff.clone(), draining.clone())),
        (true, Some(leadership)) => {
            groups.map(|g| Drain::LeaveGroups(leadership.clone(), g.clone()))
        }
        (false, _) => None,
    }
}

/// Who decides whether this node may serve a shard: replicated shards, their group's
/// leased leader; unreplicated shards in a cluster, a current map; a single node, nobody.
fn serve_guard(
    leadership: Option<&agora_replication::Serving>,
    clustered: bool,
    map_current: &tokio::sync::watch::Receiver<bool>,
) -> Option<Arc<dyn agora_runtime::ServeGuard>> {
    match leadership {
        Some(l) => Some(Arc::new(crate::replicas::LeaderGuard(l.clone()))),
        None if clustered => Some(Arc::new(agora_cluster::raft::catch_up::MapCurrent(
            map_current.clone(),
        ))),
        None => None,
    }
}

/// How a node reaches its peers.
pub enum PeerNetwork {
    /// ractor_cluster over TCP (or TLS), gateways found through process groups; peers
    /// dialled at the cluster file's entries' `cluster_addr` (host names resolved at each
    /// attempt).
    Cluster(Vec<agora_cluster_config::cluster::ClusterNode>),
    /// Explicit links (the simulator's network); the node does not dial or listen.
    Links(Arc<dyn agora_cluster::directory::PeerLinks>),
}

/// How the node's HTTP servers are served.
pub enum Serving {
    /// Bind the shop API and the admin endpoint on the settings' TCP addresses.
    Tcp,
    /// Hand the two routers (shop API, admin) to the caller, which serves them (the
    /// simulator, on simulated listeners).
    Handover(Box<dyn FnOnce(axum::Router, axum::Router) + Send>),
}

/// The seams a node runs on: the operating system's in production, simulated ones in `sim/`.
pub struct NodeEnv {
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
    /// Randomness.
    pub rng: Arc<dyn RandomSource>,
    /// The store, already opened on a simulated disk; `None`: open `agora.redb` in the data
    /// directory.
    pub store: Option<Store>,
    /// Where the store's writer runs.
    pub executor: agora_store::StorageExecutor,
    /// Where blocking work (password hashing, Raft's storage) runs.
    pub blocking: Arc<dyn BlockingPool>,
    /// How peers are reached.
    pub network: PeerNetwork,
    /// How the HTTP servers are served.
    pub serving: Serving,
    /// Where customer notifications go; `None`: a file in the data directory.
    pub sink: Option<Arc<dyn agora_actors::notify::NotificationSink>>,
    /// Who is told of every shard served here, with its term or epoch (the simulator's
    /// one-leader and one-owner checkers); `None` in production.
    pub served_log: Option<Arc<dyn agora_replication::ServedLog>>,
    /// The simulated payment gateway's books, shared by every node of a simulated cluster
    /// and kept across restarts (the simulator's effect ledger); `None`: a ledger of this
    /// process's own.
    pub gateway_ledger: Option<Arc<agora_actors::gateway::GatewayLedger>>,
    /// The simulated courier's books, shared like the gateway's; `None`: this process's own.
    pub courier_bookings: Option<Arc<agora_actors::courier::CourierBookings>>,
    /// What hashing a new password costs (`Standard` but in the simulator).
    pub password_cost: agora_http_edge::auth::PasswordCost,
}

impl NodeEnv {
    /// The operating system's seams.
    pub fn os() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            rng: Arc::new(OsRandom),
            store: None,
            executor: agora_store::StorageExecutor::Thread,
            blocking: Arc::new(TokioBlocking),
            network: PeerNetwork::Cluster(Default::default()),
            serving: Serving::Tcp,
            sink: None,
            served_log: None,
            gateway_ledger: None,
            courier_bookings: None,
            password_cost: agora_http_edge::auth::PasswordCost::Standard,
        }
    }
}

/// Starts a node with `settings`; `cluster` is `None` for a single embedded node.
pub async fn start(
    settings: NodeSettings,
    secrets: Secrets,
    cluster: Option<ClusterSpec>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> anyhow::Result<RunningNode> {
    start_with(settings, secrets, cluster, metrics, NodeEnv::os()).await
}

/// Starts a node on the seams of `env`.
pub async fn start_with(
    settings: NodeSettings,
    secrets: Secrets,
    cluster: Option<ClusterSpec>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    env: NodeEnv,
) -> anyhow::Result<RunningNode> {
    settings.validate()?;
    let NodeEnv {
        clock,
        rng,
        store,
        executor,
        blocking,
        network,
        serving,
        sink,
        served_log,
        gateway_ledger,
        courier_bookings,
        password_cost,
    } = env;
    let membership = cluster
        .as_ref()
        .map_or_else(|| Membership::single("agora-dev"), |c| c.membership.clone());
    let me = membership.me;
    let replication_factor = cluster.as_ref().map_or(1, |c| c.replication_factor);
    let group_config = agora_replication::GroupConfig {
        cluster_name: membership.cluster_name.clone(),
        max_message_bytes: agora_replication::GroupConfig::message_bytes_for_frame(
            cluster.as_ref().map_or_else(
                || {
                    agora_cluster_config::cluster::ClusterConnectionLimits::default()
                        .max_frame_bytes
                },
                |c| c.cluster_connections.max_frame_bytes,
            ),
        ),
        ..agora_replication::GroupConfig::default()
    };
    // Replicated shards are served by their groups' leaders only.
    let leadership = (replication_factor > 1).then(|| {
        agora_replication::Serving::new(
            me,
            settings.shard_count,
            agora_replication::ServingConfig::for_groups(&group_config),
        )
    });
    // Replicated shards report what they serve through their leadership, unreplicated ones
    // through their entities.
    let unreplicated_served_log = match (&leadership, served_log) {
        (Some(leadership), Some(log)) => {
            leadership.log_served(log);
            None
        }
        (None, log) => log.map(|log| (me, log)),
        (Some(_), None) => None,
    };

    let storage::Storage {
        store,
        writer,
        catalog,
        relay_rx,
        payment_gateway,
        new_store,
        webhook_url,
    } = storage::open(
        &settings,
        &secrets,
        cluster.as_ref().map(|c| c.secret.as_str()),
        (store, executor),
        rng.as_ref(),
    )
    .await?;
    if let Some(leadership) = &leadership {
        writer.set_replication(Arc::new(leadership.clone()));
    }

    // Unreplicated shards in a cluster: served only once this node's map is current.
    let (map_current_tx, map_current) = tokio::sync::watch::channel(false);
    let rt = runtime_context(
        &settings,
        (&store, &writer, clock.clone()),
        serve_guard(leadership.as_ref(), cluster.is_some(), &map_current),
        unreplicated_served_log,
    );
    let joining = cluster.as_ref().is_some_and(|c| c.join);
    let routing::Routing {
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
    } = routing::start(
        &settings,
        (cluster.as_ref(), &membership, joining, new_store),
        rt,
        (&store, &writer, &catalog),
        (&network, blocking.clone(), clock.clone()),
        (leadership.as_ref(), &group_config, map_current_tx),
    )
    .await?;
    let map_raft = raft.clone();

    let cards = payment_gateway.cards();
    let external = services::outside_world(
        &settings,
        (payment_gateway, gateway_ledger.unwrap_or_default()),
        courier_bookings.unwrap_or_default(),
        rng.clone(),
        &router,
        sink,
    )?;
    relay::start(
        relay::RelayDeps {
            store: store.clone(),
            writer: writer.clone(),
            region: Arc::new(router.clone()),
            external: external.clone(),
            clock: clock.clone(),
            stored_rows_at_start: leadership.is_none(),
        },
        relay_rx,
    )?;

    let seeder = membership.node_ids().first().copied() == Some(me);
    let admin_seed = seeding::seed(
        (cluster.is_some(), seeder),
        &router,
        (&store, &writer),
        (rng.clone(), password_cost),
        (secrets.admin_password.clone(), settings.seed_demo_catalog),
    )
    .await?;

    // What start-up wrote (the demo catalog) is searchable before the shop API answers.
    if let Err(e) = catalog.flush() {
        tracing::warn!(error = %e, "the search index is behind; the indexer will retry");
    }
    let edge = edge::shop_edge(
        &settings,
        &secrets,
        cluster.as_ref(),
        (&store, &writer),
        (cards, Arc::new(router.clone()), catalog.clone()),
        (blocking.clone(), clock.clone(), rng.clone(), password_cost),
    )
    .await?;
    let placement = crate::replicas::placement(
        settings.shard_count,
        &membership.node_ids(),
        replication_factor,
    );
    let replicas_started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Unreplicated shards in a cluster are served once the map is current (`serve_guard`).
    let map_gated = cluster.is_some() && leadership.is_none();
    let shards_ready = crate::replicas::ShardsReady {
        groups: groups.clone().filter(|_| leadership.is_some()),
        started: replicas_started.clone(),
    };
    let replica_progress = crate::replica_moves::SharedProgress::default();
    let (admin_token, generated_admin_token) =
        edge::admin_token(&secrets, cluster.as_ref(), rng.as_ref());
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin_state = Arc::new(AdminState {
        client: Arc::new(router.clone()),
        admin_seen: std::sync::atomic::AtomicBool::new(false),
        token: admin_token,
        mutations: cluster.as_ref().is_some_and(|c| c.admin_mutations),
        fault_injection: cluster.as_ref().is_some_and(|c| c.fault_injection),
        membership: membership.clone(),
        file_nodes: match &network {
            PeerNetwork::Cluster(nodes) => nodes.clone(),
            PeerNetwork::Links(_) => Vec::new(),
        },
        map: map.clone(),
        region: region.clone(),
        directory: directory.clone(),
        ready: false.into(),
        // Ready when this node reaches a majority of the cluster (itself included).
        peers_ready: shards::readiness(
            me,
            &membership,
            directory.clone(),
            shards_ready,
            map_gated.then(|| map_current.clone()),
        ),
        metrics,
        store: store.clone(),
        draining: draining.clone(),
        liveness: liveness.clone(),
        handoff: agora_cluster::handoff::Handoff {
            me,
            region: region.clone(),
            writer: writer.clone(),
            map: map.clone(),
            directory: directory.clone(),
            raft: raft.clone(),
            router: router.clone(),
            replicated: leadership.is_some(),
            moving: Default::default(),
        },
        raft,
        join_policy,
        clock: clock.clone(),
        leadership: leadership.clone(),
        replicas: groups
            .clone()
            .filter(|_| leadership.is_some())
            .map(|groups| crate::admin::ReplicaView {
                groups,
                progress: replica_progress.clone(),
                replication_factor,
                file_placement: if joining {
                    Vec::new()
                } else {
                    placement.replicas.clone()
                },
            }),
        operations: Arc::new(crate::admin_operations::Operations::new(me, clock.clone())),
        replayer: crate::admin_dead_letters::Replayer {
            region: Arc::new(router.clone()),
            external,
        },
    });
    if cluster.is_some() {
        agora_cluster::handoff::follow_map(me, region.clone(), map.clone());
    }
    let _ = handoff_cell.set(admin_state.handoff.clone());
    if let (Some(_), Some(groups), Some(_)) = (&leadership, &groups, &cluster) {
        crate::prompt_elections::start(
            me,
            groups.clone(),
            liveness.clone(),
            settings.shard_count,
            &group_config,
        );
    }
    match (&leadership, &groups, &cluster) {
        (Some(leadership), Some(groups), Some(c)) => shards::start_replicas(
            crate::replicas::ReplicaStart {
                me,
                file_placement: placement,
                joining,
                map: map.clone(),
                new_store,
                groups: groups.clone(),
                serving: leadership.clone(),
                started: replicas_started,
            },
            (&admin_state, &writer),
            (
                settings.shard_count,
                replication_factor,
                c.replica_timeout_ms,
            ),
            replica_progress,
        ),
        (None, _, Some(_)) => shards::settle_stored_copies(&admin_state, map_current.clone()),
        _ => {}
    }
    watch_stuck_sagas(
        store.clone(),
        map.clone(),
        me,
        clock.clone(),
        settings.reservation_ttl_ms,
    );
    forget_old_marks(
        writer.clone(),
        map.clone(),
        me,
        clock.clone(),
        settings.message_retention_ms,
    );
    if joining {
        shards::join(
            &admin_state,
            &membership,
            cluster.as_ref().and_then(|c| c.join_token.clone()),
        );
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let shop_api = agora_http_edge::router(edge);
    let admin_api = admin::router(admin_state.clone());
    let (http_addr, admin_addr, servers) = listen::open(
        serving,
        &settings,
        (shop_api, admin_api),
        &webhook_url,
        shutdown_rx,
    )
    .await?;
    admin_state.ready.store(true, Ordering::Release);
    tracing::info!(%http_addr, %admin_addr, data_dir = %settings.data_dir.display(), shards = settings.shard_count, "node serving");
    Ok(RunningNode {
        http_addr,
        admin_addr,
        admin_seed,
        generated_admin_token,
        drainer: drainer(
            cluster.is_some(),
            (leadership.as_ref(), groups.as_ref()),
            &admin_state.handoff,
            &draining,
        ),
        shutdown,
        region,
        servers,
        store_failed: writer.progress(),
        map_raft,
        leave: directory.scope().map(|scope| GatewayLeave {
            scope,
            group: agora_cluster::directory::Directory::group(me),
            gateway: gateway.get_cell(),
            traffic: gateway_traffic,
        }),
        gateway: agora_cluster::directory::PeerGateway::Actor(gateway),
    })
}

/// Resolves once `raft`'s core has stopped on a storage error or a panic (never for a node
/// without one, or for a core stopped on purpose).
async fn map_core_failed(raft: Option<agora_cluster::raft::Raft>) {
    let Some(raft) = raft else {
        return std::future::pending().await;
    };
    match agora_cluster::raft::core_failure(&raft).await {
        Some(e) => tracing::error!(error = %e, "the shard map's Raft core stopped"),
        None => std::future::pending().await,
    }
}

/// Runs `each` every `period` with the shards the agreed map gives this node.
fn every_period_on_my_shards(
    period: Duration,
    map: agora_cluster::shard_map::SharedShardMap,
    me: u64,
    mut each: impl FnMut(Vec<u32>) + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let shards = match map.read() {
                Ok(m) => m.shards_of(me),
                Err(_) => return,
            };
            each(shards);
        }
    });
}

/// Every 30 s, counts this node's orders still holding stock well after their reservation
/// should have ended (gauge `agora_stuck_sagas`; each is logged).
fn watch_stuck_sagas(
    store: Store,
    map: agora_cluster::shard_map::SharedShardMap,
    me: u64,
    clock: Arc<dyn Clock>,
    reservation_ttl_ms: u64,
) {
    every_period_on_my_shards(Duration::from_secs(30), map, me, move |shards| {
        // An unpaid order ends by its reservation expiry; a minute of slack for timers.
        let cutoff = clock.now_ms().saturating_sub(reservation_ttl_ms + 60_000);
        match store.stuck_orders(&shards, cutoff) {
            Ok(stuck) => {
                metrics::gauge!("agora_stuck_sagas").set(stuck.len() as f64);
                for id in stuck.iter().take(10) {
                    tracing::warn!(order = %id, "saga past its reservation expiry and still holding stock");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not scan for stuck sagas"),
        }
    });
}

/// How often the marks of applied messages are swept for expiry.
const MARK_SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Most expired marks forgotten per shard per sweep.
const MARK_SWEEP_LIMIT: usize = 20_000;

/// Forgets the marks of messages applied longer ago than `retention_ms`, shard by shard,
/// so the store does not grow by every message ever applied.
fn forget_old_marks(
    writer: agora_store::Writer,
    map: agora_cluster::shard_map::SharedShardMap,
    me: u64,
    clock: Arc<dyn Clock>,
    retention_ms: u64,
) {
    every_period_on_my_shards(MARK_SWEEP_EVERY, map, me, move |shards| {
        let before_ms = clock.now_ms().saturating_sub(retention_ms);
        let mut forgotten = 0usize;
        for shard in shards {
            match writer
                .store()
                .expired_marks(shard, before_ms, MARK_SWEEP_LIMIT)
            {
                Ok(keys) if keys.is_empty() => {}
                Ok(keys) => {
                    forgotten += keys.len();
                    if let Err(e) = writer.submit(WriteOp::ForgetMarks { keys, before_ms }) {
                        tracing::warn!(error = %e, "could not forget old message marks");
                        return;
                    }
                }
                Err(e) => tracing::warn!(shard, error = %e, "could not scan message marks"),
            }
        }
        if forgotten > 0 {
            tracing::info!(forgotten, before_ms, "forgot the marks of old messages");
        }
    });
}
