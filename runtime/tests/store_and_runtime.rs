//! Tests of the store (group commit, ordering, fencing, outbox) and the runtime (dedup by
//! message id across restarts, durable replies) on a real redb file.

mod common;

use agora_actors::client::{AskError, EntityClient};
use agora_actors::host::EntityState;
use agora_actors::stock::StockCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use agora_store::keys::entity_key;
use agora_store::{RelayFeed, Store, StoreError, WriteOp, Writer};
use common::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Installs `part` of a shard under `epoch` (`first`: the stream's first part).
async fn install_part(
    writer: &Writer,
    part: agora_store::ShardData,
    epoch: u64,
    first: bool,
) -> Result<(), agora_store::StoreError> {
    let (done, rx) = oneshot::channel();
    writer
        .submit(WriteOp::InstallShard {
            data: Box::new(part),
            epoch,
            first,
            done,
        })
        .unwrap();
    rx.await.unwrap()
}

/// A fresh store at `path` (and its writer) that has installed `data` under `epoch`, in
/// parts of at most 256 bytes (as a handoff streams it).
async fn store_with_shard(
    path: &std::path::Path,
    data: &agora_store::ShardData,
    epoch: u64,
) -> (Store, Writer) {
    let (store, writer) = store_and_writer(path);
    let parts = data.clone().into_parts(256);
    assert!(
        data.bytes() <= 256 || parts.len() > 1,
        "a shard of {} bytes in one part",
        data.bytes()
    );
    for (i, part) in parts.into_iter().enumerate() {
        install_part(&writer, part, epoch, i == 0).await.unwrap();
    }
    (store, writer)
}

#[tokio::test]
async fn a_later_part_of_a_shard_installs_only_on_top_of_its_first_part() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = store_and_writer(&dir.path().join("a.redb"));
    let shard = 3;
    let cart = EntityRef::new(EntityKind::Cart, "u1");
    let part = |n: u8| agora_store::ShardData {
        shard,
        dedup: vec![(
            agora_store::keys::dedup_key(&entity_key(shard, &cart), &format!("m{n}")),
            u64::from(n),
        )],
        ..Default::default()
    };
    // A part without its first part (a stream whose beginning never arrived) is refused.
    let refused = install_part(&writer, part(1), 5, false).await;
    assert!(
        matches!(refused, Err(agora_store::StoreError::StaleEpoch { .. })),
        "{refused:?}"
    );
    install_part(&writer, part(2), 5, true).await.unwrap();
    install_part(&writer, part(3), 5, false).await.unwrap();
    assert_eq!(store.export_shard(shard).unwrap().dedup.len(), 2);
    // A new stream's first part replaces what the shard held.
    install_part(&writer, part(4), 6, true).await.unwrap();
    assert_eq!(store.export_shard(shard).unwrap().dedup, part(4).dedup);
    // A late part of the older stream is refused.
    assert!(install_part(&writer, part(5), 5, false).await.is_err());
}

#[tokio::test]
async fn concurrent_writes_are_grouped_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    {
        let store = Store::open(&path).unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::start(store, tx, vec![]).unwrap();
        let mut waits = Vec::new();
        for i in 0..500u64 {
            let e = EntityRef::new(EntityKind::StockItem, format!("SKU-{i}"));
            let (op, rx) = write(0, 1, &e, stock_state(i), vec![]);
            writer.submit(op).unwrap();
            waits.push(rx);
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
    }
    let store = reopen(&path).await;
    let mut n = 0;
    store
        .scan_entities(&[EntityKind::StockItem], |e, rec| {
            let i: u64 = e.id.trim_start_matches("SKU-").parse().unwrap();
            assert_eq!(rec.state, stock_state(i));
            n += 1;
        })
        .unwrap();
    assert_eq!(n, 500);
}

