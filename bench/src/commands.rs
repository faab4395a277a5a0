//! The single-purpose commands: `run` (one scenario), `ceilings`, `memory` and the hidden
//! `memory-phase` its child processes run.

use crate::cli::{CeilingArgs, MemoryArgs, MemoryPhaseArgs, RunArgs};
use crate::{api, bare_axum, ceilings, inproc, load, memory, report, scenarios, verify};
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::Duration;

/// `run`: one scenario against the target.
pub async fn run(a: RunArgs) -> anyhow::Result<()> {
    let mut target = a.target.resolve()?;
    let users = if a.scenario.needs_users() {
        a.load.users
    } else {
        0
    };
    eprintln!(
        "setting up: {} products, {users} shoppers…",
        a.load.products
    );
    let world = Arc::new(api::setup(&target.endpoint, a.load.users, a.load.products, users).await?);
    let spec = load::LoadSpec {
        label: format!("agora {}", a.scenario.name()),
        scenario: a.scenario,
        users: a.load.users,
        warmup: Duration::from_secs_f64(a.load.warmup),
        duration: Duration::from_secs_f64(a.load.duration),
        rate: a.rate,
        checkout_share: a.load.checkout_share,
        progress: true,
    };
    let observe = load::Observe {
        node_pid: target.endpoint.node_pid,
        peer_pids: target.endpoint.peers.iter().map(|p| p.2).collect(),
        node_counters: true,
        exclude_threads: None,
    };
    let (mut result, rec) = load::run(world.clone(), &spec, &observe).await?;
    let orders = rec.orders();
    if !orders.is_empty() {
        eprintln!("checking {} acknowledged orders…", orders.len());
        let wait = Duration::from_secs_f64(a.load.confirm_wait);
        result.verification = Some(verify::verify(&world, orders, wait).await);
    }
    report::print_load(&result);
    let name = format!("run-{}-{}", a.scenario.name(), report::stamp());
    println!(
        "wrote {}",
        report::write_json(&a.out, &name, &result)?.display()
    );
    println!(
        "wrote {}",
        report::write_chart(&a.out, &name, &result)?.display()
    );
    let mut failed = Vec::new();
    if result.non_2xx_anywhere() > 0 {
        failed.push(format!(
            "non-2xx answers: {:?} (outside the window {:?})",
            result.summary.non_2xx, result.summary.non_2xx_outside_window
        ));
    }
    if let Some(v) = result.verification.as_ref().filter(|v| !v.all_present()) {
        failed.push(format!(
            "{} acknowledged orders missing, unreadable {:?}",
            v.missing, v.unreadable
        ));
    }
    if result.summary.cart_races > 0 {
        let msg = format!(
            "cart race: {} checkouts answered 422 empty-cart right after a 200 add-to-cart",
            result.summary.cart_races
        );
        if a.strict {
            failed.push(msg);
        } else {
            eprintln!("warning: {msg} (--strict makes this a failure)");
        }
    }
    if let Some(node) = target.node.as_mut() {
        if !node.alive() {
            failed.push(format!("the node died; stderr:\n{}", node.stderr_tail()));
        }
    }
    if let Some(cluster) = target.cluster.as_mut() {
        if !cluster.all_alive() {
            failed.push("a node of the local cluster died".to_string());
        }
    }
    if !failed.is_empty() {
        bail!("correctness: {}", failed.join("; "));
    }
    Ok(())
}

