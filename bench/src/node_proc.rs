//! A self-started `agora dev` node: finds the binary, starts it on a fresh data dir with
//! free ports, reads its addresses from stdout (and keeps draining stdout), and kills it
//! when dropped.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print its addresses.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the `agora` binary is: `explicit` (from `--agora-bin` or `AGORA_BIN`), else next
/// to this executable (the same cargo target dir), else its parent (when run from `deps/`).
pub fn find_agora_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!(
            "no agora binary at {} (--agora-bin / AGORA_BIN)",
            p.display()
        );
    }
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let name = format!("agora{}", std::env::consts::EXE_SUFFIX);
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    bail!(
        "no agora binary next to {}: build it in the same target dir (cargo build -p agora-node --bin agora, with --release for a release bench) or pass --agora-bin",
        exe.display()
    )
}

/// Settings of a self-started node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The `agora` binary.
    pub bin: PathBuf,
    /// Parent of the node's temporary data dir.
    pub tmp_root: PathBuf,
    /// The admin password to seed (`AGORA_ADMIN_PASSWORD`).
    pub admin_password: String,
    /// `--courier-leg-ms` (long by default, so shipping does not run during the measurement).
    pub courier_leg_ms: u64,
    /// Extra arguments for `agora dev`.
    pub extra_args: Vec<String>,
}

/// A running node; killed (SIGKILL) and its data dir removed on drop.
pub struct NodeProc {
    /// The `agora dev` process.
    child: Child,
    /// Its temp dir (data and stderr log), removed on drop.
    dir: tempfile::TempDir,
    /// Base URL of the shop API, e.g. `http://127.0.0.1:41234`.
    pub api_base: String,
    /// Base URL of the admin endpoint.
    pub admin_base: String,
    /// The node's data dir.
    pub data_dir: PathBuf,
}

/// First `http://host:port` token of a line, reduced to scheme, host and port.
pub fn first_base_url(line: &str) -> Option<String> {
    let token = line
        .split_whitespace()
        .find(|t| t.starts_with("http://") || t.starts_with("https://"))?;
    let (scheme, rest) = token.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}"))
}

impl NodeProc {
    /// Starts a node on a fresh data dir under `opts.tmp_root` and waits for its addresses.
    pub fn start(opts: &NodeOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("agora-bench-node-")
            .tempdir_in(&opts.tmp_root)
            .with_context(|| format!("cannot create a temp dir in {}", opts.tmp_root.display()))?;
        let data_dir = dir.path().join("data");
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        let mut cmd = Command::new(&opts.bin);
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .arg("--no-demo")
            // A benchmark measures the shop, not its rate limiter.
            .arg("--no-rate-limits")
            .arg("--courier-leg-ms")
            .arg(opts.courier_leg_ms.to_string())
            .args(&opts.extra_args)
            .env("AGORA_ADMIN_PASSWORD", &opts.admin_password)
            .env(
                "RUST_LOG",
                std::env::var("AGORA_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", opts.bin.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = mpsc::channel::<String>();
        // Drain stdout for the node's whole life, so its pipe never fills.
        std::thread::Builder::new()
            .name("agora-stdout".into())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let _ = tx.send(line.clone());
                        }
                    }
                }
            })?;
        let mut node = Self {
            child,
            dir,
            api_base: String::new(),
            admin_base: String::new(),
            data_dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (mut shop, mut admin) = (None, None);
        while shop.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "agora did not print its addresses within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                    node.stderr_tail()
                );
            }
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("shop API:") => shop = first_base_url(&line),
                Ok(line) if line.contains("admin:") => admin = first_base_url(&line),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                    "agora exited before printing its addresses; stderr:\n{}",
                    node.stderr_tail()
                ),
            }
        }
        node.api_base = shop.context("no shop URL")?;
        node.admin_base = admin.context("no admin URL")?;
        Ok(node)
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the node is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last few KiB of the node's stderr.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::first_base_url;

    #[test]
    fn reads_the_base_url_of_a_banner_line() {
        assert_eq!(
            first_base_url("  shop API:  http://127.0.0.1:8080/api/v1/products").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            first_base_url("  admin:     http://127.0.0.1:9090/healthz").as_deref(),
            Some("http://127.0.0.1:9090")
        );
        assert_eq!(first_base_url("agora is running"), None);
    }
}
