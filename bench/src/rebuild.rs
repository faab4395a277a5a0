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

/// Runs the rebuild and prints (and writes) its throughput.
pub async fn run(a: RebuildArgs) -> anyhow::Result<()> {
    let (mut cluster, ep) = ClusterProc::start_replicated(&a.target, "rebuild")?;
    eprintln!("creating {} products…", a.products);
    api::setup(&ep, 16, a.products, 0).await?;
    let victim = 2;
    cluster.kill(victim)?;
    let data = cluster.data_dir(victim);
    std::fs::remove_dir_all(&data).with_context(|| format!("cannot delete {}", data.display()))?;
    let ceiling = sequential_write_mb_per_s(data.parent().context("the data dir has no parent")?)?;
    let started = Instant::now();
    cluster.restart(victim)?;
    cluster.wait_ready(victim)?;
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(data.join("agora.redb"))
        .context("the rebuilt store is missing")?
        .len();
    let rate = bytes as f64 / 1e6 / secs;
    let scratch = data.parent().context("the data dir has no parent")?;
    let redb_ceiling = crate::ceilings::redb_bulk_mb_per_s(scratch, bytes)?;
    println!(
        "rebuild of node 3 ({} products): {:.1} MB in {secs:.2} s = {rate:.1} MB/s; disk sequential-write ceiling {ceiling:.0} MB/s ({:.1} %); redb loading the same bytes {redb_ceiling:.0} MB/s ({:.1} %)",
        a.products,
        bytes as f64 / 1e6,
        100.0 * rate / ceiling,
        100.0 * rate / redb_ceiling
    );
    let json = serde_json::json!({
        "replication_factor": a.target.replication_factor,
        "products": a.products,
        "rebuilt_store_bytes": bytes,
        "seconds_to_ready": secs,
        "mb_per_s": rate,
        "disk_sequential_write_mb_per_s": ceiling,
        "redb_bulk_load_mb_per_s": redb_ceiling,
    });
    let path = crate::report::write_json(&a.out, "rebuild", &json)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
