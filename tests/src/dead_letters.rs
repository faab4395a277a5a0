//! Dead letters for the replay tests: written into a stopped node's store exactly as its
//! relay records one when a receiver refuses a message (the domain's own messages are built
//! never to be refused, so a test cannot make the relay give one up on demand).

use agora_actors::account::AccountCommand;
use agora_actors::message::Body;
use agora_actors::{Command, Destination, EntityKind, EntityRef, OutboxMessage};
use agora_store::record::{DeadLetter, FORMAT_VERSION};
use agora_store::{Store, WriteOp, Writer};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the store may stay held after its writer is dropped.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// A wallet top-up of `amount_minor` for the account of `email`, sent by a payment entity as
/// message `msg_id`: refused (`not found`) while no account has that email.
pub fn top_up_message(msg_id: &str, email: &str, amount_minor: u64) -> OutboxMessage {
    let user_id = agora_actors::ids::user_id_for_email(email);
    OutboxMessage {
        id: msg_id.to_string(),
        from: EntityRef::new(EntityKind::Payment, format!("replay-test-{msg_id}")),
        to: Destination::Entity(EntityRef::new(EntityKind::Account, user_id)),
        deliver_at_ms: 0,
        topic: "WALLET_TOP_UP".into(),
        body: Body::Command(Command::Account(AccountCommand::TopUp {
            top_up_id: format!("top-up-{msg_id}"),
            amount_minor,
        })),
    }
}

/// Records `messages` as dead letters (refused for `reason`) in the store of the stopped
/// node whose data directory is `data_dir`, through the store's writer, and waits until the
/// store is released again so the node can open it.
pub async fn write_dead_letters(data_dir: &Path, reason: &str, messages: Vec<OutboxMessage>) {
    let path = data_dir.join("agora.redb");
    let store = Store::open(&path).expect("open the stopped node's store");
    let (relay, _relay_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start(store.clone(), relay, Vec::new()).expect("start a writer");
    let mut last = 0;
    for (n, message) in messages.into_iter().enumerate() {
        let letter = Box::new(DeadLetter {
            format: FORMAT_VERSION,
            at_ms: 1_000 + n as u64,
            reason: reason.to_string(),
            message,
        });
        let key = format!("replay-test-outbox-{n}").into_bytes();
        last = writer
            .submit(WriteOp::DeadLetter { key, letter })
            .expect("submit a dead letter");
    }
    assert!(
        writer.durable(last).await,
        "the dead letters were not stored"
    );
    drop(writer);
    drop(store);
    // The writer's thread lets the file go once it sees its queue closed.
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    while let Err(e) = Store::open(&path) {
        assert!(Instant::now() < deadline, "the store stays held: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
