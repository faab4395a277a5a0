//! The payment gateway seen from Agora, and a simulated one with realistic behaviour:
//! asynchronous results after a latency, declines, no-answer timeouts, lost responses and
//! duplicated callbacks. Every call carries an idempotency key; the gateway charges once
//! per key.

use crate::card::{CardRef, CardVault};
use crate::command::Command;
use crate::ids::{EntityKind, EntityRef};
use crate::money::Money;
use crate::payment::{charge_answer, Method, PaymentCommand};
use crate::seams::RandomSource;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a call to an outside service did not go through (the caller retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    /// The service did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The service is down.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Where outside services send their asynchronous answers: the runtime delivers each as a
/// command, deduplicated by `msg_id`, to the named entity.
pub trait CallbackSink: Send + Sync + 'static {
    /// Delivers `cmd` to `to` (at least once; the receiver deduplicates by `msg_id`).
    fn deliver(&self, to: EntityRef, msg_id: String, cmd: Command);
}

/// Why a card number was not exchanged for a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokeniseError {
    /// The gateway refused the number (not a card number).
    #[error("card refused: {0}")]
    Refused(String),
    /// The gateway could not be asked (the caller may try again).
    #[error(transparent)]
    Unavailable(#[from] ExternalError),
}

/// What exchanges card numbers for the gateway's references (a gateway, or its vault).
#[async_trait]
pub trait CardTokeniser: Send + Sync + 'static {
    /// The gateway's reference of card `number`: token, last four digits, fingerprint. The
    /// same number gives the same reference every time, on every node.
    async fn tokenise_card(&self, number: &str) -> Result<CardRef, TokeniseError>;
}

#[async_trait]
impl CardTokeniser for CardVault {
    async fn tokenise_card(&self, number: &str) -> Result<CardRef, TokeniseError> {
        self.tokenise(number)
            .map_err(|e| TokeniseError::Refused(e.to_string()))
    }
}

/// A payment gateway. Cards are charged by token: the gateway decides by the number it holds
/// behind the token.
#[async_trait]
pub trait PaymentGateway: CardTokeniser {
    /// Starts a charge; the result comes later as `PaymentCommand::ChargeResult`.
    async fn charge(
        &self,
        key: &str,
        order_id: &str,
        method: &Method,
        amount: &Money,
    ) -> Result<(), ExternalError>;
    /// Starts a refund; the result comes later as `PaymentCommand::RefundResult` naming
    /// `refund_id`.
    async fn refund(
        &self,
        key: &str,
        order_id: &str,
        refund_id: &str,
        amount: &Money,
    ) -> Result<(), ExternalError>;
}

/// Behaviour of the simulated gateway.
#[derive(Debug, Clone)]
pub struct SimGatewayConfig {
    /// Shortest delay before the result arrives.
    pub min_latency: Duration,
    /// Longest delay before the result arrives.
    pub max_latency: Duration,
    /// Chance (per million) that a result callback is sent twice.
    pub duplicate_ppm: u32,
    /// Chance (per million) that the call itself times out after being accepted (the
    /// caller retries with the same key; the gateway charges once).
    pub lost_response_ppm: u32,
}

impl Default for SimGatewayConfig {
    fn default() -> Self {
        Self {
            min_latency: Duration::from_millis(20),
            max_latency: Duration::from_millis(150),
            duplicate_ppm: 50_000,
            lost_response_ppm: 20_000,
        }
    }
}

/// What the simulated gateway decides for card `number` (the documented test cards).
pub fn decide_card(number: &str) -> Option<Result<(), String>> {
    match number {
        "4000000000000002" => Some(Err("card_declined".into())),
        "4000000000009995" => Some(Err("insufficient_funds".into())),
        "4000000000000119" => None,
        _ => Some(Ok(())),
    }
}

/// What the simulated gateway decides for a method; a card by the number `cards` holds
/// behind its token (a token it did not make, or a raw number, is refused).
pub fn decide(method: &Method, cards: &CardVault) -> Option<Result<(), String>> {
    match method {
        Method::Card(card) => match cards.number(&card.token) {
            Some(number) => decide_card(&number),
            None => Some(Err("invalid_card_token".into())),
        },
        Method::LegacyCardNumber { .. } => Some(Err("card_not_tokenised".into())),
        Method::Upi { vpa } if vpa == "failure@upi" => Some(Err("upi_declined".into())),
        Method::Upi { .. } => Some(Ok(())),
        Method::Wallet => Some(Err("wallet_not_handled_by_gateway".into())),
    }
}

/// A payment gateway simulated in process.
pub struct SimulatedGateway {
    config: SimGatewayConfig,
    rng: Arc<dyn RandomSource>,
    callbacks: Arc<dyn CallbackSink>,
    /// The card vault (its key survives restarts, so tokens do).
    cards: Arc<CardVault>,
    /// The answer decided for each idempotency key, and the effects taken on.
    ledger: Arc<GatewayLedger>,
}

