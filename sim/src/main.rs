//! `agora-sim`: run, sweep, replay and shrink deterministic simulations of an Agora cluster.

mod planted_suite;
mod shims;

use agora_sim::faults::Profile;
use agora_sim::run::{run, RunConfig, RunReport};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(
    name = "agora-sim",
    about = "Deterministic simulation of an Agora cluster"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed.
    Run {
        #[command(flatten)]
        sim: SimArgs,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Run the seed twice more, each in its own process, and compare trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Print one JSON line (for sweeps).
        #[arg(long)]
        json: bool,
        /// Write the artifacts (config, plan, log, history, report) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a range of seeds, a child process each, and collect the failing ones.
    Sweep {
        #[command(flatten)]
        sim: SimArgs,
        /// Seeds `A..B` (B excluded).
        #[arg(long)]
        seeds: String,
        /// Children at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Also run every seed a second time and compare trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Stop at the first failing seed (to measure seeds-to-find).
        #[arg(long)]
        first: bool,
        /// Where failing seeds' artifacts go.
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
    },
    /// Run a seed again, bit for bit, writing the full trace.
    Replay {
        #[command(flatten)]
        sim: SimArgs,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Where the artifacts go.
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
    },
    /// Sweep every planted bug of a catalogue (`sim/planted.toml`): each must be found with
    /// its expected invariant within its seed budget. Needs a build with `--features planted`.
    Planted {
        /// The catalogue.
        #[arg(long, default_value = "sim/planted.toml")]
        catalogue: PathBuf,
        /// Children at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Only the bugs with these names (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Remove faults and shoppers while the failure persists; prints the smallest replay.
    Shrink {
        #[command(flatten)]
        sim: SimArgs,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
    },
}

#[derive(Args, Clone, Debug)]
struct SimArgs {
    /// Which faults.
    #[arg(long, value_enum, default_value = "swarm")]
    profile: Profile,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Virtual seconds of load with faults.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Virtual seconds healing may take at most.
    #[arg(long, default_value_t = 90)]
    heal: u64,
    /// Simulated shoppers.
    #[arg(long, default_value_t = 6)]
    shoppers: usize,
    /// Fault indices to leave out (set by the shrinker), comma-separated.
    #[arg(long, value_delimiter = ',')]
    skip_faults: Vec<usize>,
    /// On how many nodes each shard's data lives (1: shards move by handoff).
    #[arg(long, default_value_t = 1)]
    replication_factor: usize,
    /// A bug to plant (`agora_seams::planted`; a build with `--features planted`).
    #[arg(long, value_parser = parse_bug)]
    planted: Option<agora_seams::planted::Bug>,
}

/// A planted bug by its name.
fn parse_bug(name: &str) -> Result<agora_seams::planted::Bug, String> {
    agora_seams::planted::Bug::from_name(name).ok_or_else(|| {
        let names: Vec<_> = agora_seams::planted::Bug::ALL
            .iter()
            .map(|b| b.name())
            .collect();
        format!(
            "no planted bug is called {name:?}; the bugs: {}",
            names.join(", ")
        )
    })
}

impl SimArgs {
    fn config(&self, seed: u64) -> RunConfig {
        RunConfig {
            seed,
            profile: self.profile,
            nodes: self.nodes,
            shoppers: self.shoppers,
            load_secs: self.duration,
            heal_secs: self.heal,
            skip_faults: self.skip_faults.iter().copied().collect(),
            replication_factor: self.replication_factor,
        }
    }

    /// Plants the chosen bug in this process, if any.
    fn plant(&self) -> anyhow::Result<()> {
        if let Some(bug) = self.planted {
            anyhow::ensure!(
                agora_seams::planted::plant(bug),
                "this agora-sim has no planted bugs: build it with --features planted"
            );
        }
        Ok(())
    }

    fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--profile".into(),
            format!("{:?}", self.profile).to_lowercase(),
            "--nodes".into(),
            self.nodes.to_string(),
            "--duration".into(),
            self.duration.to_string(),
            "--heal".into(),
            self.heal.to_string(),
            "--shoppers".into(),
            self.shoppers.to_string(),
            "--replication-factor".into(),
            self.replication_factor.to_string(),
        ];
        if let Some(bug) = self.planted {
            a.push("--planted".into());
            a.push(bug.name().into());
        }
        if !self.skip_faults.is_empty() {
            a.push("--skip-faults".into());
            a.push(
                self.skip_faults
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        a
    }

    fn replay_command(&self, seed: u64) -> String {
        format!(
            "agora-sim replay --seed {seed} {}",
            self.to_args().join(" ")
        )
    }
}

/// What a child prints: enough to compare and report.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Summary {
    seed: u64,
    trace_hash: String,
    violations: Vec<(String, String)>,
    sim_secs: f64,
    wall_secs: f64,
    ops: usize,
    /// Answers 5xx by the reason their problem gave (numbers masked).
    #[serde(default)]
    refused: BTreeMap<String, usize>,
    /// Answers 429 (a rate limit or a lockout refused the request).
    #[serde(default)]
    rate_limited: usize,
}

fn summary(r: &RunReport, wall_secs: f64) -> Summary {
    Summary {
        seed: r.config.seed,
        trace_hash: r.trace_hash.clone(),
        violations: r
            .violations
            .iter()
            .map(|v| (v.invariant.to_string(), v.detail.clone()))
            .collect(),
        sim_secs: r.sim_secs,
        wall_secs,
        ops: r.history.len(),
        refused: r
            .history
            .iter()
            .filter_map(|op| op.refused_why.clone())
            .fold(BTreeMap::new(), |mut counts, why| {
                *counts.entry(why).or_insert(0) += 1;
                counts
            }),
        rate_limited: r.history.iter().filter(|op| op.status == 429).count(),
    }
}

fn write_artifacts(dir: &Path, r: &RunReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let put = |name: &str, v: &dyn erased::Json| -> anyhow::Result<()> {
        std::fs::write(dir.join(name), v.json()?).with_context(|| format!("cannot write {name}"))
    };
    put("config.json", &r.config)?;
    put("plan.json", &r.plan)?;
    put("trace.json", &r.log)?;
    put("violations.json", &r.violations)?;
    put("orders.json", &r.orders)?;
    let history: String = r
        .history
        .iter()
        .filter_map(|op| serde_json::to_string(op).ok())
        .map(|l| l + "\n")
        .collect();
    std::fs::write(dir.join("history.jsonl"), history).context("cannot write history")?;
    std::fs::write(dir.join("trace_hash"), &r.trace_hash).context("cannot write trace_hash")?;
    Ok(())
}

mod erased {
    /// Anything serializable, as pretty JSON.
    pub trait Json {
        /// The JSON text.
        fn json(&self) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Result<String> {
            serde_json::to_string_pretty(self)
        }
    }
}

/// Runs `agora-sim run --json` for `seed` in a child process.
fn child(seed: u64, sim: &SimArgs) -> anyhow::Result<Summary> {
    let exe = std::env::current_exe().context("cannot find agora-sim itself")?;
    let out = Command::new(exe)
        .arg("run")
        .arg("--seed")
        .arg(seed.to_string())
        .args(sim.to_args())
        .arg("--json")
        .output()
        .context("cannot start a child simulation")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Summary>(l).ok())
    {
        Some(s) => Ok(s),
        None => Ok(Summary {
            seed,
            trace_hash: String::new(),
            violations: vec![(
                "crashed".into(),
                format!(
                    "the child exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
            )],
            sim_secs: 0.0,
            wall_secs: 0.0,
            ops: 0,
            refused: BTreeMap::new(),
            rate_limited: 0,
        }),
    }
}

fn fail_line(s: &Summary, sim: &SimArgs) -> String {
    let first = s.violations.first().map_or("?", |v| v.0.as_str());
    format!(
        "FAIL {first} seed={} replay: {}",
        s.seed,
        sim.replay_command(s.seed)
    )
}

fn parse_range(r: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = r.split_once("..").context("--seeds must look like A..B")?;
    let (a, b): (u64, u64) = (a.parse()?, b.parse()?);
    anyhow::ensure!(a < b, "--seeds A..B needs A < B");
    Ok((a, b))
}

/// How a sweep runs.
struct SweepOptions {
    jobs: usize,
    twice: bool,
    first: bool,
}

/// Runs seeds `seeds` (A..B) on `opts.jobs` children at once; their summaries by seed.
fn run_seeds(sim: &SimArgs, seeds: (u64, u64), opts: &SweepOptions) -> Vec<Summary> {
    let SweepOptions { jobs, twice, first } = *opts;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = shims::wall_secs();
    let all: Vec<u64> = (seeds.0..seeds.1).collect();
    let total = all.len();
    let queue = std::sync::Mutex::new(all.into_iter());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(seed) = next else { break };
                let mut s = match child(seed, sim) {
                    Ok(s) => s,
                    Err(e) => Summary {
                        seed,
                        trace_hash: String::new(),
                        violations: vec![("crashed".into(), e.to_string())],
                        sim_secs: 0.0,
                        wall_secs: 0.0,
                        ops: 0,
                        refused: BTreeMap::new(),
                        rate_limited: 0,
                    },
                };
                if twice && s.violations.is_empty() {
                    if let Ok(again) = child(seed, sim) {
                        if again.trace_hash != s.trace_hash {
                            s.violations.push((
                                "determinism".into(),
                                format!("trace {} then {}", s.trace_hash, again.trace_hash),
                            ));
                        }
                    }
                }
                if first && !s.violations.is_empty() {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if let Ok(mut r) = results.lock() {
                    r.push(s);
                    let done = r.len();
                    let failed = r.iter().filter(|s| !s.violations.is_empty()).count();
                    let elapsed = shims::wall_secs() - started;
                    eprint!(
                        "\rseeds {done}/{total}  failed {failed}  {:.1} seeds/min  ",
                        done as f64 * 60.0 / elapsed.max(1e-9)
                    );
                }
            });
        }
    });
    eprintln!();
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|s| s.seed);
    results
}

