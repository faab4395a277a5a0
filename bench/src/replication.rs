//! The replication spike: can openraft groups sharing one redb file and one group-commit
//! writer per node carry Agora's writes? Three in-process nodes (each its own redb file on
//! this disk, its own writer thread), `groups` shard groups, and closed-loop writers that
//! propose one entry each (a row of `entry_bytes`) to the group's leader and wait for it to
//! be committed and applied. The same run measures, on fresh files: every group with one
//! replica (factor 1 through Raft), with three (factor 3), and the writer alone without Raft
//! (the ceiling). Writes reach a group through its `Proposer`, which puts every change that
//! arrives while an entry is in flight into the next one. Requests cross `MemoryTransport`, which still encodes and decodes every
//! RPC, so only the network's latency is missing.

use crate::cli::ReplicationArgs;
use crate::proc_stats::self_cpu_seconds;
use crate::stats::{histogram, Percentiles};
use agora_replication::memory::{MemoryLink, MemoryTransport};
use agora_replication::types::{ShardRow, ShardTable};
use agora_replication::{GroupConfig, Groups, NodeId, Proposer, ShardEntry, ShardRaft};
use agora_seams::system::TokioBlocking;
use agora_store::{RowOp, RowTable, RowWrite, Store, Writer};
use anyhow::{anyhow, Context};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One node of the spike.
struct SpikeNode {
    writer: Writer,
    groups: Groups,
}

/// What one configuration did.
#[derive(Debug, Clone)]
pub struct SpikeResult {
    /// Which configuration.
    pub name: String,
    /// Committed writes per second.
    pub writes_per_sec: f64,
    /// Time from proposal to committed and applied.
    pub latency: Percentiles,
    /// Process CPU per committed write, µs.
    pub cpu_us_per_write: f64,
}

impl SpikeResult {
    fn new(
        name: String,
        args: &ReplicationArgs,
        count: u64,
        latency: Percentiles,
        cpu_secs: f64,
    ) -> Self {
        Self {
            name,
            writes_per_sec: count as f64 / args.duration,
            latency,
            cpu_us_per_write: cpu_secs * 1e6 / count.max(1) as f64,
        }
    }
}

fn entry(group: u32, seq: u64, entry_bytes: usize) -> ShardEntry {
    let mut key = group.to_be_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    ShardEntry {
        proposer_term: None,
        rows: vec![ShardRow {
            table: ShardTable::Entities,
            key,
            value: Some(vec![0x5a; entry_bytes]),
        }],
    }
}

async fn start_nodes(dir: &std::path::Path, nodes: u64) -> anyhow::Result<Vec<SpikeNode>> {
    let transport = MemoryTransport::default();
    let mut out = Vec::new();
    for id in 1..=nodes {
        let store = Store::open(&dir.join(format!("node-{id}.redb")))?;
        let (relay, _) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::start(store.clone(), relay, Vec::new())?;
        let groups = Groups::new(
            id,
            store,
            writer.clone(),
            Arc::new(TokioBlocking),
            Arc::new(MemoryLink {
                from: id,
                net: transport.clone(),
            }),
            &GroupConfig::default(),
        )?;
        transport.add(id, groups.clone());
        out.push(SpikeNode { writer, groups });
    }
    Ok(out)
}

/// Starts `groups` groups of `replicas` members each, spread over the nodes, and returns
/// each group's leader.
async fn start_groups(
    nodes: &[SpikeNode],
    groups: u32,
    replicas: usize,
) -> anyhow::Result<Vec<ShardRaft>> {
    let n = nodes.len();
    let mut leaders = Vec::new();
    for g in 0..groups {
        let members: Vec<usize> = (0..replicas).map(|i| (g as usize + i) % n).collect();
        for &m in &members {
            nodes[m].groups.start(g).await?;
        }
        let first = members[0];
        let map: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|&m| (m as u64 + 1, BasicNode::default()))
            .collect();
        nodes[first].groups.initialize(g, map).await?;
        let raft = nodes[first]
            .groups
            .raft(g)
            .ok_or_else(|| anyhow!("group {g} did not start"))?;
        raft.wait(Some(Duration::from_secs(10)))
            .current_leader(first as u64 + 1, "the initializing member leads")
            .await
            .with_context(|| format!("group {g} elected no leader"))?;
        leaders.push(raft);
    }
    Ok(leaders)
}

