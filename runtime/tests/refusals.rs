//! Refusals on a real redb file: changes under a stale epoch, changes derived from refused
//! ones, early deliveries whose senders were refused, and how each is answered.

mod common;

use agora_actors::client::{AskError, EntityClient};
use agora_actors::stock::StockCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use agora_runtime::entity::BatchItem;
use agora_store::keys::entity_key;
use agora_store::{StoreError, WriteOp, Writer};
use common::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Submits a change of `e` in shard `shard` (epoch 1) derived from the changes `after`.
fn submit_after(
    writer: &Writer,
    shard: u32,
    e: &EntityRef,
    after: Vec<u64>,
) -> (u64, oneshot::Receiver<Result<(), StoreError>>) {
    let (mut op, done) = write(shard, 1, e, stock_state(3), vec![]);
    if let WriteOp::Entity(w) = &mut op {
        w.after = after;
    }
    (writer.submit(op).unwrap(), done)
}

#[tokio::test]
async fn a_change_derived_from_a_refused_change_is_refused_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = store_and_writer(&dir.path().join("a.redb"));
    drop_shard(&writer, 2, 5).await;
    let [a, b, c, d] = ["A", "B", "C", "D"].map(|id| EntityRef::new(EntityKind::StockItem, id));
    // A's change is made under the old epoch of shard 2; B took a message from A early, C one
    // from B; D's change depends on nothing refused.
    let (ta, done_a) = submit_after(&writer, 2, &a, vec![]);
    let (tb, done_b) = submit_after(&writer, 3, &b, vec![ta]);
    let (tc, done_c) = submit_after(&writer, 4, &c, vec![tb]);
    let (td, done_d) = submit_after(&writer, 4, &d, vec![1]);
    assert!(matches!(
        done_a.await.unwrap(),
        Err(StoreError::StaleEpoch { .. })
    ));
    assert!(matches!(
        done_b.await.unwrap(),
        Err(StoreError::DependencyRefused { ticket }) if ticket == ta
    ));
    assert!(matches!(
        done_c.await.unwrap(),
        Err(StoreError::DependencyRefused { ticket }) if ticket == tb
    ));
    done_d.await.unwrap().unwrap();
    assert!([ta, tb, tc].iter().all(|t| writer.was_refused(*t)));
    assert!(!writer.was_refused(td) && writer.is_durable(td));
    for (shard, e, stored) in [(3, &b, false), (4, &c, false), (4, &d, true)] {
        assert_eq!(
            store.entity(&entity_key(shard, e)).unwrap().is_some(),
            stored
        );
    }
}

#[tokio::test]
async fn a_write_refused_for_a_stale_epoch_fences_its_copy_and_a_dependent_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, writer) = store_and_writer(&dir.path().join("a.redb"));
    drop_shard(&writer, 2, 5).await;
    let fenced =
        |flag: &Arc<std::sync::atomic::AtomicBool>| flag.load(std::sync::atomic::Ordering::Acquire);
    let submit_fenced = |shard, id: &str, after: Vec<u64>| {
        let e = EntityRef::new(EntityKind::StockItem, id);
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (mut op, done) = write(shard, 1, &e, stock_state(1), vec![]);
        if let WriteOp::Entity(w) = &mut op {
            w.after = after;
            w.fence = Some(flag.clone());
        }
        (writer.submit(op).unwrap(), done, flag)
    };
    let (stale, done_stale, flag_stale) = submit_fenced(2, "A", vec![]);
    let (_, done_dep, flag_dep) = submit_fenced(3, "B", vec![stale]);
    assert!(matches!(
        done_stale.await.unwrap(),
        Err(StoreError::StaleEpoch { .. })
    ));
    assert!(matches!(
        done_dep.await.unwrap(),
        Err(StoreError::DependencyRefused { .. })
    ));
    assert!(fenced(&flag_stale), "the stale copy answers nothing more");
    assert!(!fenced(&flag_dep), "shard 3 is still ours");
}

