//! `cross-node`: product reads through node 1's edge on a self-started three-node cluster,
//! for products whose shard node 1 owns (local) and for products another node owns (one
//! network hop each way). Open loop at a fixed rate, rounds interleaved (local, remote,
//! remote, local, …), medians over rounds: the ratio answers "cross-node latency ≤ 2 ×
//! local".

use crate::api;
use crate::cli::CrossNodeArgs;
use crate::cluster_proc::{ClusterProc, SHARDS};
use crate::stats::Percentiles;
use agora_actors::{EntityKind, EntityRef};
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// "local" or "remote".
    pub variant: &'static str,
    /// Round number.
    pub round: usize,
    /// Latency percentiles (ms).
    pub latency: Percentiles,
    /// Non-2xx answers.
    pub errors: u64,
}

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct CrossNodeResult {
    /// Offered rate (requests per second).
    pub rate: f64,
    /// Products owned by node 1 / by the others.
    pub local_products: usize,
    /// Products owned by nodes 2 and 3.
    pub remote_products: usize,
    /// Every window.
    pub windows: Vec<Window>,
    /// Median over rounds of remote p50 / local p50.
    pub p50_ratio: f64,
    /// Median over rounds of remote p99 / local p99.
    pub p99_ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Offers `rate` GETs per second over `urls` (round robin) for `warmup + window`; latency
/// counts from each request's scheduled time (no coordinated omission).
async fn open_loop(
    client: &reqwest::Client,
    urls: &[String],
    rate: f64,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    let from = t0 + warmup;
    let until = from + window;
    let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0usize;
    loop {
        let due = t0 + period * i as u32;
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), urls[i % urls.len()].clone());
        let (hist, errors) = (hist.clone(), errors.clone());
        tasks.spawn(async move {
            let ok = matches!(api::get(&client, &url, None).await, Ok((200, _)));
            if due >= from {
                let us = due.elapsed().as_micros() as u64;
                if let Ok(mut h) = hist.lock() {
                    let _ = h.record(us.max(1));
                }
                if !ok {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        i += 1;
    }
    while tasks.join_next().await.is_some() {}
    let h = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock"))?
        .clone();
    Ok((h, errors.load(std::sync::atomic::Ordering::Relaxed)))
}

/// Runs the comparison.
pub async fn run(a: CrossNodeArgs) -> anyhow::Result<()> {
    let opts = a.target.node_options()?;
    eprintln!("starting a local three-node cluster…");
    let cluster = ClusterProc::start_three(&opts, 1)?;
    let ep = cluster.first_endpoint(&opts.admin_password)?;
    // The first node seeds the admin in the background once the cluster is up.
    let client = api::client(64)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let login_api = format!("{}/api/v1", ep.api_base);
    while api::login(&client, &login_api, "admin@agora.local", &ep.admin_password)
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!(
                "the admin was never seeded; node 1's log:\n{}",
                cluster.log_tail(1)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("creating {} products…", a.products);
    let world = api::setup(&ep, 64, a.products, 0).await?;
    let shards: serde_json::Value = client
        .get(format!("{}/admin/cluster/shards", ep.admin_base))
        .bearer_auth(&cluster.admin_token)
        .send()
        .await?
        .json()
        .await?;
    let owners: Vec<u64> = shards["shards"]
        .as_array()
        .context("no shards in the admin answer")?
        .iter()
        .map(|s| s["owner"].as_u64().unwrap_or(0))
        .collect();
    anyhow::ensure!(
        owners.len() == SHARDS as usize,
        "unexpected shard map {shards}"
    );
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for item in &world.catalog {
        let shard = EntityRef::new(EntityKind::Product, item.sku.as_str()).shard(SHARDS);
        let url = format!("{}/products/{}", world.api, item.sku);
        if owners[shard as usize] == 1 {
            local.push(url);
        } else {
            remote.push(url);
        }
    }
    anyhow::ensure!(
        !local.is_empty() && !remote.is_empty(),
        "need products on node 1 and elsewhere (have {} and {}); raise --products",
        local.len(),
        remote.len()
    );
    // Warm every product's entity on its owner first.
    for url in local.iter().chain(&remote) {
        let _ = api::get(&client, url, None).await;
    }
    let warmup = Duration::from_secs_f64(a.warmup);
    let window = Duration::from_secs_f64(a.window);
    let mut windows = Vec::new();
    for round in 0..a.rounds {
        let order: [(&'static str, &Vec<String>); 2] = if round % 2 == 0 {
            [("local", &local), ("remote", &remote)]
        } else {
            [("remote", &remote), ("local", &local)]
        };
        for (variant, urls) in order {
            let (h, errors) = open_loop(&client, urls, a.rate, warmup, window).await?;
            let latency = Percentiles::ms(&h);
            eprintln!(
                "round {round} {variant:6}: p50 {:.3} ms  p99 {:.3} ms  ({} requests, {errors} errors)",
                latency.p50, latency.p99, latency.count
            );
            windows.push(Window {
                variant,
                round,
                latency,
                errors,
            });
        }
    }
    let ratio = |f: fn(&Percentiles) -> f64| {
        median(
            (0..a.rounds)
                .filter_map(|r| {
                    let of = |v: &str| {
                        windows
                            .iter()
                            .find(|w| w.round == r && w.variant == v)
                            .map(|w| f(&w.latency))
                    };
                    Some(of("remote")? / of("local")?)
                })
                .collect(),
        )
    };
    let result = CrossNodeResult {
        rate: a.rate,
        local_products: local.len(),
        remote_products: remote.len(),
        p50_ratio: ratio(|p| p.p50),
        p99_ratio: ratio(|p| p.p99),
        windows,
    };
    let med = |variant: &str, f: fn(&Percentiles) -> f64| {
        median(
            result
                .windows
                .iter()
                .filter(|w| w.variant == variant)
                .map(|w| f(&w.latency))
                .collect(),
        )
    };
    println!(
        "cross-node product reads at {} req/s, {} rounds (medians): local p50 {:.3} ms p99 {:.3} ms; remote p50 {:.3} ms p99 {:.3} ms; ratio p50 {:.2}x p99 {:.2}x (target ≤ 2x)",
        a.rate,
        a.rounds,
        med("local", |p| p.p50),
        med("local", |p| p.p99),
        med("remote", |p| p.p50),
        med("remote", |p| p.p99),
        result.p50_ratio,
        result.p99_ratio
    );
    let errors: u64 = result.windows.iter().map(|w| w.errors).sum();
    let mut cluster = cluster;
    if !cluster.all_alive() {
        bail!("a node of the local cluster died during the run");
    }
    let name = format!("cross-node-{}", crate::report::stamp());
    println!(
        "wrote {}",
        crate::report::write_json(&a.out, &name, &result)?.display()
    );
    drop(cluster);
    if errors > 0 {
        bail!("correctness: {errors} non-2xx product reads");
    }
    Ok(())
}
