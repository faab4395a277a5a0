//! Command-line options.

use crate::bare_axum::Placement;
use crate::memory::Phase;
use crate::scenarios::Scenario;
use crate::target::TargetArgs;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Benchmarks Agora: load scenarios against a node, ceilings measured in the same run
/// (redb commits, bare axum, ractor), memory per entity, and a CI smoke.
#[derive(Debug, Parser)]
#[command(about, version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run one scenario against a target; print results, write JSON and an SVG chart.
    Run(RunArgs),
    /// The full comparison: rounds of Agora figures interleaved with their ceilings (fresh
    /// node per round), ratios as median and spread, then the memory scenario.
    Report(ReportArgs),
    /// Only the ceilings: redb commits, bare axum product reads, ractor call.
    Ceilings(CeilingArgs),
    /// Only the memory scenario (in-process runtime): bytes per active entity, N entities.
    Memory(MemoryArgs),
    /// Product reads on a self-started three-node cluster: local versus cross-node latency.
    CrossNode(CrossNodeArgs),
    /// The replication spike: openraft shard groups on three in-process nodes sharing each
    /// node's redb file and writer; factor 1 and 3 against the writer alone.
    Replication(ReplicationArgs),
    /// Failover time on a self-started three-node cluster: kill -9 a node, time until every
    /// product answers again through a survivor, restart it, repeat.
    Failover(FailoverArgs),
    /// A rolling restart under load on a self-started three-node cluster: each node in turn
    /// stopped with SIGTERM and started again while shoppers check out; 503s, the longest a
    /// product was unreadable, and acknowledged orders lost.
    Rolling(RollingArgs),
    /// Rebuild throughput on a self-started three-node cluster: node 3's data dir is
    /// deleted, it starts empty, time until it is ready again, against the disk's ceiling.
    Rebuild(RebuildArgs),
    /// A seconds-long run of every scenario, ceiling and the memory scenario, for CI:
    /// exits non-zero only on correctness failures.
    Smoke(SmokeArgs),
    /// One memory phase, in a child process (used by `memory`, `report` and `smoke`).
    #[command(hide = true)]
    MemoryPhase(MemoryPhaseArgs),
    /// The bare axum ceiling as a child process (used by `report`, `ceilings`, `smoke`).
    #[command(hide = true)]
    BareAxumServer(BareAxumServerArgs),
}

/// `bare-axum-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct BareAxumServerArgs {
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The product JSON to answer with.
    #[arg(long)]
    pub body_file: PathBuf,
}

/// Options of the load generator.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Virtual users (shoppers; browse: concurrent connections).
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Products in the bench catalog (created before the timed part).
    #[arg(long, default_value_t = 24)]
    pub products: usize,
    /// Share of shopper visits in the mixed scenario.
    #[arg(long, default_value_t = 0.1)]
    pub checkout_share: f64,
    /// Seconds to wait after the run for acknowledged orders to reach CONFIRMED.
    #[arg(long, default_value_t = 6.0)]
    pub confirm_wait: f64,
}

/// `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Also fail on the cart race (a checkout answered 422 empty-cart right after its
    /// add-to-cart was answered 200), which is otherwise reported as a warning.
    #[arg(long)]
    pub strict: bool,
    /// The scenario.
    #[arg(long, value_enum, default_value = "checkout")]
    pub scenario: Scenario,
    /// Offered rate (arrivals per second): open loop, for latency. Without it: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Load options.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Target options.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output dir for the JSON result and the SVG chart.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// `report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Where bare axum runs: a child process (default, laid out like the node) or in-process.
    #[arg(long, value_enum, default_value = "process")]
    pub bare_axum: Placement,
    /// Also fail on the cart race (a checkout answered 422 empty-cart right after its
    /// add-to-cart was answered 200), which is otherwise reported as a warning.
    #[arg(long)]
    pub strict: bool,
    /// Rounds (each: fresh node, every variant once).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Virtual users / connections of the closed-loop runs.
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Measured seconds of each load variant.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Warm-up seconds of each load variant.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Offered checkout rate of the loaded open-loop run (default: half the round's
    /// closed-loop rate).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Offered checkout rate of the light open-loop run (default: a tenth of the round's
    /// closed-loop rate).
    #[arg(long)]
    pub light_rate: Option<f64>,
    /// Seconds of each redb ceiling.
    #[arg(long, default_value_t = 1.5)]
    pub redb_secs: f64,
    /// Products in the bench catalog.
    #[arg(long, default_value_t = 24)]
    pub products: usize,
    /// Seconds to wait after the closed-loop checkouts for orders to reach CONFIRMED
    /// (the simulated gateway loses 2% of answers and retries them after 5 s).
    #[arg(long, default_value_t = 1.5)]
    pub confirm_wait: f64,
    /// Memory scenario options (`--entities 0` skips it).
    #[command(flatten)]
    pub memory: MemoryKnobs,
    /// The replicated cluster's figures (all three at 0 skip them).
    #[command(flatten)]
    pub cluster: ClusterKnobs,
    /// Target options (self-started nodes only).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output dir.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// The cluster part of `report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterKnobs {
    /// Rounds of a fresh three-node cluster at factor 1 and at factor 3 (0: none).
    #[arg(long, default_value_t = 3)]
    pub cluster_rounds: usize,
    /// Failover kills at factor 3 (0: none).
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Products whose reads say that every shard serves again after a kill.
    #[arg(long, default_value_t = 128)]
    pub failover_products: usize,
    /// Shoppers checking out through a rolling restart of the three nodes (0: none).
    #[arg(long, default_value_t = 16)]
    pub rolling_shoppers: usize,
    /// Products created before the rebuilt node's disk is lost (0: no rebuild).
    #[arg(long, default_value_t = 20_000)]
    pub rebuild_products: usize,
    /// Least description length of each rebuilt product, bytes (at most the API's 4,000).
    #[arg(long, default_value_t = 2_000)]
    pub rebuild_description_bytes: usize,
}

