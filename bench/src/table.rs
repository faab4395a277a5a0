//! The report's tables in markdown: each Agora figure beside its ceiling, the ratio as
//! median (min–max) over rounds, the target and the verdict; then the details.

use crate::stats::{Op, Percentiles};
use crate::suite::{cpu_per_read, Report, Round, Spread};
use std::fmt::Write;

/// A "median (min–max)" cell.
pub(crate) fn cell(s: Option<Spread>, p: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.p$} ({:.p$}–{:.p$})", s.median, s.min, s.max),
        Some(s) => format!("{:.p$}", s.median),
        None => "n/a".into(),
    }
}

/// "met" / "missed" for a median against a bound.
pub(crate) fn verdict(s: Option<Spread>, ok: impl Fn(f64) -> bool) -> &'static str {
    match s {
        Some(s) if ok(s.median) => "**met**",
        Some(_) => "**missed**",
        None => "n/a",
    }
}

/// Spread of a per-round figure.
fn over(rounds: &[Round], f: impl Fn(&Round) -> Option<f64>) -> Option<Spread> {
    Spread::of(rounds.iter().filter_map(f))
}

/// The markdown tables of a report.
pub fn markdown(r: &Report) -> String {
    let rs = &r.rounds;
    let mut t = String::new();
    let users = rs.first().map_or(0, |x| x.checkout.users);
    let rate = over(rs, |x| x.checkout_open.offered_rate);
    let light = over(rs, |x| x.checkout_light.offered_rate);
    let _ = writeln!(
        t,
        "| Figure | Agora | Ceiling (same run) | Ratio: median (min–max) over {} rounds | Target | Verdict |",
        rs.len()
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|");
    let product = over(rs, |x| Some(x.ratios.product_vs_axum));
    let _ = writeln!(
        t,
        "| Product read via edge → actor, req/s ({users} conns) | {} | bare axum, same JSON: {} | {} | ≥ 0.5 | {} |",
        cell(over(rs, |x| Some(x.product.summary.ok_per_s)), 0),
        cell(over(rs, |x| Some(x.bare_axum.summary.ok_per_s)), 0),
        cell(product, 2),
        verdict(product, |v| v >= 0.5)
    );
    let _ = writeln!(
        t,
        "| Server CPU per product read, µs | {} | bare axum: {} | {} | (info) | |",
        cell(over(rs, |x| cpu_per_read(&x.product).map(|c| c * 1e6)), 1),
        cell(over(rs, |x| cpu_per_read(&x.bare_axum).map(|c| c * 1e6)), 1),
        cell(over(rs, |x| x.ratios.product_cpu_vs_axum), 2),
    );
    let co = over(rs, |x| x.ratios.checkouts_vs_ceiling);
    let _ = writeln!(
        t,
        "| Durable checkouts/s ({users} shoppers, closed loop) | {} | redb grouped {} writes/s ÷ {} entity writes/order = {} | {} | ≥ 0.5 | {} |",
        cell(over(rs, |x| Some(x.checkout.checkouts_per_s)), 0),
        cell(over(rs, |x| Some(x.redb_grouped.writes_per_s)), 0),
        cell(over(rs, |x| x.checkout.node.as_ref().and_then(|n| n.writes_per_order)), 1),
        cell(over(rs, |x| x.ratios.checkout_ceiling_per_s), 0),
        cell(co, 2),
        verdict(co, |v| v >= 0.5)
    );
    let fs = over(rs, |x| x.ratios.fsyncs_per_order);
    let _ = writeln!(
        t,
        "| fsyncs (durable commits) per order, {users} shoppers | {} | — | — | ≤ 0.25 | {} |",
        cell(fs, 3),
        verdict(fs, |v| v <= 0.25)
    );
    let p99 = over(rs, |x| x.ratios.p99_201_open_vs_commit);
    let _ = writeln!(
        t,
        "| p99 time to 201, open loop at {} checkouts/s, ms | {} | redb durable commit p99: {} ms | {} | ≤ 3 | {} |",
        cell(rate, 0),
        cell(over(rs, |x| x.checkout_open.latency(Op::Checkout).map(|p| p.p99)), 2),
        cell(over(rs, |x| Some(x.redb_single.latency.p99)), 2),
        cell(p99, 1),
        verdict(p99, |v| v <= 3.0)
    );
    let p99l = over(rs, |x| x.ratios.p99_201_light_vs_commit);
    let _ = writeln!(
        t,
        "| p99 time to 201, open loop at {} checkouts/s (light), ms | {} | redb durable commit p99 | {} | ≤ 3 | {} |",
        cell(light, 0),
        cell(over(rs, |x| x.checkout_light.latency(Op::Checkout).map(|p| p.p99)), 2),
        cell(p99l, 1),
        verdict(p99l, |v| v <= 3.0)
    );
    let _ = writeln!(
        t,
        "| p99 time to 201, closed loop ({users} shoppers), ms | {} | redb durable commit p99 | {} | (info) | |",
        cell(over(rs, |x| x.checkout.latency(Op::Checkout).map(|p| p.p99)), 2),
        cell(over(rs, |x| x.ratios.p99_201_closed_vs_commit), 1),
    );
    let _ = writeln!(
        t,
        "| Entity ask round trip (in-process, read), p50 µs | {} | ractor local call p50: {} µs | {} | (info) | |",
        cell(over(rs, |x| Some(x.entity_ask.latency.p50)), 2),
        cell(over(rs, |x| Some(x.ractor.latency.p50)), 2),
        cell(over(rs, |x| Some(x.ratios.ask_vs_ractor_p50)), 1),
    );
    if let Some(m) = &r.memory {
        let kib = m.density.rss_per_entity / 1024.0;
        let _ = writeln!(
            t,
            "| Resident memory per active entity (cart, {} active) | {:.2} KiB (live heap {:.2} KiB) | bare ractor actor: {:.2} KiB (heap {:.2} KiB) | {:.1} | ≤ 16 KiB | {} |",
            m.density.active,
            kib,
            m.density.heap_per_entity / 1024.0,
            m.actors.rss_per_actor / 1024.0,
            m.actors.heap_per_actor / 1024.0,
            m.density.rss_per_entity / m.actors.rss_per_actor.max(1.0),
            if kib <= 16.0 { "**met**" } else { "**missed**" }
        );
        let gib = m.scale.peak_rss as f64 / (1u64 << 30) as f64;
        let all = m.scale.failed == 0;
        let _ = writeln!(
            t,
            "| {} entities touched (passivate after {} ms): peak RSS | {:.2} GiB at {:.0} touches/s | — | — | ≤ 2 GiB | {} |",
            m.scale.touched + m.scale.failed,
            m.scale.passivate_after_ms,
            gib,
            m.scale.touches_per_s,
            if gib <= 2.0 && all { "**met**" } else { "**missed**" }
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| Detail (median over rounds) | Value |");
    let _ = writeln!(t, "|---|---|");
    let lat = |f: &dyn Fn(&Round) -> Option<Percentiles>| {
        let p = |g: fn(&Percentiles) -> f64| cell(over(rs, |x| f(x).map(|q| g(&q))), 2);
        format!(
            "p50 {} / p90 {} / p99 {} / p99.9 {} / max {}",
            p(|q| q.p50),
            p(|q| q.p90),
            p(|q| q.p99),
            p(|q| q.p999),
            p(|q| q.max)
        )
    };
    let rows: Vec<(String, String)> = vec![
        (
            format!("Checkout time to 201, closed loop {users} shoppers (ms)"),
            lat(&|x| x.checkout.latency(Op::Checkout).cloned()),
        ),
        (
            format!("Checkout time to 201, open loop {} /s (ms)", cell(rate, 0)),
            lat(&|x| x.checkout_open.latency(Op::Checkout).cloned()),
        ),
        (
            format!("Checkout time to 201, open loop {} /s (ms)", cell(light, 0)),
            lat(&|x| x.checkout_light.latency(Op::Checkout).cloned()),
        ),
        (
            format!(
                "Add to cart (one durable entity write over HTTP, the floor under a 201), open loop {} /s (ms)",
                cell(light, 0)
            ),
            lat(&|x| x.checkout_light.latency(Op::AddToCart).cloned()),
        ),
        (
            "Visit (add to cart + checkout) from its scheduled start, loaded open loop (ms)".into(),
            lat(&|x| x.checkout_open.latency(Op::Visit).cloned()),
        ),
        (
            format!(
                "Time from checkout sent to CONFIRMED, closed loop, over the {} of orders confirmed within the wait (ms; simulated gateway answers in 20–150 ms and loses 2% of answers, retried after 5 s)",
                cell(
                    over(rs, |x| x.checkout.verification.as_ref().map(|v| {
                        100.0 * v.in_window_confirmed as f64 / v.in_window.max(1) as f64
                    })),
                    1
                ) + " %"
            ),
            lat(&|x| {
                x.checkout
                    .verification
                    .as_ref()
                    .and_then(|v| v.time_to_confirmed.clone())
            }),
        ),
        (
            "Product read latency, Agora (ms)".into(),
            lat(&|x| x.product.latency(Op::Product).cloned()),
        ),
        (
            "Product read latency, bare axum (ms)".into(),
            lat(&|x| x.bare_axum.latency(Op::Product).cloned()),
        ),
        (
            "redb durable commit, one record (ms)".into(),
            lat(&|x| Some(x.redb_single.latency.clone())),
        ),
        (
            "redb durable commits/s, one record per transaction".into(),
            cell(over(rs, |x| Some(x.redb_single.commits_per_s)), 0),
        ),
        (
            format!("redb grouped: writes/s, commits/s, mean batch ({users} writers)"),
            format!(
                "{} / {} / {}",
                cell(over(rs, |x| Some(x.redb_grouped.writes_per_s)), 0),
                cell(over(rs, |x| Some(x.redb_grouped.commits_per_s)), 0),
                cell(over(rs, |x| Some(x.redb_grouped.mean_batch)), 1)
            ),
        ),
        (
            "Node commits during closed-loop checkout: per second / mean ms each / store ops each".into(),
            format!(
                "{} / {} / {}",
                cell(over(rs, |x| x.checkout.node.as_ref().map(|n| n.commits_per_s)), 0),
                cell(over(rs, |x| x.checkout.node.as_ref().and_then(|n| n.mean_commit_ms)), 2),
                cell(over(rs, |x| x.checkout.node.as_ref().and_then(|n| n.mean_ops_per_commit)), 0)
            ),
        ),
        (
            "Node active entities after the product run".into(),
            cell(over(rs, |x| x.product.node.as_ref().map(|n| n.active_entities)), 0),
        ),
        (
            "Node CPU per order, closed-loop checkout (ms)".into(),
            cell(over(rs, |x| x.checkout.node.as_ref().and_then(|n| n.cpu_seconds_per_order).map(|c| c * 1e3)), 2),
        ),
        (
            "Node resident memory after registering the shoppers (MiB)".into(),
            cell(over(rs, |x| x.node_rss_after_setup.map(|b| b as f64 / 1048576.0)), 0),
        ),
        (
            "Node peak resident memory after product reads and open-loop checkouts (MiB)".into(),
            cell(over(rs, |x| x.checkout_open.node.as_ref().and_then(|n| n.peak_rss_bytes).map(|b| b as f64 / 1048576.0)), 0),
        ),
        (
            "Load generator CPU (cores): checkout / product / bare axum".into(),
            format!(
                "{} / {} / {}",
                cell(over(rs, |x| x.checkout.loadgen_cores), 2),
                cell(over(rs, |x| x.product.loadgen_cores), 2),
                cell(over(rs, |x| x.bare_axum.loadgen_cores), 2)
            ),
        ),
        (
            "Orders acknowledged / missing after the run (all rounds)".into(),
            {
                let v = rs.iter().flat_map(|x| [&x.checkout, &x.checkout_open, &x.checkout_light]).filter_map(|l| l.verification.as_ref());
                let (ack, miss) = v.fold((0, 0), |(a, m), v| (a + v.acknowledged, m + v.missing));
                format!("{ack} / {miss}")
            },
        ),
        (
            "Cart race (all rounds): checkouts answered 422 empty-cart right after a 200 add-to-cart / orders holding more units than their visit added".into(),
            {
                let runs = rs
                    .iter()
                    .flat_map(|x| [&x.checkout, &x.checkout_open, &x.checkout_light]);
                let races: u64 = runs.clone().map(|l| l.summary.cart_races).sum();
                let extra: usize = runs
                    .filter_map(|l| l.verification.as_ref())
                    .map(|v| v.extra_unit_orders)
                    .sum();
                format!("{races} / {extra}")
            },
        ),
        (
            "Non-2xx answers (all rounds, all runs, warm-ups included)".into(),
            rs.iter()
                .flat_map(|x| {
                    [
                        &x.checkout,
                        &x.checkout_open,
                        &x.checkout_light,
                        &x.product,
                        &x.bare_axum,
                    ]
                })
                .map(|l| l.non_2xx_anywhere())
                .sum::<u64>()
                .to_string(),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(t, "| {k} | {v} |");
    }
    if let Some(m) = &r.memory {
        let _ = writeln!(
            t,
            "| Memory: density run {} carts at {:.0} touches/s; scale run peak {} active, end RSS {:.0} MiB | |",
            m.density.touched,
            m.density.touches_per_s,
            m.scale.peak_active,
            m.scale.end_rss as f64 / 1048576.0
        );
    }
    if let Some(c) = &r.cluster {
        t.push_str(&crate::cluster_suite::markdown(c, rs));
    }
    t
}
