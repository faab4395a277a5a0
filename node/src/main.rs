//! The `agora` binary.

use agora_cluster_config::NodeSettings;
use agora_node::node::{self, Secrets};
use agora_node::seed::{AdminSeed, ADMIN_EMAIL};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Agora: an e-commerce backend where every business entity is an actor.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Log format: text or json (JSON lines for log shippers).
    #[arg(long, global = true, default_value = "text", env = "AGORA_LOG_FORMAT")]
    log_format: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node with embedded storage and a demo catalog.
    Dev(DevArgs),
}

#[derive(Parser)]
struct DevArgs {
    /// Where data lives.
    #[arg(long, default_value = "./agora-data", env = "AGORA_DATA_DIR")]
    data_dir: PathBuf,
    /// Shop API address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "AGORA_HTTP_ADDR")]
    http_addr: SocketAddr,
    /// Admin endpoint address.
    #[arg(long, default_value = "127.0.0.1:9090", env = "AGORA_ADMIN_ADDR")]
    admin_addr: SocketAddr,
    /// Number of shards (fixed when the data dir is created).
    #[arg(long, default_value_t = 64)]
    shards: u32,
    /// Stock reservation lifetime in ms.
    #[arg(long)]
    reservation_ttl_ms: Option<u64>,
    /// Payment gateway timeout in ms.
    #[arg(long)]
    payment_timeout_ms: Option<u64>,
    /// Duration of each simulated courier leg in ms.
    #[arg(long)]
    courier_leg_ms: Option<u64>,
    /// Idle time before an entity is passivated, in ms.
    #[arg(long)]
    passivate_after_ms: Option<u64>,
    /// Do not seed the demo catalog.
    #[arg(long)]
    no_demo: bool,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn settings(a: DevArgs) -> NodeSettings {
    let d = NodeSettings::default();
    NodeSettings {
        data_dir: a.data_dir,
        http_addr: a.http_addr,
        admin_addr: a.admin_addr,
        shard_count: a.shards,
        reservation_ttl_ms: a.reservation_ttl_ms.unwrap_or(d.reservation_ttl_ms),
        payment_timeout_ms: a.payment_timeout_ms.unwrap_or(d.payment_timeout_ms),
        courier_leg_ms: a.courier_leg_ms.unwrap_or(d.courier_leg_ms),
        passivate_after_ms: a.passivate_after_ms.unwrap_or(d.passivate_after_ms),
        seed_demo_catalog: !a.no_demo,
        ..d
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    match cli.command {
        Cmd::Dev(args) => {
            let settings = settings(args);
            let data_dir = settings.data_dir.clone();
            let secrets = Secrets {
                admin_password: std::env::var("AGORA_ADMIN_PASSWORD")
                    .ok()
                    .filter(|s| !s.is_empty()),
                jwt_secret: std::env::var("AGORA_JWT_SECRET")
                    .ok()
                    .filter(|s| !s.is_empty()),
            };
            let mut node = node::start(settings, secrets, metrics).await?;
            println!(
                "agora is running (one node, data in {})",
                data_dir.display()
            );
            println!("  shop API:  http://{}/api/v1/products", node.http_addr);
            println!("  API docs:  http://{}/openapi.json", node.http_addr);
            println!("  admin:     http://{}/healthz", node.admin_addr);
            match &node.admin_seed {
                AdminSeed::Created(Some(pw)) => println!("  admin login: {ADMIN_EMAIL} / {pw}  (generated; set AGORA_ADMIN_PASSWORD to choose one)"),
                _ => println!("  admin login: {ADMIN_EMAIL} (password from AGORA_ADMIN_PASSWORD or as first printed)"),
            }
            println!("press Ctrl-C to stop");
            tokio::select! {
                _ = wait_for_signal() => {
                    tracing::info!("stopping");
                    node.shutdown().await;
                    Ok(())
                }
                _ = node.store_failed() => anyhow::bail!("the store failed; stopping so that nothing unacknowledged is served"),
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}
