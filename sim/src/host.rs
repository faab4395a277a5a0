//! A node on a turmoil host: the production node code started through `start_with` on the
//! simulator's seams (clock, randomness, disk, storage executor, network, listeners).

use crate::disk::SimDisk;
use crate::net::{
    node_host, serve_gateway, serve_http, Duplication, KnownNodes, SimLinks, ADMIN_PORT, HTTP_PORT,
};
use crate::seed::{SeededRandom, Stream};
use agora_actors::seams::BlockingPool;
use agora_actors::seams::Clock;
use agora_cluster::Membership;
use agora_cluster_config::cluster::NodeEntry;
use agora_cluster_config::NodeSettings;
use agora_node::node::{start_with, ClusterSpec, NodeEnv, PeerNetwork, Secrets, Serving};
use agora_store::{StorageExecutor, Store};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cluster's name in the simulation.
pub const CLUSTER: &str = "agora-sim";
/// The admin's password in the simulation.
pub const ADMIN_PASSWORD: &str = "sim-admin-password-0001";
/// The admin's email (seeded by the first node).
pub const ADMIN_EMAIL: &str = "admin@agora.local";
/// The admin endpoint's token in the simulation.
pub const ADMIN_TOKEN: &str = "sim-admin-token-0123456789";
/// Shards of the simulated cluster.
pub const SHARDS: u32 = 12;
/// Reservation time of the simulated shop (short, so sagas end within a run).
pub const RESERVATION_TTL_MS: u64 = 20_000;

/// A healthy disk's commit latency range (µs): an fsync of a few pages.
pub const DISK_LATENCY_US: (u64, u64) = (200, 4_000);

/// Virtual wall-clock time of a host, with the skew the fault plan gives it.
#[derive(Debug, Clone)]
pub struct SimClock {
    skew_ms: Arc<AtomicI64>,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let base = turmoil::since_epoch().map_or(0, |d| d.as_millis() as i64);
        (base + self.skew_ms.load(Ordering::Relaxed)).max(0) as u64
    }
}

/// How long a process paused until `until_ms` (virtual ms; 0: not paused) still sleeps.
fn pause_left(until_ms: u64) -> Duration {
    let now_ms = turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(until_ms.saturating_sub(now_ms))
}

/// Runs blocking work inline: the simulation has one thread and virtual time.
struct InlineBlocking;

impl BlockingPool for InlineBlocking {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        job()
    }
}

/// What the harness keeps per node across its restarts.
#[derive(Clone)]
pub struct NodeSlot {
    /// Node id.
    pub id: u64,
    /// Its disk.
    pub disk: SimDisk,
    /// Clock skew in ms (clock faults).
    pub skew_ms: Arc<AtomicI64>,
    /// How many times it started.
    pub starts: Arc<AtomicU32>,
    /// Disk latency range in µs (disk faults widen it).
    pub disk_latency_us: Arc<Mutex<(u64, u64)>>,
    /// Where it reports the shards it serves (shared by the run's nodes).
    pub served: crate::served::ServedRecorder,
    /// The payment gateway's books (one gateway behind every node, across restarts).
    pub ledger: Arc<agora_actors::gateway::GatewayLedger>,
    /// The courier's books (one courier behind every node, across restarts).
    pub bookings: Arc<agora_actors::courier::CourierBookings>,
    /// The mail server and webhooks its notifications go to (shared, across restarts).
    pub notifications: crate::notify_services::NotificationServices,
    /// The nodes that exist so far (its links reach these).
    pub known: KnownNodes,
    /// How much slower than a healthy one its host is (1: not slowed; the `SlowNode` fault).
    pub slow_factor: Arc<AtomicU32>,
    /// Until when (virtual ms) its process is paused (0: not paused): its disk's commits
    /// wait until then.
    pub paused_until_ms: Arc<AtomicU64>,
    /// Which of its calls its transport sends twice (the `Duplicates` fault).
    pub duplication: Duplication,
}

/// What every node of a run shares: the log of who served what, the payment gateway's
/// books, the notification services and the nodes that exist so far.
#[derive(Clone)]
pub struct RunShared {
    /// Where nodes report the shards they serve.
    pub served: crate::served::ServedRecorder,
    /// The payment gateway's books.
    pub ledger: Arc<agora_actors::gateway::GatewayLedger>,
    /// The courier's books.
    pub bookings: Arc<agora_actors::courier::CourierBookings>,
    /// The mail server and webhooks behind every node, and what they received.
    pub notifications: crate::notify_services::NotificationServices,
    /// The founders, then each node started to join.
    pub known: KnownNodes,
}

impl RunShared {
    /// What the nodes of run `seed` share, empty; `replicated`: its shards are.
    pub fn new(seed: u64, replicated: bool) -> Self {
        Self {
            served: crate::served::ServedRecorder::new(replicated),
            ledger: Default::default(),
            bookings: Default::default(),
            notifications: crate::notify_services::NotificationServices::new(seed),
            known: Default::default(),
        }
    }
}

impl NodeSlot {
    /// A fresh node `id` of run `seed`, sharing `shared` with the run's other nodes.
    pub fn new(seed: u64, id: u64, shared: &RunShared) -> Self {
        Self {
            id,
            disk: SimDisk::new(Stream::new(seed, &format!("disk-{id}"))),
            skew_ms: Arc::default(),
            starts: Arc::default(),
            disk_latency_us: Arc::new(Mutex::new(DISK_LATENCY_US)),
            served: shared.served.clone(),
            ledger: shared.ledger.clone(),
            bookings: shared.bookings.clone(),
            notifications: shared.notifications.clone(),
            known: shared.known.clone(),
            slow_factor: Arc::new(AtomicU32::new(1)),
            paused_until_ms: Arc::default(),
            duplication: Duplication::new(Stream::new(seed, &format!("duplicates-{id}"))),
        }
    }
}

