//! Rolling restart under load: on a self-started three-node cluster with replicated shards,
//! shoppers check out through the nodes that are up while each node in turn is stopped with
//! SIGTERM, started again and waited for (ready, then the leaders balanced again). A prober
//! reads the products over and over meanwhile. Reported: how many answers were 503, the
//! longest time any product could not be read (its shard unavailable), and whether every
//! acknowledged order is still there.

use crate::api::{self, World};
use crate::cli::RollingArgs;
use crate::cluster_proc::ClusterProc;
use crate::stats::PlacedOrder;
use anyhow::{bail, Context};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a node may take to exit on SIGTERM, or the leaders to spread again.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Times a checkout is sent again with its key after a 503 or a refused connection.
const CHECKOUT_ATTEMPTS: usize = 100;
/// Pause between two reads of the prober.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// One node's restart.
#[derive(Debug, Clone, Serialize)]
pub struct RestartTiming {
    /// The node (1-based).
    pub node: u64,
    /// From SIGTERM to the process's exit, ms.
    pub sigterm_to_exit_ms: f64,
    /// From the start to `/readyz` answering 200, ms.
    pub start_to_ready_ms: f64,
    /// From ready to the leaders spread evenly again (at most one shard apart), ms.
    pub ready_to_balanced_ms: f64,
}

/// What a rolling restart under load gave.
#[derive(Debug, Clone, Serialize)]
pub struct RollingResult {
    /// Shoppers checking out meanwhile (closed loop).
    pub shoppers: usize,
    /// Every answer the shoppers got, by status (0: the connection failed, as to a node
    /// that was stopping).
    pub answers: BTreeMap<u16, u64>,
    /// Answers in all (transport failures included).
    pub requests: u64,
    /// Of those, 503s.
    pub unavailable: u64,
    /// The 503s (and the prober's failed reads) by their problem's detail, numbers masked.
    pub unavailable_by_reason: BTreeMap<String, u64>,
    /// 503s as a share of the answers, %.
    pub unavailable_pct: f64,
    /// Checkouts acknowledged with 201.
    pub acknowledged: usize,
    /// Acknowledged orders not found afterwards (missing or unreadable). Must be 0.
    pub lost: usize,
    /// The longest any product could not be read through a node that was up, ms.
    pub longest_unreadable_ms: f64,
    /// Each node's restart, in order.
    pub restarts: Vec<RestartTiming>,
}

/// What the shoppers and the prober share.
struct Shared {
    world: World,
    /// Which nodes take requests now (a load balancer's view: out before SIGTERM, back in
    /// once ready).
    up: Vec<AtomicBool>,
    /// The admin endpoint's bearer token.
    admin_token: String,
    stop: AtomicBool,
    answers: Mutex<BTreeMap<u16, u64>>,
    /// The 503s' details, numbers masked ("node N does not lead shard N now").
    reasons: Mutex<BTreeMap<String, u64>>,
    orders: Mutex<Vec<PlacedOrder>>,
    next: AtomicUsize,
}

impl Shared {
    /// The `…/api/v1` of a node that is up (round robin).
    fn api(&self) -> &str {
        let n = self.up.len().max(1);
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            if self.up[i].load(Ordering::SeqCst) {
                return &self.world.apis[i];
            }
        }
        &self.world.api
    }

    fn count(&self, status: u16) {
        if let Ok(mut a) = self.answers.lock() {
            *a.entry(status).or_default() += 1;
        }
    }

    /// POSTs `body` to `path` through a node that is up, counting the answer.
    async fn post(&self, path: &str, token: &str, body: String, key: Option<&str>) -> u16 {
        let url = format!("{}{path}", self.api());
        let status = match api::post(&self.world.client, &url, Some(token), body, key).await {
            Ok((s, answer)) => {
                if s == 503 {
                    self.unavailable_because(&api::json_of(&answer));
                }
                if s == 201 {
                    if let Some(id) = api::json_of(&answer)["order_id"].as_str() {
                        self.placed(id);
                    }
                }
                s
            }
            Err(_) => 0,
        };
        self.count(status);
        status
    }

    fn unavailable_because(&self, problem: &serde_json::Value) {
        let detail = problem["detail"].as_str().unwrap_or("(no detail)");
        let mut masked = String::with_capacity(detail.len());
        for c in detail.chars() {
            match (c.is_ascii_digit(), masked.ends_with('N')) {
                (true, true) => {}
                (true, false) => masked.push('N'),
                (false, _) => masked.push(c),
            }
        }
        if let Ok(mut r) = self.reasons.lock() {
            *r.entry(masked).or_default() += 1;
        }
    }

    fn placed(&self, id: &str) {
        if let Ok(mut o) = self.orders.lock() {
            o.push(PlacedOrder {
                id: id.to_string(),
                sent_wall_ms: 0,
                in_window: true,
            });
        }
    }
}

/// One shopper: adds a product and checks out, again and again; a checkout answered 503 (or
/// whose connection failed) is sent again with the same key, as a real client would.
async fn shop(shared: Arc<Shared>, user: usize) {
    let Some(token) = shared.world.users.get(user).cloned() else {
        return;
    };
    let mut n = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        let item = &shared.world.catalog[(user + n) % shared.world.catalog.len()];
        let line = serde_json::json!({"sku": item.sku, "quantity": 1}).to_string();
        if shared.post("/cart/items", &token, line, None).await != 200 {
            continue;
        }
        let key = format!("{}-rolling-{user}-{n}", shared.world.tag);
        for _ in 0..CHECKOUT_ATTEMPTS {
            let body = shared.world.checkout_body.clone();
            match shared.post("/orders", &token, body, Some(&key)).await {
                503 | 0 => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => break,
            }
        }
    }
}

