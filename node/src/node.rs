//! Assembles a node: store, writer, shards, router and gateway, relay, outside services, the
//! shop API and the admin endpoint. A single `agora dev` node is a cluster of one.

use crate::admin::{self, AdminState};
use crate::cards::GatewayChoice;
use crate::seed::{self, AdminSeed};
use crate::sinks::ChannelSinks;
use agora_actors::client::EntityClient;
use agora_actors::courier::{SimCourierConfig, SimulatedCourier};
use agora_actors::entity::DomainConfig;
use agora_actors::gateway::{SimGatewayConfig, SimulatedGateway};
use agora_actors::seams::{Clock, RandomSource};
use agora_catalog::{CatalogProjection, IndexMode};
use agora_cluster::directory::Directory;
use agora_cluster::gateway::{Gateway, GatewayArgs};
use agora_cluster::router::Router;
use agora_cluster::shard_map::ShardMap;
use agora_cluster::{transport, Membership};
use agora_cluster_config::NodeSettings;
use agora_http_edge::auth::{JwtKey, JwtKeys};
use agora_http_edge::{EdgeConfig, EdgeState};
use agora_runtime::callbacks::RegionCallbacks;
use agora_runtime::external::ExternalServices;
use agora_runtime::region::{Region, RegionLimits};
use agora_runtime::{relay, RuntimeContext};
use agora_seams::system::{OsRandom, SystemClock, TokioBlocking};
use agora_seams::BlockingPool;
use agora_store::migrate::META_STORE_FORMAT;
use agora_store::{Store, WriteOp, Writer};
use anyhow::Context;
use ractor::Actor;
use sha2::Digest;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

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
    gateway: agora_cluster::directory::PeerGateway,
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

    /// Resolves when the store has failed (the node must stop: fail-stop).
    pub async fn store_failed(&mut self) {
        let _ = self.store_failed.wait_for(|p| p.failed).await;
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

/// A signing key, its id the first 8 bytes of its SHA-256 in hex (so rotating needs no
/// names: every node derives the same id from the same key).
fn jwt_key(secret: Vec<u8>) -> JwtKey {
    let digest = sha2::Sha256::digest(&secret);
    let kid = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    JwtKey { kid, secret }
}

/// The access-token keys: the environment's, else the cluster file's (a cluster has no
/// other: a key derived from the node-to-node secret would let anyone who learns that secret
/// mint tokens), else for a single node one generated once and kept in the store.
async fn jwt_keys(
    store: &Store,
    writer: &Writer,
    rng: &dyn RandomSource,
    secrets: &Secrets,
    cluster: Option<&ClusterSpec>,
) -> anyhow::Result<(JwtKey, Vec<JwtKey>)> {
    let mut previous: Vec<JwtKey> = secrets
        .jwt_previous_secrets
        .iter()
        .chain(
            cluster
                .into_iter()
                .flat_map(|c| c.jwt_previous_secrets.iter()),
        )
        .map(|s| jwt_key(s.clone().into_bytes()))
        .collect();
    previous.dedup_by(|a, b| a.kid == b.kid);
    let configured = secrets
        .jwt_secret
        .clone()
        .or_else(|| cluster.and_then(|c| c.jwt_secret.clone()));
    if let Some(s) = configured {
        anyhow::ensure!(s.len() >= 32, "the JWT secret must be at least 32 bytes");
        return Ok((jwt_key(s.into_bytes()), previous));
    }
    anyhow::ensure!(
        cluster.is_none(),
        "jwt_secret: missing: set jwt_secret in the cluster file (or AGORA_JWT_SECRET) to 32 or more random bytes, the same on every node"
    );
    if let Some(s) = store.meta(META_JWT_SECRET)? {
        return Ok((jwt_key(s), previous));
    }
    let mut s = vec![0u8; 32];
    rng.fill(&mut s);
    writer.put_meta(META_JWT_SECRET, s.clone()).await?;
    Ok((jwt_key(s), previous))
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

async fn check_shard_count(store: &Store, writer: &Writer, shard_count: u32) -> anyhow::Result<()> {
    match store.meta(META_SHARD_COUNT)? {
        Some(b) => {
            let stored = u32::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .context("corrupt shard_count metadata")?,
            );
            anyhow::ensure!(
                stored == shard_count,
                "this data directory was created with shard_count = {stored}; start with --shards {stored} (the shard count cannot change)"
            );
        }
        None => {
            writer
                .put_meta(META_SHARD_COUNT, shard_count.to_be_bytes().to_vec())
                .await?
        }
    }
    Ok(())
}

/// Seeds the admin account and (once) the demo catalog.
async fn seed_all(
    client: &dyn EntityClient,
    store: &Store,
    writer: &Writer,
    rng: Arc<dyn RandomSource>,
    admin_password: Option<String>,
    demo: bool,
) -> anyhow::Result<AdminSeed> {
    let mut generated = [0u8; 12];
    rng.fill(&mut generated);
    let generated: String = generated.iter().map(|b| format!("{b:02x}")).collect();
    let hash = move |p: String| {
        let mut salt = [0u8; 16];
        rng.fill(&mut salt);
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password_with_salt(p.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    };
    let verify = |p: &str, h: &str| {
        use argon2::password_hash::{phc::PasswordHash, PasswordVerifier};
        PasswordHash::new(h).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(p.as_bytes(), &h)
                .is_ok()
        })
    };
    let admin = seed::seed_admin(client, admin_password, generated, hash, verify)
        .await
        .map_err(anyhow::Error::msg)?;
    if demo && store.meta(META_DEMO_SEEDED)?.is_none() {
        let n = seed::seed_demo_catalog(client).await?;
        writer.put_meta(META_DEMO_SEEDED, vec![1]).await?;
        tracing::info!(products = n, "demo catalog seeded");
    }
    Ok(admin)
}

