//! The cluster file: the cluster's name, shard count, shared secret, admin token and its
//! nodes. Example: `examples/three-nodes.toml`.

use crate::addr::{ClusterAddr, ADDR_FIX};
use crate::{err, ConfigError, NodeSettings, NotificationSettings, RateLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One node of the cluster. As the cluster file writes it (`NodeEntry<ClusterAddr>`, a
/// `ClusterNode`) its addresses may be host names; as a running node's membership holds it
/// (`NodeEntry`), the addresses it binds or dials (see `ClusterNode::entry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry<A = SocketAddr> {
    /// Stable node id (1 or more); never reused for another machine.
    pub id: u64,
    /// Where other nodes reach this one (node-to-node traffic).
    pub cluster_addr: A,
    /// Where the shop API listens.
    pub http_addr: A,
    /// Where the admin endpoint listens.
    pub admin_addr: A,
    /// This node's data directory (relative paths are relative to the config file).
    pub data_dir: PathBuf,
}

/// TLS between nodes: every node presents `cert` (with `key`) and trusts peers whose
/// certificates chain to `ca`. Node `id`'s certificate names it: `node-{id}.{cluster_name}`
/// as a DNS name. `{id}` in `cert` and `key` stands for the node's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain of the node (`{id}`: the node's id).
    pub cert: PathBuf,
    /// PEM private key of `cert` (`{id}`: the node's id).
    pub key: PathBuf,
    /// PEM certificate of the authority that signed the nodes' certificates.
    pub ca: PathBuf,
    /// How often the three files are read again (ms): a renewed certificate is used for
    /// new connections from the next check on, without a restart.
    #[serde(default = "default_tls_reload_check_ms")]
    pub reload_check_ms: u64,
}

/// Thirty seconds: a renewed Kubernetes Secret reaches the pod within about a minute.
fn default_tls_reload_check_ms() -> u64 {
    30_000
}

/// A `[[nodes]]` entry of the cluster file: its addresses may be DNS host names.
pub type ClusterNode = NodeEntry<ClusterAddr>;

impl ClusterNode {
    /// The entry a running node's membership holds: a host name's address is its port on
    /// `0.0.0.0` (what the node itself binds; peers dial the name, see `agora_cluster`).
    pub fn entry(&self) -> NodeEntry {
        NodeEntry {
            id: self.id,
            cluster_addr: self.cluster_addr.listen_addr(),
            http_addr: self.http_addr.listen_addr(),
            admin_addr: self.admin_addr.listen_addr(),
            data_dir: self.data_dir.clone(),
        }
    }
}

impl TlsFiles {
    /// Node `id`'s certificate and key files (`{id}` in either path replaced by `id`).
    pub fn for_node(&self, id: u64) -> (PathBuf, PathBuf) {
        let fill =
            |p: &PathBuf| PathBuf::from(p.to_string_lossy().replace("{id}", &id.to_string()));
        (fill(&self.cert), fill(&self.key))
    }
}

/// Timings shared by every node (the defaults suit production).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    /// Idle time before an entity is passivated (ms).
    pub passivate_after_ms: u64,
    /// Most entities active at once per node (0: no cap).
    pub max_active_entities: u64,
    /// How long applied message ids are remembered (ms).
    pub message_retention_ms: u64,
    /// Stock reservation lifetime (ms).
    pub reservation_ttl_ms: u64,
    /// Payment gateway timeout (ms).
    pub payment_timeout_ms: u64,
    /// Simulated courier leg (ms).
    pub courier_leg_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        let d = NodeSettings::default();
        Self {
            passivate_after_ms: d.passivate_after_ms,
            max_active_entities: d.max_active_entities,
            message_retention_ms: d.message_retention_ms,
            reservation_ttl_ms: d.reservation_ttl_ms,
            payment_timeout_ms: d.payment_timeout_ms,
            courier_leg_ms: d.courier_leg_ms,
        }
    }
}

