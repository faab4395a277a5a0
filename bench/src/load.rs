//! The load driver: closed loop (each virtual user waits for its answer, for maximum
//! throughput) or open loop (arrivals at a fixed offered rate, latency counted from each
//! arrival's scheduled time, for honest percentiles). Client loops run in tokio tasks; a
//! progress line goes to stderr every second; node counters and CPU are read at the edges
//! of the measured window.

use crate::api::{self, World};
use crate::proc_stats::{self, CpuMark};
use crate::rng::Rng;
use crate::scenarios::{self, Scenario};
use crate::stats::{Op, Recorder, Summary, Window};
use crate::verify::Verification;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex, Semaphore};

/// Most open-loop arrivals in flight before new ones are dropped (and counted).
const MAX_IN_FLIGHT: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// A label for the progress line and the report.
    pub label: String,
    /// The scenario.
    pub scenario: Scenario,
    /// Virtual users (closed loop: concurrent loops; open loop: shoppers to draw from).
    pub users: usize,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Measured duration.
    pub duration: Duration,
    /// Offered rate (arrivals per second): open loop when set.
    pub rate: Option<f64>,
    /// Share of shopper visits in the mixed scenario.
    pub checkout_share: f64,
    /// Print a progress line every second.
    pub progress: bool,
}

/// What the server (the node, or a bare axum process) spent in the measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeCost {
    /// Durable commits (each one fsync).
    pub commits: f64,
    /// Entity writes.
    pub entity_writes: f64,
    /// Orders acknowledged (201) in the window.
    pub orders: u64,
    /// Commits per acknowledged order (saga steps of orders in flight included).
    pub fsyncs_per_order: Option<f64>,
    /// Entity writes per acknowledged order.
    pub writes_per_order: Option<f64>,
    /// Durable commits per second.
    pub commits_per_s: f64,
    /// Mean time of one commit (write + fsync), ms.
    pub mean_commit_ms: Option<f64>,
    /// Mean store operations per commit.
    pub mean_ops_per_commit: Option<f64>,
    /// Active entities at the end of the window.
    pub active_entities: f64,
    /// Node CPU seconds in the window (when its pid is known).
    pub cpu_seconds: Option<f64>,
    /// Node CPU seconds per acknowledged order.
    pub cpu_seconds_per_order: Option<f64>,
    /// Node CPU seconds per 2xx answer.
    pub cpu_seconds_per_request: Option<f64>,
    /// Peak resident memory of the node (VmHWM) after the run, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// The result of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Label.
    pub label: String,
    /// Scenario.
    pub scenario: Scenario,
    /// "closed" or "open".
    pub mode: &'static str,
    /// Virtual users.
    pub users: usize,
    /// Offered rate (open loop).
    pub offered_rate: Option<f64>,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Measured seconds.
    pub measured_s: f64,
    /// Answers, latencies, statuses, timeline.
    pub summary: Summary,
    /// Orders acknowledged in the window per second.
    pub checkouts_per_s: f64,
    /// The node's cost (when its admin endpoint was read).
    pub node: Option<NodeCost>,
    /// Cores the load generator kept busy on average (1.0 = one core) in the window.
    pub loadgen_cores: Option<f64>,
    /// The check of the acknowledged orders (filled in after the run).
    pub verification: Option<Verification>,
}

impl LoadResult {
    /// Latency percentiles of `op`.
    pub fn latency(&self, op: Op) -> Option<&crate::stats::Percentiles> {
        self.summary
            .ops
            .iter()
            .find(|o| o.op == op.name())
            .map(|o| &o.latency)
    }

    /// Non-2xx answers in the window, all operations.
    pub fn non_2xx(&self) -> u64 {
        self.summary.non_2xx.values().sum()
    }

    /// Non-2xx answers anywhere in the run (warm-up and tail included).
    pub fn non_2xx_anywhere(&self) -> u64 {
        self.non_2xx() + self.summary.non_2xx_outside_window.values().sum::<u64>()
    }
}

/// How the window's edges are observed.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    /// The node's process id (CPU, peak memory).
    pub node_pid: Option<u32>,
    /// The other nodes' process ids of a self-started cluster (CPU and memory are summed).
    pub peer_pids: Vec<u32>,
    /// Read the node's counters from its admin endpoint.
    pub node_counters: bool,
    /// Our threads whose CPU is not the load generator's (an in-process server).
    pub exclude_threads: Option<&'static str>,
}

/// Readings at one edge of the window.
#[derive(Debug, Default)]
struct Marks {
    /// The node's counters.
    counters: Option<api::NodeCounters>,
    /// The node's CPU.
    node_cpu: Option<CpuMark>,
    /// Our own CPU.
    self_cpu: Option<CpuMark>,
}