fn sweep(
    sim: &SimArgs,
    seeds: (u64, u64),
    opts: &SweepOptions,
    out: &Path,
) -> anyhow::Result<bool> {
    let started = shims::wall_secs();
    let jobs = opts.jobs;
    let results = run_seeds(sim, seeds, opts);
    let failing: Vec<&Summary> = results
        .iter()
        .filter(|s| !s.violations.is_empty())
        .collect();
    for s in &failing {
        println!("{}", fail_line(s, sim));
    }
    let total = results.len();
    let wall = shims::wall_secs() - started;
    let sim_secs: f64 = results.iter().map(|s| s.sim_secs).sum();
    let runs_wall: f64 = results.iter().map(|s| s.wall_secs).sum();
    println!(
        "swept {total} seeds in {wall:.1} s ({:.1} seeds/min on {jobs} jobs); {} failed; {:.1} simulated s per wall s per run",
        total as f64 * 60.0 / wall.max(1e-9),
        failing.len(),
        sim_secs / runs_wall.max(1e-9),
    );
    if !failing.is_empty() {
        std::fs::create_dir_all(out)?;
        let lines: String = failing
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default() + "\n")
            .collect();
        std::fs::write(out.join("failing-seeds.jsonl"), lines)?;
    }
    Ok(failing.is_empty())
}