/// Bounds on a node's cluster port, so strangers cannot exhaust it before authenticating
/// (the shared secret) and a peer's frame cannot make the node allocate without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConnectionLimits {
    /// Most connections accepted and not yet authenticated at once; more are closed at once.
    pub max_unauthenticated: usize,
    /// Most of those from one address; more are closed at once.
    pub max_unauthenticated_per_address: usize,
    /// A connection that has not authenticated this long after it was accepted (TLS and
    /// the secret's challenge included) is closed (ms).
    pub handshake_timeout_ms: u64,
    /// Largest frame read before the peer authenticated (bytes); the handshake's frames
    /// are a few hundred bytes.
    pub max_handshake_frame_bytes: u64,
    /// Largest frame read from an authenticated peer (bytes); the same on every node. The
    /// largest messages are a replica's snapshot chunk (3 MiB) and a handoff's shard (the
    /// whole shard, in one message).
    pub max_frame_bytes: u64,
}

/// Smallest `max_handshake_frame_bytes` accepted: the handshake's frames must fit.
pub const MIN_HANDSHAKE_FRAME_BYTES: u64 = 1024;
/// Smallest `max_frame_bytes` accepted: a replica's snapshot chunk (3 MiB) must fit.
pub const MIN_FRAME_BYTES: u64 = 4 * 1024 * 1024;

impl Default for ClusterConnectionLimits {
    fn default() -> Self {
        Self {
            // A cluster has a handful of peers, each with at most one or two handshakes
            // under way; the rest is slack for reconnects.
            max_unauthenticated: 64,
            max_unauthenticated_per_address: 8,
            // A handshake takes milliseconds; seconds leave room for a loaded peer.
            handshake_timeout_ms: 5_000,
            max_handshake_frame_bytes: 16 * 1024,
            // ractor_cluster's own default, which every cluster ran with so far.
            max_frame_bytes: 16 * 1024 * 1024,
        }
    }
}

impl ClusterConnectionLimits {
    /// Checks every field; errors name `cluster_connections.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let field = |f: &str| format!("cluster_connections.{f}");
        for (name, value) in [
            ("max_unauthenticated", self.max_unauthenticated as u64),
            (
                "max_unauthenticated_per_address",
                self.max_unauthenticated_per_address as u64,
            ),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
        ] {
            if value == 0 {
                return Err(err(field(name), "is 0", "give a value of at least 1"));
            }
        }
        if self.max_unauthenticated_per_address > self.max_unauthenticated {
            return Err(err(
                field("max_unauthenticated_per_address"),
                "is more than max_unauthenticated",
                "give at most max_unauthenticated",
            ));
        }
        if self.max_handshake_frame_bytes < MIN_HANDSHAKE_FRAME_BYTES {
            return Err(err(
                field("max_handshake_frame_bytes"),
                format!("{} is too small", self.max_handshake_frame_bytes),
                "give at least 1024 (the default is 16384)",
            ));
        }
        if self.max_frame_bytes < MIN_FRAME_BYTES
            || self.max_frame_bytes < self.max_handshake_frame_bytes
        {
            return Err(err(
                field("max_frame_bytes"),
                format!("{} is too small", self.max_frame_bytes),
                "give at least 4194304 and max_handshake_frame_bytes (the default is 16777216)",
            ));
        }
        Ok(())
    }
}

