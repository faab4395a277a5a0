//! Failover time: on a self-started three-node cluster with replicated shards, node 2 or 3
//! is killed with SIGKILL, and the time until every product (spread over every shard)
//! answers 200 again through node 1 is measured; the node is restarted and waited for
//! before the next kill.

use crate::api;
use crate::cli::FailoverArgs;
use crate::cluster_proc::ClusterProc;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

/// Longest a failover may take before the run is declared failed.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until every SKU answers 200 on `api`; returns how long it took.
async fn until_all_served(
    c: &reqwest::Client,
    api: &str,
    skus: &[String],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for sku in skus {
        let url = format!("{api}/products/{sku}");
        loop {
            if matches!(api::get(c, &url, None).await, Ok((200, _))) {
                break;
            }
            if started.elapsed() > FAILOVER_TIMEOUT {
                bail!("{sku} was not served again within {FAILOVER_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(started.elapsed())
}

/// How many shards the map gives each node (as node 1 reports it).
async fn owned_per_node(
    c: &reqwest::Client,
    admin_base: &str,
    token: &str,
) -> anyhow::Result<std::collections::BTreeMap<u64, usize>> {
    let shards: serde_json::Value = c
        .get(format!("{admin_base}/admin/cluster/shards"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let mut per = std::collections::BTreeMap::new();
    for s in shards["shards"]
        .as_array()
        .context("no shards in the admin answer")?
    {
        *per.entry(s["owner"].as_u64().unwrap_or(0)).or_default() += 1;
    }
    Ok(per)
}

/// Waits until the leaders are spread over all three nodes (at most one shard apart), as
/// in a cluster that has been up a while: each kill then takes a third of the leaders.
pub(crate) async fn until_balanced(
    c: &reqwest::Client,
    admin_base: &str,
    token: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let per = owned_per_node(c, admin_base, token).await?;
        let (min, max) = (per.values().min(), per.values().max());
        if per.len() == 3 && max.zip(min).is_some_and(|(max, min)| max - min <= 1) {
            return Ok(());
        }
        if started.elapsed() > FAILOVER_TIMEOUT {
            bail!("the leaders never spread evenly: shards per node {per:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Failover times over a run of kills.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailoverResult {
    /// The shards' replication factor.
    pub replication_factor: usize,
    /// Products whose reads say that every shard serves.
    pub products: usize,
    /// Kill -9 to every product served through a survivor, per kill, ms.
    pub failover_ms: Vec<f64>,
    /// Their median, ms.
    pub median_ms: f64,
    /// The longest, ms.
    pub worst_ms: f64,
}

/// Starts a replicated three-node cluster and times `kills` failovers: each kill -9s node
/// 2 or 3 of a balanced cluster, waits until every product answers through node 1, then
/// restarts the node.
pub async fn measure(
    target: &crate::target::TargetArgs,
    kills: usize,
    products: usize,
) -> anyhow::Result<FailoverResult> {
    let (mut cluster, ep) = ClusterProc::start_replicated(target, "failover")?;
    let world = api::setup(&ep, 16, products, 0).await?;
    let skus: Vec<String> = world.catalog.iter().map(|c| c.sku.clone()).collect();
    let mut times_ms = Vec::with_capacity(kills);
    for k in 0..kills {
        let victim = 1 + k % 2;
        until_balanced(&world.client, &ep.admin_base, &cluster.admin_token).await?;
        cluster.kill(victim)?;
        let took = until_all_served(&world.client, &world.api, &skus).await?;
        let ms = took.as_secs_f64() * 1e3;
        eprintln!(
            "kill {} of {kills}: node {} — every product served again after {ms:.0} ms",
            k + 1,
            victim + 1
        );
        times_ms.push(ms);
        cluster.restart(victim)?;
        cluster.wait_ready(victim)?;
    }
    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(FailoverResult {
        replication_factor: target.replication_factor,
        products: skus.len(),
        median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        worst_ms: sorted.last().copied().unwrap_or(0.0),
        failover_ms: times_ms,
    })
}

/// Runs the kills and prints (and writes) the failover times.
pub async fn run(a: FailoverArgs) -> anyhow::Result<()> {
    let r = measure(&a.target, a.kills, a.products).await?;
    println!(
        "failover over {} kills: median {:.0} ms, worst {:.0} ms (from kill -9 to every product served through a survivor)",
        r.failover_ms.len(),
        r.median_ms,
        r.worst_ms
    );
    let path = crate::report::write_json(&a.out, "failover", &r)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
