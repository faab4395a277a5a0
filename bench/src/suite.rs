//! The full comparison (`report`): rounds of Agora's figures interleaved with their
//! ceilings on the same disk and cores. Each round: Agora checkout closed loop (on a fresh
//! node); Agora product reads, bare axum product reads, Agora checkout open loop at a light
//! and at a loaded fixed rate (on a second fresh node); redb single and grouped commits; a
//! ractor call and Agora's entity ask. Then each ratio as the median over rounds with its
//! spread, and the memory scenario.

use crate::api::{self, Endpoint, World};
use crate::bare_axum::{self, BareAxum};
use crate::ceilings::{self, RactorCall, RedbGrouped, RedbSingle};
use crate::cli::ReportArgs;
use crate::inproc::{self, EntityAsk};
use crate::load::{self, LoadResult, LoadSpec, Observe};
use crate::memory::{self, MemoryOptions, MemoryResult};
use crate::node_proc::{NodeOptions, NodeProc};
use crate::proc_stats;
use crate::report::{self, Machine};
use crate::scenarios::Scenario;
use crate::stats::Op;
use crate::verify;
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Seconds of the ractor call and entity ask runs.
const CALL_SECS: f64 = 0.5;

/// Per-round ratios (Agora ÷ ceiling).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ratios {
    /// Agora product reads/s ÷ bare axum reads/s.
    pub product_vs_axum: f64,
    /// Server CPU per product read: Agora's ÷ bare axum's (needs bare axum as a process).
    pub product_cpu_vs_axum: Option<f64>,
    /// Grouped-commit ceiling in checkouts/s: redb grouped writes/s ÷ entity writes per order.
    pub checkout_ceiling_per_s: Option<f64>,
    /// Agora checkouts/s ÷ that ceiling.
    pub checkouts_vs_ceiling: Option<f64>,
    /// Commits per acknowledged order at the closed-loop run.
    pub fsyncs_per_order: Option<f64>,
    /// Open-loop p99 time to 201 ÷ redb durable commit p99.
    pub p99_201_open_vs_commit: Option<f64>,
    /// Light open-loop p99 time to 201 ÷ redb durable commit p99.
    pub p99_201_light_vs_commit: Option<f64>,
    /// Closed-loop p99 time to 201 ÷ redb durable commit p99.
    pub p99_201_closed_vs_commit: Option<f64>,
    /// Entity ask p50 ÷ ractor call p50.
    pub ask_vs_ractor_p50: f64,
}

/// One round's results.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Round number, from 1.
    pub round: usize,
    /// Agora checkout, closed loop.
    pub checkout: LoadResult,
    /// Agora checkout, open loop at half the closed-loop rate (or `--rate`).
    pub checkout_open: LoadResult,
    /// Agora checkout, open loop at a tenth of the closed-loop rate (or `--light-rate`).
    pub checkout_light: LoadResult,
    /// The node's resident memory after registering the shoppers, bytes.
    pub node_rss_after_setup: Option<u64>,
    /// Agora product reads.
    pub product: LoadResult,
    /// Bare axum product reads.
    pub bare_axum: LoadResult,
    /// redb, one record per durable commit.
    pub redb_single: RedbSingle,
    /// redb, grouped commits.
    pub redb_grouped: RedbGrouped,
    /// ractor local call.
    pub ractor: RactorCall,
    /// Agora entity ask.
    pub entity_ask: EntityAsk,
    /// Whether the node was still running at the end of the round.
    pub node_survived: bool,
    /// The ratios.
    pub ratios: Ratios,
}

/// A figure over rounds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Rounds with a value.
    pub n: usize,
}

impl Spread {
    /// The spread of `values` (None when there are none).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command that produced it.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// Per-round results.
    pub rounds: Vec<Round>,
    /// The replicated cluster's figures (None when skipped).
    pub cluster: Option<crate::cluster_suite::ClusterReport>,
    /// The memory scenario.
    pub memory: Option<MemoryResult>,
    /// Correctness problems found (empty: none).
    pub problems: Vec<String>,
    /// Known Agora anomalies seen (the cart race), failures only with `--strict`.
    pub warnings: Vec<String>,
}

/// The load spec of a report variant.
pub(crate) fn spec(a: &ReportArgs, label: &str, scenario: Scenario, rate: Option<f64>) -> LoadSpec {
    LoadSpec {
        label: label.into(),
        scenario,
        users: a.users,
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        rate,
        checkout_share: 0.1,
        progress: true,
    }
}

