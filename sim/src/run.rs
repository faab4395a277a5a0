//! One simulation: build the cluster on turmoil from a seed, run load with faults, heal, and
//! check. Same seed, same run: the trace hash covers the fault log, the clients' history
//! with virtual timestamps, and the final bytes of every disk.

use crate::check::{self, Violation};
use crate::disk::Death;
use crate::faults::{self, Fault, Profile, Scheduled};
use crate::host::{self, NodeSlot};
use crate::net::node_host;
use crate::seed::derive;
use crate::workload::{self, Chore, History, LoadSwitch, Op};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

/// What to simulate.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// The seed.
    pub seed: u64,
    /// Which faults.
    pub profile: Profile,
    /// Nodes in the cluster.
    pub nodes: u64,
    /// Simulated shoppers.
    pub shoppers: usize,
    /// Virtual seconds of load (with faults).
    pub load_secs: u64,
    /// Virtual seconds healing may take at most.
    pub heal_secs: u64,
    /// Faults to leave out (indices into the plan; the shrinker sets them).
    pub skip_faults: BTreeSet<usize>,
    /// On how many nodes each shard's data lives (1: shards move by handoff).
    pub replication_factor: usize,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The configuration.
    pub config: RunConfig,
    /// Hash of the whole trace.
    pub trace_hash: String,
    /// Broken promises (empty: the run passed).
    pub violations: Vec<Violation>,
    /// The fault plan.
    pub plan: Vec<Scheduled>,
    /// What the harness did, in order (virtual ms, event).
    pub log: Vec<(u64, String)>,
    /// Client operations.
    pub history: Vec<Op>,
    /// Orders by final status.
    pub orders: BTreeMap<String, usize>,
    /// Operations by kind and outcome.
    pub ops: BTreeMap<String, usize>,
    /// Virtual seconds simulated.
    pub sim_secs: f64,
    /// Entities on the disks at the end.
    pub entities: usize,
    /// What the payment gateway was made to do, by kind, and the notifications the services
    /// received, by channel (`notify:email`, …): the effect ledger.
    pub effects: BTreeMap<String, usize>,
    /// How many times a node said it served a shard (the one-owner or one-leader checker's
    /// events: zero would mean that checker saw nothing).
    pub served_events: u64,
}

/// 2026-01-01T00:00:00Z: the simulated epoch (never the real time).
const EPOCH_SECS: u64 = 1_767_225_600;
/// One step of virtual time. Each step polls every host's runtime and every link, which
/// was half of a run's wall time at 1 ms; at 2 ms a run goes about 1.3 times as fast and
/// every planted bug is still found within its budget (session 26). Latencies and timers
/// round up to a step.
const TICK: Duration = Duration::from_millis(2);
/// A healthy link's shortest message latency.
const MIN_LATENCY: Duration = Duration::from_micros(200);
/// A healthy link's longest message latency.
const MAX_LATENCY: Duration = Duration::from_millis(5);

/// The environment's faults in force that shape links (`Profile::Env`): what each link's
/// turmoil state must be follows from them, so a partition's repair does not release a
/// paused node, nor a resume repair a partition.
#[derive(Debug, Default)]
struct LinkFaults {
    /// Node pairs (smaller id first) cut both ways.
    cut: BTreeSet<(u64, u64)>,
    /// Paused nodes: their links hold what is sent either way.
    paused: BTreeSet<u64>,
    /// Nodes every client is cut off from.
    clients_cut: BTreeSet<u64>,
    /// Slowed nodes and by how much.
    slow: BTreeMap<u64, u32>,
}

impl LinkFaults {
    fn is_cut(&self, a: u64, b: u64) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }
}

struct Harness<'a> {
    sim: turmoil::Sim<'a>,
    slots: Vec<NodeSlot>,
    down: BTreeMap<u64, Death>,
    log: Vec<(u64, String)>,
    chores: workload::ChoreQueue,
    minted: workload::Minted,
    /// Nodes whose hosts exist: the founders from the start, a joiner once started.
    hosts: BTreeSet<u64>,
    /// The first cluster file's nodes, the seed and the replication factor (to start a
    /// joiner).
    founders: Vec<u64>,
    seed: u64,
    replication_factor: usize,
    /// The clients' hosts (shoppers, the admin, the operator).
    clients: Vec<String>,
    /// The environment's faults in force on links.
    links: LinkFaults,
}

