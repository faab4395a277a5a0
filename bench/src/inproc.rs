//! Agora's runtime driven in-process: a `Region` over a store in a temp dir (as the node
//! builds it), bounded-concurrency entity touches, and the entity ask round trip that is
//! set beside the bare ractor call.

use crate::ceilings::RactorCall;
use crate::stats::Percentiles;
use agora_actors::cart::CartCommand;
use agora_actors::client::EntityClient;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use agora_runtime::region::{Region, RegionLimits};
use agora_runtime::RuntimeContext;
use agora_seams::system::SystemClock;
use agora_store::{Store, Writer};
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A region over its own store; the temp dir goes when this is dropped.
pub struct Harness {
    /// The region.
    pub region: Region,
    /// Keeps the committed-outbox channel open.
    _relay: tokio::sync::mpsc::UnboundedReceiver<agora_store::RelayFeed>,
    /// The store's directory.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A region of `shards` shards whose entities passivate after `passivate_after` idle.
    pub async fn start(
        tmp_root: &Path,
        shards: u32,
        passivate_after: Duration,
        max_active_entities: u64,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("agora-bench-region-")
            .tempdir_in(tmp_root)
            .with_context(|| format!("cannot create a temp dir in {}", tmp_root.display()))?;
        let store = Store::open(&dir.path().join("agora.redb"))?;
        let (relay_tx, relay) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::start(store.clone(), relay_tx, vec![])?;
        let rt = RuntimeContext {
            writer,
            store,
            clock: Arc::new(SystemClock),
            domain: Arc::new(Default::default()),
            passivate_after,
            max_active_per_shard: agora_runtime::max_active_per_shard(max_active_entities, shards),
            serve_guard: None,
            served_log: None,
        };
        let owned: Vec<u32> = (0..shards).collect();
        let region = Region::start(shards, &owned, 1, rt, RegionLimits::default()).await?;
        Ok(Self {
            region,
            _relay: relay,
            _dir: dir,
        })
    }

    /// Active entities, summed over shards.
    pub async fn active(&self) -> usize {
        self.region
            .stats()
            .await
            .iter()
            .map(|(_, s)| s.active)
            .sum()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.region.stop();
    }
}

/// The cart of touch number `i`.
fn cart(i: u64) -> EntityRef {
    EntityRef::new(EntityKind::Cart, format!("bench-cart-{i:08}"))
}

/// Adds one item to cart `i`.
async fn add_item(region: &Region, i: u64) -> bool {
    let cmd = Command::Cart(CartCommand::AddItem {
        sku: "BENCH-SKU-1".into(),
        quantity: 1,
    });
    matches!(region.ask(cart(i), cmd).await, Ok(Reply::Cart(_)))
}

/// Progress of a touch run, readable while it runs.
#[derive(Debug, Default)]
pub struct TouchProgress {
    /// Touches acknowledged.
    pub done: AtomicU64,
    /// Touches that failed.
    pub failed: AtomicU64,
}

/// Touches carts `0..n` (one AddItem each, so each is written durably), `parallel` at a
/// time; returns the seconds it took.
pub async fn touch(
    region: &Region,
    n: u64,
    parallel: usize,
    progress: Arc<TouchProgress>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..parallel.max(1) {
        let (region, next, progress) = (region.clone(), next.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if add_item(&region, i).await {
                    progress.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    progress.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Agora's entity ask round trip: region → shard actor → entity actor → reply, on an
/// active entity, for a read (no write).
#[derive(Debug, Clone, Serialize)]
pub struct EntityAsk {
    /// Asks done (one at a time).
    pub asks: u64,
    /// Asks per second.
    pub asks_per_s: f64,
    /// Round trip latency in µs.
    pub latency: Percentiles,
}

/// Asks one active cart for its lines, one ask at a time, for `duration`.
pub async fn entity_ask(tmp_root: &Path, duration: Duration) -> anyhow::Result<EntityAsk> {
    let h = Harness::start(tmp_root, 64, Duration::from_secs(3600), 0).await?;
    anyhow::ensure!(add_item(&h.region, 0).await, "the first touch failed");
    let region = h.region.clone();
    let caller = tokio::spawn(async move {
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
        let started = Instant::now();
        let mut asks = 0u64;
        while started.elapsed() < duration {
            let t = Instant::now();
            let r = region
                .ask(cart(0), Command::Cart(CartCommand::Get))
                .await
                .map_err(|e| anyhow::anyhow!("ask: {e}"))?;
            let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
            anyhow::ensure!(matches!(r, Reply::Cart(_)), "unexpected reply {r:?}");
            asks += 1;
        }
        anyhow::Ok((asks, started.elapsed().as_secs_f64(), hist))
    });
    let (asks, secs, hist) = caller.await??;
    drop(h);
    Ok(EntityAsk {
        asks,
        asks_per_s: asks as f64 / secs,
        latency: Percentiles::scaled(&hist, 1000.0, "us"),
    })
}

/// The ratio of an entity ask to a bare ractor call, at the median.
pub fn ask_overhead(ask: &EntityAsk, call: &RactorCall) -> f64 {
    ask.latency.p50 / call.latency.p50.max(1e-9)
}