/// Closed-loop writers for `duration`: each proposes to the leaders in turn.
async fn drive<F, Fut>(
    writers: usize,
    duration: Duration,
    write: F,
) -> anyhow::Result<(u64, Percentiles, f64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let cpu0 = self_cpu_seconds()?;
    let until = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let write = write.clone();
        tasks.spawn(async move {
            let mut h = histogram(3).ok_or_else(|| anyhow!("histogram"))?;
            let mut seq = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                write(w, seq).await?;
                h.saturating_record(t.elapsed().as_micros() as u64);
                seq += 1;
            }
            anyhow::Ok(h)
        });
    }
    let mut all = histogram(3).ok_or_else(|| anyhow!("histogram"))?;
    while let Some(h) = tasks.join_next().await {
        all.add(h??).map_err(|e| anyhow!("histogram: {e}"))?;
    }
    let cpu = self_cpu_seconds()? - cpu0;
    Ok((all.len(), Percentiles::ms(&all), cpu))
}

async fn raft_run(args: &ReplicationArgs, replicas: usize) -> anyhow::Result<SpikeResult> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let nodes = start_nodes(dir.path(), 3).await?;
    let leaders = start_groups(&nodes, args.groups, replicas).await?;
    let proposers: Arc<Vec<Proposer>> = Arc::new(
        leaders
            .into_iter()
            .enumerate()
            .map(|(g, raft)| {
                let term = raft.metrics().borrow().current_term;
                Proposer::start(
                    g as u32,
                    raft,
                    term,
                    agora_replication::EntryLimits::default(),
                    std::time::Duration::from_secs(5),
                )
            })
            .collect(),
    );
    let (groups, entry_bytes) = (args.groups as usize, args.entry_bytes);
    let duration = Duration::from_secs_f64(args.duration);
    let (count, latency, cpu) = drive(args.writers, duration, move |w, seq| {
        let proposers = proposers.clone();
        async move {
            let g = (w + seq as usize) % groups;
            let e = entry(g as u32, (w as u64) << 32 | seq, entry_bytes);
            Ok(proposers[g].propose(e.rows).await?)
        }
    })
    .await?;
    for n in &nodes {
        n.groups.shutdown().await;
    }
    Ok(SpikeResult::new(
        format!("raft, factor {replicas}"),
        args,
        count,
        latency,
        cpu,
    ))
}

async fn writer_run(args: &ReplicationArgs) -> anyhow::Result<SpikeResult> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let nodes = start_nodes(dir.path(), 1).await?;
    let writer = nodes[0].writer.clone();
    let (groups, entry_bytes) = (args.groups as usize, args.entry_bytes);
    let duration = Duration::from_secs_f64(args.duration);
    let (count, latency, cpu) = drive(args.writers, duration, move |w, seq| {
        let writer = writer.clone();
        async move {
            let g = (w + seq as usize) % groups;
            let row = entry(g as u32, (w as u64) << 32 | seq, entry_bytes)
                .rows
                .remove(0);
            let op = RowOp {
                table: RowTable::Entities,
                key: row.key,
                value: row.value,
            };
            Ok(writer.write_rows(RowWrite::rows(vec![op])).await?)
        }
    })
    .await?;
    Ok(SpikeResult::new(
        "writer alone (no raft)".into(),
        args,
        count,
        latency,
        cpu,
    ))
}

/// Runs the spike's configurations in turn (`rounds` times, interleaved) and prints a
/// table.
pub async fn run(args: ReplicationArgs) -> anyhow::Result<()> {
    println!(
        "replication spike: 3 in-process nodes, {} groups, {} closed-loop writers, {} B entries, {} s per run, {} rounds",
        args.groups, args.writers, args.entry_bytes, args.duration, args.rounds
    );
    println!("| run | writes/s | p50 ms | p99 ms | CPU µs/write |");
    println!("|---|---|---|---|---|");
    for _ in 0..args.rounds {
        for r in [
            writer_run(&args).await?,
            raft_run(&args, 1).await?,
            raft_run(&args, 3).await?,
        ] {
            println!(
                "| {} | {:.0} | {:.2} | {:.2} | {:.0} |",
                r.name, r.writes_per_sec, r.latency.p50, r.latency.p99, r.cpu_us_per_write
            );
        }
    }
    Ok(())
}
