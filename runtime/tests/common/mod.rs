//! Helpers shared by the store-and-runtime test files: stores, writers, regions, records.
#![allow(dead_code)]

use agora_actors::client::EntityClient;
use agora_actors::host::EntityState;
use agora_actors::stock::StockCommand;
use agora_actors::{Command, EntityRef, Reply};
use agora_runtime::region::{Region, RegionLimits};
use agora_runtime::RuntimeContext;
use agora_seams::system::SystemClock;
use agora_store::keys::entity_key;
use agora_store::record::{encode, EntityRecord, FORMAT_VERSION};
use agora_store::writer::EntityWrite;
use agora_store::{Store, StoreError, WriteOp, Writer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

pub fn write(
    shard: u32,
    epoch: u64,
    entity: &EntityRef,
    state: EntityState,
    outbox: Vec<agora_actors::OutboxMessage>,
) -> (WriteOp, oneshot::Receiver<Result<(), StoreError>>) {
    let (done, rx) = oneshot::channel();
    let record = encode(&EntityRecord {
        format: FORMAT_VERSION,
        seq: 1,
        epoch,
        written_at_ms: 0,
        state,
    })
    .unwrap();
    let w = EntityWrite {
        shard,
        epoch,
        entity: entity.clone(),
        key: entity_key(shard, entity),
        record,
        msg_ids: Vec::new(),
        outbox,
        after: Vec::new(),
        state_for_listeners: None,
        now_ms: 0,
        done: Some(done),
        fence: None,
    };
    (WriteOp::Entity(Box::new(w)), rx)
}

/// Opens the store at `path`, waiting (bounded) for the previous owner's threads to let go.
pub async fn reopen(path: &std::path::Path) -> Store {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(path) {
            Ok(s) => return s,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("store still locked after 10 s: {e}"),
        }
    }
}

/// A fresh store at `path` and its writer (committed outbox rows go nowhere).
pub fn store_and_writer(path: &std::path::Path) -> (Store, Writer) {
    let store = Store::open(path).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start(store.clone(), tx, vec![]).unwrap();
    (store, writer)
}

pub fn stock_state(available: u64) -> EntityState {
    EntityState::Stock(agora_actors::stock::StockState {
        available,
        received: available,
        ..Default::default()
    })
}

/// Moves `shard` on to `epoch` in `writer`'s store (as a handoff away does).
pub async fn drop_shard(writer: &Writer, shard: u32, epoch: u64) {
    let (done, rx) = oneshot::channel();
    writer
        .submit(WriteOp::DropShard { shard, epoch, done })
        .unwrap();
    rx.await.unwrap().unwrap();
}

/// Asserts that stock item `sku` has `available` units both in memory and on disk.
pub async fn assert_kept(region: &Region, store: &Store, sku: &EntityRef, available: u64) {
    assert_available(region, sku, available).await;
    let rec = store
        .entity(&entity_key(sku.shard(8), sku))
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, stock_state(available));
}

/// Asserts that stock item `sku` answers `available` units.
pub async fn assert_available(region: &Region, sku: &EntityRef, available: u64) {
    let r = region
        .ask(sku.clone(), Command::Stock(StockCommand::Get))
        .await;
    assert!(
        matches!(r, Ok(Reply::Stock(ref s)) if s.available == available),
        "{r:?}"
    );
}

pub async fn region_on(path: &std::path::Path) -> (Region, Store) {
    let (region, store, _) = region_and_writer(path).await;
    (region, store)
}

pub async fn region_and_writer(path: &std::path::Path) -> (Region, Store, Writer) {
    region_capped(path, Duration::from_millis(200), usize::MAX).await
}

/// A region of 8 shards over the store at `path`: entities passivated after `idle`, at most
/// `cap` active per shard.
pub async fn region_capped(
    path: &std::path::Path,
    idle: Duration,
    cap: usize,
) -> (Region, Store, Writer) {
    let store = reopen(path).await;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start(store.clone(), tx, vec![]).unwrap();
    let rt = RuntimeContext {
        writer: writer.clone(),
        store: store.clone(),
        clock: Arc::new(SystemClock),
        domain: Arc::new(Default::default()),
        passivate_after: idle,
        max_active_per_shard: cap,
        serve_guard: None,
        served_log: None,
    };
    let all: Vec<u32> = (0..8).collect();
    let region = Region::start(8, &all, 1, rt, RegionLimits::default())
        .await
        .unwrap();
    (region, store, writer)
}