#[tokio::test]
async fn a_load_sees_every_write_submitted_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start(store, tx, vec![]).unwrap();
    let e = EntityRef::new(EntityKind::StockItem, "X");
    let (op, _done) = write(3, 1, &e, stock_state(7), vec![]);
    writer.submit(op).unwrap();
    // No await on the write: the load is queued behind it and must see it.
    let rec = writer.load(entity_key(3, &e)).await.unwrap().unwrap();
    assert_eq!(rec.state, stock_state(7));
}

/// Records that `msg_id` took effect on `e` (shard 6) at `at_ms`.
async fn record_mark(writer: &Writer, e: &EntityRef, msg_id: &str, at_ms: u64) {
    let (mut op, done) = write(6, 1, e, stock_state(1), vec![]);
    if let WriteOp::Entity(w) = &mut op {
        w.msg_ids = vec![msg_id.to_string()];
        w.now_ms = at_ms;
    }
    writer.submit(op).unwrap();
    done.await.unwrap().unwrap();
}

#[tokio::test]
async fn marks_older_than_the_retention_are_forgotten_and_renewed_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = store_and_writer(&dir.path().join("a.redb"));
    let e = EntityRef::new(EntityKind::StockItem, "M");
    let key = entity_key(6, &e);
    record_mark(&writer, &e, "old", 1_000).await;
    record_mark(&writer, &e, "renewed", 2_000).await;
    record_mark(&writer, &e, "recent", 9_000).await;
    let expired = store.expired_marks(6, 5_000, 100).unwrap();
    assert_eq!(expired.len(), 2, "old and renewed are past the retention");
    // A copy of "renewed" arrives again after the sweep listed it: its fresh mark stays.
    record_mark(&writer, &e, "renewed", 10_000).await;
    let (done, rx) = oneshot::channel();
    writer
        .submit(WriteOp::ForgetMarks {
            keys: expired,
            before_ms: 5_000,
        })
        .unwrap();
    writer
        .submit(WriteOp::PutMeta {
            name: "barrier".into(),
            value: vec![],
            done,
        })
        .unwrap();
    rx.await.unwrap().unwrap();
    let seen = |id: &str| store.dedup_seen(&key, id).unwrap();
    assert!(!seen("old") && seen("renewed") && seen("recent"));
    assert!(
        store.entity(&key).unwrap().is_some(),
        "the record itself stays"
    );
}

#[tokio::test]
async fn outbox_rows_are_committed_with_the_state_and_deleted_when_acked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start(store.clone(), tx, vec![]).unwrap();
    let from = EntityRef::new(EntityKind::Order, "o1");
    let msg = agora_actors::OutboxMessage {
        id: "order/o1#1.0".into(),
        from: from.clone(),
        to: agora_actors::Destination::Entity(EntityRef::new(EntityKind::StockItem, "S")),
        deliver_at_ms: 0,
        topic: "ORDER_PLACED".into(),
        body: agora_actors::message::Body::Command(Command::Stock(StockCommand::Get)),
    };
    let (op, done) = write(
        1,
        1,
        &from,
        EntityState::empty(EntityKind::Order),
        vec![msg.clone()],
    );
    let ticket = writer.submit(op).unwrap();
    done.await.unwrap().unwrap();
    // The message is handed over early (at submit), then its row once committed.
    let Some(RelayFeed::Submitted {
        ticket: early_ticket,
        messages,
        ..
    }) = rx.recv().await
    else {
        panic!("the early copy comes first");
    };
    assert_eq!((early_ticket, messages), (ticket, vec![msg.clone()]));
    let Some(RelayFeed::Committed(committed)) = rx.recv().await else {
        panic!("then the committed row");
    };
    assert_eq!(committed.len(), 1);
    assert_eq!(
        (
            committed[0].ticket,
            &committed[0].message,
            committed[0].stored
        ),
        (ticket, &msg, true)
    );
    assert_eq!(store.outbox_rows().unwrap().len(), 1);
    writer
        .submit(WriteOp::OutboxAcked(vec![committed[0].key.clone()]))
        .unwrap();
    writer.put_meta("barrier", vec![]).await.unwrap();
    assert!(store.outbox_rows().unwrap().is_empty());
}

