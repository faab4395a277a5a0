//! `agora dev --nodes N`: writes a cluster file for N nodes on 127.0.0.1 and runs each node
//! as its own `agora node` process, until Ctrl-C.

use agora_cluster_config::cluster::{ClusterConfig, NodeEntry, Tuning};
use std::net::SocketAddr;
use std::path::Path;

fn with_port(addr: SocketAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr.ip(), port)
}

/// Runs a local cluster of `n` node processes.
pub async fn run(
    n: u32,
    data_dir: &Path,
    http: SocketAddr,
    admin: SocketAddr,
    no_demo: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let nodes = (1..=u64::from(n))
        .map(|id| {
            let i = id as u16;
            NodeEntry {
                id,
                cluster_addr: with_port(http, 7100 + i),
                http_addr: with_port(http, http.port() + i),
                admin_addr: with_port(admin, admin.port() + i),
                data_dir: format!("node-{id}").into(),
            }
        })
        .collect();
    let config = ClusterConfig {
        cluster_name: "agora-dev".into(),
        shard_count: 64,
        secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
        admin_token: None,
        admin_mutations: true,
        nodes,
        tuning: Tuning::default(),
    };
    let path = data_dir.join("cluster.toml");
    std::fs::write(&path, toml::to_string(&config)?)?;
    let exe = std::env::current_exe()?;
    let mut password = std::env::var("AGORA_ADMIN_PASSWORD").unwrap_or_default();
    if password.is_empty() {
        let mut pw = [0u8; 12];
        getrandom::fill(&mut pw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        password = pw.iter().map(|b| format!("{b:02x}")).collect();
    }
    let mut children = Vec::new();
    for node in &config.nodes {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("node")
            .arg("--config")
            .arg(&path)
            .arg("--node-id")
            .arg(node.id.to_string());
        if no_demo {
            cmd.arg("--no-demo");
        }
        cmd.env("AGORA_ADMIN_PASSWORD", &password)
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
    println!("press Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    for c in &mut children {
        let _ = c.start_kill();
    }
    Ok(())
}