fn shrink(sim: &SimArgs, seed: u64) -> anyhow::Result<()> {
    let first = child(seed, sim)?;
    let Some((invariant, _)) = first.violations.first().cloned() else {
        println!("seed {seed} passes: nothing to shrink");
        return Ok(());
    };
    let plan_len = agora_sim::faults::plan(
        seed,
        sim.profile,
        &(1..=sim.nodes).collect::<Vec<_>>(),
        (3_000, sim.duration * 1_000),
        sim.replication_factor,
    )
    .len();
    let mut best = sim.clone();
    let fails_same = |args: &SimArgs| -> bool {
        child(seed, args).is_ok_and(|s| s.violations.iter().any(|v| v.0 == invariant))
    };
    for i in 0..plan_len {
        let mut trial = best.clone();
        let mut skip: BTreeSet<usize> = trial.skip_faults.iter().copied().collect();
        skip.insert(i);
        trial.skip_faults = skip.into_iter().collect();
        eprint!("\rshrinking: fault {}/{plan_len}  ", i + 1);
        if fails_same(&trial) {
            best = trial;
        }
    }
    while best.shoppers > 1 {
        let mut trial = best.clone();
        trial.shoppers /= 2;
        if !fails_same(&trial) {
            break;
        }
        best = trial;
    }
    eprintln!();
    println!(
        "FAIL {invariant} seed={seed} shrunk to {} of {plan_len} faults and {} shoppers; replay: {}",
        plan_len - best.skip_faults.len(),
        best.shoppers,
        best.replay_command(seed)
    );
    Ok(())
}

