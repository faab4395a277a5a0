//! The `agora` binary.

use agora_cluster::Membership;
use agora_cluster_config::cluster::ClusterConfig;
use agora_cluster_config::NodeSettings;
use agora_node::node::{self, ClusterSpec, Secrets};
use agora_node::seed::{AdminSeed, ADMIN_EMAIL};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc instead of glibc malloc: the entity runtime allocates and frees many small
/// buffers across worker threads (glibc spent about a fifth of the workers' time in malloc,
/// free and consolidation in a checkout profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod local_cluster;

/// Agora: an e-commerce backend where every business entity is an actor.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Log format: text or json (JSON lines for log shippers).
    #[arg(long, global = true, default_value = "text", env = "AGORA_LOG_FORMAT")]
    log_format: String,
    /// Turn the shop API's rate limits off (benchmarks, tests), whatever the settings say.
    #[arg(long, global = true, env = "AGORA_NO_RATE_LIMITS")]
    no_rate_limits: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node with embedded storage and a demo catalog (or a local cluster with --nodes).
    Dev(DevArgs),
    /// Run one node of a cluster described by a cluster file.
    Node(NodeArgs),
    /// Run a simulated payment gateway as a loopback HTTP service: charges and refunds over
    /// HTTP from the merchants of AGORA_GATEWAY_MERCHANTS (id=api_key,...), results as
    /// webhooks signed with AGORA_WEBHOOK_SECRET (HMAC-SHA256) to each merchant's own URL.
    PaymentGatewaySim(GatewaySimArgs),
    /// Print the shop API's OpenAPI document (the one a node serves at /openapi.json), or with
    /// --admin the admin API's (served at /admin/openapi.json on the admin port), for client
    /// generators and validators.
    Openapi(OpenapiArgs),
    /// Mint a join token for node `--node-id` from the cluster file's secret, offline: what
    /// `POST /admin/cluster/join-tokens` answers, for automation that already holds the
    /// cluster file (a Kubernetes pod joining on scale-up). Valid for an hour.
    JoinToken(JoinTokenArgs),
}

#[derive(Parser)]
struct JoinTokenArgs {
    /// The cluster file whose name and secret sign the token.
    #[arg(long, env = "AGORA_CONFIG")]
    config: PathBuf,
    /// The node the token admits.
    #[arg(long)]
    node_id: u64,
}

#[derive(Parser)]
struct OpenapiArgs {
    /// Print the admin API's document instead of the shop API's.
    #[arg(long)]
    admin: bool,
}

#[derive(Parser)]
struct GatewaySimArgs {
    /// Where the gateway listens (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7070")]
    addr: SocketAddr,
    /// A merchant's fixed webhook URL, as MERCHANT_ID=URL (repeatable), e.g.
    /// agora=http://127.0.0.1:8080/api/v1/payments/webhook. A merchant without one registers
    /// its own (PUT /v1/webhook_endpoint, with its API key); calls never name one.
    #[arg(long)]
    webhook_url: Vec<String>,
    /// Shortest delay before an event is sent, in ms.
    #[arg(long, default_value_t = 20)]
    min_delay_ms: u64,
    /// Longest delay before an event is sent, in ms.
    #[arg(long, default_value_t = 150)]
    max_delay_ms: u64,
    /// Percentage (0..=100) of events delivered twice (same event id).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    duplicate_percent: u32,
    /// Percentage (0..=100) of charges whose `charge.pending` event comes after the result.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    reorder_percent: u32,
}