impl Harness<'_> {
    fn now_ms(&self) -> u64 {
        self.sim.elapsed().as_millis() as u64
    }

    fn note(&mut self, what: String) {
        let t = self.now_ms();
        tracing::debug!(at_ms = t, event = %what, "harness");
        self.log.push((t, what));
    }

    fn slot(&self, id: u64) -> Option<&NodeSlot> {
        self.slots.iter().find(|s| s.id == id)
    }

    fn kill(&mut self, id: u64, death: Death) {
        if self.down.contains_key(&id) || !self.hosts.contains(&id) {
            return;
        }
        if let Some(slot) = self.slot(id) {
            slot.disk.disarm();
            slot.disk.freeze();
        }
        self.sim.crash(node_host(id));
        self.down.insert(id, death);
        self.note(format!("{death:?} node {id}"));
    }

    fn restart(&mut self, id: u64) {
        let Some(death) = self.down.remove(&id) else {
            return;
        };
        let dropped = self.slot(id).is_some_and(|s| s.disk.holds_dropped());
        if let Some(slot) = self.slot(id) {
            slot.disk.recover(death);
        }
        if dropped {
            self.note(format!(
                "node {id}'s page cache loses what failed syncs dropped"
            ));
        }
        self.sim.bounce(node_host(id));
        self.note(format!("restart node {id}"));
    }

    /// Starts each node whose join token the operator minted, joining with it.
    fn start_joiners(&mut self) {
        let minted: Vec<(u64, String)> = self.minted.borrow_mut().drain(..).collect();
        for (id, token) in minted {
            let Some(slot) = self.slot(id).cloned() else {
                continue;
            };
            if !self.hosts.insert(id) {
                continue;
            }
            slot.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id);
            let (seed, founders, factor) =
                (self.seed, self.founders.clone(), self.replication_factor);
            self.sim.host(node_host(id), move || {
                host::run_node(
                    seed,
                    slot.clone(),
                    founders.clone(),
                    factor,
                    Some(token.clone()),
                )
            });
            self.note(format!("node {id} starts and joins"));
        }
    }

    /// The nodes that joined (started after the founders).
    fn joined(&self) -> BTreeSet<u64> {
        let founders: BTreeSet<u64> = self.founders.iter().copied().collect();
        self.hosts.difference(&founders).copied().collect()
    }

    /// Whether a fault names a node whose host does not exist yet (a joiner not started).
    fn names_a_missing_host(&self, fault: &Fault) -> bool {
        let named: Vec<u64> = match *fault {
            Fault::Partition(a, b)
            | Fault::PartitionOneWay(a, b)
            | Fault::Repair(a, b)
            | Fault::Flaky(a, b, _) => vec![a, b],
            Fault::Kill(n)
            | Fault::PowerLoss(n)
            | Fault::Replace(n)
            | Fault::CrashPoint(n, ..)
            | Fault::Restart(n)
            | Fault::SlowNode(n, _)
            | Fault::Pause(n, _)
            | Fault::Resume(n)
            | Fault::ClientCut(n, _) => vec![n],
            _ => Vec::new(),
        };
        named.iter().any(|n| !self.hosts.contains(n))
    }

    fn apply(&mut self, fault: &Fault) {
        if self.names_a_missing_host(fault) {
            self.note(format!("{fault:?} skipped: the node has not started"));
            return;
        }
        match *fault {
            Fault::Partition(a, b) => {
                self.sim.partition(node_host(a), node_host(b));
                self.links.cut.insert((a.min(b), a.max(b)));
            }
            Fault::PartitionOneWay(a, b) => self.sim.partition_oneway(node_host(a), node_host(b)),
            Fault::Repair(a, b) => {
                self.sim.repair(node_host(a), node_host(b));
                self.links.cut.remove(&(a.min(b), a.max(b)));
                // A paused end still holds what is sent on the link.
                if self.links.paused.contains(&a) || self.links.paused.contains(&b) {
                    self.sim.hold(node_host(a), node_host(b));
                }
            }
            Fault::Flaky(a, b, per_mille) => self.sim.set_link_fail_rate(
                node_host(a),
                node_host(b),
                f64::from(per_mille) / 1000.0,
            ),
            Fault::Latency(ms) => self.sim.set_max_message_latency(Duration::from_millis(ms)),
            Fault::Kill(id) => self.kill(id, Death::Kill),
            Fault::PowerLoss(id) => self.kill(id, Death::PowerLoss),
            Fault::Replace(id) => {
                self.kill(id, Death::Kill);
                if let Some(slot) = self.slot(id) {
                    slot.disk.destroy();
                }
                self.note(format!("disk of node {id} replaced by an empty one"));
            }
            Fault::CrashPoint(id, ops, death) => {
                if let Some(slot) = self.slot(id).filter(|_| !self.down.contains_key(&id)) {
                    slot.disk.arm_crash(ops, death);
                }
            }
            Fault::Restart(id) => self.restart(id),
            Fault::Skew(id, ms) => {
                if let Some(s) = self.slot(id) {
                    s.skew_ms.store(ms, Ordering::Relaxed);
                }
            }
            Fault::DiskErrors(id, eio, enospc) => self.disk_faults(id, |f| {
                f.eio = f64::from(eio) / 1000.0;
                f.enospc = f64::from(enospc) / 1000.0;
            }),
            Fault::SyncDrops(id, per_mille) => self.disk_faults(id, |f| {
                f.sync_drops = per_mille > 0;
                f.sync_eio = f64::from(per_mille) / 1000.0;
            }),
            Fault::DiskFull(id, on) => self.disk_faults(id, |f| f.full = on),
            Fault::ReadErrors(id, per_mille) => {
                self.disk_faults(id, |f| f.read_eio = f64::from(per_mille) / 1000.0)
            }
            Fault::Move(shard, to) => self.chores.borrow_mut().push_back(Chore::Move(shard, to)),
            Fault::Join(id) => self.chores.borrow_mut().push_back(Chore::MintJoinToken(id)),
            Fault::Remove(id) => self.chores.borrow_mut().push_back(Chore::Remove(id)),
            Fault::DiskSlow(id, lo, hi) => {
                if let Some(s) = self.slot(id) {
                    *s.disk_latency_us.lock().unwrap_or_else(|p| p.into_inner()) = (lo, hi);
                }
            }
            Fault::SlowNode(id, factor) => self.slow(id, factor),
            Fault::Pause(id, ms) => self.pause(id, ms),
            Fault::Resume(id) => self.resume(id),
            Fault::Duplicates(id, per_mille) => {
                if let Some(s) = self.slot(id) {
                    s.duplication.per_mille.store(per_mille, Ordering::Relaxed);
                }
            }
            Fault::ClientCut(id, cut) => self.cut_clients(id, cut),
        }
        if !matches!(
            fault,
            Fault::Kill(_) | Fault::PowerLoss(_) | Fault::Replace(_) | Fault::Restart(_)
        ) {
            self.note(format!("{fault:?}"));
        }
    }

    /// The other hosts node `id` has links to: the other nodes that exist, and the clients.
    fn neighbours(&self, id: u64) -> (Vec<u64>, Vec<String>) {
        let nodes = self.hosts.iter().copied().filter(|n| *n != id).collect();
        (nodes, self.clients.clone())
    }

    /// Slows node `id`'s links and disk by `factor` (1: back to healthy). A link between two
    /// slowed nodes takes the larger factor.
    fn slow(&mut self, id: u64, factor: u32) {
        if factor > 1 {
            self.links.slow.insert(id, factor);
        } else {
            self.links.slow.remove(&id);
        }
        if let Some(s) = self.slot(id) {
            s.slow_factor.store(factor.max(1), Ordering::Relaxed);
        }
        let (nodes, clients) = self.neighbours(id);
        let factor_of = |n: &u64| self.links.slow.get(n).copied().unwrap_or(1);
        let by_node: Vec<(String, u32)> = nodes
            .iter()
            .map(|n| (node_host(*n), factor.max(factor_of(n))))
            .chain(clients.into_iter().map(|c| (c, factor)))
            .collect();
        for (other, f) in by_node {
            let f = f.max(1);
            self.sim
                .set_link_latency(node_host(id), other.as_str(), MIN_LATENCY * f);
            self.sim
                .set_link_max_message_latency(node_host(id), other.as_str(), MAX_LATENCY * f);
        }
    }

    /// Pauses node `id`'s process for `ms`: each of its links that is not cut holds what is
    /// sent on it either way, and its disk's commits wait until the pause ends.
    fn pause(&mut self, id: u64, ms: u64) {
        if !self.links.paused.insert(id) {
            return;
        }
        let until_ms = self.now_ms() + ms;
        if let Some(s) = self.slot(id) {
            s.paused_until_ms.store(until_ms, Ordering::Relaxed);
        }
        let (nodes, clients) = self.neighbours(id);
        for n in nodes {
            if !self.links.is_cut(id, n) && !self.links.paused.contains(&n) {
                self.sim.hold(node_host(id), node_host(n));
            }
        }
        if !self.links.clients_cut.contains(&id) {
            for c in clients {
                self.sim.hold(node_host(id), c.as_str());
            }
        }
    }

    /// Ends node `id`'s pause: what its links held is delivered, except on links still cut
    /// or held by a paused peer.
    fn resume(&mut self, id: u64) {
        if !self.links.paused.remove(&id) {
            return;
        }
        if let Some(s) = self.slot(id) {
            s.paused_until_ms.store(0, Ordering::Relaxed);
        }
        let (nodes, clients) = self.neighbours(id);
        for n in nodes {
            if !self.links.is_cut(id, n) && !self.links.paused.contains(&n) {
                self.sim.release(node_host(id), node_host(n));
            }
        }
        if !self.links.clients_cut.contains(&id) {
            for c in clients {
                self.sim.release(node_host(id), c.as_str());
            }
        }
    }

    /// Cuts every client off from node `id` (`cut`), or reconnects them (held again while
    /// the node is paused).
    fn cut_clients(&mut self, id: u64, cut: bool) {
        let changed = if cut {
            self.links.clients_cut.insert(id)
        } else {
            self.links.clients_cut.remove(&id)
        };
        if !changed {
            return;
        }
        for c in self.clients.clone() {
            if cut {
                self.sim.partition(node_host(id), c.as_str());
            } else {
                self.sim.repair(node_host(id), c.as_str());
                if self.links.paused.contains(&id) {
                    self.sim.hold(node_host(id), c.as_str());
                }
            }
        }
    }

    /// Ends the environment's faults: pauses, clients cut off, slow nodes, duplicates.
    fn heal_environment(&mut self) {
        for id in self.links.paused.clone() {
            self.resume(id);
        }
        for id in self.links.clients_cut.clone() {
            self.cut_clients(id, false);
        }
        for id in self.links.slow.keys().copied().collect::<Vec<_>>() {
            self.slow(id, 1);
        }
        let mut sent_twice = Vec::new();
        for s in &self.slots {
            s.duplication.per_mille.store(0, Ordering::Relaxed);
            let calls = s.duplication.sent_twice.load(Ordering::Relaxed);
            if calls > 0 {
                sent_twice.push(format!(
                    "node {}'s transport sent {calls} calls twice",
                    s.id
                ));
            }
        }
        for what in sent_twice {
            self.note(what);
        }
    }

    /// Changes the failure rates and modes of node `id`'s disk.
    fn disk_faults(&self, id: u64, change: impl FnOnce(&mut crate::disk::DiskFaults)) {
        if let Some(s) = self.slot(id) {
            s.disk.update_faults(change);
        }
    }

    /// A node whose software stopped by itself (fail-stop after a disk error) is dead: its
    /// disk keeps its page cache, and it restarts a moment later. A node whose disk reached
    /// an armed crash point dies as that crash point says.
    fn reap(&mut self, restarts: &mut Vec<(u64, u64)>) {
        for id in self.hosts.iter().copied().collect::<Vec<_>>() {
            if self.down.contains_key(&id) {
                continue;
            }
            let crashed = self.slot(id).and_then(|s| s.disk.crashed());
            if crashed.is_some() || !self.sim.is_host_running(node_host(id)) {
                if let Some(death) = crashed {
                    self.note(format!("node {id} reached its crash point"));
                    self.kill(id, death);
                } else {
                    self.note(format!(
                        "node {id} stopped itself (fail-stop after a store error)"
                    ));
                    self.kill(id, Death::Kill);
                }
                restarts.push((self.now_ms() + 2_000, id));
            }
        }
    }

    fn heal(&mut self) {
        // First, so that repairing the links below finds no paused node's held messages.
        self.heal_environment();
        let ids: Vec<u64> = self.hosts.iter().copied().collect();
        for a in &ids {
            for b in &ids {
                if a < b {
                    self.sim.repair(node_host(*a), node_host(*b));
                    self.sim
                        .set_link_fail_rate(node_host(*a), node_host(*b), 0.0);
                }
            }
        }
        self.sim.set_max_message_latency(Duration::from_millis(5));
        for s in &self.slots {
            s.disk.disarm();
            s.skew_ms.store(0, Ordering::Relaxed);
            s.disk.set_faults(Default::default());
            *s.disk_latency_us.lock().unwrap_or_else(|p| p.into_inner()) = host::DISK_LATENCY_US;
        }
        for id in self.down.keys().copied().collect::<Vec<_>>() {
            self.restart(id);
        }
        self.note("healing: faults stop, dead nodes restart, no new orders".into());
    }

    /// The disks of the nodes that exist (a joiner that never started has none).
    fn disks(&self) -> Vec<(u64, crate::disk::SimDisk)> {
        self.slots
            .iter()
            .filter(|s| self.hosts.contains(&s.id))
            .map(|s| (s.id, s.disk.clone()))
            .collect()
    }
}