/// Log lines stamped with the simulation's virtual time (ms since the run's start), the
/// time of the trace and of the history.
struct VirtualTime;

impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "{:>9.3}ms", t.as_secs_f64() * 1e3),
            None => write!(w, "      -  ms"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGORA_SIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(VirtualTime)
        .init();
    match cli.cmd {
        Cmd::Run {
            sim,
            seed,
            check_determinism,
            json,
            out,
        } => {
            if check_determinism {
                let a = child(seed, &sim)?;
                let b = child(seed, &sim)?;
                println!(
                    "seed {seed}: trace {} and {} ({})",
                    a.trace_hash,
                    b.trace_hash,
                    if a.trace_hash == b.trace_hash && !a.trace_hash.is_empty() {
                        "identical"
                    } else {
                        "DIFFERENT"
                    }
                );
                anyhow::ensure!(
                    a.trace_hash == b.trace_hash,
                    "seed {seed} is not deterministic"
                );
                if !a.violations.is_empty() {
                    println!("{}", fail_line(&a, &sim));
                    std::process::exit(1);
                }
                return Ok(());
            }
            sim.plant()?;
            shims::seed(seed);
            let started = shims::wall_secs();
            let report = run(sim.config(seed));
            let wall = shims::wall_secs() - started;
            let s = summary(&report, wall);
            if let Some(dir) = &out {
                write_artifacts(dir, &report)?;
            }
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "seed={seed} trace={} ops={} orders={:?} effects={:?} served={} simulated {:.1} s in {:.1} s wall ({:.2}x)",
                    s.trace_hash,
                    s.ops,
                    report.orders,
                    report.effects,
                    report.served_events,
                    s.sim_secs,
                    wall,
                    s.sim_secs / wall.max(1e-9)
                );
                if !s.refused.is_empty() {
                    println!("5xx answers by reason: {:?}", s.refused);
                }
                if s.rate_limited > 0 {
                    println!("429 answers (rate limits, lockouts): {}", s.rate_limited);
                }
                for (inv, detail) in s.violations.iter().take(10) {
                    println!("  {inv}: {detail}");
                }
                if !s.violations.is_empty() {
                    println!("{}", fail_line(&s, &sim));
                }
            }
            if !s.violations.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Sweep {
            sim,
            seeds,
            jobs,
            check_determinism,
            first,
            out,
        } => {
            let opts = SweepOptions {
                jobs,
                twice: check_determinism,
                first,
            };
            let ok = sweep(&sim, parse_range(&seeds)?, &opts, &out)?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Replay { sim, seed, out } => {
            sim.plant()?;
            shims::seed(seed);
            let report = run(sim.config(seed));
            let dir = out.join(format!("seed-{seed}"));
            write_artifacts(&dir, &report)?;
            println!(
                "seed={seed} trace={} violations={} artifacts in {}",
                report.trace_hash,
                report.violations.len(),
                dir.display()
            );
            Ok(())
        }
        Cmd::Shrink { sim, seed } => shrink(&sim, seed),
        Cmd::Planted {
            catalogue,
            jobs,
            only,
        } => {
            if !planted_suite::run(&catalogue, jobs, &only)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
