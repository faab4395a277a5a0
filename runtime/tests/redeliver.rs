//! A dead letter's replay (`relay::redeliver`) goes the relay's way: an entity receiver is
//! reached through `Deliver::deliver_batch` with the message's own id (so it dedupes) as a
//! committed message (never an early delivery), an outside call through the outside
//! services; and the answer is classed as the relay would class it.

use agora_actors::account::AccountCommand;
use agora_actors::card::CardRef;
use agora_actors::client::AskError;
use agora_actors::courier::Courier;
use agora_actors::gateway::{CardTokeniser, ExternalError, PaymentGateway, TokeniseError};
use agora_actors::message::Body;
use agora_actors::money::Money;
use agora_actors::notify::MemorySink;
use agora_actors::payment::Method;
use agora_actors::{
    Command, Destination, DomainError, EntityKind, EntityRef, ExternalCall, OutboxMessage, Reply,
};
use agora_runtime::entity::{BatchItem, BatchResults};
use agora_runtime::external::ExternalServices;
use agora_runtime::relay::{redeliver, Redelivery};
use agora_runtime::Deliver;
use agora_store::{Store, Writer};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};

/// A region that answers each batch as told and records what it was given.
#[derive(Default)]
struct Region {
    answers: Mutex<Vec<Result<BatchResults, AskError>>>,
    /// (receiver, message id, sender's ticket) of each item delivered.
    seen: Mutex<Vec<(EntityRef, String, u64)>>,
}

#[async_trait]
impl Deliver for Region {
    async fn deliver(
        &self,
        _to: EntityRef,
        _cmd: Command,
        _msg_id: Option<String>,
    ) -> Result<Reply, AskError> {
        Err(AskError::Unavailable(
            "the relay delivers in batches".into(),
        ))
    }

    async fn deliver_batch(
        &self,
        to: EntityRef,
        items: Vec<BatchItem>,
    ) -> Result<BatchResults, AskError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.extend(
                items
                    .iter()
                    .map(|i| (to.clone(), i.msg_id.clone(), i.sender)),
            );
        }
        let next = self.answers.lock().ok().and_then(|mut a| a.pop());
        next.unwrap_or_else(|| Err(AskError::Unavailable("no answer left".into())))
    }

    fn is_local(&self, _to: &EntityRef) -> bool {
        true
    }
}

/// A gateway (and courier) that is down.
struct Down;

#[async_trait]
impl CardTokeniser for Down {
    async fn tokenise_card(&self, _number: &str) -> Result<CardRef, TokeniseError> {
        Err(TokeniseError::Unavailable(ExternalError::Timeout))
    }
}

#[async_trait]
impl PaymentGateway for Down {
    async fn charge(&self, _: &str, _: &str, _: &Method, _: &Money) -> Result<(), ExternalError> {
        Err(ExternalError::Unavailable("gateway down".into()))
    }

    async fn refund(&self, _: &str, _: &str, _: &str, _: &Money) -> Result<(), ExternalError> {
        Err(ExternalError::Unavailable("gateway down".into()))
    }
}

#[async_trait]
impl Courier for Down {
    async fn book(&self, _: &str, _: &str, _: &str, _: &str) -> Result<(), ExternalError> {
        Err(ExternalError::Unavailable("courier down".into()))
    }
}

fn account() -> EntityRef {
    EntityRef::new(EntityKind::Account, "u1")
}

fn message(to: Destination, body: Body) -> OutboxMessage {
    OutboxMessage {
        id: "payment/o1#4.0".into(),
        from: EntityRef::new(EntityKind::Payment, "o1"),
        to,
        deliver_at_ms: 0,
        topic: "WALLET_TOP_UP".into(),
        body,
    }
}

fn top_up() -> OutboxMessage {
    let cmd = Command::Account(AccountCommand::TopUp {
        top_up_id: "t1".into(),
        amount_minor: 700,
    });
    message(Destination::Entity(account()), Body::Command(cmd))
}

struct Fixture {
    region: Arc<Region>,
    external: ExternalServices,
    writer: Writer,
    _dir: tempfile::TempDir,
}

fn fixture(answers: Vec<Result<BatchResults, AskError>>) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("a.redb")).expect("open");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start(store, tx, vec![]).expect("writer");
    let region = Arc::new(Region {
        answers: Mutex::new(answers),
        seen: Mutex::default(),
    });
    let external = ExternalServices {
        gateway: Arc::new(Down),
        courier: Arc::new(Down),
        sink: Arc::new(MemorySink::default()),
    };
    Fixture {
        region,
        external,
        writer,
        _dir: dir,
    }
}

async fn replay(f: &Fixture, msg: OutboxMessage) -> Redelivery {
    redeliver(f.region.clone(), f.external.clone(), &f.writer, msg).await
}

#[tokio::test]
async fn an_entity_receiver_gets_the_message_with_its_own_id_as_a_committed_message() {
    let f = fixture(vec![Ok(vec![Ok(())])]);
    assert_eq!(replay(&f, top_up()).await, Redelivery::Accepted);
    let seen = f.region.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen, [(account(), "payment/o1#4.0".to_string(), 0)]);
}

#[tokio::test]
async fn a_refusal_carries_the_receivers_reason_and_an_outage_is_unreachable() {
    let not_found = || DomainError::NotFound("account u1".into());
    let f = fixture(vec![
        Err(AskError::Unavailable("no leader for shard 3".into())),
        Err(AskError::Domain(not_found())),
        Ok(vec![Err(not_found())]),
    ]);
    let refused = Redelivery::Refused("account u1 not found".into());
    assert_eq!(replay(&f, top_up()).await, refused);
    assert_eq!(replay(&f, top_up()).await, refused);
    assert_eq!(
        replay(&f, top_up()).await,
        Redelivery::Unreachable("entity unavailable: no leader for shard 3".into())
    );
}

#[tokio::test]
async fn an_outside_call_goes_to_its_service_and_a_misaddressed_message_is_refused() {
    let f = fixture(Vec::new());
    let charge = ExternalCall::Charge {
        key: "k1".into(),
        order_id: "o1".into(),
        method: Method::Wallet,
        amount: Money::shop(700),
    };
    let outside = message(Destination::External, Body::External(charge));
    assert!(matches!(
        replay(&f, outside).await,
        Redelivery::Unreachable(reason) if reason.contains("gateway down")
    ));
    let cmd = Command::Account(AccountCommand::Get);
    let misaddressed = message(Destination::External, Body::Command(cmd));
    assert!(matches!(
        replay(&f, misaddressed).await,
        Redelivery::Refused(_)
    ));
    assert!(f.region.seen.lock().map(|s| s.is_empty()).unwrap_or(false));
}