/// How a charge the gateway took on turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money was taken.
    Succeeded,
    /// Declined: no money moved.
    Declined,
    /// The gateway never answers (a test card that hangs): no money moved.
    NeverAnswered,
}

/// What one idempotency key made the gateway do (the first call with it; repeats do
/// nothing more, as with a real gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEffect {
    /// A charge of an order.
    Charge {
        /// Its idempotency key.
        key: String,
        /// The order charged.
        order_id: String,
        /// The amount asked, in minor units.
        amount_minor: u64,
        /// Whether money moved.
        outcome: ChargeOutcome,
    },
    /// A refund of (part of) an order's charge.
    Refund {
        /// Its idempotency key.
        key: String,
        /// The order refunded.
        order_id: String,
        /// The amount returned, in minor units.
        amount_minor: u64,
    },
    /// A refund refused because it would return more than the order's charge took (as a
    /// real gateway refuses it): the shop asked for money it never took.
    RefundAboveCharge {
        /// Its idempotency key.
        key: String,
        /// The order.
        order_id: String,
        /// The amount asked, in minor units.
        amount_minor: u64,
        /// What the order's charge took, less what was already refunded.
        refundable_minor: u64,
    },
}

/// What `order_id`'s successful charge took, less what was refunded, in `effects`.
pub fn refundable_minor(effects: &[GatewayEffect], order_id: &str) -> u64 {
    let mut refundable = 0u64;
    for e in effects {
        match e {
            GatewayEffect::Charge {
                order_id: o,
                amount_minor,
                outcome: ChargeOutcome::Succeeded,
                ..
            } if o == order_id => refundable = refundable.saturating_add(*amount_minor),
            GatewayEffect::Refund {
                order_id: o,
                amount_minor,
                ..
            } if o == order_id => refundable = refundable.saturating_sub(*amount_minor),
            _ => {}
        }
    }
    refundable
}

/// The simulated gateway's books: the answer decided for each idempotency key and every
/// effect taken on. One ledger may serve every node's gateway (one provider behind a whole
/// cluster) and outlive their restarts: the simulator keeps one per run and checks it.
#[derive(Debug, Default)]
pub struct GatewayLedger {
    books: Mutex<LedgerBooks>,
}

#[derive(Debug, Default)]
struct LedgerBooks {
    answers: BTreeMap<String, Option<Command>>,
    effects: Vec<GatewayEffect>,
}

impl GatewayLedger {
    /// Every effect taken on, in order.
    pub fn effects(&self) -> Vec<GatewayEffect> {
        self.books
            .lock()
            .map(|b| b.effects.clone())
            .unwrap_or_default()
    }

    /// The answer for `key`: on its first call `decide` (given the effects so far) gives
    /// the answer and the effect, recorded; every repeat gets the same answer and has no
    /// effect.
    fn answer_for(
        &self,
        key: &str,
        decide: impl FnOnce(&[GatewayEffect]) -> (Option<Command>, GatewayEffect),
    ) -> Option<Command> {
        let mut books = self.books.lock().ok()?;
        if let Some(answer) = books.answers.get(key) {
            return answer.clone();
        }
        let (answer, effect) = decide(&books.effects);
        books.answers.insert(key.to_string(), answer.clone());
        books.effects.push(effect);
        answer
    }
}

impl SimulatedGateway {
    /// A gateway that answers through `callbacks`, tokenises cards with `cards` and keeps
    /// its books in `ledger`.
    pub fn new(
        config: SimGatewayConfig,
        rng: Arc<dyn RandomSource>,
        callbacks: Arc<dyn CallbackSink>,
        (cards, ledger): (Arc<CardVault>, Arc<GatewayLedger>),
    ) -> Self {
        Self {
            config,
            rng,
            callbacks,
            cards,
            ledger,
        }
    }

    fn chance(&self, ppm: u32) -> bool {
        (self.rng.next_u64() % 1_000_000) < u64::from(ppm)
    }

    fn latency(&self) -> Duration {
        let lo = self.config.min_latency.as_millis() as u64;
        let hi = self.config.max_latency.as_millis() as u64;
        Duration::from_millis(lo + self.rng.next_u64() % (hi.saturating_sub(lo) + 1))
    }

    fn answer_later(&self, key: &str, to: EntityRef, cmd: Command) {
        let times = if self.chance(self.config.duplicate_ppm) {
            2
        } else {
            1
        };
        let delay = self.latency();
        let callbacks = self.callbacks.clone();
        let msg_id = format!("gateway:{key}");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for _ in 0..times {
                callbacks.deliver(to.clone(), msg_id.clone(), cmd.clone());
            }
        });
    }

    fn accepted(&self) -> Result<(), ExternalError> {
        if self.chance(self.config.lost_response_ppm) {
            return Err(ExternalError::Timeout);
        }
        Ok(())
    }
}