#[tokio::test]
async fn a_change_refused_for_a_stale_epoch_is_answered_as_not_served_so_it_can_go_again() {
    let dir = tempfile::tempdir().unwrap();
    let (region, store, writer) = region_and_writer(&dir.path().join("a.redb")).await;
    let sku = EntityRef::new(EntityKind::StockItem, "R");
    let shard = sku.shard(8);
    // The shard moved on (its copy here still hosted, as for a moment during a handoff).
    drop_shard(&writer, shard, 5).await;
    let answer = region
        .ask(
            sku.clone(),
            Command::Stock(StockCommand::Receive { quantity: 3 }),
        )
        .await;
    // Nothing was written: routers may send it again (to the new owner).
    assert!(
        matches!(&answer, Err(AskError::NotServedHere { why, leader: None })
            if why == agora_runtime::entity::TOOK_NO_EFFECT),
        "{answer:?}"
    );
    assert!(store.entity(&entity_key(shard, &sku)).unwrap().is_none());
    region.stop();
}

#[tokio::test]
async fn an_early_message_whose_sender_was_refused_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (region, store, writer) = region_and_writer(&dir.path().join("a.redb")).await;
    let sku = EntityRef::new(EntityKind::StockItem, "E");
    let receive = |n| Command::Stock(StockCommand::Receive { quantity: n });
    region
        .deliver(sku.clone(), receive(5), Some("m-1".into()))
        .await
        .unwrap();
    // A sender in another shard, whose change is refused (that shard moved on).
    let (refused, done) = doomed_change(&writer, &sku).await;
    // Delivered early, before the sender's change is known to be refused.
    let answer = region
        .deliver_batch(
            sku.clone(),
            vec![BatchItem {
                cmd: receive(3),
                msg_id: "m-2".into(),
                sender: refused,
                hold: None,
            }],
        )
        .await;
    assert!(done.await.unwrap().is_err());
    assert!(
        matches!(answer, Err(AskError::Unavailable(_))),
        "{answer:?}"
    );
    // The receiver forgot it: memory and disk show the durable 5, and the message can come
    // again (from its sender's next owner) and take effect then.
    assert_kept(&region, &store, &sku, 5).await;
    let again = region
        .deliver_batch(
            sku.clone(),
            vec![BatchItem::durable(receive(3), "m-2".into())],
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Ok(())]);
    assert_available(&region, &sku, 8).await;
    region.stop();
}

#[tokio::test]
async fn a_message_named_early_is_still_deduplicated_once_its_sender_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (region, _store, writer) = region_and_writer(&dir.path().join("a.redb")).await;
    let sku = EntityRef::new(EntityKind::StockItem, "F");
    let receive = |n| Command::Stock(StockCommand::Receive { quantity: n });
    let sender = EntityRef::new(EntityKind::Order, "o-1");
    let (ticket, done) = submit_after(&writer, sender.shard(8), &sender, vec![]);
    let early = || BatchItem {
        cmd: receive(5),
        msg_id: "m-1".into(),
        sender: ticket,
        hold: None,
    };
    let first = region.deliver_batch(sku.clone(), vec![early()]).await;
    assert_eq!(first.unwrap(), vec![Ok(())]);
    done.await.unwrap().unwrap();
    assert!(writer.is_durable(ticket));
    // The same copy again (a lost answer): its sender's change and the receiver's mark are
    // both durable now, so only the stored mark can tell it was applied.
    let again = region.deliver_batch(sku.clone(), vec![early()]).await;
    assert_eq!(again.unwrap(), vec![Ok(())]);
    assert_available(&region, &sku, 5).await;
    region.stop();
}