/// How a node reaches its peers.
pub enum PeerNetwork {
    /// ractor_cluster over TCP (or TLS), gateways found through process groups.
    Cluster,
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
    /// Who is told of every replicated shard served here (the simulator's one-leader
    /// checker); `None` in production.
    pub served_log: Option<Arc<dyn agora_replication::ServedLog>>,
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
            network: PeerNetwork::Cluster,
            serving: Serving::Tcp,
            sink: None,
            served_log: None,
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
    } = env;
    let membership = cluster
        .as_ref()
        .map_or_else(|| Membership::single("agora-dev"), |c| c.membership.clone());
    let me = membership.me;
    let replication_factor = cluster.as_ref().map_or(1, |c| c.replication_factor);
    let group_config = agora_replication::GroupConfig {
        cluster_name: membership.cluster_name.clone(),
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
    if let (Some(leadership), Some(log)) = (&leadership, served_log) {
        leadership.log_served(log);
    }

    let store = match store {
        Some(store) => store,
        None => {
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!("cannot create data dir {}", settings.data_dir.display())
            })?;
            Store::open(&settings.data_dir.join("agora.redb")).context("cannot open the store")?
        }
    };
    // The simulator's inline storage means nothing may run beside its thread: the search
    // index is then brought up to date by the searches themselves.
    let index_mode = match executor {
        agora_store::StorageExecutor::Thread => IndexMode::Background,
        agora_store::StorageExecutor::Inline { .. } => IndexMode::OnRead,
    };
    let webhook_url = Arc::new(std::sync::OnceLock::new());
    let payment_gateway = match &settings.payment_gateway_url {
        Some(url) => {
            anyhow::ensure!(
                secrets.webhook_secret.is_some(),
                "a payment gateway URL needs AGORA_WEBHOOK_SECRET (the webhook signing secret)"
            );
            let Some(api_key) = secrets.gateway_api_key.as_deref() else {
                anyhow::bail!("a payment gateway URL needs AGORA_GATEWAY_API_KEY");
            };
            GatewayChoice::Http(Arc::new(crate::payment_http::HttpGateway::new(
                url,
                api_key,
                webhook_url.clone(),
            )?))
        }
        None => GatewayChoice::Sim(crate::cards::sim_vault(
            &store,
            rng.as_ref(),
            secrets.gateway_token_key.as_deref(),
            cluster.as_ref().map(|c| c.secret.as_str()),
        )?),
    };
    let new_store =
        crate::cards::check_store_format(&store, payment_gateway.cards().as_ref()).await?;
    let catalog = Arc::new(CatalogProjection::load(&store, rng.next_u64(), index_mode)?);
    let (relay_tx, relay_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start_on(store.clone(), relay_tx, vec![catalog.clone()], executor)?;
    if new_store {
        let format = agora_store::record::FORMAT_VERSION.to_be_bytes().to_vec();
        writer.put_meta(META_STORE_FORMAT, format).await?;
    }
    check_shard_count(&store, &writer, settings.shard_count).await?;
    if let Some(leadership) = &leadership {
        writer.set_replication(Arc::new(leadership.clone()));
    }

    let domain = DomainConfig {
        reservation_ttl_ms: settings.reservation_ttl_ms,
        payment_timeout_ms: settings.payment_timeout_ms,
        lockout: agora_actors::session::LockoutPolicy {
            base_ms: settings.lockout_base_ms,
            ..Default::default()
        },
        ..DomainConfig::default()
    };
    // Unreplicated shards in a cluster: served only once this node's map is current.
    let (map_current_tx, map_current) = tokio::sync::watch::channel(false);
    let rt = RuntimeContext {
        writer: writer.clone(),
        store: store.clone(),
        clock: clock.clone(),
        domain: Arc::new(domain),
        passivate_after: Duration::from_millis(settings.passivate_after_ms),
        max_active_per_shard: agora_runtime::max_active_per_shard(
            settings.max_active_entities,
            settings.shard_count,
        ),
        serve_guard: serve_guard(leadership.as_ref(), cluster.is_some(), &map_current),
    };
    let joining = cluster.as_ref().is_some_and(|c| c.join);
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
        PeerNetwork::Cluster => Directory::new(&membership.cluster_name),
        PeerNetwork::Links(links) => Directory::with_links(links.clone()),
    };
    // The shard map agreed through Raft replaces the static spread when it is applied;
    // nothing waits for it (a single node runs no Raft).
    let raft = match &cluster {
        Some(c) => Some(
            agora_cluster::raft::start(
                &c.membership,
                store.db().clone(),
                blocking.clone(),
                (settings.shard_count, map.clone()),
                directory.clone(),
                map_current_tx,
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
            &group_config,
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
    if let (Some(_), Some(groups)) = (&leadership, &groups) {
        router.route_by_leaders(groups.clone());
    }
    let handoff_cell = Arc::new(std::sync::OnceLock::new());
    let (gateway, _) = Actor::spawn(
        None,
        Gateway,
        GatewayArgs {
            me,
            region: region.clone(),
            map: map.clone(),
            catalog: catalog.clone(),
            raft: raft.clone(),
            groups: groups.clone(),
            writer: writer.clone(),
            handoff: handoff_cell.clone(),
            replicated: leadership.is_some(),
            join_policy: join_policy.clone(),
            clock: clock.clone(),
        },
    )
    .await?;
    if let Some(scope) = directory.scope() {
        ractor::pg::join_scoped(scope, Directory::group(me), vec![gateway.get_cell()]);
    }
    if let (Some(c), PeerNetwork::Cluster) = (&cluster, &network) {
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
            &c.secret,
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

    let callbacks = Arc::new(RegionCallbacks {
        region: Arc::new(router.clone()),
    });
    let gateway_cfg = SimGatewayConfig {
        min_latency: Duration::from_millis(settings.gateway_min_latency_ms),
        max_latency: Duration::from_millis(settings.gateway_max_latency_ms),
        ..SimGatewayConfig::default()
    };
    let courier_cfg = SimCourierConfig {
        legs: [Duration::from_millis(settings.courier_leg_ms); 4],
        ..SimCourierConfig::default()
    };
    let cards = payment_gateway.cards();
    let payments: Arc<dyn agora_actors::gateway::PaymentGateway> = match payment_gateway {
        GatewayChoice::Http(http) => http,
        GatewayChoice::Sim(vault) => Arc::new(SimulatedGateway::new(
            gateway_cfg,
            rng.clone(),
            callbacks.clone(),
            vault,
        )),
    };
    let external = ExternalServices {
        gateway: payments,
        courier: Arc::new(SimulatedCourier::new(courier_cfg, rng.clone(), callbacks)),
        sink: match sink {
            Some(sink) => sink,
            None => Arc::new(
                ChannelSinks::from_settings(
                    &settings.notifications,
                    settings.data_dir.join("notifications.jsonl"),
                )
                .context("cannot set up the notification channels")?,
            ),
        },
    };
    relay::start(
        relay::RelayDeps {
            store: store.clone(),
            writer: writer.clone(),
            region: Arc::new(router.clone()),
            external,
            clock: clock.clone(),
            stored_rows_at_start: leadership.is_none(),
        },
        relay_rx,
    )?;

    let (jwt_current, jwt_previous) =
        jwt_keys(&store, &writer, rng.as_ref(), &secrets, cluster.as_ref()).await?;
    let seeder = membership.node_ids().first().copied() == Some(me);
    let admin_seed = match (&cluster, seeder) {
        (None, _) => Some(
            seed_all(
                &router,
                &store,
                &writer,
                rng.clone(),
                secrets.admin_password.clone(),
                settings.seed_demo_catalog,
            )
            .await?,
        ),
        (Some(_), true) => {
            // The other nodes may not be up yet: seed in the background, retrying.
            let (router, store, writer, rng, pw, demo) = (
                router.clone(),
                store.clone(),
                writer.clone(),
                rng.clone(),
                secrets.admin_password.clone(),
                settings.seed_demo_catalog,
            );
            tokio::spawn(async move {
                for attempt in 0..240u32 {
                    match seed_all(&router, &store, &writer, rng.clone(), pw.clone(), demo).await {
                        Ok(_) => return tracing::info!("cluster seeded"),
                        Err(e) => {
                            tracing::debug!(attempt, error = %e, "seeding waits for the cluster")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tracing::error!("could not seed the cluster in 2 minutes");
            });
            None
        }
        (Some(_), false) => None,
    };

    // What start-up wrote (the demo catalog) is searchable before the shop API answers.
    if let Err(e) = catalog.flush() {
        tracing::warn!(error = %e, "the search index is behind; the indexer will retry");
    }
    let edge = Arc::new(EdgeState {
        cards,
        client: Arc::new(router.clone()),
        catalog: catalog.clone(),
        keys: JwtKeys::rotating(jwt_current, jwt_previous, settings.token_ttl_secs),
        passwords: agora_http_edge::auth::Passwords::new(agora_http_edge::auth::HashLimits {
            max_concurrent: settings.password_hashes_at_once as usize,
            max_wait: Duration::from_millis(settings.password_hash_wait_ms),
        }),
        lockouts: agora_http_edge::lockout::Lockouts::new(
            agora_actors::session::LockoutPolicy {
                base_ms: settings.lockout_base_ms,
                ..Default::default()
            },
            clock.clone(),
        ),
        blocking: blocking.clone(),
        clock: clock.clone(),
        rng: rng.clone(),
        config: EdgeConfig {
            body_limit: settings.body_limit_bytes,
            token_ttl: Duration::from_secs(settings.token_ttl_secs),
            refresh_ttl: Duration::from_secs(settings.refresh_token_ttl_secs),
            webhook_secret: secrets
                .webhook_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
            cors_origins: settings.cors_allowed_origins.clone(),
            ..EdgeConfig::default()
        },
        limiter: settings
            .rate_limits
            .enabled
            .then(|| agora_http_edge::limits::Limiter::new(&settings.rate_limits, clock.clone())),
    });
    let peers: Vec<u64> = membership
        .node_ids()
        .into_iter()
        .filter(|id| *id != me)
        .collect();
    let majority = membership.node_ids().len() / 2 + 1;
    let ready_directory = directory.clone();
    let placement = crate::replicas::placement(
        settings.shard_count,
        &membership.node_ids(),
        replication_factor,
    );
    let replicas_started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Unreplicated shards in a cluster are served once the map is current (`serve_guard`).
    let map_gated = cluster.is_some() && leadership.is_none();
    let map_is_current = map_current.clone();
    let shards_ready = crate::replicas::ShardsReady {
        groups: groups.clone().filter(|_| leadership.is_some()),
        started: replicas_started.clone(),
    };
    let replica_progress = crate::replica_moves::SharedProgress::default();
    let configured_token = secrets
        .admin_token
        .clone()
        .or_else(|| cluster.as_ref().and_then(|c| c.admin_token.clone()));
    let generated_admin_token = match configured_token {
        Some(_) => None,
        None => {
            let mut t = [0u8; 24];
            rng.fill(&mut t);
            Some(t.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
    };
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin_state = Arc::new(AdminState {
        client: Arc::new(router.clone()),
        admin_seen: std::sync::atomic::AtomicBool::new(false),
        token: configured_token.or_else(|| generated_admin_token.clone()),
        mutations: cluster.as_ref().is_some_and(|c| c.admin_mutations),
        fault_injection: cluster.as_ref().is_some_and(|c| c.fault_injection),
        membership: membership.clone(),
        map: map.clone(),
        region: region.clone(),
        directory: directory.clone(),
        ready: false.into(),
        // Ready when this node reaches a majority of the cluster (itself included).
        peers_ready: Box::new(move || {
            1 + peers
                .iter()
                .filter(|p| ready_directory.gateway(**p).is_some())
                .count()
                >= majority
                && shards_ready.all_led()
                && (!map_gated || *map_is_current.borrow())
        }),
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
        },
        raft,
        join_policy,
        clock: clock.clone(),
        replicas: groups
            .clone()
            .filter(|_| leadership.is_some())
            .map(|groups| crate::admin::ReplicaView {
                groups,
                progress: replica_progress.clone(),
            }),
    });
    if cluster.is_some() {
        agora_cluster::handoff::follow_map(me, region.clone(), map.clone());
    }
    let _ = handoff_cell.set(admin_state.handoff.clone());
    match (&leadership, &groups) {
        (Some(leadership), Some(groups)) => {
            let replicas = crate::replicas::ReplicaStart {
                me,
                file_placement: placement.clone(),
                joining,
                map: map.clone(),
                new_store,
                groups: groups.clone(),
                serving: leadership.clone(),
                started: replicas_started,
            };
            let events = (writer.clone(), region.clone(), admin_state.handoff.clone());
            crate::replicas::start(replicas, events, replica_progress.clone());
            if let (Some(raft), Some(c)) = (&admin_state.raft, &cluster) {
                crate::placement_balancer::PlacementBalancer {
                    me,
                    raft: raft.clone(),
                    handoff: admin_state.handoff.clone(),
                    directory: directory.clone(),
                    shard_count: settings.shard_count,
                    factor: replication_factor,
                    file_placement: placement.clone(),
                    replica_timeout: std::time::Duration::from_millis(c.replica_timeout_ms),
                }
                .spawn();
            }
        }
        // Copies left by handoffs that a crash interrupted are kept or dropped by the map,
        // once it is current (a stale one may still give this node a shard it handed off).
        _ if cluster.is_some() => {
            let (handoff, mut current) = (admin_state.handoff.clone(), map_current.clone());
            tokio::spawn(async move {
                if current.wait_for(|c| *c).await.is_ok() {
                    if let Err(e) = handoff.watch_stored_copies() {
                        tracing::error!(error = %e, "cannot list the shards stored here");
                    }
                }
            });
        }
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
        let handoff = admin_state.handoff.clone();
        let join_token = cluster.as_ref().and_then(|c| c.join_token.clone());
        let addr = membership
            .nodes
            .iter()
            .find(|n| n.id == me)
            .map(|n| n.cluster_addr.to_string())
            .unwrap_or_default();
        tokio::spawn(async move {
            match handoff.join_and_take_share(addr, join_token).await {
                Ok(taken) => tracing::info!(taken, "joined the cluster"),
                Err(e) => tracing::error!(error = %e, "could not join the cluster"),
            }
        });
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let shop_api = agora_http_edge::router(edge);
    let admin_api = admin::router(admin_state.clone());
    let (http_addr, admin_addr, servers) = match serving {
        Serving::Tcp => {
            let http = tokio::net::TcpListener::bind(settings.http_addr)
                .await
                .with_context(|| format!("cannot bind the shop API on {}", settings.http_addr))?;
            let admin = tokio::net::TcpListener::bind(settings.admin_addr)
                .await
                .with_context(|| {
                    format!("cannot bind the admin endpoint on {}", settings.admin_addr)
                })?;
            let addrs = (http.local_addr()?, admin.local_addr()?);
            let mut reachable = addrs.0;
            if reachable.ip().is_unspecified() {
                reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let _ = webhook_url.set(format!(
                "http://{reachable}{}",
                crate::payment_http::WEBHOOK_PATH
            ));
            let http = crate::listener::BoundedListener::new(http, settings.connections);
            // The admin endpoint has its own, smaller bounds: a flood of the shop's port
            // never reaches them.
            let admin = crate::listener::BoundedListener::new(admin, ADMIN_CONNECTIONS);
            let servers = vec![
                serve(http, shop_api, shutdown_rx.clone()),
                serve(admin, admin_api, shutdown_rx),
            ];
            (addrs.0, addrs.1, servers)
        }
        Serving::Handover(take) => {
            take(shop_api, admin_api);
            (settings.http_addr, settings.admin_addr, Vec::new())
        }
    };
    admin_state.ready.store(true, Ordering::Release);
    tracing::info!(%http_addr, %admin_addr, data_dir = %settings.data_dir.display(), shards = settings.shard_count, "node serving");
    Ok(RunningNode {
        http_addr,
        admin_addr,
        admin_seed,
        generated_admin_token,
        drainer: match (&cluster, &leadership) {
            (Some(_), None) => Some(Drain::Handoff(
                admin_state.handoff.clone(),
                draining.clone(),
            )),
            (Some(_), Some(leadership)) => groups
                .clone()
                .map(|g| Drain::LeaveGroups(leadership.clone(), g)),
            (None, _) => None,
        },
        shutdown,
        region,
        servers,
        store_failed: writer.progress(),
        gateway: agora_cluster::directory::PeerGateway::Actor(gateway),
    })
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

fn serve(
    listener: crate::listener::BoundedListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        use axum::serve::ListenerExt;
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        // `tap_io` (a no-op here) is what gives a custom listener's connections their
        // client address (`ConnectInfo`), which the rate limits key on.
        let listener = listener.tap_io(|_: &mut crate::listener::BoundedStream| {});
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "server failed");
        }
    })
}
