//! Writing results: the JSON file and the SVG chart in the output dir, the text printed for
//! one run, and a description of the machine (cores, CPU model, disk).

use crate::chart;
use crate::load::LoadResult;
use crate::stats::Percentiles;
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A file-name-safe UTC time stamp, `20250101T120000Z`.
pub fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// Writes `value` as pretty JSON to `<out>/<name>.json`.
pub fn write_json(out: &Path, name: &str, value: &impl Serialize) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes a text file `<out>/<file>`.
pub fn write_text(out: &Path, file: &str, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(file);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes the chart of a run to `<out>/<name>.svg`.
pub fn write_chart(out: &Path, name: &str, r: &LoadResult) -> anyhow::Result<PathBuf> {
    let primary = r.scenario.primary().name();
    let title = format!(
        "{} — {} loop, {} users{}",
        r.label,
        r.mode,
        r.users,
        r.offered_rate
            .map(|x| format!(", offered {x:.0}/s"))
            .unwrap_or_default()
    );
    write_text(
        out,
        &format!("{name}.svg"),
        &chart::svg(&title, primary, r.warmup_s, &r.summary.timeline),
    )
}

/// "p50 1.2  p90 …" of some percentiles.
pub fn pct(p: &Percentiles) -> String {
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} {}",
        p.p50, p.p90, p.p99, p.p999, p.max, p.unit
    )
}

/// Prints one run's results.
pub fn print_load(r: &LoadResult) {
    println!(
        "== {} ({} loop, {} users{}, {:.1} s measured after {:.1} s warm-up)",
        r.label,
        r.mode,
        r.users,
        r.offered_rate
            .map(|x| format!(", offered {x:.0}/s"))
            .unwrap_or_default(),
        r.measured_s,
        r.warmup_s
    );
    println!(
        "  throughput: {:.0} 2xx answers/s ({} in the window)",
        r.summary.ok_per_s, r.summary.ok
    );
    for o in &r.summary.ops {
        println!("  {:<16} {:>8.0}/s  {}", o.op, o.per_s, pct(&o.latency));
    }
    if r.summary.cart_races > 0 {
        println!(
            "  cart race: {} checkouts answered 422 empty-cart right after their add-to-cart was answered 200 (the previous order's CheckedOut reached the cart after the add)",
            r.summary.cart_races
        );
    }
    for f in &r.summary.failure_samples {
        println!("  failed: {f}");
    }
    if !r.summary.non_2xx_outside_window.is_empty() {
        println!(
            "  non-2xx outside the window (warm-up or tail): {:?}",
            r.summary.non_2xx_outside_window
        );
    }
    if r.checkouts_per_s > 0.0 {
        println!("  checkouts acknowledged: {:.0}/s", r.checkouts_per_s);
    }
    println!(
        "  non-2xx: {}{}",
        if r.summary.non_2xx.is_empty() {
            "none".to_string()
        } else {
            format!("{:?}", r.summary.non_2xx)
        },
        if r.summary.dropped_arrivals > 0 {
            format!(
                "  arrivals dropped (client cap): {}",
                r.summary.dropped_arrivals
            )
        } else {
            String::new()
        }
    );
    if let Some(n) = &r.node {
        let opt = |x: Option<f64>, p: usize| x.map_or("n/a".into(), |v| format!("{v:.p$}"));
        println!(
            "  node: {:.0} commits ({:.0}/s), {:.0} entity writes; fsyncs/order {}; writes/order {}",
            n.commits,
            n.commits_per_s,
            n.entity_writes,
            opt(n.fsyncs_per_order, 3),
            opt(n.writes_per_order, 2)
        );
        println!(
            "  node commits: mean {} ms, {} store ops each; active entities at the end {:.0}",
            opt(n.mean_commit_ms, 3),
            opt(n.mean_ops_per_commit, 1),
            n.active_entities
        );
        println!(
            "  node CPU: {} s, {} ms/order, {} µs/answer; peak RSS {}",
            opt(n.cpu_seconds, 2),
            opt(n.cpu_seconds_per_order.map(|x| x * 1e3), 3),
            opt(n.cpu_seconds_per_request.map(|x| x * 1e6), 1),
            n.peak_rss_bytes
                .map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
        );
    }
    if let Some(c) = r.loadgen_cores {
        println!("  load generator CPU: {:.2} cores", c);
    }
    if let Some(v) = &r.verification {
        println!(
            "  orders checked: {} acknowledged, {} missing, unreadable {:?}; statuses {:?}; {} with more units than their visit added",
            v.acknowledged, v.missing, v.unreadable, v.statuses, v.extra_unit_orders
        );
        if let Some(t) = &v.time_to_confirmed {
            println!("  time to CONFIRMED: {}", pct(t));
        }
    }
}

/// Where results go and how the machine looks.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// The disk holding the temp dir.
    pub disk: String,
    /// Kernel release.
    pub kernel: String,
    /// Memory, bytes.
    pub mem_total: u64,
}

/// The block device, file system and size behind `path`.
fn disk_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[0], f[1], f[2]))
        })
        .max_by_key(|(_, mnt, _)| mnt.len());
    let Some((dev, mnt, fs)) = best else {
        return "unknown".into();
    };
    let name = dev.trim_start_matches("/dev/");
    let sys = Path::new("/sys/block").join(name);
    let size = std::fs::read_to_string(sys.join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|sectors| format!(", {} GiB", (sectors * 512) >> 30))
        .unwrap_or_default();
    let driver = std::fs::read_link(sys.join("device/driver"))
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| format!(", driver {}", n.to_string_lossy()))
        })
        .unwrap_or_default();
    format!("{dev} mounted on {mnt} ({fs}{size}{driver})")
}

/// Describes this machine, with the disk behind `tmp_root`.
pub fn machine(tmp_root: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        disk: disk_of(tmp_root),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        mem_total,
    }
}
