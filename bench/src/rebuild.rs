//! Rebuild throughput: on a self-started three-node cluster with replicated shards, node 3
//! is killed, its data dir deleted (a replaced disk) and it is started again empty; the time
//! from its start until it reports ready (every replica rebuilt from its peers) and the
//! size of its rebuilt store give the rebuild's MB/s, set against the disk's sequential
//! write ceiling measured on the same file system while node 3 is down, and against redb
//! loading the same number of bytes into a fresh file (what a rebuild could reach at best
//! through the store).

use crate::api;
use crate::cli::RebuildArgs;
use crate::cluster_proc::ClusterProc;
use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Bytes written for the disk's sequential-write ceiling.
const CEILING_BYTES: usize = 256 << 20;
/// Size of each write of the ceiling.
const CEILING_BLOCK_BYTES: usize = 1 << 20;

/// MB/s of writing `CEILING_BYTES` to a new file in `dir` in 1 MiB blocks, then fsync.
fn sequential_write_mb_per_s(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join("ceiling.bin");
    let block = vec![0x5au8; CEILING_BLOCK_BYTES];
    let started = Instant::now();
    {
        let mut f = std::fs::File::create(&path).context("cannot create the ceiling file")?;
        for _ in 0..CEILING_BYTES / CEILING_BLOCK_BYTES {
            f.write_all(&block)?;
        }
        f.sync_all()?;
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(CEILING_BYTES as f64 / 1e6 / secs)
}

/// A rebuild's throughput against the disk's and redb's ceilings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildResult {
    /// The shards' replication factor.
    pub replication_factor: usize,
    /// Products created before the disk was lost.
    pub products: usize,
    /// Size of the rebuilt store, bytes.
    pub rebuilt_store_bytes: u64,
    /// From the empty node's start until it reported ready, s.
    pub seconds_to_ready: f64,
    /// Rebuilt bytes per second, MB/s.
    pub mb_per_s: f64,
    /// The disk's sequential-write ceiling, MB/s.
    pub disk_sequential_write_mb_per_s: f64,
    /// redb loading the same bytes into a fresh file, MB/s.
    pub redb_bulk_load_mb_per_s: f64,
}

/// Starts a replicated three-node cluster with `products` products, deletes node 3's data
/// dir and times its rebuild from its peers.
pub async fn measure(
    target: &crate::target::TargetArgs,
    products: usize,
    description_bytes: usize,
) -> anyhow::Result<RebuildResult> {
    let (mut cluster, ep) = ClusterProc::start_replicated(target, "rebuild")?;
    eprintln!("creating {products} products ({description_bytes}-byte descriptions)…");
    let started = Instant::now();
    let shape = api::CatalogShape {
        parallel: 16,
        description_bytes,
    };
    api::setup_shaped(&ep, 16, products, 0, shape).await?;
    eprintln!("created in {:.1} s", started.elapsed().as_secs_f64());
    let victim = 2;
    cluster.kill(victim)?;
    let data = cluster.data_dir(victim);
    std::fs::remove_dir_all(&data).with_context(|| format!("cannot delete {}", data.display()))?;
    let scratch = data.parent().context("the data dir has no parent")?;
    let ceiling = sequential_write_mb_per_s(scratch)?;
    let started = Instant::now();
    cluster.restart(victim)?;
    cluster.wait_ready(victim)?;
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(data.join("agora.redb"))
        .context("the rebuilt store is missing")?
        .len();
    let redb_ceiling = crate::ceilings::redb_bulk_mb_per_s(scratch, bytes)?;
    Ok(RebuildResult {
        replication_factor: target.replication_factor,
        products,
        rebuilt_store_bytes: bytes,
        seconds_to_ready: secs,
        mb_per_s: bytes as f64 / 1e6 / secs,
        disk_sequential_write_mb_per_s: ceiling,
        redb_bulk_load_mb_per_s: redb_ceiling,
    })
}

/// Runs the rebuild and prints (and writes) its throughput.
pub async fn run(a: RebuildArgs) -> anyhow::Result<()> {
    let r = measure(&a.target, a.products, a.description_bytes).await?;
    println!(
        "rebuild of node 3 ({} products): {:.1} MB in {:.2} s = {:.1} MB/s; disk sequential-write ceiling {:.0} MB/s ({:.1} %); redb loading the same bytes {:.0} MB/s ({:.1} %)",
        r.products,
        r.rebuilt_store_bytes as f64 / 1e6,
        r.seconds_to_ready,
        r.mb_per_s,
        r.disk_sequential_write_mb_per_s,
        100.0 * r.mb_per_s / r.disk_sequential_write_mb_per_s,
        r.redb_bulk_load_mb_per_s,
        100.0 * r.mb_per_s / r.redb_bulk_load_mb_per_s
    );
    let path = crate::report::write_json(&a.out, "rebuild", &r)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