/// Takes the readings.
async fn marks(w: &World, observe: &Observe) -> Marks {
    Marks {
        counters: if observe.node_counters {
            summed_counters(w).await
        } else {
            None
        },
        node_cpu: observe.node_pid.and_then(|p| {
            let mut mark = CpuMark::of(p).ok()?;
            for peer in &observe.peer_pids {
                mark.cpu += CpuMark::of(*peer).ok()?.cpu;
            }
            Some(mark)
        }),
        self_cpu: CpuMark::of_self(observe.exclude_threads).ok(),
    }
}

/// The nodes' counters, summed over every node's admin endpoint.
async fn summed_counters(w: &World) -> Option<api::NodeCounters> {
    let mut sum = api::NodeCounters::default();
    for admin in &w.admins {
        let c = api::counters(&w.client, admin).await.ok()?;
        sum.commits += c.commits;
        sum.entity_writes += c.entity_writes;
        sum.commit_seconds += c.commit_seconds;
        sum.batch_ops += c.batch_ops;
        sum.active_entities += c.active_entities;
    }
    Some(sum)
}

/// What the server spent between the two readings (None when nothing was read).
fn node_cost(
    start: &Marks,
    end: &Marks,
    observe: &Observe,
    orders: u64,
    answers: u64,
    secs: f64,
) -> Option<NodeCost> {
    let cpu = match (start.node_cpu, end.node_cpu) {
        (Some(a), Some(b)) => Some(a.cpu_until(&b)),
        _ => None,
    };
    let counters = match (start.counters, end.counters) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    if cpu.is_none() && counters.is_none() {
        return None;
    }
    let (a, b) = counters.unwrap_or_default();
    let commits = b.commits - a.commits;
    let writes = b.entity_writes - a.entity_writes;
    let per_order = |x: f64| (orders > 0 && counters.is_some()).then(|| x / orders as f64);
    Some(NodeCost {
        commits,
        entity_writes: writes,
        orders,
        fsyncs_per_order: per_order(commits),
        writes_per_order: per_order(writes),
        commits_per_s: commits / secs,
        mean_commit_ms: (commits > 0.0)
            .then(|| (b.commit_seconds - a.commit_seconds) * 1e3 / commits),
        mean_ops_per_commit: (commits > 0.0).then(|| (b.batch_ops - a.batch_ops) / commits),
        active_entities: b.active_entities,
        cpu_seconds: cpu,
        cpu_seconds_per_order: cpu.filter(|_| orders > 0).map(|c| c / orders as f64),
        cpu_seconds_per_request: cpu.filter(|_| answers > 0).map(|c| c / answers as f64),
        peak_rss_bytes: observe.node_pid.and_then(|p| {
            let mut total = proc_stats::peak_rss(p).ok()?;
            for peer in &observe.peer_pids {
                total += proc_stats::peak_rss(*peer).ok()?;
            }
            Some(total)
        }),
    })
}

/// Prints a progress line every second until `stop` is set.
fn spawn_progress(label: String, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let window = rec.window();
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let answered = rec.answered.load(Ordering::Relaxed);
            let phase = if now < window.from {
                " (warm-up)"
            } else if now >= window.until {
                " (draining)"
            } else {
                ""
            };
            eprintln!(
                "[{label}] {:5.1} s  answers {answered:>8}  rate {:>7}/s  errors {}{phase}",
                now.duration_since(window.t0).as_secs_f64(),
                answered - last,
                rec.failed.load(Ordering::Relaxed),
            );
            last = answered;
        }
    });
}

/// A closed-loop virtual user: runs the scenario's step until the window ends.
async fn closed_user(
    w: Arc<World>,
    spec: LoadSpec,
    rec: Arc<Recorder>,
    user: usize,
    until: Instant,
) {
    let mut rng = Rng::new(user as u64 + 1);
    while Instant::now() < until {
        match spec.scenario {
            Scenario::Checkout => {
                scenarios::visit(&w, user, &mut rng, &rec).await;
            }
            Scenario::Mixed if rng.chance(spec.checkout_share) => {
                scenarios::visit(&w, user, &mut rng, &rec).await;
            }
            Scenario::Browse | Scenario::Mixed => {
                scenarios::browse(&w, &mut rng, &rec, Instant::now()).await;
            }
            Scenario::Product => {
                scenarios::product_read(&w, &mut rng, &rec, Instant::now()).await;
            }
        }
    }
}

/// Shoppers free to take an open-loop visit.
struct Pool {
    /// Gives a shopper back.
    tx: mpsc::Sender<usize>,
    /// Takes a free shopper (waits when none is free).
    rx: Mutex<mpsc::Receiver<usize>>,
}