/// Reads every product in turn through nodes that are up until `stop`; the longest time
/// any one answered nothing but failures, ms.
async fn probe(shared: Arc<Shared>) -> f64 {
    let catalog = shared.world.catalog.clone();
    let mut failing_since: Vec<Option<Instant>> = vec![None; catalog.len()];
    let mut longest = Duration::ZERO;
    for (k, item) in catalog.iter().enumerate().cycle() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let url = format!("{}/products/{}", shared.api(), item.sku);
        match api::get(&shared.world.client, &url, None).await {
            Ok((200, _)) => {
                if let Some(since) = failing_since[k].take() {
                    longest = longest.max(since.elapsed());
                }
            }
            // A refused connection is the load balancer's business (a node stopping), not
            // the shard's.
            Err(e) if e.is_connect() => {}
            failed => {
                let why = match &failed {
                    Ok((status, body)) => {
                        format!("read answered {status}: {}", String::from_utf8_lossy(body))
                    }
                    Err(e) => format!("read failed: {e}"),
                };
                shared.unavailable_because(&serde_json::json!({ "detail": why }));
                failing_since[k].get_or_insert_with(Instant::now);
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    longest.as_secs_f64() * 1e3
}

/// Stops node index `i` with SIGTERM, starts it again and waits for it and for balance.
async fn restart(
    cluster: &mut ClusterProc,
    shared: &Shared,
    i: usize,
) -> anyhow::Result<RestartTiming> {
    shared.up[i].store(false, Ordering::SeqCst);
    // Requests already sent to it finish or fail; new ones go elsewhere.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| cluster.terminate(i, STEP_TIMEOUT))?;
    if !status.success() {
        bail!("node {} exited with {status} on SIGTERM", i + 1);
    }
    let sigterm_to_exit_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    cluster.restart(i)?;
    tokio::task::block_in_place(|| cluster.wait_ready(i))?;
    let start_to_ready_ms = started.elapsed().as_secs_f64() * 1e3;
    shared.up[i].store(true, Ordering::SeqCst);
    let started = Instant::now();
    let admin = &shared.world.admins[(i + 1) % shared.world.admins.len()];
    crate::failover::until_balanced(&shared.world.client, admin, &shared.admin_token).await?;
    let timing = RestartTiming {
        node: i as u64 + 1,
        sigterm_to_exit_ms,
        start_to_ready_ms,
        ready_to_balanced_ms: started.elapsed().as_secs_f64() * 1e3,
    };
    eprintln!("rolling restart: {timing:?}");
    Ok(timing)
}

/// Starts a replicated three-node cluster, puts `shoppers` shoppers on it and restarts every
/// node in turn under their load.
pub async fn measure(
    target: &crate::target::TargetArgs,
    shoppers: usize,
    products: usize,
) -> anyhow::Result<RollingResult> {
    let (mut cluster, first) = ClusterProc::start_replicated(target, "rolling")?;
    let ep = cluster.spread_endpoint(&first.admin_password)?;
    let world = api::setup(&ep, shoppers, products, shoppers).await?;
    crate::failover::until_balanced(&world.client, &world.admins[0], &cluster.admin_token).await?;
    let shared = Arc::new(Shared {
        up: world.apis.iter().map(|_| AtomicBool::new(true)).collect(),
        world,
        admin_token: cluster.admin_token.clone(),
        stop: AtomicBool::new(false),
        answers: Mutex::default(),
        reasons: Mutex::default(),
        orders: Mutex::default(),
        next: AtomicUsize::new(0),
    });
    let tasks: Vec<_> = (0..shoppers)
        .map(|u| tokio::spawn(shop(shared.clone(), u)))
        .collect();
    let prober = tokio::spawn(probe(shared.clone()));
    // Load before the first restart, so the restarts land on a busy cluster.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut restarts = Vec::new();
    for i in 0..cluster.nodes.len() {
        restarts.push(restart(&mut cluster, &shared, i).await?);
    }
    shared.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.context("a shopper panicked")?;
    }
    let longest_unreadable_ms = prober.await.context("the prober panicked")?;
    let shared = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("shoppers still run"))?;
    let answers = shared.answers.into_inner().unwrap_or_default();
    let unavailable_by_reason = shared.reasons.into_inner().unwrap_or_default();
    let orders = shared.orders.into_inner().unwrap_or_default();
    let world = Arc::new(shared.world);
    let check = crate::verify::verify(&world, orders, Duration::from_secs(1)).await;
    let requests: u64 = answers.values().sum();
    let unavailable = answers.get(&503).copied().unwrap_or(0);
    Ok(RollingResult {
        shoppers,
        requests,
        unavailable,
        unavailable_by_reason,
        unavailable_pct: 100.0 * unavailable as f64 / requests.max(1) as f64,
        answers,
        acknowledged: check.acknowledged,
        lost: check.missing + check.unreadable.values().sum::<u64>() as usize,
        longest_unreadable_ms,
        restarts,
    })
}

/// Runs the rolling restart and prints (and writes) what it gave.
pub async fn run(a: RollingArgs) -> anyhow::Result<()> {
    let r = measure(&a.target, a.shoppers, a.products).await?;
    println!(
        "rolling restart of 3 nodes under {} shoppers: {} of {} answers 503 ({:.2} %), {} orders acknowledged, {} lost, longest a product was unreadable {:.0} ms",
        r.shoppers, r.unavailable, r.requests, r.unavailable_pct, r.acknowledged, r.lost, r.longest_unreadable_ms
    );
    for (why, n) in &r.unavailable_by_reason {
        println!("  {n} × 503 {why}");
    }
    let path = crate::report::write_json(&a.out, "rolling", &r)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
