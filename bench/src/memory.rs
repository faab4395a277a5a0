//! The memory scenario, on Agora's runtime in-process. Two phases, each in its own child
//! process so that one's heap does not blur the other's figures:
//! - density: touch a sample of carts with passivation off (all stay active) and divide
//!   the growth of resident memory (and of live heap) by the active entities;
//! - scale: touch N distinct carts (default one million) with passivation on, reporting
//!   peak resident memory and touches per second;
//! - actors (the ceiling): the same growth for bare ractor actors that do nothing.

use crate::alloc_count;
use crate::inproc::{self, Harness, TouchProgress};
use crate::proc_stats;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Touches in flight at once.
const PARALLEL: usize = 256;
/// Shards of the region (the node's default).
const SHARDS: u32 = 64;

/// The density phase's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Density {
    /// Carts touched.
    pub touched: u64,
    /// Touches that failed.
    pub failed: u64,
    /// Active entities after the touches.
    pub active: u64,
    /// Resident memory before, bytes.
    pub rss_before: u64,
    /// Resident memory after, bytes.
    pub rss_after: u64,
    /// Resident bytes per active entity (includes the store's page cache for their records).
    pub rss_per_entity: f64,
    /// Live heap bytes per active entity (the same, counted by the allocator).
    pub heap_per_entity: f64,
    /// Touches per second.
    pub touches_per_s: f64,
}

/// The scale phase's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scale {
    /// Distinct carts touched.
    pub touched: u64,
    /// Touches that failed.
    pub failed: u64,
    /// Idle time before passivation, ms.
    pub passivate_after_ms: u64,
    /// Peak resident memory of the process during the phase, bytes.
    pub peak_rss: u64,
    /// Resident memory at the end, bytes.
    pub end_rss: u64,
    /// Most entities active at once (sampled each second).
    pub peak_active: u64,
    /// Active entities at the end.
    pub end_active: u64,
    /// Touches per second.
    pub touches_per_s: f64,
    /// Seconds it took.
    pub took_s: f64,
}

/// The ceiling: memory of bare ractor actors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActorDensity {
    /// Actors spawned and alive.
    pub actors: u64,
    /// Resident bytes per actor.
    pub rss_per_actor: f64,
    /// Live heap bytes per actor.
    pub heap_per_actor: f64,
}

/// All phases.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Bytes per active entity.
    pub density: Density,
    /// N entities with passivation.
    pub scale: Scale,
    /// Bytes per bare ractor actor (the ceiling of the density figure).
    pub actors: ActorDensity,
}

/// Which phase a child process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Bytes per active entity.
    Density,
    /// N entities with passivation.
    Scale,
    /// Bytes per bare ractor actor.
    Actors,
}

/// Prints a progress line every second until `stop` is set; tracks the most active.
fn spawn_progress(
    label: &'static str,
    harness_region: agora_runtime::region::Region,
    progress: Arc<TouchProgress>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut last = 0;
        let mut peak_active = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let done = progress.done.load(Ordering::Relaxed);
            let active: usize = harness_region
                .stats()
                .await
                .iter()
                .map(|(_, s)| s.active)
                .sum();
            peak_active = peak_active.max(active as u64);
            let rss = proc_stats::self_rss().unwrap_or(0);
            eprintln!(
                "[{label}] {:5.1} s  touched {done:>8}  rate {:>7}/s  active {active:>8}  rss {:>6} MiB  failed {}",
                started.elapsed().as_secs_f64(),
                done - last,
                rss >> 20,
                progress.failed.load(Ordering::Relaxed),
            );
            last = done;
        }
        peak_active
    })
}

