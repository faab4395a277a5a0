//! `agora dev --nodes N`: writes a cluster file for N nodes on 127.0.0.1 and runs each node
//! as its own `agora node` process, until Ctrl-C or SIGTERM.

use agora_cluster_config::cluster::{ClusterConfig, NodeEntry, Tuning};
use std::net::SocketAddr;
use std::path::Path;

fn with_port(addr: SocketAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr.ip(), port)
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn new_config(
    n: u32,
    shards: u32,
    http: SocketAddr,
    admin: SocketAddr,
) -> anyhow::Result<ClusterConfig> {
    let nodes = (1..=u64::from(n))
        .map(|id| {
            let i = id as u16;
            NodeEntry {
                id,
                cluster_addr: with_port(http, 7100 + i).into(),
                http_addr: with_port(http, http.port() + i).into(),
                admin_addr: with_port(admin, admin.port() + i).into(),
                data_dir: format!("node-{id}").into(),
            }
        })
        .collect();
    Ok(ClusterConfig {
        cluster_name: "agora-dev".into(),
        shard_count: shards,
        secret: random_hex(32)?,
        jwt_secret: Some(random_hex(32)?),
        jwt_previous_secrets: Vec::new(),
        admin_token: None,
        admin_mutations: true,
        fault_injection: false,
        nodes,
        tuning: Tuning::default(),
        tls: None,
        rate_limits: Default::default(),
        notifications: Default::default(),
        connections: Default::default(),
        cluster_connections: Default::default(),
        replication_factor: None,
        replica_timeout_ms: None,
        cors_allowed_origins: Vec::new(),
    })
}

/// Runs a local cluster of `n` node processes with `shards` shards. A cluster file left by an
/// earlier run is reused (same secret, so tokens stay valid across restarts).
pub async fn run(
    n: u32,
    shards: u32,
    data_dir: &Path,
    http: SocketAddr,
    admin: SocketAddr,
    no_demo: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("cluster.toml");
    let config = if path.exists() {
        let mut c = ClusterConfig::load(&path)?;
        if c.jwt_secret.is_none() {
            // A file from before the token key was its own secret.
            c.jwt_secret = Some(random_hex(32)?);
            std::fs::write(&path, toml::to_string(&c)?)?;
        }
        anyhow::ensure!(
            c.nodes.len() == n as usize,
            "{} describes {} nodes; remove it or pass --nodes {}",
            path.display(),
            c.nodes.len(),
            c.nodes.len()
        );
        c
    } else {
        let c = new_config(n, shards, http, admin)?;
        std::fs::write(&path, toml::to_string(&c)?)?;
        c
    };
    let exe = std::env::current_exe()?;
    let password = match std::env::var("AGORA_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => random_hex(12)?,
    };
    let token = match std::env::var("AGORA_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => random_hex(24)?,
    };
    let mut children = Vec::new();
    for node in &config.nodes {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("node")
            .arg("--config")
            .arg(&path)
            .arg("--node-id")
            .arg(node.id.to_string())
            // `agora dev` is the one place weak secrets from the environment may run.
            .arg("--insecure-example-secrets");
        if no_demo {
            cmd.arg("--no-demo");
        }
        cmd.env("AGORA_ADMIN_PASSWORD", &password)
            .env("AGORA_ADMIN_TOKEN", &token)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        children.push(cmd.spawn()?);
    }
    println!(
        "agora is running (a local cluster of {n} node processes; cluster file {})",
        path.display()
    );
    for node in &config.nodes {
        println!(
            "  node {}: shop API http://{}/api/v1/products  admin http://{}/healthz",
            node.id, node.http_addr, node.admin_addr
        );
    }
    println!("  admin login: admin@agora.local / {password}");
    println!("  admin token: {token}");
    println!("press Ctrl-C to stop");
    crate::wait_for_signal().await;
    for c in &mut children {
        let _ = c.start_kill();
    }
    for c in &mut children {
        let _ = c.wait().await;
    }
    Ok(())
}