/// The product JSON Agora answers for the first bench SKU (served by bare axum).
async fn product_body(w: &World) -> Vec<u8> {
    let url = format!("{}/products/{}", w.api, w.catalog[0].sku);
    match api::get(&w.client, &url, None).await {
        Ok((200, body)) => body,
        _ => bare_axum::SAMPLE_PRODUCT.as_bytes().to_vec(),
    }
}

/// A fresh node with the bench catalog and shoppers set up.
struct Fresh {
    /// The node (killed when dropped).
    node: NodeProc,
    /// Its world.
    world: Arc<World>,
    /// What to observe of it.
    observe: Observe,
}

/// Starts a fresh node and sets it up.
async fn fresh(a: &ReportArgs, n: usize, what: &str, opts: &NodeOptions) -> anyhow::Result<Fresh> {
    let node = NodeProc::start(opts)?;
    eprintln!(
        "round {n}: {what}: node pid {} on {}",
        node.pid(),
        node.data_dir.display()
    );
    let ep = Endpoint {
        api_base: node.api_base.clone(),
        admin_base: node.admin_base.clone(),
        admin_password: opts.admin_password.clone(),
        node_pid: Some(node.pid()),
        peers: Vec::new(),
    };
    let world = Arc::new(api::setup(&ep, a.users, a.products, a.users).await?);
    let observe = Observe {
        node_pid: Some(node.pid()),
        peer_pids: Vec::new(),
        node_counters: true,
        exclude_threads: None,
    };
    Ok(Fresh {
        node,
        world,
        observe,
    })
}

/// Bare axum product reads, serving `body`, with the catalog of `w`.
async fn bare_axum_run(
    a: &ReportArgs,
    n: usize,
    w: &World,
    body: Vec<u8>,
) -> anyhow::Result<LoadResult> {
    let server = BareAxum::start(body, 2, a.bare_axum, &a.target.tmp_root())?;
    let bare_world = Arc::new(World {
        client: api::client(a.users)?,
        api: format!("{}/api/v1", server.base),
        apis: vec![format!("{}/api/v1", server.base)],
        admins: Vec::new(),
        admin_token: String::new(),
        catalog: w.catalog.clone(),
        users: Vec::new(),
        tag: w.tag.clone(),
        checkout_body: String::new(),
    });
    let observe = Observe {
        node_pid: server.pid(),
        peer_pids: Vec::new(),
        node_counters: false,
        exclude_threads: server.our_threads(),
    };
    let label = format!("r{n} bare axum product");
    let (r, _) = load::run(
        bare_world.clone(),
        &spec(a, &label, Scenario::Product, None),
        &observe,
    )
    .await?;
    drop(bare_world);
    drop(server);
    Ok(r)
}

/// Offered rates of the open-loop runs: (loaded, light).
type Rates = (f64, f64);