/// A message from `from` to `to`, due now.
fn message_to(id: &str, from: &EntityRef, to: &EntityRef) -> agora_actors::OutboxMessage {
    agora_actors::OutboxMessage {
        id: id.into(),
        from: from.clone(),
        to: agora_actors::Destination::Entity(to.clone()),
        deliver_at_ms: 0,
        topic: "ORDER_PLACED".into(),
        body: agora_actors::message::Body::Command(Command::Stock(StockCommand::Get)),
    }
}

/// `op` (an entity write) records `msg_ids` as taken, derived from the changes `after`.
fn taking(mut op: WriteOp, msg_ids: &[&str], after: Vec<u64>) -> WriteOp {
    if let WriteOp::Entity(w) = &mut op {
        w.msg_ids = msg_ids.iter().map(|s| s.to_string()).collect();
        w.after = after;
    }
    op
}

#[tokio::test]
async fn a_row_taken_by_its_receiver_in_the_same_transaction_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Inline on this single-threaded runtime: nothing commits until the test awaits, so each
    // group of submits below is exactly one transaction.
    let writer = Writer::start_on(
        store.clone(),
        tx,
        vec![],
        agora_store::writer::StorageExecutor::Inline {
            latency: Arc::new(|| Duration::ZERO),
        },
    )
    .unwrap();
    let order = EntityRef::new(EntityKind::Order, "o1");
    let (x, y, z) = (
        EntityRef::new(EntityKind::StockItem, "X"),
        EntityRef::new(EntityKind::StockItem, "Y"),
        EntityRef::new(EntityKind::StockItem, "Z"),
    );
    // Z's shard is owned under epoch 2 from now on.
    let (op, done) = write(3, 2, &z, stock_state(1), vec![]);
    writer.submit(op).unwrap();
    done.await.unwrap().unwrap();
    let order_state = || EntityState::empty(EntityKind::Order);
    let (m1, m2, m3) = (
        message_to("m1", &order, &x),
        message_to("m2", &order, &x),
        message_to("m3", &order, &z),
    );
    // m1 is taken by X in the same transaction; m2 is listed by Y, which is not its
    // receiver; m3's receiver writes under a stale epoch and is refused.
    let (s, _s_done) = write(1, 1, &order, order_state(), vec![m1, m2, m3]);
    let sender = writer.submit(s).unwrap();
    let (w, w_done) = write(2, 1, &x, stock_state(5), vec![]);
    writer.submit(taking(w, &["m1"], vec![sender])).unwrap();
    let (w, _) = write(2, 1, &y, stock_state(5), vec![]);
    writer.submit(taking(w, &["m2"], vec![sender])).unwrap();
    let (w, z_done) = write(3, 1, &z, stock_state(5), vec![]);
    writer.submit(taking(w, &["m3"], vec![sender])).unwrap();
    w_done.await.unwrap().unwrap();
    assert!(matches!(
        z_done.await.unwrap(),
        Err(StoreError::StaleEpoch { .. })
    ));
    let mut stored = std::collections::BTreeMap::new();
    while let Ok(feed) = rx.try_recv() {
        if let RelayFeed::Committed(rows) = feed {
            for row in rows {
                stored.insert(row.message.id.clone(), row.stored);
            }
        }
    }
    let expected: std::collections::BTreeMap<String, bool> = [
        ("m1".into(), false),
        ("m2".into(), true),
        ("m3".into(), true),
    ]
    .into();
    assert_eq!(stored, expected);
    let mut rows: Vec<String> = store
        .outbox_rows()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.message.id)
        .collect();
    rows.sort();
    assert_eq!(rows, vec!["m2".to_string(), "m3".to_string()]);
    // The taken message is recorded on its receiver, so a copy would be deduplicated.
    assert!(store.dedup_seen(&entity_key(2, &x), "m1").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_passivation_are_all_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    // Idle at once: every passivation tick (100 ms) stops the entity between requests, so
    // requests keep meeting it active (sent straight to its mailbox), stopping (held by the
    // shard) and stopped (reactivated).
    let (region, _store, _writer) =
        region_capped(&dir.path().join("a.redb"), Duration::ZERO, usize::MAX).await;
    let sku = EntityRef::new(EntityKind::StockItem, "P");
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (region, sku) = (region.clone(), sku.clone());
        senders.spawn(async move {
            let started = std::time::Instant::now();
            let mut sent = 0u64;
            // Across several ticks.
            while started.elapsed() < Duration::from_millis(600) {
                let r = region
                    .ask(
                        sku.clone(),
                        Command::Stock(StockCommand::Receive { quantity: 1 }),
                    )
                    .await;
                assert!(r.is_ok(), "{r:?}");
                sent += 1;
            }
            sent
        });
    }
    let mut total = 0;
    while let Some(sent) = senders.join_next().await {
        total += sent.unwrap();
    }
    assert_available(&region, &sku, total).await;
    region.stop();
}

