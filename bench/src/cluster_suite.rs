//! The cluster part of `report`: in the same run as the single-node figures, rounds of a
//! fresh local three-node cluster at replication factor 1 and at factor 3 (closed-loop
//! checkout spread over the three edges, the order of the two alternating by round), then
//! failover times over a run of kills and a rebuild's throughput, both at factor 3.

use crate::api;
use crate::cli::ReportArgs;
use crate::cluster_proc::ClusterProc;
use crate::failover::{self, FailoverResult};
use crate::load::{self, LoadResult, Observe};
use crate::node_proc::NodeOptions;
use crate::rebuild::{self, RebuildResult};
use crate::scenarios::Scenario;
use crate::stats::Op;
use crate::suite::{self, Round, Spread};
use crate::table::{cell, verdict};
use crate::target::TargetKind;
use crate::verify;
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// One round: the same closed-loop checkout on a fresh cluster at each factor.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRound {
    /// Round number, from 1.
    pub round: usize,
    /// Replication factor 1 (each shard on one node).
    pub factor_1: LoadResult,
    /// Replication factor 3 (each shard on all three nodes).
    pub factor_3: LoadResult,
    /// Whether every node of both clusters ran to the end of its run.
    pub nodes_survived: bool,
}

/// The cluster figures of a report.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// The interleaved rounds.
    pub rounds: Vec<ClusterRound>,
    /// Failover at factor 3 (None with `--kills 0`).
    pub failover: Option<FailoverResult>,
    /// A rebuild at factor 3 (None with `--rebuild-products 0`).
    pub rebuild: Option<RebuildResult>,
    /// A rolling restart under load at factor 3 (None with `--rolling-shoppers 0`).
    pub rolling: Option<crate::rolling::RollingResult>,
}

/// Closed-loop checkout on a fresh three-node cluster at `factor`.
async fn checkout_on_cluster(
    a: &ReportArgs,
    n: usize,
    opts: &NodeOptions,
    factor: usize,
) -> anyhow::Result<(LoadResult, bool)> {
    let mut cluster = ClusterProc::start_three(opts, factor)?;
    let ep = cluster.spread_endpoint(&opts.admin_password)?;
    eprintln!("cluster round {n}: factor {factor}: setting up…");
    let world = Arc::new(api::setup(&ep, a.users, a.products, a.users).await?);
    let observe = Observe {
        node_pid: ep.node_pid,
        peer_pids: ep.peers.iter().map(|p| p.2).collect(),
        node_counters: true,
        exclude_threads: None,
    };
    let label = format!("r{n} cluster factor {factor} checkout");
    let spec = suite::spec(a, &label, Scenario::Checkout, None);
    let (mut result, rec) = load::run(world.clone(), &spec, &observe).await?;
    let wait = Duration::from_secs_f64(a.confirm_wait);
    result.verification = Some(verify::verify(&world, rec.orders(), wait).await);
    Ok((result, cluster.all_alive()))
}

/// Runs the cluster part: `a.cluster.cluster_rounds` interleaved rounds, then failover and
/// rebuild.
pub async fn run(a: &ReportArgs, opts: &NodeOptions) -> anyhow::Result<ClusterReport> {
    let mut rounds = Vec::new();
    for n in 1..=a.cluster.cluster_rounds {
        // Alternate which factor goes first, so a drift of the machine favours neither.
        let order = if n % 2 == 1 { [1, 3] } else { [3, 1] };
        let mut runs = Vec::new();
        for factor in order {
            let run = checkout_on_cluster(a, n, opts, factor).await;
            runs.push((
                factor,
                run.with_context(|| format!("cluster round {n}, factor {factor}"))?,
            ));
        }
        runs.sort_by_key(|(f, _)| *f);
        let [(_, (factor_1, alive_1)), (_, (factor_3, alive_3))] =
            <[_; 2]>::try_from(runs).map_err(|_| anyhow::anyhow!("a round has two runs"))?;
        eprintln!(
            "cluster round {n}: factor 3 ÷ factor 1 checkouts/s {:.2}",
            factor_3.checkouts_per_s / factor_1.checkouts_per_s.max(1e-9)
        );
        rounds.push(ClusterRound {
            round: n,
            factor_1,
            factor_3,
            nodes_survived: alive_1 && alive_3,
        });
    }
    let mut target = a.target.clone();
    target.target = TargetKind::Cluster3;
    target.replication_factor = 3;
    let failover = match a.cluster.kills {
        0 => None,
        kills => Some(failover::measure(&target, kills, a.cluster.failover_products).await?),
    };
    let rebuild = match a.cluster.rebuild_products {
        0 => None,
        products => {
            Some(rebuild::measure(&target, products, a.cluster.rebuild_description_bytes).await?)
        }
    };
    let rolling = match a.cluster.rolling_shoppers {
        0 => None,
        shoppers => Some(crate::rolling::measure(&target, shoppers, 64).await?),
    };
    Ok(ClusterReport {
        rounds,
        failover,
        rebuild,
        rolling,
    })
}