/// A cluster file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name; nodes of another cluster are refused.
    pub cluster_name: String,
    /// Number of shards, fixed when the cluster is created.
    pub shard_count: u32,
    /// Shared secret that authenticates nodes to each other (at least 16 characters).
    pub secret: String,
    /// The key that signs and verifies the shop's access tokens, the same on every node
    /// (`AGORA_JWT_SECRET` overrides it); never derived from `secret`.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// Keys of earlier rotations: tokens they signed are still accepted until they expire.
    #[serde(default)]
    pub jwt_previous_secrets: Vec<String>,
    /// Bearer token for the admin endpoints (`AGORA_ADMIN_TOKEN` overrides it).
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Whether mutating admin routes (drain, move) are enabled.
    #[serde(default)]
    pub admin_mutations: bool,
    /// The nodes.
    pub nodes: Vec<ClusterNode>,
    /// Timings.
    #[serde(default)]
    pub tuning: Tuning,
    /// TLS between nodes (plain TCP when absent; the shared secret authenticates either way).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Rate limits of every node's shop API.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Where customer notifications go.
    #[serde(default)]
    pub notifications: NotificationSettings,
    /// Bounds on every node's shop API connections.
    #[serde(default)]
    pub connections: crate::ConnectionLimits,
    /// Bounds on every node's cluster port, before and after a peer authenticates.
    #[serde(default)]
    pub cluster_connections: ClusterConnectionLimits,
    /// On how many nodes each shard's data lives; a change is acknowledged once a majority
    /// of them holds it. Absent: 3 with three nodes or more, else 1.
    #[serde(default)]
    pub replication_factor: Option<usize>,
    /// How long a node may be unreachable before its replicas are rebuilt on the other
    /// nodes (when enough remain). Absent: 5 minutes.
    #[serde(default)]
    pub replica_timeout_ms: Option<u64>,
    /// Lets the admin endpoint cut this node off from peers (`PUT /admin/faults/partition`)
    /// for chaos tests. Never in production: an admin could take the node out of the cluster.
    #[serde(default)]
    pub fault_injection: bool,
    /// Origins whose browser pages may call the shop API (CORS; none when empty).
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
}

