//! What to measure: a node this tool starts on a fresh data dir (the default), a running
//! node or cluster given by URL, or a local three-node cluster.

use crate::api::Endpoint;
use crate::node_proc::{find_agora_bin, NodeOptions, NodeProc};
use anyhow::Context;
use std::path::PathBuf;

/// The kind of target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// Start `agora dev` on a fresh temp data dir (default).
    #[value(name = "self")]
    SelfStarted,
    /// A running node or cluster: `--url` and `--admin-url`.
    Url,
    /// A local three-node cluster (`--replication-factor` sets its factor).
    Cluster3,
}

/// Options that say where the target is.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// self: start a node; url: a running node (--url, --admin-url); cluster3: start a local
    /// three-node cluster (load spread over the three edges, CPU and memory summed).
    #[arg(long, value_enum, default_value = "self")]
    pub target: TargetKind,
    /// Base URL of a running node's shop API (implies --target url).
    #[arg(long)]
    pub url: Option<String>,
    /// Base URL of its admin endpoint (for /metrics).
    #[arg(long)]
    pub admin_url: Option<String>,
    /// The admin password of a running node (self-started nodes get a generated one).
    #[arg(long, env = "AGORA_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Process id of a running node on this machine (for CPU and peak memory).
    #[arg(long)]
    pub node_pid: Option<u32>,
    /// The agora binary (default: next to this executable, in the same target dir).
    #[arg(long, env = "AGORA_BIN")]
    pub agora_bin: Option<PathBuf>,
    /// Courier leg of self-started nodes, ms (long, so shipping stays out of the window).
    #[arg(long, default_value_t = 60_000)]
    pub courier_leg_ms: u64,
    /// Where temp data dirs go (node data, redb ceilings, memory scenario): the disk measured.
    #[arg(long)]
    pub tmp_dir: Option<PathBuf>,
    /// Replication factor of a self-started cluster (`--target cluster3`).
    #[arg(long, default_value_t = 1)]
    pub replication_factor: usize,
}

/// A resolved target: where to send requests, and the node if we started it.
pub struct Target {
    /// Addresses and admin password.
    pub endpoint: Endpoint,
    /// The node we started (killed when dropped).
    pub node: Option<NodeProc>,
    /// The cluster we started (killed when dropped).
    pub cluster: Option<crate::cluster_proc::ClusterProc>,
}

impl TargetArgs {
    /// The directory for temp data.
    pub fn tmp_root(&self) -> PathBuf {
        self.tmp_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Whether this tool starts its own nodes.
    pub fn self_started(&self) -> anyhow::Result<bool> {
        match (self.target, &self.url) {
            (TargetKind::Cluster3, _) => Ok(true),
            (_, Some(_)) | (TargetKind::Url, None) => Ok(false),
            (TargetKind::SelfStarted, None) => Ok(true),
        }
    }

    /// Options for starting nodes.
    pub fn node_options(&self) -> anyhow::Result<NodeOptions> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        Ok(NodeOptions {
            bin: find_agora_bin(self.agora_bin.as_deref())?,
            tmp_root: self.tmp_root(),
            admin_password: format!("bench-admin-{}-{nanos}", std::process::id()),
            courier_leg_ms: self.courier_leg_ms,
            extra_args: Vec::new(),
        })
    }

    /// Starts a fresh node, or points at the running one.
    pub fn resolve(&self) -> anyhow::Result<Target> {
        if self.target == TargetKind::Cluster3 {
            let opts = self.node_options()?;
            let cluster =
                crate::cluster_proc::ClusterProc::start_three(&opts, self.replication_factor)?;
            eprintln!(
                "started a local cluster of {} nodes (pids {:?}); load spreads over their edges",
                cluster.nodes.len(),
                cluster.nodes.iter().map(|n| n.pid()).collect::<Vec<_>>()
            );
            return Ok(Target {
                endpoint: cluster.spread_endpoint(&opts.admin_password)?,
                node: None,
                cluster: Some(cluster),
            });
        }
        if self.self_started()? {
            let opts = self.node_options()?;
            let node = NodeProc::start(&opts)?;
            eprintln!(
                "started agora (pid {}) on {} — API {} admin {}",
                node.pid(),
                node.data_dir.display(),
                node.api_base,
                node.admin_base
            );
            return Ok(Target {
                endpoint: Endpoint {
                    api_base: node.api_base.clone(),
                    admin_base: node.admin_base.clone(),
                    admin_password: opts.admin_password,
                    node_pid: Some(node.pid()),
                    peers: Vec::new(),
                },
                node: Some(node),
                cluster: None,
            });
        }
        let url = self.url.clone().context("--target url needs --url")?;
        let admin = self
            .admin_url
            .clone()
            .context("--url needs --admin-url (the node's admin endpoint, for /metrics)")?;
        let password = self
            .admin_password
            .clone()
            .context("--url needs --admin-password (or AGORA_ADMIN_PASSWORD)")?;
        Ok(Target {
            endpoint: Endpoint {
                api_base: url,
                admin_base: admin,
                admin_password: password,
                node_pid: self.node_pid,
                peers: Vec::new(),
            },
            node: None,
            cluster: None,
        })
    }
}