fn membership(me: u64, ids: &[u64]) -> Membership {
    let nodes = ids
        .iter()
        .map(|id| {
            let ip = turmoil::lookup(node_host(*id));
            NodeEntry {
                id: *id,
                cluster_addr: SocketAddr::new(ip, crate::net::GATEWAY_PORT),
                http_addr: SocketAddr::new(ip, HTTP_PORT),
                admin_addr: SocketAddr::new(ip, 9090),
                data_dir: format!("/sim/node-{id}").into(),
            }
        })
        .collect();
    Membership {
        cluster_name: CLUSTER.into(),
        me,
        nodes,
    }
}

/// The settings of a simulated node: short timers so sagas finish inside a run.
pub fn settings(id: u64) -> NodeSettings {
    NodeSettings {
        data_dir: format!("/sim/node-{id}").into(),
        shard_count: SHARDS,
        passivate_after_ms: 15_000,
        reservation_ttl_ms: RESERVATION_TTL_MS,
        payment_timeout_ms: 8_000,
        courier_leg_ms: 1_000,
        gateway_min_latency_ms: 20,
        gateway_max_latency_ms: 150,
        seed_demo_catalog: false,
        // Production's rate limits: each client host has its own address.
        rate_limits: agora_cluster_config::RateLimits::default(),
        ..NodeSettings::default()
    }
}

/// The host's software: start the node, serve its gateway, run until the store fails.
/// `founders` are the nodes of the first cluster file; a node outside them joins with
/// `join_token` (its own file is the founders' plus its own entry).
pub async fn run_node(
    seed: u64,
    slot: NodeSlot,
    founders: Vec<u64>,
    replication_factor: usize,
    join_token: Option<String>,
) -> turmoil::Result {
    let start = slot.starts.fetch_add(1, Ordering::Relaxed);
    let id = slot.id;
    let mut file = founders;
    if !file.contains(&id) {
        file.push(id);
    }
    let store = match Store::open_backend(slot.disk.backend()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(node = id, error = %e, "store did not open; the node stays down");
            return Ok(());
        }
    };
    let latency_rng = Arc::new(Mutex::new(Stream::new(
        seed,
        &format!("disk-latency-{id}-{start}"),
    )));
    let range = slot.disk_latency_us.clone();
    let (slow, paused_until_ms) = (slot.slow_factor.clone(), slot.paused_until_ms.clone());
    let latency = Arc::new(move || {
        let (lo, hi) = *range.lock().unwrap_or_else(|p| p.into_inner());
        let us = latency_rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .random_range(lo..=hi.max(lo));
        let slowed = Duration::from_micros(us) * slow.load(Ordering::Relaxed).max(1);
        slowed + pause_left(paused_until_ms.load(Ordering::Relaxed))
    });
    let env = NodeEnv {
        clock: Arc::new(SimClock {
            skew_ms: slot.skew_ms.clone(),
        }),
        rng: Arc::new(SeededRandom::new(Stream::new(
            seed,
            &format!("node-{id}-{start}"),
        ))),
        store: Some(store),
        executor: StorageExecutor::Inline { latency },
        blocking: Arc::new(InlineBlocking),
        // Hashes run inline and their CPU time is not simulated: the cheapest argon2id.
        password_cost: agora_http_edge::auth::PasswordCost::Minimal,
        network: PeerNetwork::Links(Arc::new(SimLinks::new(
            id,
            slot.known.clone(),
            slot.duplication.clone(),
        ))),
        serving: Serving::Handover(Box::new(|shop, admin| {
            for (port, app) in [(HTTP_PORT, shop), (ADMIN_PORT, admin)] {
                tokio::spawn(async move {
                    if let Err(e) = serve_http(port, app).await {
                        tracing::warn!(port, error = %e, "listener stopped");
                    }
                });
            }
        })),
        sink: Some(Arc::new(slot.notifications.sinks())),
        served_log: Some(slot.served.for_node()),
        gateway_ledger: Some(slot.ledger.clone()),
        courier_bookings: Some(slot.bookings.clone()),
    };
    let cluster = ClusterSpec {
        membership: membership(id, &file),
        secret: "sim-cluster-secret-0123456789abcdef".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        admin_mutations: true,
        fault_injection: false,
        join: join_token.is_some(),
        tls: None,
        jwt_secret: Some("sim-jwt-secret-5f0c9a2e71d84b36a9e0c4f1d2b7e853".into()),
        jwt_previous_secrets: Vec::new(),
        replication_factor,
        replica_timeout_ms: 300_000,
        join_token,
        cluster_connections: Default::default(),
    };
    let secrets = Secrets {
        admin_password: Some(ADMIN_PASSWORD.into()),
        jwt_secret: None,
        jwt_previous_secrets: Vec::new(),
        admin_token: None,
        webhook_secret: None,
        gateway_api_key: None,
        gateway_token_key: None,
    };
    let mut running = match start_with(settings(id), secrets, Some(cluster), None, env).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(node = id, error = %e, "node did not start; it stays down");
            return Ok(());
        }
    };
    let gateway = running.gateway();
    tokio::spawn(async move {
        if let Err(e) = serve_gateway(gateway).await {
            tracing::warn!(error = %e, "gateway listener stopped");
        }
    });
    running.store_failed().await;
    tracing::warn!(node = id, "store failed: the node stops (fail-stop)");
    Ok(())
}