/// Runs one round. Each order leaves durable retry timers that fire 5 s and 10 s later
/// (payment charge retry, shipment booking retry) and are written then; so the closed-loop
/// checkout gets a node of its own, and the open-loop runs come after the product reads on
/// a second node, so that no run is measured under another run's leftovers.
async fn round(
    a: &ReportArgs,
    n: usize,
    node_opts: &NodeOptions,
    rates: &mut Option<Rates>,
) -> anyhow::Result<Round> {
    let tmp_root = a.target.tmp_root();

    // Node 1: checkout, closed loop.
    let mut c = fresh(a, n, "closed-loop checkout", node_opts).await?;
    let (mut checkout, closed_orders) = load::run(
        c.world.clone(),
        &spec(a, &format!("r{n} agora checkout"), Scenario::Checkout, None),
        &c.observe,
    )
    .await?;
    let wait = Duration::from_secs_f64(a.confirm_wait);
    checkout.verification = Some(verify::verify(&c.world, closed_orders.orders(), wait).await);
    let mut node_survived = c.node.alive();
    drop(c);
    let (loaded, light) = *rates.get_or_insert_with(|| {
        let r = checkout.checkouts_per_s;
        (
            a.rate.unwrap_or((r * 0.5).round()).max(5.0),
            a.light_rate.unwrap_or((r * 0.1).round()).max(5.0),
        )
    });

    // Node 2: product reads, bare axum beside it, then checkout open loop, light and loaded.
    let mut f = fresh(a, n, "product reads and open-loop checkout", node_opts).await?;
    let node_rss_after_setup = proc_stats::rss(f.node.pid()).ok();
    let (product, _) = load::run(
        f.world.clone(),
        &spec(a, &format!("r{n} agora product"), Scenario::Product, None),
        &f.observe,
    )
    .await?;
    let body = product_body(&f.world).await;
    let bare_axum = bare_axum_run(a, n, &f.world, body).await?;
    let (mut checkout_light, light_orders) = load::run(
        f.world.clone(),
        &spec(
            a,
            &format!("r{n} agora checkout light"),
            Scenario::Checkout,
            Some(light),
        ),
        &f.observe,
    )
    .await?;
    let (mut checkout_open, open_orders) = load::run(
        f.world.clone(),
        &spec(
            a,
            &format!("r{n} agora checkout open"),
            Scenario::Checkout,
            Some(loaded),
        ),
        &f.observe,
    )
    .await?;
    checkout_light.verification =
        Some(verify::verify(&f.world, light_orders.orders(), Duration::ZERO).await);
    checkout_open.verification =
        Some(verify::verify(&f.world, open_orders.orders(), Duration::ZERO).await);
    node_survived &= f.node.alive();
    drop(f);

    let redb_dir = tempfile::Builder::new()
        .prefix("agora-bench-redb-")
        .tempdir_in(&tmp_root)?;
    let secs = Duration::from_secs_f64(a.redb_secs);
    let dir = redb_dir.path().to_path_buf();
    let redb_single =
        tokio::task::spawn_blocking(move || ceilings::redb_single(&dir, secs)).await??;
    let redb_grouped = ceilings::redb_grouped(redb_dir.path(), a.users, secs).await?;
    drop(redb_dir);
    let call = Duration::from_secs_f64(CALL_SECS);
    let ractor = ceilings::ractor_call(call).await?;
    let entity_ask = inproc::entity_ask(&tmp_root, call).await?;

    let ratios = ratios(
        &checkout,
        &checkout_open,
        &checkout_light,
        &product,
        &bare_axum,
        &redb_single,
        &redb_grouped,
        &ractor,
        &entity_ask,
    );
    eprintln!(
        "round {n}: product/axum {:.2}  checkouts/ceiling {}  fsyncs/order {}  p99 201/commit {}  ask/ractor {:.1}",
        ratios.product_vs_axum,
        fmt_opt(ratios.checkouts_vs_ceiling, 2),
        fmt_opt(ratios.fsyncs_per_order, 3),
        fmt_opt(ratios.p99_201_open_vs_commit, 1),
        ratios.ask_vs_ractor_p50
    );
    Ok(Round {
        round: n,
        checkout,
        checkout_open,
        checkout_light,
        node_rss_after_setup,
        product,
        bare_axum,
        redb_single,
        redb_grouped,
        ractor,
        entity_ask,
        node_survived,
        ratios,
    })
}

/// An optional number with `p` decimals, or "n/a".
fn fmt_opt(x: Option<f64>, p: usize) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.p$}"))
}

/// Server CPU seconds per 2xx answer of a run.
pub fn cpu_per_read(r: &LoadResult) -> Option<f64> {
    r.node.as_ref().and_then(|n| n.cpu_seconds_per_request)
}

/// The round's ratios.
#[allow(clippy::too_many_arguments)]
fn ratios(
    checkout: &LoadResult,
    open: &LoadResult,
    light: &LoadResult,
    product: &LoadResult,
    bare: &LoadResult,
    single: &RedbSingle,
    grouped: &RedbGrouped,
    ractor: &RactorCall,
    ask: &EntityAsk,
) -> Ratios {
    let node = checkout.node.as_ref();
    let writes_per_order = node.and_then(|n| n.writes_per_order);
    let ceiling = writes_per_order
        .filter(|w| *w > 0.0)
        .map(|w| grouped.writes_per_s / w);
    let commit_p99 = single.latency.p99.max(1e-9);
    Ratios {
        product_vs_axum: product.summary.ok_per_s / bare.summary.ok_per_s.max(1e-9),
        product_cpu_vs_axum: cpu_per_read(product)
            .zip(cpu_per_read(bare))
            .map(|(a, b)| a / b.max(1e-12)),
        checkout_ceiling_per_s: ceiling,
        checkouts_vs_ceiling: ceiling.map(|c| checkout.checkouts_per_s / c),
        fsyncs_per_order: node.and_then(|n| n.fsyncs_per_order),
        p99_201_open_vs_commit: open.latency(Op::Checkout).map(|p| p.p99 / commit_p99),
        p99_201_light_vs_commit: light.latency(Op::Checkout).map(|p| p.p99 / commit_p99),
        p99_201_closed_vs_commit: checkout.latency(Op::Checkout).map(|p| p.p99 / commit_p99),
        ask_vs_ractor_p50: inproc::ask_overhead(ask, ractor),
    }
}

