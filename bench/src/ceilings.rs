//! Ceilings measured on the same disk and cores as Agora: redb durable commits with one
//! small record per transaction and with every pending write grouped into one transaction
//! (as Agora's writer does), and a ractor local call round trip.

use crate::rng::Rng;
use crate::stats::{self, Percentiles};
use anyhow::Context;
use redb::{Durability, ReadableDatabase, TableDefinition};
use serde::Serialize;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The table both redb ceilings write.
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("ceiling");
/// Bytes per record (about an entity record of Agora).
const RECORD_BYTES: usize = 256;
/// Most writes grouped into one transaction (as Agora's writer).
const MAX_BATCH: usize = 8192;

/// redb with one record per durable transaction.
#[derive(Debug, Clone, Serialize)]
pub struct RedbSingle {
    /// Commits done.
    pub commits: u64,
    /// Commits per second.
    pub commits_per_s: f64,
    /// Latency of one durable commit (begin to commit returned).
    pub latency: Percentiles,
}

/// redb with every pending write grouped into one durable transaction.
#[derive(Debug, Clone, Serialize)]
pub struct RedbGrouped {
    /// Concurrent writers, each waiting for its write to be durable.
    pub writers: usize,
    /// Writes made durable.
    pub writes: u64,
    /// Durable writes per second.
    pub writes_per_s: f64,
    /// Commits (fsyncs) per second.
    pub commits_per_s: f64,
    /// Mean writes per commit.
    pub mean_batch: f64,
    /// Latency of one write, submit to durable.
    pub latency: Percentiles,
}

/// A ractor local call round trip.
#[derive(Debug, Clone, Serialize)]
pub struct RactorCall {
    /// Calls done (one at a time).
    pub calls: u64,
    /// Calls per second.
    pub calls_per_s: f64,
    /// Round trip latency in µs.
    pub latency: Percentiles,
}

/// A record's bytes.
fn record(rng: &mut Rng) -> Vec<u8> {
    (0..RECORD_BYTES).map(|_| rng.next_u64() as u8).collect()
}

/// Opens a fresh database in `dir`.
fn fresh_db(dir: &Path, name: &str) -> anyhow::Result<redb::Database> {
    let db = redb::Database::create(dir.join(name))
        .with_context(|| format!("creating a redb file in {}", dir.display()))?;
    let tx = db.begin_write()?;
    tx.open_table(TABLE)?;
    tx.commit()?;
    Ok(db)
}

/// One record per durable transaction, for `duration`, on one thread.
pub fn redb_single(dir: &Path, duration: Duration) -> anyhow::Result<RedbSingle> {
    let db = fresh_db(dir, "single.redb")?;
    let mut rng = Rng::new(11);
    let mut h = stats::histogram(3).context("histogram")?;
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < duration {
        let value = record(&mut rng);
        let t = Instant::now();
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut table = tx.open_table(TABLE)?;
            table.insert(rng.next_u64(), value.as_slice())?;
        }
        tx.commit()?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
        commits += 1;
    }
    // A read proves the data is there.
    let rtx = db.begin_read()?;
    let n = redb::ReadableTableMetadata::len(&rtx.open_table(TABLE)?)?;
    anyhow::ensure!(
        n == commits,
        "redb holds {n} records after {commits} commits"
    );
    let secs = started.elapsed().as_secs_f64();
    Ok(RedbSingle {
        commits,
        commits_per_s: commits as f64 / secs,
        latency: Percentiles::ms(&h),
    })
}

/// A write for the committer thread: key, value, and where to say it is durable.
type Pending = (u64, Vec<u8>, oneshot::Sender<()>);

/// The committer: takes every pending write, commits them in one durable transaction.
fn committer(db: redb::Database, rx: mpsc::Receiver<Pending>) -> anyhow::Result<(u64, u64)> {
    let (mut commits, mut writes) = (0u64, 0u64);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut table = tx.open_table(TABLE)?;
            for (k, v, _) in &batch {
                table.insert(*k, v.as_slice())?;
            }
        }
        tx.commit()?;
        commits += 1;
        writes += batch.len() as u64;
        for (_, _, done) in batch {
            let _ = done.send(());
        }
    }
    Ok((commits, writes))
}