/// Correctness problems of the cluster runs.
pub fn problems(c: &ClusterReport) -> Vec<String> {
    let mut out = Vec::new();
    for r in &c.rounds {
        out.extend(
            [&r.factor_1, &r.factor_3]
                .iter()
                .flat_map(|l| suite::load_problems(l)),
        );
        if !r.nodes_survived {
            out.push(format!("cluster round {}: a node died", r.round));
        }
    }
    out
}

/// Spread over the cluster rounds of a figure.
fn over(rounds: &[ClusterRound], f: impl Fn(&ClusterRound) -> Option<f64>) -> Option<Spread> {
    Spread::of(rounds.iter().filter_map(f))
}

/// Node CPU per order, ms (summed over the nodes the run observed).
fn cpu_ms_per_order(l: &LoadResult) -> Option<f64> {
    l.node
        .as_ref()
        .and_then(|n| n.cpu_seconds_per_order)
        .map(|c| c * 1e3)
}

/// A percentile of time to 201, ms.
fn to_201_ms(l: &LoadResult, p: impl Fn(&crate::stats::Percentiles) -> f64) -> Option<f64> {
    l.latency(Op::Checkout).map(|x| match x.unit {
        "us" => p(x) / 1e3,
        _ => p(x),
    })
}

/// The markdown of the cluster part; `single` are the report's single-node rounds (for
/// CPU per order against one node).
pub fn markdown(c: &ClusterReport, single: &[Round]) -> String {
    let rs = &c.rounds;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n### Replicated cluster: three local `agora node` processes, factor 1 against factor 3\n"
    );
    let _ = writeln!(
        t,
        "| Figure | factor 1 | factor 3 | factor 3 ÷ factor 1: median (min–max) over {} rounds | Target | Verdict |",
        rs.len()
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|");
    let ratio = over(rs, |r| {
        Some(r.factor_3.checkouts_per_s / r.factor_1.checkouts_per_s.max(1e-9))
    });
    let _ = writeln!(
        t,
        "| Durable checkouts/s, closed loop | {} | {} | {} | ≥ 0.6 | {} |",
        cell(over(rs, |r| Some(r.factor_1.checkouts_per_s)), 0),
        cell(over(rs, |r| Some(r.factor_3.checkouts_per_s)), 0),
        cell(ratio, 2),
        verdict(ratio, |v| v >= 0.6)
    );
    for (name, pick, target) in [
        (
            "p50",
            (|x: &crate::stats::Percentiles| x.p50) as fn(&_) -> f64,
            None,
        ),
        ("p99", |x: &crate::stats::Percentiles| x.p99, Some(2.0)),
    ] {
        let ratio = over(rs, |r| {
            to_201_ms(&r.factor_3, pick)
                .zip(to_201_ms(&r.factor_1, pick))
                .map(|(a, b)| a / b.max(1e-9))
        });
        let _ = writeln!(
            t,
            "| {name} time to 201, ms | {} | {} | {} | {} | {} |",
            cell(over(rs, |r| to_201_ms(&r.factor_1, pick)), 1),
            cell(over(rs, |r| to_201_ms(&r.factor_3, pick)), 1),
            cell(ratio, 2),
            target.map_or("(info)".to_string(), |b| format!("≤ {b}")),
            target.map_or("", |b| verdict(ratio, |v| v <= b))
        );
    }
    let cpu = over(rs, |r| {
        cpu_ms_per_order(&r.factor_3)
            .zip(cpu_ms_per_order(&r.factor_1))
            .map(|(a, b)| a / b.max(1e-9))
    });
    let _ = writeln!(
        t,
        "| Node CPU per order, ms (three nodes summed) | {} | {} | {} | (info) | |",
        cell(over(rs, |r| cpu_ms_per_order(&r.factor_1)), 2),
        cell(over(rs, |r| cpu_ms_per_order(&r.factor_3)), 2),
        cell(cpu, 2),
    );
    let _ = writeln!(
        t,
        "| fsyncs per order (three nodes summed) | {} | {} | | (info) | |",
        cell(
            over(rs, |r| r
                .factor_1
                .node
                .as_ref()
                .and_then(|n| n.fsyncs_per_order)),
            2
        ),
        cell(
            over(rs, |r| r
                .factor_3
                .node
                .as_ref()
                .and_then(|n| n.fsyncs_per_order)),
            2
        ),
    );
    let one = Spread::of(single.iter().filter_map(|r| cpu_ms_per_order(&r.checkout)));
    let _ = writeln!(
        t,
        "\nNode CPU per order on one node (`agora dev`, the rounds above): {} ms; the cluster at factor 1: {} ms, at factor 3: {} ms.",
        cell(one, 2),
        cell(over(rs, |r| cpu_ms_per_order(&r.factor_1)), 2),
        cell(over(rs, |r| cpu_ms_per_order(&r.factor_3)), 2),
    );
    failover_and_rebuild(&mut t, c);
    t
}