/// Correctness problems of one load run: non-2xx answers and acknowledged orders missing.
pub(crate) fn load_problems(l: &LoadResult) -> Vec<String> {
    let mut out = Vec::new();
    if l.non_2xx_anywhere() > 0 {
        out.push(format!(
            "{}: non-2xx {:?} (outside the window {:?})",
            l.label, l.summary.non_2xx, l.summary.non_2xx_outside_window
        ));
    }
    if let Some(v) = l.verification.as_ref().filter(|v| !v.all_present()) {
        out.push(format!(
            "{}: {} acknowledged orders missing, unreadable {:?}",
            l.label, v.missing, v.unreadable
        ));
    }
    out
}

/// Correctness problems of a round, and its cart races (the known Agora anomaly).
fn problems_of(r: &Round) -> (Vec<String>, Vec<String>) {
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    for l in [
        &r.checkout,
        &r.checkout_open,
        &r.checkout_light,
        &r.product,
        &r.bare_axum,
    ] {
        out.extend(load_problems(l));
        if l.summary.cart_races > 0 {
            warnings.push(format!(
                "{}: cart race: {} checkouts answered 422 empty-cart right after a 200 add-to-cart",
                l.label, l.summary.cart_races
            ));
        }
    }
    if !r.node_survived {
        out.push(format!("round {}: a node died", r.round));
    }
    (out, warnings)
}

/// Runs the report.
pub async fn run(a: &ReportArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        a.target.self_started()?,
        "report starts its own nodes (a fresh data dir per round): drop --url"
    );
    let node_opts = a.target.node_options()?;
    let mut rounds = Vec::new();
    let mut rates = None;
    for n in 1..=a.rounds.max(1) {
        rounds.push(
            round(a, n, &node_opts, &mut rates)
                .await
                .with_context(|| format!("round {n}"))?,
        );
    }
    let cluster = if a.cluster.cluster_rounds
        + a.cluster.kills
        + a.cluster.rebuild_products
        + a.cluster.rolling_shoppers
        > 0
    {
        Some(crate::cluster_suite::run(a, &node_opts).await?)
    } else {
        None
    };
    let memory = if a.memory.entities > 0 {
        let opts = MemoryOptions {
            entities: a.memory.entities,
            density_entities: a.memory.density_entities.min(a.memory.entities),
            passivate_after: Duration::from_millis(a.memory.passivate_after_ms),
            tmp_root: a.target.tmp_root(),
        };
        Some(tokio::task::spawn_blocking(move || memory::run(&opts)).await??)
    } else {
        None
    };
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for r in &rounds {
        let (p, w) = problems_of(r);
        problems.extend(p);
        warnings.extend(w);
    }
    problems.extend(cluster.iter().flat_map(crate::cluster_suite::problems));
    if a.strict {
        problems.append(&mut warnings);
    }
    if let Some(m) = &memory {
        if m.density.failed + m.scale.failed > 0 {
            problems.push(format!(
                "memory: {} touches failed",
                m.density.failed + m.scale.failed
            ));
        }
    }
    Ok(Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: report::machine(&a.target.tmp_root()),
        rounds,
        cluster,
        memory,
        problems,
        warnings,
    })
}

/// Writes the report's JSON, markdown and the last round's charts; returns the paths.
pub fn write(out: &Path, r: &Report) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let name = format!("report-{}", report::stamp());
    let mut paths = vec![report::write_json(out, &name, r)?];
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(
        md,
        "Machine: {} CPUs ({}), {:.0} GiB RAM, kernel {}; disk: {}.\n\nCommand: `{}`\n",
        m.nproc,
        m.cpu_model,
        m.mem_total as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.disk,
        r.command
    );
    md.push_str(&crate::table::markdown(r));
    paths.push(report::write_text(out, &format!("{name}.md"), &md)?);
    if let Some(last) = r.rounds.last() {
        for (suffix, l) in [
            ("checkout", &last.checkout),
            ("checkout-open", &last.checkout_open),
            ("checkout-light", &last.checkout_light),
            ("product", &last.product),
            ("bare-axum", &last.bare_axum),
        ] {
            paths.push(report::write_chart(out, &format!("{name}-{suffix}"), l)?);
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn median_and_spread() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of([4.0, 1.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of([]).is_none());
    }
}