#[tokio::test]
async fn a_shard_at_its_cap_passivates_the_least_recently_used_and_keeps_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(3600);
    let (region, _, _) = region_capped(&dir.path().join("a.redb"), idle, 16).await;
    let sku = |i: u32| EntityRef::new(EntityKind::StockItem, format!("CAP-{i}"));
    let receive = Command::Stock(StockCommand::Receive { quantity: 2 });
    for i in 0..400 {
        region.ask(sku(i), receive.clone()).await.unwrap();
    }
    let stats = region.stats().await;
    let active: usize = stats.iter().map(|(_, s)| s.active).sum();
    assert!(
        stats.iter().all(|(_, s)| s.active <= 16),
        "every shard holds at most 16 active entities: {stats:?}"
    );
    assert!(active < 400, "{active} of 400 still active");
    // An evicted entity comes back with its state.
    for i in 0..400 {
        let r = region.ask(sku(i), receive.clone()).await.unwrap();
        assert!(
            matches!(r, Reply::Stock(ref s) if s.available == 4),
            "{i}: {r:?}"
        );
    }
    region.stop();
}

#[tokio::test]
async fn a_redelivered_message_takes_effect_once_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let sku = EntityRef::new(EntityKind::StockItem, "D");
    let receive = Command::Stock(StockCommand::Receive { quantity: 5 });
    {
        let (region, _) = region_on(&path).await;
        let r = region
            .deliver(sku.clone(), receive.clone(), Some("m-1".into()))
            .await
            .unwrap();
        assert!(matches!(r, Reply::Stock(ref s) if s.available == 5));
        let r = region
            .deliver(sku.clone(), receive.clone(), Some("m-1".into()))
            .await
            .unwrap();
        assert_eq!(r, Reply::Duplicate);
        region.stop();
    }
    let (region, _) = region_on(&path).await;
    assert_eq!(
        region
            .deliver(sku.clone(), receive.clone(), Some("m-1".into()))
            .await
            .unwrap(),
        Reply::Duplicate
    );
    let Reply::Stock(s) = region
        .ask(sku.clone(), Command::Stock(StockCommand::Get))
        .await
        .unwrap()
    else {
        panic!("not stock")
    };
    assert_eq!(s.available, 5);
    // A new message id does take effect.
    region
        .deliver(sku.clone(), receive, Some("m-2".into()))
        .await
        .unwrap();
    let Reply::Stock(s) = region
        .ask(sku, Command::Stock(StockCommand::Get))
        .await
        .unwrap()
    else {
        panic!("not stock")
    };
    assert_eq!(s.available, 10);
}

