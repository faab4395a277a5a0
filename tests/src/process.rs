//! Real `agora` processes on free ports: their options, start, logs and end.

use crate::*;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

/// Command-line options for one `agora dev` process.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Run as `agora node --config FILE --node-id ID` (a cluster member) instead of `agora dev`.
    pub cluster_node: Option<(PathBuf, u64)>,
    /// With `cluster_node`: pass `--join` (a node joining a running cluster).
    pub join: bool,
    /// With `join`: the join token to present (`--join-token`).
    pub join_token: Option<String>,
    /// `--reservation-ttl-ms`, server default when `None`.
    pub reservation_ttl_ms: Option<u64>,
    /// `--payment-timeout-ms`, server default when `None`.
    pub payment_timeout_ms: Option<u64>,
    /// `--courier-leg-ms`, server default when `None`.
    pub courier_leg_ms: Option<u64>,
    /// Keep the shop API's rate limits on (off unless a test is about them:
    /// `AGORA_NO_RATE_LIMITS=true` is set otherwise).
    pub rate_limits: bool,
    /// More command-line arguments (`agora dev` only).
    pub extra_args: Vec<String>,
    /// More environment variables.
    pub env: Vec<(String, String)>,
    /// The binary to run; `agora_bin()` when `None` (an upgrade test starts an older build
    /// first).
    pub bin: Option<PathBuf>,
}

impl ServerOptions {
    /// Options with fast courier legs (100 ms) and server defaults otherwise.
    pub fn fast() -> Self {
        ServerOptions {
            courier_leg_ms: Some(100),
            ..Default::default()
        }
    }

    /// Sets `--reservation-ttl-ms`.
    pub fn reservation_ttl_ms(mut self, ms: u64) -> Self {
        self.reservation_ttl_ms = Some(ms);
        self
    }

    /// Sets `--payment-timeout-ms`.
    pub fn payment_timeout_ms(mut self, ms: u64) -> Self {
        self.payment_timeout_ms = Some(ms);
        self
    }

    /// Sets `--courier-leg-ms`.
    pub fn courier_leg_ms(mut self, ms: u64) -> Self {
        self.courier_leg_ms = Some(ms);
        self
    }

    /// Keeps the rate limits on.
    pub fn with_rate_limits(mut self) -> Self {
        self.rate_limits = true;
        self
    }