impl ClusterConfig {
    /// Parses a cluster file's text; relative data dirs are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut c: ClusterConfig = toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map_or_else(|| "(file)".into(), |s| field_at(text, s.start));
            let fix = if field.starts_with("nodes[") && field.ends_with("_addr") {
                ADDR_FIX
            } else {
                "fix the TOML syntax or field names shown"
            };
            err(field, e.message().to_string(), fix)
        })?;
        for n in &mut c.nodes {
            if n.data_dir.is_relative() {
                n.data_dir = base_dir.join(&n.data_dir);
            }
        }
        if let Some(t) = &mut c.tls {
            for p in [&mut t.cert, &mut t.key, &mut t.ca] {
                if p.is_relative() {
                    *p = base_dir.join(&*p);
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a cluster file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                "(file)",
                format!("cannot read {}: {e}", path.display()),
                "give the path of a readable TOML file",
            )
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_name.is_empty()
            || self.cluster_name.len() > 64
            || !self
                .cluster_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(
                "cluster_name",
                "must be 1..=64 of A-Z a-z 0-9 - _",
                "pick a short name like agora-prod",
            ));
        }
        if !(1..=4096).contains(&self.shard_count) {
            return Err(err(
                "shard_count",
                format!("{} is out of range", self.shard_count),
                "use 1 to 4096 (64 is a good default)",
            ));
        }
        if self.secret.len() < 16 {
            return Err(err(
                "secret",
                "is shorter than 16 characters",
                "use a long random string shared by every node",
            ));
        }
        if let Some(t) = &self.admin_token {
            if t.len() < 16 {
                return Err(err(
                    "admin_token",
                    "is shorter than 16 characters",
                    "use a long random string, or leave it out and set AGORA_ADMIN_TOKEN",
                ));
            }
        }
        if self.nodes.is_empty() {
            return Err(err("nodes", "is empty", "add at least one [[nodes]] entry"));
        }
        if let Some(factor) = self.replication_factor {
            if factor == 0 || factor > self.nodes.len() {
                return Err(err(
                    "replication_factor",
                    format!("{factor} is not between 1 and the {} nodes", self.nodes.len()),
                    "use 3 (a majority of 2 survives one node's loss), at most the number of [[nodes]]",
                ));
            }
        }
        if self.replica_timeout_ms.is_some_and(|t| t < 1_000) {
            return Err(err(
                "replica_timeout_ms",
                "is below 1000 ms",
                "use at least a few seconds, more than a restart takes (default 300000: 5 minutes)",
            ));
        }
        if self.tls.as_ref().is_some_and(|t| t.reload_check_ms < 1_000) {
            return Err(err(
                "tls.reload_check_ms",
                "is below 1000 ms",
                "check for renewed certificates every few seconds at most often (default 30000)",
            ));
        }
        if self.jwt_secret.as_deref().is_some_and(|s| s.len() < 32) {
            return Err(err(
                "jwt_secret",
                "is shorter than 32 bytes",
                "use 32 or more random bytes (e.g. `openssl rand -hex 32`), the same on every node",
            ));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.id == 0 {
                return Err(err(format!("nodes[{i}].id"), "is 0", "node ids start at 1"));
            }
            if !ids.insert(n.id) {
                return Err(err(
                    format!("nodes[{i}].id"),
                    format!("{} is used twice", n.id),
                    "give every node its own id",
                ));
            }
            for (name, a) in [
                ("cluster_addr", n.cluster_addr.clone()),
                ("http_addr", n.http_addr.clone()),
                ("admin_addr", n.admin_addr.clone()),
            ] {
                if a.port() == 0 {
                    return Err(err(
                        format!("nodes[{i}].{name}"),
                        "has port 0",
                        "give a fixed port so other nodes and clients can find it",
                    ));
                }
                if !addrs.insert(a.clone()) {
                    return Err(err(
                        format!("nodes[{i}].{name}"),
                        format!("{a} is used twice"),
                        "give every listener its own address",
                    ));
                }
            }
            if n.data_dir.as_os_str().is_empty() {
                return Err(err(
                    format!("nodes[{i}].data_dir"),
                    "is empty",
                    "give each node its own directory",
                ));
            }
            if !dirs.insert(n.data_dir.clone()) {
                return Err(err(
                    format!("nodes[{i}].data_dir"),
                    "is shared with another node",
                    "give each node its own directory",
                ));
            }
        }
        self.cluster_connections.validate()?;
        self.settings_for_any()?;
        Ok(())
    }

    fn settings_for_any(&self) -> Result<(), ConfigError> {
        match self.nodes.first() {
            Some(n) => self.node_settings(n.id).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The entry of node `id`.
    pub fn node(&self, id: u64) -> Result<&ClusterNode, ConfigError> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            err(
                "--node-id",
                format!("no node {id} in the cluster file"),
                "pass the id of one of the [[nodes]] entries",
            )
        })
    }

    /// On how many nodes each shard's data lives: as the file says, else 3 when the
    /// cluster has three nodes or more (a node's loss then loses nothing and stops
    /// nothing), else 1.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
            .unwrap_or(if self.nodes.len() >= 3 { 3 } else { 1 })
    }

    /// How long a node may be unreachable before its replicas are rebuilt elsewhere.
    pub fn replica_timeout_ms(&self) -> u64 {
        self.replica_timeout_ms.unwrap_or(300_000)
    }

    /// The settings node `id` runs with.
    pub fn node_settings(&self, id: u64) -> Result<NodeSettings, ConfigError> {
        let n = self.node(id)?;
        let s = NodeSettings {
            data_dir: n.data_dir.clone(),
            http_addr: n.http_addr.listen_addr(),
            admin_addr: n.admin_addr.listen_addr(),
            shard_count: self.shard_count,
            passivate_after_ms: self.tuning.passivate_after_ms,
            max_active_entities: self.tuning.max_active_entities,
            message_retention_ms: self.tuning.message_retention_ms,
            reservation_ttl_ms: self.tuning.reservation_ttl_ms,
            payment_timeout_ms: self.tuning.payment_timeout_ms,
            courier_leg_ms: self.tuning.courier_leg_ms,
            rate_limits: self.rate_limits.clone(),
            notifications: self.notifications.clone(),
            connections: self.connections,
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            ..NodeSettings::default()
        };
        s.validate().map_err(|e| {
            let outside_tuning = e.field.starts_with("rate_limits.")
                || e.field.starts_with("notifications.")
                || e.field == "cors_allowed_origins";
            ConfigError {
                field: if outside_tuning {
                    e.field.clone()
                } else {
                    format!("tuning.{}", e.field)
                },
                ..e
            }
        })?;
        Ok(s)
    }
}