/// `writers` tokio tasks each submitting a write and waiting for it to be durable, one
/// committer thread grouping all pending writes per transaction, for `duration`.
pub async fn redb_grouped(
    dir: &Path,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<RedbGrouped> {
    let db = fresh_db(dir, "grouped.redb")?;
    let (tx, rx) = mpsc::channel::<Pending>();
    let thread = std::thread::Builder::new()
        .name("ceiling-committer".into())
        .spawn(move || committer(db, rx))?;
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::new();
    for wr in 0..writers.max(1) {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + wr as u64);
            let mut h = stats::histogram(3);
            let mut n = 0u64;
            while Instant::now() < until {
                let (done, durable) = oneshot::channel();
                let t = Instant::now();
                if tx.send((rng.next_u64(), record(&mut rng), done)).is_err() {
                    break;
                }
                if durable.await.is_err() {
                    break;
                }
                if let Some(h) = h.as_mut() {
                    let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                }
                n += 1;
            }
            (n, h)
        }));
    }
    drop(tx);
    let mut all = stats::histogram(3).context("histogram")?;
    let mut acked = 0u64;
    for t in tasks {
        let (n, h) = t.await?;
        acked += n;
        if let Some(h) = h {
            all.add(&h)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (commits, writes) = thread
        .join()
        .map_err(|_| anyhow::anyhow!("the committer thread panicked"))??;
    anyhow::ensure!(
        writes >= acked,
        "{acked} writes acknowledged, {writes} committed"
    );
    Ok(RedbGrouped {
        writers,
        writes: acked,
        writes_per_s: acked as f64 / secs,
        commits_per_s: commits as f64 / secs,
        mean_batch: writes as f64 / commits.max(1) as f64,
        latency: Percentiles::ms(&all),
    })
}

/// The ping actor.
pub struct Pinger;

/// Its message.
pub enum Ping {
    /// Answer `()`.
    Ping(ractor::RpcReplyPort<()>),
}

// The workspace builds ractor with its `cluster` feature, where local messages opt in.
impl ractor::Message for Ping {}

impl ractor::Actor for Pinger {
    type Msg = Ping;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _me: ractor::ActorRef<Ping>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _me: ractor::ActorRef<Ping>,
        msg: Ping,
        _state: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        match msg {
            Ping::Ping(reply) => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Calls a local actor one call at a time for `duration`; latency in µs with ns precision.
pub async fn ractor_call(duration: Duration) -> anyhow::Result<RactorCall> {
    let (actor, handle) = ractor::Actor::spawn(None, Pinger, ()).await?;
    let caller = tokio::spawn(async move {
        // ns units: 1 ns to 10 s.
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
        let started = Instant::now();
        let mut calls = 0u64;
        while started.elapsed() < duration {
            let t = Instant::now();
            ractor::call!(actor, Ping::Ping).map_err(|e| anyhow::anyhow!("ractor call: {e}"))?;
            let _ = h.record(t.elapsed().as_nanos().max(1) as u64);
            calls += 1;
        }
        actor.stop(None);
        anyhow::Ok((calls, started.elapsed().as_secs_f64(), h))
    });
    let (calls, secs, h) = caller.await??;
    let _ = handle.await;
    Ok(RactorCall {
        calls,
        calls_per_s: calls as f64 / secs,
        latency: Percentiles::scaled(&h, 1000.0, "us"),
    })
}

/// Bytes of one record of the bulk-load ceiling (about a product with its stock item).
const BULK_RECORD_BYTES: usize = 1024;
/// Bytes committed per durable transaction of the bulk load (about a snapshot chunk).
const BULK_TRANSACTION_BYTES: usize = 4 << 20;

/// What redb itself can load: `total_bytes` of records under ascending keys (a rebuild
/// installs each shard's rows in key order, as the leader exported them), in durable
/// transactions of `BULK_TRANSACTION_BYTES`, into a fresh file in `dir`. Answers the
/// file's size over the time taken, in MB/s: the same measure as a rebuild's. (Scattered
/// keys load about five times slower: 77 against 356 MB/s on a 2-vCPU Intel Xeon.)
pub fn redb_bulk_mb_per_s(dir: &Path, total_bytes: u64) -> anyhow::Result<f64> {
    let path = dir.join("bulk.redb");
    let db = fresh_db(dir, "bulk.redb")?;
    let mut rng = Rng::new(7);
    let per_tx = (BULK_TRANSACTION_BYTES / BULK_RECORD_BYTES) as u64;
    let records = (total_bytes / BULK_RECORD_BYTES as u64).max(per_tx);
    let value: Vec<u8> = (0..BULK_RECORD_BYTES)
        .map(|_| rng.next_u64() as u8)
        .collect();
    let started = Instant::now();
    let mut written = 0u64;
    while written < records {
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(TABLE)?;
            for _ in 0..per_tx.min(records - written) {
                t.insert(written, value.as_slice())?;
                written += 1;
            }
        }
        tx.commit()?;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(db);
    let bytes = std::fs::metadata(&path)?.len();
    std::fs::remove_file(&path)?;
    Ok(bytes as f64 / 1e6 / secs)
}