/// `ceilings`.
#[derive(Debug, Clone, clap::Args)]
pub struct CeilingArgs {
    /// Where bare axum runs: a child process (default, laid out like the node) or in-process.
    #[arg(long, value_enum, default_value = "process")]
    pub bare_axum: Placement,
    /// Seconds of each ceiling.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Connections of the bare axum run, and writers of the grouped redb run.
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Where the redb files go.
    #[arg(long)]
    pub tmp_dir: Option<PathBuf>,
    /// Output dir.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// Knobs of the memory scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryKnobs {
    /// Distinct entities (carts) touched with passivation on.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: u64,
    /// Entities kept active to measure bytes per active entity.
    #[arg(long, default_value_t = 100_000)]
    pub density_entities: u64,
    /// Passivation of the N-entity phase, ms.
    #[arg(long, default_value_t = 2_000)]
    pub passivate_after_ms: u64,
}

/// `memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// The knobs.
    #[command(flatten)]
    pub knobs: MemoryKnobs,
    /// Where the stores go.
    #[arg(long)]
    pub tmp_dir: Option<PathBuf>,
    /// Output dir.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// `smoke`.
#[derive(Debug, Clone, clap::Args)]
pub struct SmokeArgs {
    /// Where bare axum runs: a child process (default, laid out like the node) or in-process.
    #[arg(long, value_enum, default_value = "process")]
    pub bare_axum: Placement,
    /// Also fail on the cart race (a checkout answered 422 empty-cart right after its
    /// add-to-cart was answered 200), which is otherwise reported as a warning.
    #[arg(long)]
    pub strict: bool,
    /// Seconds of each load scenario.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Target options (self-started by default).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output dir.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// `cross-node`.
#[derive(Debug, Clone, clap::Args)]
pub struct CrossNodeArgs {
    /// Offered rate, requests per second (open loop).
    #[arg(long, default_value_t = 300.0)]
    pub rate: f64,
    /// Rounds (each: one local and one remote window, order alternating).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Warm-up seconds of each window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Measured seconds of each window.
    #[arg(long, default_value_t = 3.0)]
    pub window: f64,
    /// Products created (spread over the shards, so over the nodes).
    #[arg(long, default_value_t = 48)]
    pub products: usize,
    /// Target options (the binary, the temp dir; the cluster is always self-started).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output dir.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// `memory-phase`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryPhaseArgs {
    /// The phase.
    #[arg(value_enum)]
    pub phase: Phase,
    /// Entities.
    #[arg(long)]
    pub entities: u64,
    /// Passivation, ms (scale phase).
    #[arg(long, default_value_t = 2_000)]
    pub passivate_after_ms: u64,
    /// Where the store goes.
    #[arg(long)]
    pub tmp_dir: Option<PathBuf>,
    /// Where the JSON result goes.
    #[arg(long)]
    pub json: PathBuf,
}

/// `replication`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicationArgs {
    /// Shard groups.
    #[arg(long, default_value_t = 16)]
    pub groups: u32,
    /// Closed-loop writers.
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Bytes of the row each write carries.
    #[arg(long, default_value_t = 400)]
    pub entry_bytes: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Rounds of the three runs, interleaved.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Where the runs' redb files go (a fresh directory inside it per run).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// `rebuild`.
#[derive(Debug, Clone, clap::Args)]
pub struct RebuildArgs {
    /// Target options (the binary, the temp dir, the replication factor; always a
    /// self-started three-node cluster).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Products created before node 3's disk is lost (the data it rebuilds).
    #[arg(long, default_value_t = 2_000)]
    pub products: usize,
    /// Least description length of each product, bytes (at most the API's 4,000).
    #[arg(long, default_value_t = 2_000)]
    pub description_bytes: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// `rolling`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollingArgs {
    /// Target options (the binary, the temp dir, the replication factor; always a
    /// self-started three-node cluster).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Shoppers checking out (closed loop) while the nodes restart.
    #[arg(long, default_value_t = 16)]
    pub shoppers: usize,
    /// Products (the prober reads each in turn: some land on every shard).
    #[arg(long, default_value_t = 64)]
    pub products: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// `failover`.
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    /// Target options (the binary, the temp dir, the replication factor; always a
    /// self-started three-node cluster).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Kills (each of node 2 and node 3 in turn).
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Products whose reads say that every shard serves (128 leave a shard of 16 without
    /// one less than once in 200 runs).
    #[arg(long, default_value_t = 128)]
    pub products: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}