#[derive(Parser)]
struct NodeArgs {
    /// The cluster file (see cluster-config/examples/three-nodes.toml).
    #[arg(long, env = "AGORA_CONFIG")]
    config: PathBuf,
    /// This node's id in the cluster file.
    #[arg(long, env = "AGORA_NODE_ID")]
    node_id: u64,
    /// Do not seed the demo catalog.
    #[arg(long)]
    no_demo: bool,
    /// Run even with example, short or low-entropy secrets (trying an example file on your
    /// own machine; never in production: anyone who knows them can join or mint tokens).
    #[arg(long)]
    insecure_example_secrets: bool,
    /// Join a running cluster (this node was not in its first cluster file) and take a share
    /// of the shards.
    #[arg(long)]
    join: bool,
    /// With `--join`: the join token an operator minted for this node id
    /// (`POST /admin/cluster/join-tokens`), needed unless the running nodes' cluster files
    /// list it.
    #[arg(long, env = "AGORA_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
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
    /// Most entities active at once (0: no cap); the least recently used go first.
    #[arg(long)]
    max_active_entities: Option<u64>,
    /// How long the ids of applied messages are remembered, in ms (default 7 days).
    #[arg(long)]
    message_retention_ms: Option<u64>,
    /// Do not seed the demo catalog.
    #[arg(long)]
    no_demo: bool,
    /// Start a local cluster of this many node processes instead of one embedded node.
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Access token lifetime in seconds (default 900).
    #[arg(long, env = "AGORA_ACCESS_TOKEN_TTL_SECS")]
    access_token_ttl_secs: Option<u64>,
    /// Refresh token lifetime in seconds (default 30 days).
    #[arg(long, env = "AGORA_REFRESH_TOKEN_TTL_SECS")]
    refresh_token_ttl_secs: Option<u64>,
    /// First lockout after 5 failed logins in a row, in ms (default 60000); doubles with each
    /// further failure, up to an hour.
    #[arg(long, env = "AGORA_LOCKOUT_BASE_MS")]
    lockout_base_ms: Option<u64>,
    /// Most password hashes computed at once (default 2; each holds about 19 MiB).
    #[arg(long, env = "AGORA_PASSWORD_HASHES_AT_ONCE")]
    password_hashes_at_once: Option<u32>,
    /// How long a registration or login waits for a hashing turn before 503, in ms
    /// (default 5000).
    #[arg(long, env = "AGORA_PASSWORD_HASH_WAIT_MS")]
    password_hash_wait_ms: Option<u64>,
    /// Requests per second per client address (burst twice that; default 50).
    #[arg(long, env = "AGORA_RATE_LIMIT_PER_IP")]
    rate_limit_per_ip: Option<u32>,
    /// Requests per second per signed-in user (burst twice that; default 20).
    #[arg(long, env = "AGORA_RATE_LIMIT_PER_USER")]
    rate_limit_per_user: Option<u32>,
    /// Login attempts per minute per client address (burst the same; default 10, burst 5).
    #[arg(long, env = "AGORA_RATE_LIMIT_LOGIN_PER_MIN")]
    rate_limit_login_per_min: Option<u32>,
    /// A proxy whose X-Forwarded-For is believed (repeat, or comma-separate in the env).
    #[arg(
        long = "trusted-proxy",
        env = "AGORA_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// SMTP server for email notifications: smtp://host:port (STARTTLS when offered;
    /// ?tls=required to insist) or smtps://host:port (default: the notifications file).
    #[arg(long, env = "AGORA_SMTP_URL")]
    smtp_url: Option<String>,
    /// Sender of notification emails.
    #[arg(long, env = "AGORA_EMAIL_FROM")]
    email_from: Option<String>,
    /// Origins whose browser pages may call the shop API (CORS), like https://shop.example;
    /// repeat the flag or separate with commas. None by default.
    #[arg(
        long = "cors-origin",
        env = "AGORA_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Webhook for SMS notifications (HTTP POST, JSON).
    #[arg(long, env = "AGORA_SMS_WEBHOOK_URL")]
    sms_webhook_url: Option<String>,
    /// Webhook for WhatsApp notifications (HTTP POST, JSON).
    #[arg(long, env = "AGORA_WHATSAPP_WEBHOOK_URL")]
    whatsapp_webhook_url: Option<String>,
    /// Base URL of an HTTP payment gateway (`agora payment-gateway-sim`) instead of the
    /// in-process simulated one; needs AGORA_WEBHOOK_SECRET.
    #[arg(long, env = "AGORA_PAYMENT_GATEWAY_URL")]
    payment_gateway_url: Option<String>,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
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
    let mut rate_limits = d.rate_limits.clone();
    if let Some(n) = a.rate_limit_per_ip {
        rate_limits.per_ip_per_sec = n;
        rate_limits.per_ip_burst = n.saturating_mul(2);
    }
    if let Some(n) = a.rate_limit_per_user {
        rate_limits.per_user_per_sec = n;
        rate_limits.per_user_burst = n.saturating_mul(2);
    }
    if let Some(n) = a.rate_limit_login_per_min {
        rate_limits.login_per_min = n;
        rate_limits.login_burst = n;
    }
    rate_limits.trusted_proxies = a.trusted_proxies;
    let mut notifications = d.notifications.clone();
    notifications.smtp_url = a.smtp_url;
    notifications.sms_webhook_url = a.sms_webhook_url;
    notifications.whatsapp_webhook_url = a.whatsapp_webhook_url;
    if let Some(from) = a.email_from {
        notifications.email_from = from;
    }
    NodeSettings {
        token_ttl_secs: a.access_token_ttl_secs.unwrap_or(d.token_ttl_secs),
        refresh_token_ttl_secs: a.refresh_token_ttl_secs.unwrap_or(d.refresh_token_ttl_secs),
        lockout_base_ms: a.lockout_base_ms.unwrap_or(d.lockout_base_ms),
        password_hashes_at_once: a
            .password_hashes_at_once
            .unwrap_or(d.password_hashes_at_once),
        password_hash_wait_ms: a.password_hash_wait_ms.unwrap_or(d.password_hash_wait_ms),
        rate_limits,
        notifications,
        data_dir: a.data_dir,
        http_addr: a.http_addr,
        admin_addr: a.admin_addr,
        shard_count: a.shards,
        reservation_ttl_ms: a.reservation_ttl_ms.unwrap_or(d.reservation_ttl_ms),
        payment_timeout_ms: a.payment_timeout_ms.unwrap_or(d.payment_timeout_ms),
        courier_leg_ms: a.courier_leg_ms.unwrap_or(d.courier_leg_ms),
        passivate_after_ms: a.passivate_after_ms.unwrap_or(d.passivate_after_ms),
        max_active_entities: a.max_active_entities.unwrap_or(d.max_active_entities),
        message_retention_ms: a.message_retention_ms.unwrap_or(d.message_retention_ms),
        seed_demo_catalog: !a.no_demo,
        payment_gateway_url: a.payment_gateway_url,
        cors_allowed_origins: a.cors_origins,
        ..d
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_signal() {
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

/// Refuses to run a cluster node with secrets a stranger could know or guess, unless the
/// operator named the risk with `--insecure-example-secrets` (then it warns at every start).
fn check_secrets(config: &ClusterConfig, secrets: &Secrets, insecure: bool) -> anyhow::Result<()> {
    let mut from_env: Vec<(&str, &str)> = Vec::new();
    for (name, value) in [
        ("AGORA_JWT_SECRET", &secrets.jwt_secret),
        ("AGORA_ADMIN_TOKEN", &secrets.admin_token),
        ("AGORA_WEBHOOK_SECRET", &secrets.webhook_secret),
        ("AGORA_GATEWAY_API_KEY", &secrets.gateway_api_key),
        ("AGORA_GATEWAY_TOKEN_KEY", &secrets.gateway_token_key),
    ] {
        if let Some(v) = value {
            from_env.push((name, v.as_str()));
        }
    }
    for s in &secrets.jwt_previous_secrets {
        from_env.push(("AGORA_JWT_PREVIOUS_SECRETS", s.as_str()));
    }
    match config.check_secrets(&from_env) {
        Ok(()) => Ok(()),
        Err(e) if insecure => {
            tracing::warn!(problem = %e, "running with weak or example secrets (--insecure-example-secrets): anyone who knows them can join the cluster or mint admin tokens");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The shop API's connection bounds, each overridden by its environment variable when set:
/// `AGORA_MAX_CONNECTIONS`, `AGORA_MAX_CONNECTIONS_PER_ADDRESS`, `AGORA_IDLE_TIMEOUT_MS`.
fn connection_limits_from_env(
    mut limits: agora_cluster_config::ConnectionLimits,
) -> anyhow::Result<agora_cluster_config::ConnectionLimits> {
    fn var(name: &str) -> anyhow::Result<Option<u64>> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}: {v:?} is not a whole number"))?;
                anyhow::ensure!(n > 0, "{name}: must be at least 1");
                Ok(Some(n))
            }
            _ => Ok(None),
        }
    }
    if let Some(n) = var("AGORA_MAX_CONNECTIONS")? {
        limits.max_total = usize::try_from(n)?;
    }
    if let Some(n) = var("AGORA_MAX_CONNECTIONS_PER_ADDRESS")? {
        limits.max_per_address = usize::try_from(n)?;
    }
    if let Some(n) = var("AGORA_IDLE_TIMEOUT_MS")? {
        limits.idle_timeout_ms = n;
    }
    Ok(limits)
}

fn secrets() -> Secrets {
    Secrets {
        admin_password: std::env::var("AGORA_ADMIN_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty()),
        jwt_secret: std::env::var("AGORA_JWT_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        jwt_previous_secrets: std::env::var("AGORA_JWT_PREVIOUS_SECRETS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        admin_token: std::env::var("AGORA_ADMIN_TOKEN")
            .ok()
            .filter(|s| !s.is_empty()),
        webhook_secret: std::env::var("AGORA_WEBHOOK_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        gateway_api_key: std::env::var("AGORA_GATEWAY_API_KEY")
            .ok()
            .filter(|s| !s.is_empty()),
        gateway_token_key: std::env::var("AGORA_GATEWAY_TOKEN_KEY")
            .ok()
            .filter(|s| !s.is_empty()),
    }
}

fn banner(node: &node::RunningNode, what: &str) {
    println!("agora is running ({what})");
    println!("  shop API:  http://{}/api/v1/products", node.http_addr);
    println!(
        "  API docs:  http://{}/docs  (OpenAPI document: /openapi.json)",
        node.http_addr
    );
    println!("  admin:     http://{}/healthz", node.admin_addr);
    match &node.admin_seed {
        Some(AdminSeed::Created(Some(pw))) => println!("  admin login: {ADMIN_EMAIL} / {pw}  (generated; set AGORA_ADMIN_PASSWORD to choose one)"),
        _ => println!("  admin login: {ADMIN_EMAIL} (password from AGORA_ADMIN_PASSWORD, or as printed on first start)"),
    }
    if let Some(t) = &node.generated_admin_token {
        println!("  admin token: {t}  (generated; set AGORA_ADMIN_TOKEN to choose one)");
    }
    println!("press Ctrl-C to stop");
}

async fn serve_until_stopped(mut node: node::RunningNode) -> anyhow::Result<()> {
    tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("stopping: draining first");
            let started = std::time::Instant::now();
            node.drain().await;
            let drained_ms = started.elapsed().as_millis() as u64;
            node.shutdown().await;
            tracing::info!(
                drained_ms,
                stopped_ms = started.elapsed().as_millis() as u64,
                "stopped: every request in progress answered"
            );
            Ok(())
        }
        _ = node.store_failed() => anyhow::bail!("the store failed; stopping so that nothing unacknowledged is served"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let metrics = agora_node::metrics_catalog::exporter()?
        .install_recorder()
        .ok();
    agora_node::metrics_catalog::register();
    match cli.command {
        Cmd::PaymentGatewaySim(args) => gateway_sim(args).await,
        Cmd::Openapi(args) => {
            let doc = if args.admin {
                agora_node::admin_openapi::document()
            } else {
                agora_http_edge::openapi::document()
            };
            print_stdout(&serde_json::to_string_pretty(&doc)?)
        }
        Cmd::JoinToken(args) => print_stdout(&join_token(&args)?),
        Cmd::Dev(args) if args.nodes > 1 => {
            local_cluster::run(
                args.nodes,
                args.shards,
                &args.data_dir,
                args.http_addr,
                args.admin_addr,
                args.no_demo,
            )
            .await
        }
        Cmd::Dev(args) => {
            let mut settings = settings(args);
            settings.rate_limits.enabled &= !cli.no_rate_limits;
            settings.connections = connection_limits_from_env(settings.connections)?;
            let data_dir = settings.data_dir.clone();
            let node = node::start(settings, secrets(), None, metrics).await?;
            banner(&node, &format!("one node, data in {}", data_dir.display()));
            serve_until_stopped(node).await
        }
        Cmd::Node(args) => {
            let secrets = secrets();
            anyhow::ensure!(
                secrets.admin_password.is_some(),
                "set AGORA_ADMIN_PASSWORD: in a cluster the admin account is seeded in the background, so a generated password could not be shown"
            );
            let config = ClusterConfig::load(&args.config)?;
            check_secrets(&config, &secrets, args.insecure_example_secrets)?;
            let mut settings = config.node_settings(args.node_id)?;
            settings.seed_demo_catalog = !args.no_demo;
            settings.connections = connection_limits_from_env(settings.connections)?;
            settings.rate_limits.enabled &= !cli.no_rate_limits;
            settings.payment_gateway_url = std::env::var("AGORA_PAYMENT_GATEWAY_URL")
                .ok()
                .filter(|s| !s.is_empty());
            let spec = ClusterSpec {
                membership: Membership {
                    cluster_name: config.cluster_name.clone(),
                    me: args.node_id,
                    nodes: config.nodes.iter().map(|n| n.entry()).collect(),
                },
                secret: config.secret.clone(),
                admin_token: config.admin_token.clone(),
                admin_mutations: config.admin_mutations,
                fault_injection: config.fault_injection,
                join: args.join,
                tls: config.tls.clone(),
                jwt_secret: config.jwt_secret.clone(),
                jwt_previous_secrets: config.jwt_previous_secrets.clone(),
                replication_factor: config.replication_factor(),
                replica_timeout_ms: config.replica_timeout_ms(),
                join_token: args.join_token.clone(),
                cluster_connections: config.cluster_connections,
            };
            let mut env = node::NodeEnv::os();
            env.network = node::PeerNetwork::Cluster(config.nodes.clone());
            let node = node::start_with(settings, secrets, Some(spec), metrics, env).await?;
            banner(
                &node,
                &format!("node {} of cluster {}", args.node_id, config.cluster_name),
            );
            serve_until_stopped(node).await
        }
    }
}

async fn gateway_sim(args: GatewaySimArgs) -> anyhow::Result<()> {
    let secret = std::env::var("AGORA_WEBHOOK_SECRET").unwrap_or_default();
    anyhow::ensure!(
        secret.len() >= 16,
        "set AGORA_WEBHOOK_SECRET (at least 16 bytes): the webhook signing secret shared with the shop"
    );
    anyhow::ensure!(
        args.min_delay_ms <= args.max_delay_ms && args.max_delay_ms <= 60_000,
        "--min-delay-ms must be at most --max-delay-ms, which must be at most 60000"
    );
    let merchants = std::env::var("AGORA_GATEWAY_MERCHANTS").unwrap_or_default();
    let mut merchants = agora_node::payment_gateway_sim::parse_merchants(&merchants)?;
    for entry in &args.webhook_url {
        let Some((id, url)) = entry.split_once('=') else {
            anyhow::bail!("--webhook-url takes MERCHANT_ID=URL, not {entry:?}");
        };
        let Some(m) = merchants.iter_mut().find(|m| m.id == id) else {
            anyhow::bail!("--webhook-url names merchant {id:?}, not in AGORA_GATEWAY_MERCHANTS");
        };
        m.webhook_url = Some(url.to_string());
    }
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    println!("agora payment gateway sim listening on http://{addr}");
    for m in &merchants {
        let url = m
            .webhook_url
            .as_deref()
            .unwrap_or("(registered by the merchant)");
        println!("  merchant {}: webhooks to {url}", m.id);
    }
    let card_key = match std::env::var("AGORA_GATEWAY_TOKEN_KEY") {
        Ok(k) if !k.is_empty() => k.into_bytes(),
        _ => {
            tracing::warn!("AGORA_GATEWAY_TOKEN_KEY is not set: card tokens are sealed with a key made for this run and are not valid after a restart");
            let mut k = vec![0u8; 32];
            agora_actors::seams::RandomSource::fill(&agora_seams::system::OsRandom, &mut k);
            k
        }
    };
    let config = agora_node::payment_gateway_sim::GatewaySimConfig {
        card_key,
        secret: secret.into_bytes(),
        merchants,
        min_delay_ms: args.min_delay_ms,
        max_delay_ms: args.max_delay_ms,
        duplicate_percent: args.duplicate_percent,
        reorder_percent: args.reorder_percent,
    };
    tokio::select! {
        r = agora_node::payment_gateway_sim::serve_gateway_sim(
            listener,
            config,
            std::sync::Arc::new(agora_seams::system::OsRandom),
            std::sync::Arc::new(agora_seams::system::SystemClock),
        ) => r,
        _ = wait_for_signal() => Ok(()),
    }
}

/// Writes `text` and a newline to stdout; a reader that closed the pipe early (`| head`)
/// is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A join token for `args.node_id`, signed with the cluster file's secret, valid for an hour
/// from now (wall clock: the nodes that check it read theirs).
fn join_token(args: &JoinTokenArgs) -> anyhow::Result<String> {
    let config = ClusterConfig::load(&args.config)?;
    let policy = agora_cluster::join_token::JoinPolicy {
        members: Vec::new(),
        cluster_name: config.cluster_name.clone(),
        secret: config.secret.clone(),
    };
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let expires_at_ms = now_ms + agora_cluster::join_token::JOIN_TOKEN_TTL_MS;
    Ok(policy.mint(args.node_id, expires_at_ms))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}