#[tokio::test]
async fn a_refused_command_changes_nothing_and_a_passivated_entity_reloads_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let (region, store) = region_on(&dir.path().join("a.redb")).await;
    let sku = EntityRef::new(EntityKind::StockItem, "P");
    region
        .ask(
            sku.clone(),
            Command::Stock(StockCommand::Receive { quantity: 3 }),
        )
        .await
        .unwrap();
    let refused = region
        .ask(
            sku.clone(),
            Command::Stock(StockCommand::WriteOff { quantity: 4 }),
        )
        .await;
    assert!(matches!(refused, Err(AskError::Domain(_))));
    // Wait (bounded) for passivation: the shard stops the idle entity.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let active: usize = region
            .stats()
            .await
            .iter()
            .map(|(_, s)| s.active + s.stopping)
            .sum();
        if active == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "entity never passivated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Reply::Stock(s) = region
        .ask(sku.clone(), Command::Stock(StockCommand::Get))
        .await
        .unwrap()
    else {
        panic!("not stock")
    };
    assert_eq!((s.available, s.sold), (3, 0));
    let rec = store
        .entity(&entity_key(sku.shard(8), &sku))
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.seq, 1,
        "the refused write-off must not have been stored"
    );
}

#[tokio::test]
async fn a_shard_streams_to_another_store_as_a_unit_and_the_old_copy_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (a_region, a_store, a_writer) = region_and_writer(&dir.path().join("a.redb")).await;
    // Entities in several shards, with applied message ids and pending outbox rows.
    for i in 0..40 {
        let sku = EntityRef::new(EntityKind::StockItem, format!("S{i}"));
        a_region
            .deliver(
                sku,
                Command::Stock(StockCommand::Receive { quantity: 3 }),
                Some(format!("m{i}")),
            )
            .await
            .unwrap();
    }
    let order = EntityRef::new(EntityKind::Order, "o-1");
    let shard = order.shard(8);
    let mut moved = a_store.export_shard(shard).unwrap();
    let others: usize = (0..8)
        .filter(|s| *s != shard)
        .map(|s| a_store.export_shard(s).unwrap().rows())
        .sum();
    assert!(
        moved.rows() > 0 && others > 0,
        "shards should hold data: {} / {others}",
        moved.rows()
    );
    assert!(moved
        .entities
        .iter()
        .all(|(k, _)| k.starts_with(&shard.to_be_bytes())));
    assert!(moved
        .outbox
        .iter()
        .all(|(k, _)| { agora_store::keys::parse_outbox_key(k).is_some_and(|(s, _)| s == shard) }));
    assert!(
        !moved.dedup.is_empty(),
        "applied message ids travel with the shard"
    );

    // Install on another store under epoch 2: same rows, and the shard's epoch is 2 there.
    let (b_store, _b_writer) = store_with_shard(&dir.path().join("b.redb"), &moved, 2).await;
    assert_eq!(b_store.export_shard(shard).unwrap(), moved);
    assert_eq!(b_store.shard_epoch(shard).unwrap(), 2);

    // Drop on the old owner: its rows are gone and a write under the old epoch is refused.
    a_region.stop();
    let (done, rx) = oneshot::channel();
    a_writer
        .submit(WriteOp::DropShard {
            shard,
            epoch: 2,
            done,
        })
        .unwrap();
    rx.await.unwrap().unwrap();
    moved.entities.clear();
    assert_eq!(a_store.export_shard(shard).unwrap().rows(), 0);
    let (op, done) = write(shard, 1, &order, stock_state(1), vec![]);
    a_writer.submit(op).unwrap();
    assert!(matches!(
        done.await.unwrap(),
        Err(StoreError::StaleEpoch { .. })
    ));
    let still: usize = (0..8)
        .filter(|s| *s != shard)
        .map(|s| a_store.export_shard(s).unwrap().rows())
        .sum();
    assert_eq!(still, others, "other shards are untouched");
}

