//! Readers of Linux `/proc`: CPU seconds (utime + stime) of a process or of some of our own
//! threads, resident memory now (VmRSS) and at its peak (VmHWM), and resetting the peak.

use anyhow::Context;
use std::path::Path;

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on the architectures Linux runs
/// user space on in practice).
const USER_HZ: f64 = 100.0;

/// utime + stime in seconds from the text of a `/proc/.../stat` file.
fn cpu_from_stat(text: &str) -> anyhow::Result<f64> {
    // The command name (field 2) may hold spaces; fields after the last ')' are plain.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / USER_HZ)
}

/// CPU seconds used so far by process `pid` (all its threads).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    cpu_from_stat(&text)
}

/// CPU seconds used so far by this process.
pub fn self_cpu_seconds() -> anyhow::Result<f64> {
    cpu_from_stat(&std::fs::read_to_string("/proc/self/stat")?)
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix`.
pub fn self_threads_cpu_seconds(prefix: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let dir = entry?.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix) {
            if let Ok(text) = std::fs::read_to_string(dir.join("stat")) {
                total += cpu_from_stat(&text)?;
            }
        }
    }
    Ok(total)
}

/// A `Vm…` line of `/proc/<pid>/status` in bytes.
fn status_kb(path: &Path, field: &str) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in {}", path.display()))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("malformed {field} line"))?
        .parse()?;
    Ok(kb * 1024)
}

/// Peak resident memory of `pid` in bytes (VmHWM).
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    status_kb(Path::new(&format!("/proc/{pid}/status")), "VmHWM:")
}

/// Current resident memory of `pid` in bytes (VmRSS).
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    status_kb(Path::new(&format!("/proc/{pid}/status")), "VmRSS:")
}

/// Current resident memory of this process in bytes (VmRSS).
pub fn self_rss() -> anyhow::Result<u64> {
    status_kb(Path::new("/proc/self/status"), "VmRSS:")
}

/// Peak resident memory of this process in bytes (VmHWM).
pub fn self_peak_rss() -> anyhow::Result<u64> {
    status_kb(Path::new("/proc/self/status"), "VmHWM:")
}

/// Resets this process's peak resident memory to its current value (Linux ≥ 4.0).
pub fn reset_self_peak_rss() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("writing /proc/self/clear_refs")
}

/// A CPU-time reading of one process, to take differences over a window.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    /// CPU seconds at the mark.
    pub cpu: f64,
    /// Wall time of the mark.
    pub at: std::time::Instant,
}

impl CpuMark {
    /// Marks this process now, minus the CPU of its threads named with `exclude` (if any).
    pub fn of_self(exclude: Option<&str>) -> anyhow::Result<Self> {
        let mut cpu = self_cpu_seconds()?;
        if let Some(prefix) = exclude {
            cpu -= self_threads_cpu_seconds(prefix)?;
        }
        Ok(Self {
            cpu,
            at: std::time::Instant::now(),
        })
    }

    /// Marks process `pid` now.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        Ok(Self {
            cpu: cpu_seconds(pid)?,
            at: std::time::Instant::now(),
        })
    }

    /// CPU seconds between `self` and the later mark `end`.
    pub fn cpu_until(&self, end: &CpuMark) -> f64 {
        (end.cpu - self.cpu).max(0.0)
    }

    /// Cores busy on average between `self` and `end` (1.0 = one whole core).
    pub fn cores_until(&self, end: &CpuMark) -> f64 {
        let wall = end.at.duration_since(self.at).as_secs_f64();
        if wall > 0.0 {
            self.cpu_until(end) / wall
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let line = "1234 (my (odd) name) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 1 1";
        assert!((cpu_from_stat(line).unwrap() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn reads_our_own_figures() {
        assert!(self_cpu_seconds().unwrap() >= 0.0);
        assert!(self_rss().unwrap() > 0);
        assert!(self_peak_rss().unwrap() >= self_rss().unwrap() / 2);
    }
}
