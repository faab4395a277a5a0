//! A self-started local cluster: `agora node` processes on free loopback ports sharing one
//! cluster file, each with its pid (CPU, memory) and addresses; killed when dropped.

use agora_cluster_config::cluster::{ClusterConfig, NodeEntry, Tuning};
use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Shards of a self-started cluster.
pub const SHARDS: u32 = 16;
/// How long the cluster may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// One node of the cluster.
pub struct ClusterNode {
    /// Node id (1-based).
    pub id: u64,
    /// Base URL of its shop API.
    pub api_base: String,
    /// Base URL of its admin endpoint.
    pub admin_base: String,
    child: Child,
}

impl ClusterNode {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A running local cluster.
pub struct ClusterProc {
    /// The nodes, node `i + 1` at index `i`.
    pub nodes: Vec<ClusterNode>,
    /// The admin endpoint's bearer token.
    pub admin_token: String,
    launch: Launch,
    dir: tempfile::TempDir,
}

/// How a node of the cluster is started (again).
struct Launch {
    bin: std::path::PathBuf,
    config: std::path::PathBuf,
    admin_password: String,
}

fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Status code of `GET path` on `base` (`http://host:port`), or 0.
fn http_status(base: &str, path: &str) -> u16 {
    let Some(authority) = base.strip_prefix("http://") else {
        return 0;
    };
    let Ok(mut s) = TcpStream::connect(authority) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

impl ClusterProc {
    /// Starts `n` nodes of `bin` under `tmp_root` and waits until each is ready.
    pub fn start(
        bin: &Path,
        tmp_root: &Path,
        n: usize,
        admin_password: &str,
        courier_leg_ms: u64,
        replication_factor: usize,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("agora-bench-cluster-")
            .tempdir_in(tmp_root)
            .with_context(|| format!("cannot create a temp dir in {}", tmp_root.display()))?;
        let admin_token = format!("9b4e17c2d8a05f63e1b7c4d90a2f6e38-{}", std::process::id());
        let ports = free_ports(3 * n)?;
        let node_addr = |i: usize, k: usize| SocketAddr::from(([127, 0, 0, 1], ports[3 * i + k]));
        let config = ClusterConfig {
            cluster_name: "agora-bench".into(),
            shard_count: SHARDS,
            secret: "4d8a1f6c0e93b27d5a1c8e4f0b6d29a7".into(),
            jwt_secret: Some("e2c7a05b9f14d68e3b0a7c2f91d5e4b6".into()),
            jwt_previous_secrets: Vec::new(),
            admin_token: Some(admin_token.clone()),
            admin_mutations: true,
            fault_injection: false,
            cors_allowed_origins: Vec::new(),
            nodes: (0..n)
                .map(|i| NodeEntry {
                    id: i as u64 + 1,
                    cluster_addr: node_addr(i, 0).into(),
                    http_addr: node_addr(i, 1).into(),
                    admin_addr: node_addr(i, 2).into(),
                    data_dir: format!("node-{}", i + 1).into(),
                })
                .collect(),
            tuning: Tuning {
                courier_leg_ms,
                ..Tuning::default()
            },
            tls: None,
            // A benchmark measures the shop, not its rate limiter.
            rate_limits: agora_cluster_config::RateLimits {
                enabled: false,
                ..Default::default()
            },
            notifications: Default::default(),
            connections: Default::default(),
            cluster_connections: Default::default(),
            replication_factor: Some(replication_factor),
            replica_timeout_ms: None,
        };
        let toml = toml::to_string(&config).context("cannot write the cluster file")?;
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, toml).context("cannot write the cluster file")?;
        let launch = Launch {
            bin: bin.to_path_buf(),
            config,
            admin_password: admin_password.to_string(),
        };
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let id = i as u64 + 1;
            nodes.push(ClusterNode {
                id,
                api_base: format!("http://127.0.0.1:{}", ports[3 * i + 1]),
                admin_base: format!("http://127.0.0.1:{}", ports[3 * i + 2]),
                child: launch.spawn(dir.path(), id)?,
            });
        }
        let cluster = Self {
            nodes,
            admin_token,
            launch,
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i)?;
        }
        Ok(cluster)
    }

    /// Starts three nodes as `opts` says, each shard on `replication_factor` of them.
    pub fn start_three(
        opts: &crate::node_proc::NodeOptions,
        replication_factor: usize,
    ) -> anyhow::Result<Self> {
        Self::start(
            &opts.bin,
            &opts.tmp_root,
            3,
            &opts.admin_password,
            opts.courier_leg_ms,
            replication_factor,
        )
    }

    /// Starts the replicated three-node cluster `target` describes, for the benchmark `what`
    /// (refused without replication), and returns it with node 1's endpoint.
    pub fn start_replicated(
        target: &crate::target::TargetArgs,
        what: &str,
    ) -> anyhow::Result<(Self, crate::api::Endpoint)> {
        if target.replication_factor < 2 {
            bail!("{what} needs replicated shards: pass --replication-factor 3");
        }
        let opts = target.node_options()?;
        eprintln!(
            "starting a local three-node cluster, replication factor {}…",
            target.replication_factor
        );
        let cluster = Self::start_three(&opts, target.replication_factor)?;
        let ep = cluster.first_endpoint(&opts.admin_password)?;
        Ok((cluster, ep))
    }

    /// Node 1's addresses and pid (requests go to its edge only).
    pub fn first_endpoint(&self, admin_password: &str) -> anyhow::Result<crate::api::Endpoint> {
        let first = self.nodes.first().context("the cluster has no node")?;
        Ok(crate::api::Endpoint {
            api_base: first.api_base.clone(),
            admin_base: first.admin_base.clone(),
            admin_password: admin_password.to_string(),
            node_pid: Some(first.pid()),
            peers: Vec::new(),
        })
    }

    /// Node 1's addresses and pid, with nodes 2 and 3 as peers (load spreads over the three
    /// edges; CPU and counters are summed over the three nodes).
    pub fn spread_endpoint(&self, admin_password: &str) -> anyhow::Result<crate::api::Endpoint> {
        let mut ep = self.first_endpoint(admin_password)?;
        ep.peers = self.nodes[1..]
            .iter()
            .map(|n| (n.api_base.clone(), n.admin_base.clone(), n.pid()))
            .collect();
        Ok(ep)
    }

    /// Waits until node index `i` answers `/readyz` with 200.
    pub fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let deadline = Instant::now() + READY_TIMEOUT;
        while http_status(&node.admin_base, "/readyz") != 200 {
            if Instant::now() > deadline {
                bail!(
                    "node {} of the local cluster never became ready; its log:\n{}",
                    node.id,
                    self.log_tail(node.id)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Node index `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{}", self.nodes[i].id))
    }

    /// Kills node index `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let child = &mut self.nodes[i].child;
        child.kill().context("cannot kill a node")?;
        child.wait().context("cannot reap a node")?;
        Ok(())
    }

    /// Stops node index `i` with SIGTERM and waits up to `timeout` for it to exit (killed
    /// with SIGKILL after that, and refused).
    pub fn terminate(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let node = &mut self.nodes[i];
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(node.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        if !sent.success() {
            bail!("kill -TERM of node {} failed", node.id);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = node.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                node.child.kill()?;
                node.child.wait()?;
                bail!(
                    "node {} did not exit within {timeout:?} of SIGTERM",
                    node.id
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts node index `i` again on its data dir (after `kill`).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let id = self.nodes[i].id;
        self.nodes[i].child = self.launch.spawn(self.dir.path(), id)?;
        Ok(())
    }

    /// The last few KiB of node `id`'s log.
    pub fn log_tail(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log")))
            .unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// Whether every node still runs.
    pub fn all_alive(&mut self) -> bool {
        self.nodes
            .iter_mut()
            .all(|n| matches!(n.child.try_wait(), Ok(None)))
    }
}

impl Launch {
    /// Starts node `id`, its log appended to `dir/node-<id>.log`.
    fn spawn(&self, dir: &Path, id: u64) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node-{id}.log")))?;
        Command::new(&self.bin)
            .arg("node")
            .arg("--config")
            .arg(&self.config)
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--no-demo")
            .env("AGORA_ADMIN_PASSWORD", &self.admin_password)
            .env(
                "RUST_LOG",
                std::env::var("AGORA_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))
    }
}

impl Drop for ClusterProc {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        // The nodes' logs, for a look afterwards.
        if std::env::var("AGORA_KEEP_TMP").is_ok_and(|v| v == "1") {
            if let Ok(empty) = tempfile::TempDir::new() {
                let kept = std::mem::replace(&mut self.dir, empty);
                eprintln!("keeping the cluster's temp dir {}", kept.keep().display());
            }
        }
    }
}