/// The density phase: `n` carts, all kept active.
pub async fn density(tmp_root: &Path, n: u64) -> anyhow::Result<Density> {
    alloc_count::enable();
    // No passivation and no cap: every touched cart stays active.
    let h = Harness::start(tmp_root, SHARDS, Duration::from_secs(24 * 3600), 0).await?;
    // A few touches first, so the runtime's one-time allocations are in the baseline.
    let warm = Arc::new(TouchProgress::default());
    inproc::touch(&h.region, 1, 1, warm).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = proc_stats::self_rss()?;
    let heap_before = alloc_count::live_bytes();
    let progress = Arc::new(TouchProgress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = spawn_progress("density", h.region.clone(), progress.clone(), stop.clone());
    let secs = inproc::touch(&h.region, n, PARALLEL, progress.clone()).await?;
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    // Let the reply tasks finish and drop what they hold.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let active = h.active().await as u64;
    let rss_after = proc_stats::self_rss()?;
    let heap_after = alloc_count::live_bytes();
    let per = |d: f64| if active > 0 { d / active as f64 } else { 0.0 };
    Ok(Density {
        touched: progress.done.load(Ordering::Relaxed),
        failed: progress.failed.load(Ordering::Relaxed),
        active,
        rss_before,
        rss_after,
        rss_per_entity: per(rss_after as f64 - rss_before as f64),
        heap_per_entity: per((heap_after - heap_before) as f64),
        touches_per_s: n as f64 / secs.max(1e-9),
    })
}

/// The scale phase: `n` distinct carts, passivated after `passivate_after` idle.
pub async fn scale(tmp_root: &Path, n: u64, passivate_after: Duration) -> anyhow::Result<Scale> {
    // The node's default cap on active entities, as `agora` runs.
    let cap = agora_cluster_config::DEFAULT_MAX_ACTIVE_ENTITIES;
    let h = Harness::start(tmp_root, SHARDS, passivate_after, cap).await?;
    proc_stats::reset_self_peak_rss()?;
    let progress = Arc::new(TouchProgress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = spawn_progress("scale", h.region.clone(), progress.clone(), stop.clone());
    let secs = inproc::touch(&h.region, n, PARALLEL, progress.clone()).await?;
    stop.store(true, Ordering::Relaxed);
    let peak_active = ticker.await.unwrap_or(0);
    let end_active = h.active().await as u64;
    Ok(Scale {
        touched: progress.done.load(Ordering::Relaxed),
        failed: progress.failed.load(Ordering::Relaxed),
        passivate_after_ms: passivate_after.as_millis() as u64,
        peak_rss: proc_stats::self_peak_rss()?,
        end_rss: proc_stats::self_rss()?,
        peak_active: peak_active.max(end_active),
        end_active,
        touches_per_s: n as f64 / secs.max(1e-9),
        took_s: secs,
    })
}

/// The actors phase: `n` bare ractor actors, alive at once.
pub async fn actors(n: u64) -> anyhow::Result<ActorDensity> {
    alloc_count::enable();
    let first = ractor::Actor::spawn(None, crate::ceilings::Pinger, ()).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = proc_stats::self_rss()?;
    let heap_before = alloc_count::live_bytes();
    let mut alive = Vec::with_capacity(n as usize);
    for _ in 0..n {
        alive.push(ractor::Actor::spawn(None, crate::ceilings::Pinger, ()).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = proc_stats::self_rss()?;
    let heap_after = alloc_count::live_bytes();
    let per = |d: f64| if n > 0 { d / n as f64 } else { 0.0 };
    for (a, _) in alive.iter().chain(std::iter::once(&first)) {
        a.stop(None);
    }
    Ok(ActorDensity {
        actors: n,
        rss_per_actor: per(rss_after as f64 - rss_before as f64),
        heap_per_actor: per((heap_after - heap_before) as f64),
    })
}

/// Options of the whole scenario.
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// Entities of the scale phase.
    pub entities: u64,
    /// Entities of the density phase.
    pub density_entities: u64,
    /// Passivation of the scale phase.
    pub passivate_after: Duration,
    /// Where temp stores go.
    pub tmp_root: PathBuf,
}

/// Runs one phase in a child process of this same executable; reads its JSON.
fn child_phase<T: for<'de> Deserialize<'de>>(
    phase: &str,
    args: &[String],
    tmp_root: &Path,
) -> anyhow::Result<T> {
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let out = tempfile::Builder::new()
        .prefix("agora-bench-memory-")
        .suffix(".json")
        .tempfile_in(tmp_root)?;
    let status = std::process::Command::new(exe)
        .arg("memory-phase")
        .arg(phase)
        .args(args)
        .arg("--tmp-dir")
        .arg(tmp_root)
        .arg("--json")
        .arg(out.path())
        .stdin(std::process::Stdio::null())
        .status()
        .context("cannot start the memory phase process")?;
    if !status.success() {
        bail!("the memory {phase} phase failed ({status})");
    }
    let text = std::fs::read_to_string(out.path())?;
    serde_json::from_str(&text).with_context(|| format!("reading the {phase} phase's result"))
}

/// Runs every phase, each in a child process.
pub fn run(opts: &MemoryOptions) -> anyhow::Result<MemoryResult> {
    let density: Density = child_phase(
        "density",
        &["--entities".into(), opts.density_entities.to_string()],
        &opts.tmp_root,
    )?;
    let scale: Scale = child_phase(
        "scale",
        &[
            "--entities".into(),
            opts.entities.to_string(),
            "--passivate-after-ms".into(),
            opts.passivate_after.as_millis().to_string(),
        ],
        &opts.tmp_root,
    )?;
    let actors: ActorDensity = child_phase(
        "actors",
        &["--entities".into(), opts.density_entities.to_string()],
        &opts.tmp_root,
    )?;
    Ok(MemoryResult {
        density,
        scale,
        actors,
    })
}