/// The field a TOML error at byte `at` of `text` is about, like `nodes[1].cluster_addr` or
/// `tuning.passivate_after_ms` (`(file)` when it is not on a `key = value` line).
fn field_at(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    let Some((key, _)) = line.split_once('=') else {
        return "(file)".into();
    };
    let key = key.trim();
    let headers: Vec<&str> = before
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .collect();
    match headers.last() {
        Some(&"[[nodes]]") => {
            let i = headers
                .iter()
                .filter(|h| **h == "[[nodes]]")
                .count()
                .saturating_sub(1);
            format!("nodes[{i}].{key}")
        }
        Some(h) if !h.starts_with("[[") => format!("{}.{key}", h.trim_matches(['[', ']'])),
        _ => key.to_string(),
    }
}

impl ClusterConfig {
    /// Refuses secrets a stranger could know or guess: an example value, fewer than 32
    /// bytes, low entropy. `extra` names secrets from elsewhere (the environment) with
    /// their variable names. Nodes run this unless started with `--insecure-example-secrets`.
    pub fn check_secrets(&self, extra: &[(&str, &str)]) -> Result<(), ConfigError> {
        let mut named: Vec<(String, &str)> = vec![("secret".into(), self.secret.as_str())];
        named.extend(
            self.admin_token
                .as_deref()
                .map(|t| ("admin_token".into(), t)),
        );
        named.extend(self.jwt_secret.as_deref().map(|t| ("jwt_secret".into(), t)));
        for (i, s) in self.jwt_previous_secrets.iter().enumerate() {
            named.push((format!("jwt_previous_secrets[{i}]"), s.as_str()));
        }
        named.extend(extra.iter().map(|(n, v)| (n.to_string(), *v)));
        for (field, value) in named {
            if let Some(problem) = crate::secret_strength::weakness(value) {
                return Err(err(
                    field,
                    problem,
                    "generate one with `openssl rand -hex 32`; to try an example file on your own machine only, start with --insecure-example-secrets",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/three-nodes.toml"
        ))
        .unwrap()
    }

    #[test]
    fn tls_files_are_checked_again_every_30_s_and_a_busy_loop_is_refused() {
        let tls = |extra: &str| {
            let text = example().replacen(
                "[tuning]",
                &format!(
                    "[tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nca = \"ca.pem\"\n{extra}\n[tuning]"
                ),
                1,
            );
            ClusterConfig::parse(&text, Path::new("/"))
        };
        let c = tls("").unwrap();
        assert_eq!(c.tls.map(|t| t.reload_check_ms), Some(30_000));
        let e = tls("reload_check_ms = 10").unwrap_err();
        assert_eq!(e.field, "tls.reload_check_ms", "{e}");
    }

    #[test]
    fn the_three_node_example_is_valid() {
        let c = ClusterConfig::parse(&example(), Path::new("/etc/agora")).unwrap();
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[0].data_dir, Path::new("/etc/agora/data/node-1"));
        let s = c.node_settings(2).unwrap();
        assert_eq!(s.shard_count, c.shard_count);
    }

    #[test]
    fn shards_are_replicated_three_times_by_default_with_three_nodes() {
        let c = ClusterConfig::parse(&example(), Path::new(".")).unwrap();
        assert_eq!(c.replication_factor(), 3);
        let mut two = c.clone();
        two.nodes.truncate(2);
        assert_eq!(two.replication_factor(), 1);
        let text = format!("replication_factor = 4\n{}", example());
        let e = ClusterConfig::parse(&text, Path::new(".")).unwrap_err();
        assert_eq!(e.field, "replication_factor");
        assert!(
            e.to_string().contains("at most the number of [[nodes]]"),
            "{e}"
        );
        let text = format!("replica_timeout_ms = 10\n{}", example());
        let e = ClusterConfig::parse(&text, Path::new("/")).unwrap_err();
        assert_eq!(e.field, "replica_timeout_ms");
        assert_eq!(c.replica_timeout_ms(), 300_000);
        let text = format!("replication_factor = 1\n{}", example());
        let one = ClusterConfig::parse(&text, Path::new(".")).unwrap();
        assert_eq!(one.replication_factor(), 1);
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let bad = example().replacen("id = 2", "id = 1", 1);
        let e = ClusterConfig::parse(&bad, Path::new(".")).unwrap_err();
        assert_eq!(e.field, "nodes[1].id");
        assert!(e.to_string().contains("give every node its own id"));
        let bad = example().replacen("shard_count = 64", "shard_count = 0", 1);
        assert_eq!(
            ClusterConfig::parse(&bad, Path::new("."))
                .unwrap_err()
                .field,
            "shard_count"
        );
        let bad = example().replacen("cluster_addr", "clustr_addr", 1);
        assert!(ClusterConfig::parse(&bad, Path::new("."))
            .unwrap_err()
            .problem
            .contains("clustr_addr"));
        assert_eq!(
            ClusterConfig::parse(&example(), Path::new("."))
                .unwrap()
                .node(9)
                .unwrap_err()
                .field,
            "--node-id"
        );
    }

    /// The example file with its first `from` replaced by `to`, parsed.
    fn example_with(from: &str, to: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(&example().replacen(from, to, 1), Path::new("."))
    }

    #[test]
    fn a_cluster_addr_may_be_a_dns_host_name() {
        let c = example_with(
            "127.0.0.1:7101",
            "agora-0.agora-headless.shop.svc.cluster.local:7101",
        )
        .unwrap();
        assert_eq!(
            c.nodes[0].cluster_addr,
            ClusterAddr::Host {
                name: "agora-0.agora-headless.shop.svc.cluster.local".into(),
                port: 7101
            }
        );
        assert_eq!(
            c.nodes[0].entry().cluster_addr,
            "0.0.0.0:7101".parse::<SocketAddr>().unwrap(),
            "a node binds its named address's port on every interface"
        );
        let ip: SocketAddr = "127.0.0.1:7102".parse().unwrap();
        assert_eq!(c.nodes[1].cluster_addr, ClusterAddr::Ip(ip));
        assert_eq!(c.nodes[1].entry().cluster_addr, ip);
        assert_eq!(
            c.nodes[0].cluster_addr.to_string(),
            "agora-0.agora-headless.shop.svc.cluster.local:7101"
        );
        let v6 = ClusterAddr::parse("[fd00::5]:7100").unwrap();
        assert_eq!(v6, ClusterAddr::Ip("[fd00::5]:7100".parse().unwrap()));
    }

    #[test]
    fn a_bad_cluster_addr_is_refused_naming_the_field() {
        for (bad, says) in [
            ("agora-0", "has no port"),
            ("agora-0:http", "not a number"),
            ("agora-0:70000", "not a number"),
            ("agora_0.headless:7100", "other than letters"),
            ("-agora:7100", "starts or ends with -"),
            ("agora..local:7100", "empty"),
            (":7100", "no host"),
            ("fd00::5:7100", "IPv6 needs brackets"),
            ("300.1.2.3:7100", "last label is all digits"),
        ] {
            let e = example_with("127.0.0.1:7102", bad).unwrap_err();
            assert_eq!(e.field, "nodes[1].cluster_addr", "{bad}: {e}");
            assert!(e.problem.contains(says), "{bad}: {e}");
            assert!(
                e.to_string().contains("write IP:port or host:port"),
                "{bad}: {e}"
            );
        }
        let e = example_with("127.0.0.1:7102", "agora-0:0").unwrap_err();
        assert_eq!(e.field, "nodes[1].cluster_addr");
        assert!(e.problem.contains("port 0"), "{e}");
        let twice = example()
            .replacen("127.0.0.1:7102", "agora-0:7100", 1)
            .replacen("127.0.0.1:7103", "AGORA-0:7100", 1);
        let e = ClusterConfig::parse(&twice, Path::new(".")).unwrap_err();
        assert_eq!(e.field, "nodes[2].cluster_addr");
        assert!(e.problem.contains("used twice"), "{e}");
    }

    #[test]
    fn an_http_addr_may_be_a_host_name_and_a_bad_one_is_refused_naming_the_field() {
        let e = example_with("127.0.0.1:8082", "agora_1:8082").unwrap_err();
        assert_eq!(e.field, "nodes[1].http_addr", "{e}");
        assert!(e.to_string().contains("write IP:port or host:port"), "{e}");
        let named = example_with("127.0.0.1:8082", "agora-1.agora-headless:8082").unwrap();
        let http = named.node_settings(2).unwrap().http_addr;
        assert_eq!(http, "0.0.0.0:8082".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn the_example_file_is_valid_but_its_secrets_are_refused() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/three-nodes.toml");
        let c = ClusterConfig::load(std::path::Path::new(path)).unwrap();
        assert!(
            !c.admin_mutations,
            "examples keep mutating admin routes off"
        );
        let e = c.check_secrets(&[]).unwrap_err().to_string();
        assert!(e.contains("secret") && e.contains("example value"), "{e}");
        let mut strong = c.clone();
        strong.secret = "9f1c2e7a4b8d03f6e5a1c9b27d4e8f0a".into();
        strong.admin_token = Some("3c6b1d5e9f2a7c4b8e0d6a2f4c9b1e7d".into());
        strong.jwt_secret = Some("d0e4a8c2f6b1093e7a5c1f8b2d6e4a90".into());
        assert!(strong.check_secrets(&[]).is_ok());
        let e = strong
            .check_secrets(&[("AGORA_WEBHOOK_SECRET", "short")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AGORA_WEBHOOK_SECRET"), "{e}");
    }

    #[test]
    fn cluster_connection_limits_default_and_bad_values_name_the_field() {
        let c = ClusterConfig::parse(&example(), Path::new(".")).unwrap();
        assert_eq!(c.cluster_connections, ClusterConnectionLimits::default());
        for (toml, field) in [
            (
                "max_unauthenticated = 0",
                "cluster_connections.max_unauthenticated",
            ),
            (
                "handshake_timeout_ms = 0",
                "cluster_connections.handshake_timeout_ms",
            ),
            (
                "max_unauthenticated_per_address = 65",
                "cluster_connections.max_unauthenticated_per_address",
            ),
            (
                "max_handshake_frame_bytes = 10",
                "cluster_connections.max_handshake_frame_bytes",
            ),
            (
                "max_frame_bytes = 65536",
                "cluster_connections.max_frame_bytes",
            ),
        ] {
            let text = format!("{}\n[cluster_connections]\n{toml}\n", example());
            let e = ClusterConfig::parse(&text, Path::new(".")).unwrap_err();
            assert_eq!(e.field, field, "{toml}: {e}");
        }
        let text = format!(
            "{}\n[cluster_connections]\nhandshake_timeout_ms = 250\n",
            example()
        );
        let c = ClusterConfig::parse(&text, Path::new(".")).unwrap();
        assert_eq!(c.cluster_connections.handshake_timeout_ms, 250);
    }
}