/// The failover and rebuild lines.
fn failover_and_rebuild(t: &mut String, c: &ClusterReport) {
    if let Some(f) = &c.failover {
        let ok = f.median_ms <= 1_000.0 && f.worst_ms <= 3_000.0;
        let _ = writeln!(
            t,
            "\nFailover at factor 3, kill -9 to every one of {} products served through a survivor, over {} kills: median **{:.0} ms**, worst **{:.0} ms** (target median ≤ 1 s, worst ≤ 3 s: {}). Each: {}.",
            f.products,
            f.failover_ms.len(),
            f.median_ms,
            f.worst_ms,
            if ok { "**met**" } else { "**missed**" },
            f.failover_ms.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(r) = &c.rebuild {
        let share = r.mb_per_s / r.disk_sequential_write_mb_per_s.max(1e-9);
        let _ = writeln!(
            t,
            "\nRebuild at factor 3 of node 3's deleted data dir ({} products): {:.1} MB in {:.2} s = **{:.1} MB/s**, {:.1} % of the disk's sequential writes ({:.0} MB/s; target ≥ 50 %: {}) and {:.1} % of redb loading the same bytes ({:.0} MB/s).",
            r.products,
            r.rebuilt_store_bytes as f64 / 1e6,
            r.seconds_to_ready,
            r.mb_per_s,
            100.0 * share,
            r.disk_sequential_write_mb_per_s,
            if share >= 0.5 { "**met**" } else { "**missed**" },
            100.0 * r.mb_per_s / r.redb_bulk_load_mb_per_s.max(1e-9),
            r.redb_bulk_load_mb_per_s,
        );
    }
    if let Some(r) = &c.rolling {
        let ok = r.lost == 0 && r.unavailable_pct < 1.0 && r.longest_unreadable_ms <= 1_000.0;
        let exits: Vec<String> = r
            .restarts
            .iter()
            .map(|x| format!("{:.0}", x.sigterm_to_exit_ms))
            .collect();
        let _ = writeln!(
            t,
            "
Rolling restart at factor 3 (each node in turn: SIGTERM, start, ready, balanced) under {} shoppers: **{} of {} answers 503 ({:.2} %)**, {} orders acknowledged, **{} lost**, the longest a product was unreadable **{:.0} ms** (target 0 lost, under 1 %, at most 1 s: {}). SIGTERM to exit: {} ms.",
            r.shoppers,
            r.unavailable,
            r.requests,
            r.unavailable_pct,
            r.acknowledged,
            r.lost,
            r.longest_unreadable_ms,
            if ok { "**met**" } else { "**missed**" },
            exits.join(", "),
        );
    }
}