/// Panics seen during the run (an actor's panic is caught by its supervisor, but it is a
/// broken promise all the same: assertions of invariants end up here).
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn record_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at_ms = turmoil::sim_elapsed().map_or(0, |d| d.as_millis());
        let msg = format!("at {at_ms} ms: {info}");
        PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
    }));
}

/// Runs one simulation (one per process: the panic hook and the seeded OS shims are
/// process-wide).
pub fn run(config: RunConfig) -> RunReport {
    record_panics();
    agora_actors::buggify::enable(derive(config.seed, "buggify"));
    let seed = config.seed;
    let replicated = config.replication_factor > 1;
    let ids: Vec<u64> = (1..=config.nodes).collect();
    let load_ms = config.load_secs * 1_000;
    let plan: Vec<Scheduled> = faults::plan(
        seed,
        config.profile,
        &ids,
        (3_000, load_ms),
        config.replication_factor,
    )
    .into_iter()
    .enumerate()
    .filter(|(i, _)| !config.skip_faults.contains(i))
    .map(|(_, s)| s)
    .collect();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(
            config.load_secs + config.heal_secs + 120,
        ))
        .tick_duration(TICK)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .rng_seed(derive(seed, "network"))
        .min_message_latency(MIN_LATENCY)
        .max_message_latency(MAX_LATENCY)
        .build();
    let shared = host::RunShared::new(seed, config.replication_factor > 1);
    shared
        .known
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(ids.iter().copied());
    // A joiner's slot is made up front; its host starts when its join token is minted.
    let joiners = plan.iter().filter_map(|s| match s.fault {
        Fault::Join(id) => Some(id),
        _ => None,
    });
    let slots: Vec<NodeSlot> = ids
        .iter()
        .copied()
        .chain(joiners)
        .map(|id| NodeSlot::new(seed, id, &shared))
        .collect();
    for slot in slots.iter().filter(|s| ids.contains(&s.id)) {
        let (slot, ids) = (slot.clone(), ids.clone());
        let factor = config.replication_factor;
        sim.host(node_host(slot.id), move || {
            host::run_node(seed, slot.clone(), ids.clone(), factor, None)
        });
    }
    let served = shared.served.clone();
    let ledger = shared.ledger.clone();
    let bookings = shared.bookings.clone();
    let notifications = shared.notifications.clone();
    let history: History = Rc::new(RefCell::new(Vec::new()));
    let load: LoadSwitch = Rc::new(Cell::new(true));
    sim.client(
        "admin",
        workload::admin(seed, ids.clone(), history.clone(), load.clone()),
    );
    for i in 0..config.shoppers {
        sim.client(
            format!("shopper-{i}"),
            workload::shopper(seed, i, ids.clone(), history.clone(), load.clone()),
        );
    }
    let mut clients: Vec<String> = vec!["admin".into()];
    clients.extend((0..config.shoppers).map(|i| format!("shopper-{i}")));
    clients.push("operator".into());
    let chores: workload::ChoreQueue = Rc::default();
    let minted: workload::Minted = Rc::default();
    sim.client(
        "operator",
        workload::operator(
            seed,
            ids.clone(),
            history.clone(),
            (chores.clone(), minted.clone()),
            load.clone(),
        ),
    );
    let mut h = Harness {
        sim,
        slots,
        down: BTreeMap::new(),
        log: Vec::new(),
        chores,
        minted,
        hosts: ids.iter().copied().collect(),
        founders: ids.clone(),
        seed,
        replication_factor: config.replication_factor,
        clients,
        links: LinkFaults::default(),
    };
    let mut next = 0;
    let mut restarts: Vec<(u64, u64)> = Vec::new();
    let heal_deadline = load_ms + config.heal_secs * 1_000;
    let mut healing = false;
    let mut next_probe = 0;
    let mut sim_error = None;
    let progress = std::env::var("AGORA_SIM_PROGRESS").is_ok_and(|v| v == "1");
    let mut next_progress = 0;
    loop {
        let now = h.now_ms();
        if progress && now >= next_progress {
            // Virtual seconds against wall time, for a run that crawls.
            eprintln!(
                "sim progress: {:.1} virtual s, fault {next} of {}",
                now as f64 / 1e3,
                plan.len()
            );
            next_progress = now + 1_000;
        }
        while next < plan.len() && plan[next].at_ms <= now && !healing {
            let fault = plan[next].fault.clone();
            h.apply(&fault);
            next += 1;
        }
        h.start_joiners();
        h.reap(&mut restarts);
        let due: Vec<u64> = restarts
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        restarts.retain(|(at, _)| *at > now);
        for id in due {
            h.restart(id);
        }
        if !healing && now >= load_ms {
            healing = true;
            load.set(false);
            agora_actors::buggify::disable();
            h.heal();
            next_probe = now + 5_000;
        }
        if healing {
            if now >= heal_deadline {
                h.note("healing deadline reached".into());
                break;
            }
            if now >= next_probe {
                next_probe = now + 5_000;
                if let Ok(w) = check::read_world(&h.disks(), replicated) {
                    let settled = crate::membership::settled(&w, &history.borrow(), &h.joined());
                    if check::quiescent(&w) && settled {
                        h.note("quiescent: every saga over".into());
                        break;
                    }
                }
            }
        }
        if let Err(e) = h.sim.step() {
            sim_error = Some(e.to_string());
            break;
        }
    }
    let sim_secs = h.sim.elapsed().as_secs_f64();
    let disks = h.disks();
    for (_, d) in &disks {
        d.freeze();
        // What a restart would read: the writes failed syncs dropped are not on the platter.
        d.evict_dropped();
    }
    let history = history.borrow().clone();
    let mut violations: Vec<Violation> = PANICS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .take(20)
        .map(|m| Violation {
            invariant: "no-panic",
            detail: m.clone(),
        })
        .collect();
    if let Some(e) = sim_error {
        violations.push(Violation {
            invariant: "simulation",
            detail: e,
        });
    }
    // At most one leader (owner) serves a shard at any moment, from the log kept during the
    // run.
    for detail in served.violations().0 {
        violations.push(Violation {
            invariant: served.invariant(),
            detail,
        });
    }
    let (orders, entities) = match check::read_world(&disks, replicated) {
        Ok(world) => {
            violations.extend(check::check(&world, &history));
            let settled = check::quiescent(&world);
            violations.extend(crate::effects::check(&world, &ledger.effects(), settled));
            violations.extend(crate::pickups::check(&world, &bookings.all()));
            violations.extend(crate::notify_services::check(&world, &notifications));
            let initial_wallet_minor =
                agora_actors::entity::DomainConfig::default().initial_wallet_minor;
            violations.extend(crate::wallets::check(
                world.wallets(),
                &world.wallet_moves(),
                initial_wallet_minor,
                settled,
            ));
            violations.extend(crate::models::wallets(
                &world,
                &history,
                initial_wallet_minor,
                settled,
            ));
            violations.extend(crate::membership::check(&world, &history, &h.joined()));
            violations.extend(crate::membership::check_enough_remain(
                &history,
                h.founders.len() + h.joined().len(),
                h.replication_factor,
            ));
            (check::order_statuses(&world), world.entities)
        }
        Err(e) => {
            violations.push(Violation {
                invariant: "disk-readable",
                detail: e,
            });
            (BTreeMap::new(), 0)
        }
    };
    let mut ops = BTreeMap::new();
    for op in &history {
        *ops.entry(format!("{}:{:?}", op.kind, op.outcome))
            .or_insert(0) += 1;
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&serde_json::to_vec(&h.log).unwrap_or_default());
    hasher.update(&serde_json::to_vec(&history).unwrap_or_default());
    for (id, d) in &disks {
        hasher.update(&id.to_le_bytes());
        hasher.update(&d.digest().to_le_bytes());
    }
    RunReport {
        config,
        trace_hash: format!("{:016x}", hasher.digest()),
        violations,
        plan,
        log: h.log,
        history,
        orders,
        ops,
        sim_secs,
        entities,
        effects: {
            let mut effects = crate::effects::counts(&ledger.effects());
            effects.extend(notifications.counts());
            effects.insert("pickup".into(), bookings.all().len());
            effects
        },
        served_events: served.violations().1,
    }
}