#[tokio::test]
async fn orders_still_holding_stock_past_their_time_are_reported_as_stuck() {
    use agora_actors::order::{Address, OrderCommand, OrderLine, Placement};
    use agora_actors::payment::Method;
    let dir = tempfile::tempdir().unwrap();
    let (region, store) = region_on(&dir.path().join("a.redb")).await;
    let placement = |hash: &str| Placement {
        customer: "u".into(),
        lines: vec![OrderLine {
            sku: "S".into(),
            quantity: 1,
            unit_price_minor: 100,
        }],
        method: Method::Wallet,
        address: Address {
            name: "n".into(),
            line1: "l".into(),
            city: "c".into(),
            postal_code: "1".into(),
            country: "IN".into(),
        },
        request_hash: hash.into(),
        placed_at_ms: 0,
        shipping: Default::default(),
    };
    for id in ["o-stuck", "o-cancelled"] {
        let order = EntityRef::new(EntityKind::Order, id);
        region
            .ask(order, Command::Order(OrderCommand::Place(placement(id))))
            .await
            .unwrap();
    }
    region
        .ask(
            EntityRef::new(EntityKind::Order, "o-cancelled"),
            Command::Order(OrderCommand::Cancel),
        )
        .await
        .unwrap();
    let all: Vec<u32> = (0..8).collect();
    // Placed at time 0: not older than a cutoff of 0, older than any later one.
    let stuck = store.stuck_orders(&all, 0).unwrap();
    assert!(stuck.is_empty(), "{stuck:?}");
    let stuck = store.stuck_orders(&all, 1).unwrap();
    assert_eq!(stuck, vec!["o-stuck".to_string()]);
}

fn message(id: &str, from: &EntityRef) -> agora_actors::OutboxMessage {
    agora_actors::OutboxMessage {
        id: id.into(),
        from: from.clone(),
        to: agora_actors::Destination::Entity(EntityRef::new(EntityKind::StockItem, "S")),
        deliver_at_ms: u64::MAX,
        topic: "TIMER".into(),
        body: agora_actors::message::Body::Command(Command::Stock(StockCommand::Get)),
    }
}

/// A store in `dir` whose `order` (of `shard`) emitted three rows, `a#1`..`a#3`.
async fn store_with_three_rows(dir: &std::path::Path, order: &EntityRef, shard: u32) -> Store {
    let (store, writer) = store_and_writer(&dir.join("a.redb"));
    let msgs: Vec<_> = (1..=3).map(|i| message(&format!("a#{i}"), order)).collect();
    let (op, done) = write(shard, 1, order, EntityState::empty(EntityKind::Order), msgs);
    writer.submit(op).unwrap();
    done.await.unwrap().unwrap();
    store
}

/// The ids of every message in `store`'s outbox, sorted.
fn outbox_ids(store: &Store) -> Vec<String> {
    let rows = store.outbox_rows().unwrap().into_iter();
    let mut ids: Vec<String> = rows.map(|(_, r)| r.message.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn rows_a_group_applied_are_never_overwritten_by_the_new_leaders_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let order = EntityRef::new(EntityKind::Order, "o-1");
    let shard = order.shard(8);
    // The leader (store A) emits three rows for the shard (sequence numbers 1..=3).
    let a_store = store_with_three_rows(dir.path(), &order, shard).await;
    // A follower (store B, fresh: its own sequence starts at 1) applies them as its group
    // does, as rows; it then leads and emits rows of its own: every applied row survives.
    let (b_store, b_writer) = store_and_writer(&dir.path().join("b.redb"));
    let applied = a_store.export_shard(shard).unwrap().outbox;
    let rows = applied
        .into_iter()
        .map(|(k, v)| agora_store::RowOp::put(agora_store::RowTable::Outbox, k, v))
        .collect();
    b_writer
        .write_rows(agora_store::RowWrite::rows(rows))
        .await
        .unwrap();
    let own: Vec<_> = (1..=3)
        .map(|i| message(&format!("b#{i}"), &order))
        .collect();
    let (op, done) = write(shard, 1, &order, EntityState::empty(EntityKind::Order), own);
    b_writer.submit(op).unwrap();
    done.await.unwrap().unwrap();
    assert_eq!(
        outbox_ids(&b_store),
        vec!["a#1", "a#2", "a#3", "b#1", "b#2", "b#3"]
    );
}

#[tokio::test]
async fn rows_of_an_installed_shard_are_never_overwritten_by_the_new_owners_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let order = EntityRef::new(EntityKind::Order, "o-1");
    let shard = order.shard(8);
    // Store A emits three pending rows for the shard (sequence numbers 1..=3).
    let a_store = store_with_three_rows(dir.path(), &order, shard).await;
    let moved = a_store.export_shard(shard).unwrap();
    assert_eq!(
        moved.outbox.len(),
        3,
        "the shard's pending rows are exported"
    );

    // Store B (fresh: its own sequence starts at 1) installs the shard, then emits rows of
    // its own for the same shard: every installed row must survive.
    let (b_store, b_writer) = store_with_shard(&dir.path().join("b.redb"), &moved, 2).await;
    let other = EntityRef::new(EntityKind::Order, "o-1");
    let own: Vec<_> = (1..=3)
        .map(|i| message(&format!("b#{i}"), &other))
        .collect();
    let (op, done) = write(shard, 2, &other, EntityState::empty(EntityKind::Order), own);
    b_writer.submit(op).unwrap();
    done.await.unwrap().unwrap();
    assert_eq!(
        outbox_ids(&b_store),
        vec!["a#1", "a#2", "a#3", "b#1", "b#2", "b#3"]
    );
}