/// `ceilings`: redb single and grouped, bare axum product reads, ractor call, entity ask.
pub async fn ceilings(a: CeilingArgs) -> anyhow::Result<()> {
    let tmp_root = a.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let secs = Duration::from_secs_f64(a.secs);
    let dir = tempfile::Builder::new()
        .prefix("agora-bench-redb-")
        .tempdir_in(&tmp_root)?;
    let path = dir.path().to_path_buf();
    let single = tokio::task::spawn_blocking(move || ceilings::redb_single(&path, secs)).await??;
    println!(
        "redb, one record per durable commit: {:.0} commits/s; {}",
        single.commits_per_s,
        report::pct(&single.latency)
    );
    let grouped = ceilings::redb_grouped(dir.path(), a.users, secs).await?;
    println!(
        "redb, grouped ({} writers): {:.0} durable writes/s in {:.0} commits/s (mean batch {:.1}); write {}",
        grouped.writers,
        grouped.writes_per_s,
        grouped.commits_per_s,
        grouped.mean_batch,
        report::pct(&grouped.latency)
    );
    let server = bare_axum::BareAxum::start(
        bare_axum::SAMPLE_PRODUCT.as_bytes().to_vec(),
        2,
        a.bare_axum,
        &tmp_root,
    )?;
    let world = Arc::new(api::World {
        client: api::client(a.users)?,
        api: format!("{}/api/v1", server.base),
        apis: vec![format!("{}/api/v1", server.base)],
        admins: Vec::new(),
        admin_token: String::new(),
        catalog: vec![api::CatalogItem {
            sku: "BENCH-000".into(),
            category: "books".into(),
            word: "novel".into(),
        }],
        users: Vec::new(),
        tag: "ceilings".into(),
        checkout_body: String::new(),
    });
    let spec = load::LoadSpec {
        label: "bare axum product".into(),
        scenario: scenarios::Scenario::Product,
        users: a.users,
        warmup: Duration::from_secs(1),
        duration: secs,
        rate: None,
        checkout_share: 0.0,
        progress: true,
    };
    let observe = load::Observe {
        node_pid: server.pid(),
        peer_pids: Vec::new(),
        node_counters: false,
        exclude_threads: server.our_threads(),
    };
    let (bare, _) = load::run(world.clone(), &spec, &observe).await?;
    drop(world);
    drop(server);
    report::print_load(&bare);
    let call = ceilings::ractor_call(secs.min(Duration::from_secs(1))).await?;
    println!(
        "ractor local call: {:.0} calls/s; {}",
        call.calls_per_s,
        report::pct(&call.latency)
    );
    let ask = inproc::entity_ask(&tmp_root, secs.min(Duration::from_secs(1))).await?;
    println!(
        "Agora entity ask (in-process): {:.0} asks/s; {}",
        ask.asks_per_s,
        report::pct(&ask.latency)
    );
    let name = format!("ceilings-{}", report::stamp());
    let value = serde_json::json!({"redb_single": single, "redb_grouped": grouped,
        "bare_axum": bare, "ractor": call, "entity_ask": ask});
    println!(
        "wrote {}",
        report::write_json(&a.out, &name, &value)?.display()
    );
    println!(
        "wrote {}",
        report::write_chart(&a.out, &name, &bare)?.display()
    );
    Ok(())
}

/// `memory`: both memory phases in child processes.
pub fn memory(a: MemoryArgs) -> anyhow::Result<()> {
    let opts = memory::MemoryOptions {
        entities: a.knobs.entities,
        density_entities: a.knobs.density_entities.min(a.knobs.entities.max(1)),
        passivate_after: Duration::from_millis(a.knobs.passivate_after_ms),
        tmp_root: a.tmp_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    let m = memory::run(&opts)?;
    let d = &m.density;
    println!(
        "density: {} carts active; RSS {:.1} → {:.1} MiB = {:.0} B per active entity (live heap {:.0} B); {:.0} touches/s",
        d.active,
        d.rss_before as f64 / 1048576.0,
        d.rss_after as f64 / 1048576.0,
        d.rss_per_entity,
        d.heap_per_entity,
        d.touches_per_s
    );
    let s = &m.scale;
    println!(
        "scale: {} carts touched ({} failed) in {:.1} s = {:.0}/s with passivation after {} ms; peak RSS {:.1} MiB, end RSS {:.1} MiB, peak active {}",
        s.touched,
        s.failed,
        s.took_s,
        s.touches_per_s,
        s.passivate_after_ms,
        s.peak_rss as f64 / 1048576.0,
        s.end_rss as f64 / 1048576.0,
        s.peak_active
    );
    println!(
        "ceiling: {} bare ractor actors = {:.0} B resident per actor (live heap {:.0} B)",
        m.actors.actors, m.actors.rss_per_actor, m.actors.heap_per_actor
    );
    let name = format!("memory-{}", report::stamp());
    println!("wrote {}", report::write_json(&a.out, &name, &m)?.display());
    if d.failed + s.failed > 0 {
        bail!("{} touches failed", d.failed + s.failed);
    }
    Ok(())
}

/// `memory-phase`: one phase, its JSON written to `--json`.
pub async fn memory_phase(a: MemoryPhaseArgs) -> anyhow::Result<()> {
    let tmp_root = a.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let json = match a.phase {
        memory::Phase::Density => {
            serde_json::to_vec(&memory::density(&tmp_root, a.entities).await?)?
        }
        memory::Phase::Actors => serde_json::to_vec(&memory::actors(a.entities).await?)?,
        memory::Phase::Scale => serde_json::to_vec(
            &memory::scale(
                &tmp_root,
                a.entities,
                Duration::from_millis(a.passivate_after_ms),
            )
            .await?,
        )?,
    };
    std::fs::write(&a.json, json).with_context(|| format!("writing {}", a.json.display()))
}