#[tokio::test]
async fn an_early_answer_and_the_change_derived_from_it_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (region, store, writer) = region_and_writer(&dir.path().join("a.redb")).await;
    // Long enough that only the dependent change, never the clock, ends the wait.
    writer.set_cascade_gather(Some(Duration::from_secs(60)));
    let first = EntityRef::new(EntityKind::StockItem, "G1");
    let second = EntityRef::new(EntityKind::StockItem, "G2");
    let receive = |n| Command::Stock(StockCommand::Receive { quantity: n });
    let (reply, pending) = region.ask_early(first.clone(), receive(4)).await.unwrap();
    assert!(matches!(reply, Reply::Stock(ref s) if s.available == 4));
    let ticket = pending.ticket;
    assert!(ticket > 0, "answered before its change is durable");
    // The writer holds the commit that would take the first change until the caller's
    // dependent change is handed over.
    tokio::time::timeout(Duration::from_secs(30), async {
        while !writer.gathering() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the writer waits for the dependent change");
    assert!(!writer.is_durable(ticket));
    assert!(store
        .entity(&entity_key(first.shard(8), &first))
        .unwrap()
        .is_none());
    let derived = region.ask_after(second.clone(), receive(6), pending).await;
    assert!(
        matches!(derived, Ok(Reply::Stock(ref s)) if s.available == 6),
        "{derived:?}"
    );
    // Answered only once both are durable.
    assert!(writer.is_durable(ticket));
    for e in [&first, &second] {
        assert!(store.entity(&entity_key(e.shard(8), e)).unwrap().is_some());
    }
    region.stop();
}

#[tokio::test]
async fn a_change_derived_from_a_refused_pending_change_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let (region, store, writer) = region_and_writer(&dir.path().join("a.redb")).await;
    let sku = EntityRef::new(EntityKind::StockItem, "H");
    let receive = |n| Command::Stock(StockCommand::Receive { quantity: n });
    region.ask(sku.clone(), receive(5)).await.unwrap();
    // A pending change in a shard that moved on: it will be refused.
    let (refused, done) = doomed_change(&writer, &sku).await;
    let pending = agora_actors::client::Pending {
        ticket: refused,
        hold: None,
    };
    let answer = region.ask_after(sku.clone(), receive(3), pending).await;
    assert!(done.await.unwrap().is_err());
    assert!(
        matches!(answer, Err(AskError::Unavailable(_))),
        "{answer:?}"
    );
    // Nothing of it is kept, in memory or on disk.
    assert_kept(&region, &store, &sku, 5).await;
    region.stop();
}

/// A change of an order in a shard other than `sku`'s, made under an epoch that shard has
/// since left behind: it will be refused.
async fn doomed_change(
    writer: &Writer,
    sku: &EntityRef,
) -> (u64, oneshot::Receiver<Result<(), StoreError>>) {
    let other = (0..8).find(|s| *s != sku.shard(8)).unwrap();
    drop_shard(writer, other, 9).await;
    let gone = EntityRef::new(EntityKind::Order, "gone");
    submit_after(writer, other, &gone, vec![])
}

#[tokio::test]
async fn a_write_under_a_stale_epoch_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = store_and_writer(&dir.path().join("a.redb"));
    let e = EntityRef::new(EntityKind::StockItem, "F");
    let (op, done) = write(5, 2, &e, stock_state(1), vec![]);
    writer.submit(op).unwrap();
    done.await.unwrap().unwrap();
    let (op, done) = write(5, 1, &e, stock_state(99), vec![]);
    writer.submit(op).unwrap();
    assert!(matches!(
        done.await.unwrap(),
        Err(StoreError::StaleEpoch {
            shard: 5,
            got: 1,
            current: 2
        })
    ));
    let rec = store.entity(&entity_key(5, &e)).unwrap().unwrap();
    assert_eq!(rec.state, stock_state(1));
}

/// A message dropped before its entity took it (it waited in the mailbox of a shard or an
/// entity that stopped) took no effect: its sender hears `NotServedHere` and may send it to
/// the shard's leader. Once taken, a reply dropped unanswered leaves the outcome unknown.
#[test]
fn a_message_dropped_before_its_entity_took_it_answers_not_delivered() {
    use agora_actors::client::Pending;
    use agora_runtime::entity::{EntityMsg, ReplyTo, UntilTaken};
    let request = |reply| EntityMsg::Request {
        cmd: Command::Stock(StockCommand::Get),
        msg_id: None,
        after: Pending::default(),
        reply,
    };
    let (tx, rx) = oneshot::channel();
    drop(request(UntilTaken::new(ReplyTo::Durable(tx))));
    assert!(matches!(
        rx.blocking_recv(),
        Ok(Err(AskError::NotServedHere { .. }))
    ));
    let (tx, rx) = oneshot::channel();
    drop(UntilTaken::new(ReplyTo::Durable(tx)).take());
    assert!(
        rx.blocking_recv().is_err(),
        "a taken reply answered by itself"
    );
}

