//! `agora-bench`: the benchmark tool of Agora. Load scenarios (checkout, browse, mixed,
//! product) against a node it starts itself or a running one; ceilings measured in the same
//! run on the same disk and cores (redb durable commits, bare axum, a ractor call); the
//! memory scenario on the runtime in-process; and a seconds-long smoke for CI. Results go
//! to the terminal, a JSON file and an SVG chart. See `agora-bench --help`.

mod alloc_count;
mod api;
mod bare_axum;
mod ceilings;
mod chart;
mod cli;
mod cluster_proc;
mod cluster_suite;
mod commands;
mod cross_node;
mod failover;
mod inproc;
mod load;
mod memory;
mod node_proc;
mod proc_stats;
mod rebuild;
mod replication;
mod report;
mod rng;
mod rolling;
mod scenarios;
mod smoke;
mod stats;
mod suite;
mod table;
mod target;
mod verify;

use anyhow::bail;
use clap::Parser;
use cli::{Cli, Cmd};

/// Counts live heap bytes in the memory scenario (off, and nearly free, otherwise).
#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

/// Runs `f` as a task on a multi-threaded runtime (never on the `block_on` thread).
fn on_runtime<F>(f: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    rt.block_on(async move { tokio::spawn(f).await? })
}

/// Runs the command; prints an error with its causes and exits 1 on failure.
fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the chosen command.
fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Run(a) => on_runtime(commands::run(a)),
        Cmd::CrossNode(a) => on_runtime(cross_node::run(a)),
        Cmd::Replication(a) => on_runtime(replication::run(a)),
        Cmd::Failover(a) => on_runtime(failover::run(a)),
        Cmd::Rolling(a) => on_runtime(rolling::run(a)),
        Cmd::Rebuild(a) => on_runtime(rebuild::run(a)),
        Cmd::Ceilings(a) => on_runtime(commands::ceilings(a)),
        Cmd::Memory(a) => commands::memory(a),
        Cmd::MemoryPhase(a) => on_runtime(commands::memory_phase(a)),
        Cmd::BareAxumServer(a) => bare_axum::serve_process(a.workers, &a.body_file),
        Cmd::Report(a) => on_runtime(async move {
            let r = suite::run(&a).await?;
            println!("{}", table::markdown(&r));
            for p in suite::write(&a.out, &r)? {
                println!("wrote {}", p.display());
            }
            for w in &r.warnings {
                eprintln!("warning: {w} (--strict makes this a failure)");
            }
            if !r.problems.is_empty() {
                bail!("correctness problems:\n{}", r.problems.join("\n"));
            }
            Ok(())
        }),
        Cmd::Smoke(a) => on_runtime(async move {
            let r = smoke::run(&a).await;
            if r.problems.is_empty() {
                println!("smoke passed");
                Ok(())
            } else {
                bail!("smoke failed:\n{}", r.problems.join("\n"))
            }
        }),
    }
}