#[async_trait]
impl CardTokeniser for SimulatedGateway {
    async fn tokenise_card(&self, number: &str) -> Result<CardRef, TokeniseError> {
        self.cards.tokenise_card(number).await
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(
        &self,
        key: &str,
        order_id: &str,
        method: &Method,
        amount: &Money,
    ) -> Result<(), ExternalError> {
        let event_id = format!("evt:{key}");
        let answer = self.ledger.answer_for(key, |_| {
            let decided = decide(method, &self.cards);
            let outcome = match &decided {
                Some(Ok(())) => ChargeOutcome::Succeeded,
                Some(Err(_)) => ChargeOutcome::Declined,
                None => ChargeOutcome::NeverAnswered,
            };
            let effect = GatewayEffect::Charge {
                key: key.to_string(),
                order_id: order_id.to_string(),
                amount_minor: amount.amount_minor,
                outcome,
            };
            let answer = decided.map(|result| {
                Command::Payment(charge_answer(event_id, order_id, method, amount, result))
            });
            (answer, effect)
        });
        if let Some(cmd) = answer {
            self.answer_later(key, EntityRef::new(EntityKind::Payment, order_id), cmd);
        }
        self.accepted()
    }

    async fn refund(
        &self,
        key: &str,
        order_id: &str,
        refund_id: &str,
        amount: &Money,
    ) -> Result<(), ExternalError> {
        let event_id = format!("evt:{key}");
        let answer = self.ledger.answer_for(key, |effects| {
            let refundable = refundable_minor(effects, order_id);
            let (effect, result) = if amount.amount_minor > refundable {
                let effect = GatewayEffect::RefundAboveCharge {
                    key: key.to_string(),
                    order_id: order_id.to_string(),
                    amount_minor: amount.amount_minor,
                    refundable_minor: refundable,
                };
                (effect, Err("amount_exceeds_charge".to_string()))
            } else {
                let effect = GatewayEffect::Refund {
                    key: key.to_string(),
                    order_id: order_id.to_string(),
                    amount_minor: amount.amount_minor,
                };
                (effect, Ok(()))
            };
            let answer = Command::Payment(PaymentCommand::RefundResult {
                event_id,
                refund_id: refund_id.to_string(),
                result,
            });
            (Some(answer), effect)
        });
        if let Some(cmd) = answer {
            self.answer_later(key, EntityRef::new(EntityKind::Payment, order_id), cmd);
        }
        self.accepted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_takes_effect_once_and_refunds_are_bounded_by_the_charge() {
        let ledger = GatewayLedger::default();
        let charge = |key: &str| GatewayEffect::Charge {
            key: key.into(),
            order_id: "o1".into(),
            amount_minor: 1_000,
            outcome: ChargeOutcome::Succeeded,
        };
        ledger.answer_for("pay:o1", |_| (None, charge("pay:o1")));
        ledger.answer_for("pay:o1", |_| (None, charge("again")));
        assert_eq!(
            ledger.effects(),
            vec![charge("pay:o1")],
            "a repeat has no effect"
        );
        let refund = |amount_minor| GatewayEffect::Refund {
            key: format!("r{amount_minor}"),
            order_id: "o1".into(),
            amount_minor,
        };
        assert_eq!(refundable_minor(&ledger.effects(), "o1"), 1_000);
        ledger.answer_for("r600", |_| (None, refund(600)));
        assert_eq!(refundable_minor(&ledger.effects(), "o1"), 400);
        assert_eq!(refundable_minor(&ledger.effects(), "o2"), 0);
    }

    #[test]
    fn test_cards_behave_as_documented_through_their_tokens() {
        let vault = CardVault::new(crate::card::TEST_CARD_KEY).unwrap();
        let card = |n: &str| Method::Card(vault.tokenise(n).unwrap());
        assert_eq!(decide(&card("4242424242424242"), &vault), Some(Ok(())));
        assert_eq!(
            decide(&card("4000000000000002"), &vault),
            Some(Err("card_declined".into()))
        );
        assert_eq!(
            decide(&card("4000000000009995"), &vault),
            Some(Err("insufficient_funds".into()))
        );
        assert_eq!(decide(&card("4000000000000119"), &vault), None);
        // A token of another vault, or a raw number, is never charged.
        let stranger = CardVault::new(b"another-card-vault-key-0123456789abc").unwrap();
        let foreign = Method::Card(stranger.tokenise("4242424242424242").unwrap());
        assert_eq!(
            decide(&foreign, &vault),
            Some(Err("invalid_card_token".into()))
        );
        let raw = Method::LegacyCardNumber {
            number: "4242424242424242".into(),
        };
        assert_eq!(decide(&raw, &vault), Some(Err("card_not_tokenised".into())));
        let upi = |v: &str| Method::Upi { vpa: v.into() };
        assert_eq!(decide(&upi("success@upi"), &vault), Some(Ok(())));
        assert_eq!(
            decide(&upi("failure@upi"), &vault),
            Some(Err("upi_declined".into()))
        );
    }
}