/// Asks waiting in the mailboxes of a shard that stops here (its lead moved to another
/// replica) are answered `NotServedHere`, which routers send again to the new leader, never
/// "stopped before answering" (a 503): each took no effect, and each ask answered Ok is
/// durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_waiting_in_a_shard_that_stops_are_refused_as_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (region, store) = region_on(&dir.path().join("a.redb")).await;
    // Many entities of one shard, none active: each ask waits for its entity to start and
    // load, so asks are still in mailboxes when the shard stops.
    let skus: Vec<EntityRef> = (0..)
        .map(|i| EntityRef::new(EntityKind::StockItem, format!("queued-{i}")))
        .filter(|e| e.shard(8) == 5)
        .take(300)
        .collect();
    let asks: Vec<_> = skus
        .iter()
        .map(|sku| {
            let (region, sku) = (region.clone(), sku.clone());
            let receive = Command::Stock(StockCommand::Receive { quantity: 1 });
            tokio::spawn(async move { region.ask(sku, receive).await })
        })
        .collect();
    let queued = async {
        while region.in_flight() < 100 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), queued)
        .await
        .expect("100 asks never waited at once");
    let _ = region.release(5).await;
    let mut not_delivered = 0;
    for (sku, ask) in skus.iter().zip(asks) {
        let answer = ask.await.unwrap();
        let stored = store.entity(&entity_key(5, sku)).unwrap().map(|r| r.state);
        match answer {
            Ok(_) => assert_eq!(stored, Some(stock_state(1)), "{sku} answered Ok"),
            Err(AskError::NotServedHere { .. }) => {
                not_delivered += 1;
                assert_eq!(stored, None, "{sku} took effect, answered not delivered");
            }
            Err(e) => panic!("an ask waiting in a stopped shard answered {e:?}"),
        }
    }
    assert!(not_delivered > 0, "every ask was answered before the stop");
}

/// An ask whose entity is still loading its state when the shard stops here (the stop kills
/// the entity mid-await) took no effect, and answers `NotServedHere` so the router sends it
/// to the shard's new leader, not "stopped before answering" (a 503). The load is held by a
/// pending change of the same entity whose commit waits for a cascade hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_whose_entity_is_loading_when_its_shard_stops_answers_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (region, store, writer) = region_and_writer(&dir.path().join("a.redb")).await;
    let sku = EntityRef::new(EntityKind::StockItem, "loading");
    let shard = sku.shard(8);
    writer.set_cascade_gather(Some(Duration::from_secs(60)));
    let hold = writer.hold_commit();
    let (pending, committed) = write(shard, 1, &sku, stock_state(3), vec![]);
    writer.submit(pending).unwrap();
    let ask = {
        let (region, sku) = (region.clone(), sku.clone());
        let receive = Command::Stock(StockCommand::Receive { quantity: 1 });
        tokio::spawn(async move { region.ask(sku, receive).await })
    };
    // The entity is active and the writer holds the change its load waits for.
    let loading = async {
        loop {
            let stats = region.stats().await;
            let active = stats.iter().any(|(s, st)| *s == shard && st.active == 1);
            if active && writer.gathering() {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), loading)
        .await
        .expect("the entity never started loading");
    let _ = region.release(shard).await;
    let answer = tokio::time::timeout(Duration::from_secs(30), ask)
        .await
        .expect("the ask was never answered")
        .unwrap();
    assert!(
        matches!(answer, Err(AskError::NotServedHere { .. })),
        "an ask killed while loading answered {answer:?}"
    );
    drop(hold);
    committed.await.unwrap().unwrap();
    let stored = store.entity(&entity_key(shard, &sku)).unwrap().unwrap();
    assert_eq!(stored.state, stock_state(3), "the killed ask took effect");
}