#[tokio::test]
async fn a_load_of_a_key_written_in_the_same_batch_answers_only_once_that_write_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, writer) = store_and_writer(&dir.path().join("a.redb"));
    for round in 0..20 {
        // Keep the writer busy with a batch so the next write and the load queue together.
        let mut busy = Vec::new();
        for i in 0..64 {
            let e = EntityRef::new(EntityKind::StockItem, format!("B{round}-{i}"));
            let (op, rx) = write(0, 1, &e, stock_state(1), vec![]);
            writer.submit(op).unwrap();
            busy.push(rx);
        }
        let e = EntityRef::new(EntityKind::StockItem, format!("W{round}"));
        let (op, done) = write(0, 1, &e, stock_state(round), vec![]);
        let ticket = writer.submit(op).unwrap();
        let loaded = writer.load(entity_key(0, &e)).await.unwrap();
        assert!(
            loaded.is_some(),
            "the load sees the write submitted before it"
        );
        assert!(
            writer.progress().borrow().committed >= ticket,
            "round {round}: a load answered a change that was not durable yet"
        );
        done.await.unwrap().unwrap();
        for rx in busy {
            rx.await.unwrap().unwrap();
        }
    }
}

/// Two callers that find a shard unhosted at once (on the node a shard just moved to: the
/// map follower, and the router of a message the old owner forwarded) start it once: two
/// shard actors would each activate their own copy of an entity, and the copies would
/// overwrite each other's changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_hosted_by_many_callers_at_once_is_started_once() {
    let dir = tempfile::tempdir().unwrap();
    let (region, _store) = region_on(&dir.path().join("a.redb")).await;
    assert!(region.release(3).await.is_empty());
    assert!(!region.hosts(3));
    let starts = (0..8).map(|_| {
        let region = region.clone();
        tokio::spawn(async move { region.host(3, 2).await.unwrap() })
    });
    let mut started = 0;
    for start in starts.collect::<Vec<_>>() {
        started += usize::from(start.await.unwrap());
    }
    assert_eq!(started, 1, "shard 3 was started {started} times");
    assert!(region.hosts(3));
    let sku = (0..)
        .map(|i| EntityRef::new(EntityKind::StockItem, format!("hosted-once-{i}")))
        .find(|e| e.shard(8) == 3)
        .unwrap();
    region
        .ask(
            sku.clone(),
            Command::Stock(StockCommand::Receive { quantity: 5 }),
        )
        .await
        .unwrap();
    assert_available(&region, &sku, 5).await;
}
