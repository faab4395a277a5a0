//! Dead letters in the store: listed newest first with their ids, and discarded one by one
//! through the writer (the only durable write path), for good.

use agora_actors::account::AccountCommand;
use agora_actors::message::Body;
use agora_actors::{Command, Destination, EntityKind, EntityRef, OutboxMessage};
use agora_store::record::{DeadLetter, FORMAT_VERSION};
use agora_store::{Store, WriteOp, Writer};

fn letter(n: u64) -> Box<DeadLetter> {
    let from = EntityRef::new(EntityKind::Order, format!("o{n}"));
    Box::new(DeadLetter {
        format: FORMAT_VERSION,
        at_ms: 1_000 + n,
        reason: "refused".into(),
        message: OutboxMessage {
            id: format!("{from}#{n}.0"),
            from: from.clone(),
            to: Destination::Entity(EntityRef::new(EntityKind::Account, "u1")),
            deliver_at_ms: 0,
            topic: "ORDER_PLACED".into(),
            body: Body::Command(Command::Account(AccountCommand::Get)),
        },
    })
}

#[tokio::test]
async fn a_discarded_dead_letter_is_gone_for_good_and_the_others_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a.redb");
    let store = Store::open(&path).expect("open");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start(store.clone(), tx, vec![]).expect("writer");
    for n in 0..3 {
        let op = WriteOp::DeadLetter {
            key: format!("outbox-{n}").into_bytes(),
            letter: letter(n),
        };
        writer.submit(op).expect("submit");
    }
    // A discard of a dead letter that is not kept changes nothing (and still answers).
    writer
        .discard_dead_letter(99)
        .await
        .expect("discard nothing");
    let listed = store.dead_letters(10).expect("list");
    let ids: Vec<u64> = listed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let middle = ids[1];
    let kept = store.dead_letter(middle).expect("read").expect("kept");
    assert_eq!(kept.message.topic, "ORDER_PLACED");

    writer.discard_dead_letter(middle).await.expect("discard");
    assert!(store.dead_letter(middle).expect("read").is_none());
    let left: Vec<u64> = store
        .dead_letters(10)
        .expect("list")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(left, [ids[0], ids[2]]);
    assert_eq!(store.counts().expect("counts").2, 2);
}