    /// Adds command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// Path of the `agora` binary: `$AGORA_BIN`, else `<target>/debug/agora` next to the test exe.
pub fn agora_bin() -> PathBuf {
    let path = match std::env::var_os("AGORA_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            // <target>/debug/deps/<test-exe>  ->  <target>/debug/agora
            let debug_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test executable lives in <target>/debug/deps");
            debug_dir.join(format!("agora{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if !path.is_file() {
        panic!(
            "agora binary not found at {}: build it first: cargo build -p agora-node",
            path.display()
        );
    }
    path
}

/// A running (or killed) `agora dev` process with its own temp data dir; killed on drop.
pub struct AgoraProcess {
    child: Option<Child>,
    tmp: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    opts: ServerOptions,
    starts: u32,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    /// Base URL of the shop API listener, e.g. `http://127.0.0.1:41234`.
    pub shop_url: String,
    /// Base URL of the admin listener (healthz, readyz, metrics).
    pub admin_url: String,
}

impl AgoraProcess {
    /// Spawns a server with its data in `root/data` (the caller keeps `root`), and waits
    /// until it prints its addresses.
    pub fn start_in(opts: ServerOptions, root: PathBuf) -> Self {
        Self::launch(opts, root.join("data"), None)
    }

    /// Spawns a server on a fresh temp data dir and waits until it prints its addresses.
    pub fn start(opts: ServerOptions) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("agora-test-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = tmp.path().join("data");
        Self::launch(opts, data_dir, Some(tmp))
    }

    /// Spawns a server on `data_dir` (created), keeping `tmp` alive with it.
    fn launch(opts: ServerOptions, data_dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Self {
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut p = AgoraProcess {
            child: None,
            tmp,
            data_dir,
            opts,
            starts: 0,
            stderr_path: PathBuf::new(),
            stdout_path: PathBuf::new(),
            shop_url: String::new(),
            admin_url: String::new(),
        };
        p.spawn();
        p
    }

    /// The data directory the server uses (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    /// Kills the server with SIGKILL (no graceful shutdown) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL agora");
            child.wait().expect("reap agora");
        }
    }

    /// Sends SIGTERM (a graceful stop: a cluster member drains first) and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed");
        child.wait().expect("reap agora")
    }

    /// Starts the server again on the same data dir (new ports); kills it first if running.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Stops the server (SIGTERM) and starts `bin` (`agora_bin()` when `None`) on its data.
    pub fn upgrade_to(&mut self, bin: Option<PathBuf>) {
        self.terminate();
        self.opts.bin = bin;
        self.spawn();
    }

    /// An unauthenticated client for the shop API.
    pub fn client(&self) -> Client {
        Client::new(&self.shop_url)
    }

    /// An unauthenticated client for the admin listener.
    pub fn admin_port_client(&self) -> Client {
        Client::new(&self.admin_url)
    }

    /// Logs in as the seeded admin and returns an authenticated shop client.
    pub async fn admin(&self) -> Client {
        self.client().login_as(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Last `max_bytes` of the server's stderr log (all starts of this process object).
    pub fn stderr_tail(&self, max_bytes: u64) -> String {
        tail_of(&self.stderr_path, max_bytes)
    }

    fn spawn(&mut self) {
        let bin = self.opts.bin.clone().unwrap_or_else(agora_bin);
        self.starts += 1;
        let root = self
            .data_dir
            .parent()
            .expect("data dir has a parent")
            .to_path_buf();
        self.stderr_path = root.join("stderr.log");
        self.stdout_path = root.join("stdout.log");
        let mut stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("open stderr log");
        writeln!(stderr, "==== agora start #{} ====", self.starts).ok();

        let mut cmd = Command::new(&bin);
        if let Some((config, id)) = &self.opts.cluster_node {
            cmd.arg("node")
                .arg("--config")
                .arg(config)
                .arg("--node-id")
                .arg(id.to_string());
            if self.opts.join {
                cmd.arg("--join");
            }
            if let Some(token) = &self.opts.join_token {
                cmd.arg("--join-token").arg(token);
            }
        } else {
            cmd.arg("dev")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--http-addr")
                .arg("127.0.0.1:0")
                .arg("--admin-addr")
                .arg("127.0.0.1:0");
        }
        if let Some(ms) = self.opts.reservation_ttl_ms {
            cmd.arg("--reservation-ttl-ms").arg(ms.to_string());
        }
        if let Some(ms) = self.opts.payment_timeout_ms {
            cmd.arg("--payment-timeout-ms").arg(ms.to_string());
        }
        if let Some(ms) = self.opts.courier_leg_ms {
            cmd.arg("--courier-leg-ms").arg(ms.to_string());
        }
        cmd.args(&self.opts.extra_args);
        if !self.opts.rate_limits {
            cmd.env("AGORA_NO_RATE_LIMITS", "true");
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let log = std::env::var("AGORA_TEST_RUST_LOG").unwrap_or_else(|_| "warn".to_string());
        cmd.env("AGORA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

        // Read stdout in a thread forever (so the pipe never fills), copy it to a
        // log file and forward the lines to us.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let stdout_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout_path)
            .expect("open stdout log");
        std::thread::Builder::new()
            .name("agora-stdout".into())
            .spawn(move || {
                let mut log = stdout_log;
                let mut reader = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            log.write_all(&buf).ok();
                            let line = String::from_utf8_lossy(&buf).into_owned();
                            let _ = tx.send(line);
                        }
                    }
                }
            })
            .expect("spawn stdout thread");

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut shop = None;
        let mut admin = None;
        let mut seen = String::new();
        while shop.is_none() || admin.is_none() {
            let now = Instant::now();
            if now >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agora did not print its 'shop API:' and 'admin:' lines within {:?}\nstdout so far:\n{seen}\nstderr tail:\n{}",
                    STARTUP_TIMEOUT,
                    tail_of(&self.stderr_path, 4000)
                );
            }
            match rx.recv_timeout(deadline - now) {
                Ok(line) => {
                    seen.push_str(&line);
                    if shop.is_none() && line.contains("shop API:") {
                        shop = first_base_url(&line);
                    } else if admin.is_none() && line.contains("admin:") {
                        admin = first_base_url(&line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    // A backtrace can push the error itself out of the tail: show it too.
                    panic!(
                        "agora exited ({status:?}) before printing its addresses\nstdout:\n{seen}\nerror:\n{}\nstderr tail:\n{}",
                        error_of(&self.stderr_path, 2000),
                        tail_of(&self.stderr_path, 4000)
                    );
                }
            }
        }
        self.shop_url = shop.expect("shop url");
        self.admin_url = admin.expect("admin url");
        self.child = Some(child);
    }
}

impl Drop for AgoraProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- agora stderr tail ({}) ----\n{}\n---- end of agora stderr ----",
                self.stderr_path.display(),
                self.stderr_tail(6000)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var("AGORA_KEEP_TMP").is_ok_and(|v| v == "1") {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("keeping agora temp dir {}", tmp.keep().display());
            }
        }
    }
}

/// Up to `max_bytes` of the file at `path` from its last `Error:` line (what the binary
/// printed as it exited with an error), or an empty string.
fn error_of(path: &Path, max_bytes: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    text.rfind("Error: ")
        .map(|at| text[at..].chars().take(max_bytes).collect())
        .unwrap_or_default()
}

fn tail_of(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("<no log at {}>", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// First `http://host:port` token of a line, reduced to scheme + host + port.
pub fn first_base_url(line: &str) -> Option<String> {
    let token = line
        .split_whitespace()
        .find(|t| t.starts_with("http://") || t.starts_with("https://"))?;
    let (scheme, rest) = token.split_once("://")?;
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn base_url_parsing() {
        assert_eq!(
            first_base_url("  shop API:  http://127.0.0.1:4567/api/v1/products").as_deref(),
            Some("http://127.0.0.1:4567")
        );
        assert_eq!(
            first_base_url("  admin:     http://127.0.0.1:99/healthz").as_deref(),
            Some("http://127.0.0.1:99")
        );
        assert_eq!(first_base_url("admin: none"), None);
    }
}