/// One open-loop arrival scheduled for `intended`.
async fn arrival(
    w: Arc<World>,
    spec: LoadSpec,
    rec: Arc<Recorder>,
    pool: Arc<Pool>,
    seed: u64,
    intended: Instant,
) {
    let mut rng = Rng::new(seed);
    let shopper = match spec.scenario {
        Scenario::Checkout => true,
        Scenario::Mixed => rng.chance(spec.checkout_share),
        Scenario::Browse | Scenario::Product => false,
    };
    if !shopper {
        if spec.scenario == Scenario::Product {
            scenarios::product_read(&w, &mut rng, &rec, intended).await;
        } else {
            scenarios::browse(&w, &mut rng, &rec, intended).await;
        }
        return;
    }
    let user = { pool.rx.lock().await.recv().await };
    let Some(user) = user else { return };
    let status = scenarios::visit(&w, user, &mut rng, &rec).await;
    rec.record(Op::Visit, intended, status);
    let _ = pool.tx.send(user).await;
}

/// Schedules arrivals at `rate` per second until the window ends; waits for them.
async fn open_loop(w: Arc<World>, spec: LoadSpec, rec: Arc<Recorder>, rate: f64) {
    let window = rec.window();
    let (tx, rx) = mpsc::channel(w.users.len().max(1));
    for u in 0..w.users.len() {
        let _ = tx.send(u).await;
    }
    let pool = Arc::new(Pool {
        tx,
        rx: Mutex::new(rx),
    });
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut i: u32 = 0;
    loop {
        let intended = window.t0 + gap * i;
        if intended >= window.until {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let (w, spec, rec, pool) = (w.clone(), spec.clone(), rec.clone(), pool.clone());
                tokio::spawn(async move {
                    arrival(w, spec, rec, pool, u64::from(i) + 1, intended).await;
                    drop(permit);
                });
            }
            Err(_) => rec.dropped(),
        }
        i = i.saturating_add(1);
    }
    // Wait (bounded) for the arrivals still in flight.
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        slots.acquire_many(MAX_IN_FLIGHT as u32),
    )
    .await;
}

/// Runs `spec` against `w`; the verification is left to the caller.
pub async fn run(
    w: Arc<World>,
    spec: &LoadSpec,
    observe: &Observe,
) -> anyhow::Result<(LoadResult, Arc<Recorder>)> {
    if spec.scenario.needs_users() && w.users.is_empty() {
        anyhow::bail!(
            "the {} scenario needs registered shoppers",
            spec.scenario.name()
        );
    }
    let window = Window::starting_now(spec.warmup, spec.duration);
    let rec = Arc::new(Recorder::new(window, spec.scenario.primary()));
    let stop = Arc::new(AtomicBool::new(false));
    if spec.progress {
        spawn_progress(spec.label.clone(), rec.clone(), stop.clone());
    }
    let edges = {
        let (w, observe) = (w.clone(), observe.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(window.from.into()).await;
            let start = marks(&w, &observe).await;
            tokio::time::sleep_until(window.until.into()).await;
            let end = marks(&w, &observe).await;
            (start, end)
        })
    };
    let driver = match spec.rate {
        Some(rate) => tokio::spawn(open_loop(w.clone(), spec.clone(), rec.clone(), rate)),
        None => {
            let users = if spec.scenario.needs_users() {
                spec.users.min(w.users.len())
            } else {
                spec.users
            };
            let tasks: Vec<_> = (0..users)
                .map(|u| {
                    tokio::spawn(closed_user(
                        w.clone(),
                        spec.clone(),
                        rec.clone(),
                        u,
                        window.until,
                    ))
                })
                .collect();
            tokio::spawn(async move {
                for t in tasks {
                    let _ = t.await;
                }
            })
        }
    };
    driver.await?;
    let (start, end) = edges.await?;
    stop.store(true, Ordering::Relaxed);
    let summary = rec.summary();
    let secs = window.measured_secs();
    let orders = rec.ok_of(Op::Checkout);
    let node = node_cost(&start, &end, observe, orders, summary.ok, secs);
    let loadgen_cores = match (start.self_cpu, end.self_cpu) {
        (Some(a), Some(b)) => Some(a.cores_until(&b)),
        _ => None,
    };
    let result = LoadResult {
        label: spec.label.clone(),
        scenario: spec.scenario,
        mode: if spec.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        users: spec.users,
        offered_rate: spec.rate,
        warmup_s: spec.warmup.as_secs_f64(),
        measured_s: secs,
        checkouts_per_s: orders as f64 / secs,
        summary,
        node,
        loadgen_cores,
        verification: None,
    };
    Ok((result, rec))
}
