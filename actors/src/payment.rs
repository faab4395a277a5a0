//! Payment: the payment of one order, keyed by order id. It talks to the gateway (card, UPI)
//! or to the shopper's Account (wallet), and reports back to the Order.
//!
//! The charge moves `NONE → PROCESSING → SUCCEEDED | FAILED`, then `SUCCEEDED → REFUNDING →
//! REFUNDED` for the saga's full refund. Gateway events may come twice, late or out of order:
//! each event id takes effect once, and an event that does not fit the current status (a late
//! `charge.pending` after `charge.succeeded`, a `charge.failed` after success) changes nothing,
//! so the status never moves backwards. Partial refunds (`RefundPart`, asked by the Order for a
//! delivered order) are kept in a list; their sum never exceeds the amount charged.

use crate::account::AccountCommand;
use crate::card::CardRef;
use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::limits::MAX_AMOUNT_MINOR;
use crate::message::ExternalCall;
use crate::money::{sum_minor, Money, SHOP_CURRENCY};
use crate::order::OrderCommand;
use crate::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};

/// How a shopper pays. A card is held by the gateway's reference, never by its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Record format 3 only: a raw card number. Nothing makes it any more; it keeps its place
    /// (bincode variant 0) so that format-3 records decode for the format-4 migration, which
    /// replaces it with `Card`, and a gateway refuses to charge it.
    LegacyCardNumber {
        /// The card number (digits only).
        number: String,
    },
    /// A UPI virtual payment address.
    Upi {
        /// The VPA, like `success@upi`.
        vpa: String,
    },
    /// The shopper's Agora wallet.
    Wallet,
    /// A card, by the gateway's reference: token, last four digits and fingerprint.
    Card(CardRef),
}

impl Method {
    /// The method's name for the API.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The kind of method, as a gateway reports it.
    pub fn kind(&self) -> MethodKind {
        match self {
            Method::Card(_) | Method::LegacyCardNumber { .. } => MethodKind::Card,
            Method::Upi { .. } => MethodKind::Upi,
            Method::Wallet => MethodKind::Wallet,
        }
    }

    /// Replaces a format-3 raw card number with the reference `tokenise` gives for it;
    /// `Ok(true)` when it did. Any other method is left as it is.
    pub fn tokenise_legacy<E>(
        &mut self,
        tokenise: &mut dyn FnMut(&str) -> Result<CardRef, E>,
    ) -> Result<bool, E> {
        if let Method::LegacyCardNumber { number } = self {
            *self = Method::Card(tokenise(number)?);
            return Ok(true);
        }
        Ok(false)
    }
}

/// The kind of a payment method, without its details (what a success report names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// A card.
    Card,
    /// UPI.
    Upi,
    /// The Agora wallet.
    Wallet,
}

impl MethodKind {
    /// The kind's name for the API (`card`, `upi`, `wallet`).
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Card => "card",
            MethodKind::Upi => "upi",
            MethodKind::Wallet => "wallet",
        }
    }

    /// The kind named `name` (as `name` spells it), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [MethodKind::Card, MethodKind::Upi, MethodKind::Wallet]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// The payment id of the charge of order `order_id`: the idempotency key the charge is asked
/// under, which a success report must name.
pub fn payment_id(order_id: &str) -> String {
    format!("{order_id}:charge")
}

/// What a success report says was charged; the Payment checks it against its own intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReport {
    /// The payment id the money was taken under (see [`payment_id`]).
    pub payment_id: String,
    /// The amount taken.
    pub amount: Money,
    /// How it was taken.
    pub method: MethodKind,
}

impl ChargeReport {
    /// The report of a charge of `amount` by `method` for order `order_id`, as asked.
    pub fn of(order_id: &str, method: &Method, amount: &Money) -> Self {
        Self {
            payment_id: payment_id(order_id),
            amount: amount.clone(),
            method: method.kind(),
        }
    }
}

/// Why a success report was refused: it does not describe the charge this payment asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportMismatch {
    /// No charge was asked for (or the report came without the details of what was taken).
    #[error("no charge of this payment matches the report")]
    NoIntent,
    /// Another payment id.
    #[error("payment id {reported} is not {expected}")]
    PaymentId {
        /// The payment's own.
        expected: String,
        /// The report's.
        reported: String,
    },
    /// Another amount.
    #[error("amount {reported} is not {expected}")]
    Amount {
        /// The payment's own (minor units).
        expected: u64,
        /// The report's (minor units).
        reported: u64,
    },
    /// Another currency.
    #[error("currency {reported} is not {expected}")]
    Currency {
        /// The payment's own.
        expected: String,
        /// The report's.
        reported: String,
    },
    /// Another method.
    #[error("method {reported} is not {expected}")]
    Method {
        /// The payment's own.
        expected: &'static str,
        /// The report's.
        reported: &'static str,
    },
}

impl ReportMismatch {
    /// The field that differs, as a metric label.
    pub fn field(&self) -> &'static str {
        match self {
            ReportMismatch::NoIntent => "intent",
            ReportMismatch::PaymentId { .. } => "payment_id",
            ReportMismatch::Amount { .. } => "amount",
            ReportMismatch::Currency { .. } => "currency",
            ReportMismatch::Method { .. } => "method",
        }
    }
}

/// Checks `report` against the charge `s` asked for as the payment of order `order_id`.
pub fn check_report(
    s: &PaymentState,
    order_id: &str,
    report: &ChargeReport,
) -> Result<(), ReportMismatch> {
    let Some(method) = s
        .method
        .as_ref()
        .filter(|_| s.status != PaymentStatus::None)
    else {
        return Err(ReportMismatch::NoIntent);
    };
    let expected = payment_id(order_id);
    if report.payment_id != expected {
        return Err(ReportMismatch::PaymentId {
            expected,
            reported: report.payment_id.clone(),
        });
    }
    if report.amount.amount_minor != s.amount_minor {
        return Err(ReportMismatch::Amount {
            expected: s.amount_minor,
            reported: report.amount.amount_minor,
        });
    }
    if report.amount.currency != SHOP_CURRENCY {
        return Err(ReportMismatch::Currency {
            expected: SHOP_CURRENCY.to_string(),
            reported: report.amount.currency.clone(),
        });
    }
    if report.method != method.kind() {
        return Err(ReportMismatch::Method {
            expected: method.name(),
            reported: report.method.name(),
        });
    }
    Ok(())
}

/// Logs and counts a refused success report (`agora_payment_mismatches_total{field}`).
fn report_refused(order_id: &str, event_id: &str, m: &ReportMismatch) -> DomainError {
    tracing::warn!(
        order_id,
        event_id,
        field = m.field(),
        mismatch = %m,
        "payment success report does not match the payment: refused"
    );
    metrics::counter!("agora_payment_mismatches_total", "field" => m.field()).increment(1);
    DomainError::Conflict(format!("charge report refused: {m}"))
}

/// Where a payment stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// Nothing asked yet.
    #[default]
    None,
    /// Asked; waiting for the gateway or wallet.
    Processing,
    /// The money was taken.
    Succeeded,
    /// The gateway or wallet said no.
    Failed(String),
    /// A refund is on its way.
    Refunding,
    /// The money was given back.
    Refunded,
}

impl PaymentStatus {
    /// Lower-case name for the API.
    pub fn name(&self) -> &'static str {
        match self {
            PaymentStatus::None => "none",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed(_) => "failed",
            PaymentStatus::Refunding => "refunding",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

/// Id of the saga's full refund (cancel after confirmation, return, paid after expiry).
pub const FULL_REFUND_ID: &str = "full";

/// One refund of this payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEntry {
    /// Refund id (`full` for the saga's refund).
    pub refund_id: String,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Whether the money went back.
    pub succeeded: bool,
    /// When it was asked for.
    pub requested_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
}

/// The payment state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    /// Status.
    pub status: PaymentStatus,
    /// How the shopper pays.
    pub method: Option<Method>,
    /// Amount.
    pub amount_minor: u64,
    /// The shopper.
    pub customer: String,
    /// The order no longer wants this payment (expired or cancelled before success).
    pub abandoned: bool,
    /// Gateway event ids already applied (duplicate callbacks are ignored).
    pub events: Vec<String>,
    /// Charge requests repeated after the order abandoned the payment (bounded).
    pub checks_after_abandon: u32,
    /// When the charge was asked for.
    pub requested_at_ms: u64,
    /// When the charge last changed status.
    pub updated_at_ms: u64,
    /// The gateway reported the charge pending (informational; never moves the status).
    pub gateway_pending: bool,
    /// Refunds, oldest first.
    pub refunds: Vec<RefundEntry>,
}

impl PaymentState {
    /// Minor units refunded or being refunded.
    pub fn refunds_minor(&self) -> u64 {
        sum_minor(self.refunds.iter().map(|r| r.amount_minor))
    }

    /// Minor units refunded.
    pub fn refunded_minor(&self) -> u64 {
        sum_minor(
            self.refunds
                .iter()
                .filter(|r| r.succeeded)
                .map(|r| r.amount_minor),
        )
    }
}

/// Commands for a Payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentCommand {
    /// Take the money for an order (from the order saga).
    Authorize {
        /// The shopper.
        customer: String,
        /// Amount in minor units.
        amount_minor: u64,
        /// How.
        method: Method,
    },
    /// The gateway's or wallet's failure of a charge (may come twice). An `Ok` says nothing
    /// of what was taken, so it is refused as a mismatch: successes come as `ChargeSucceeded`.
    ChargeResult {
        /// The gateway's event id.
        event_id: String,
        /// The reason it failed (`Ok` is refused).
        result: Result<(), String>,
    },
    /// The order no longer wants the money (expiry, timeout, cancel before success).
    Abandon,
    /// Give the money back (cancel after confirmation, or a success after expiry).
    Refund,
    /// The gateway's or wallet's answer to a refund (may come twice).
    RefundResult {
        /// The gateway's event id.
        event_id: String,
        /// The refund answered (`full` for the saga's refund).
        refund_id: String,
        /// Ok, or the reason it failed.
        result: Result<(), String>,
    },
    /// The gateway says the charge is still pending (may come late, after the result).
    ChargePending {
        /// The gateway's event id.
        event_id: String,
    },
    /// Give part of the money back (a refund of a delivered order, from the Order).
    RefundPart {
        /// Refund id.
        refund_id: String,
        /// Amount in minor units.
        amount_minor: u64,
    },
    /// Durable timer: ask for the refund again if it has not completed.
    RetryRefund,
    /// Durable timer: ask the gateway again (same key) if the charge's result has not come.
    RetryCharge,
    /// Read it.
    Get,
    /// The gateway's or wallet's success of a charge (may come twice), with what was taken:
    /// refused, changing nothing, unless it matches the charge this payment asked for.
    ChargeSucceeded {
        /// The gateway's event id.
        event_id: String,
        /// What was taken.
        report: ChargeReport,
    },
}

/// The command a gateway's or wallet's answer to the charge of order `order_id` (`amount` by
/// `method`) becomes: a success carries the report of what was taken.
pub fn charge_answer(
    event_id: String,
    order_id: &str,
    method: &Method,
    amount: &Money,
    result: Result<(), String>,
) -> PaymentCommand {
    match result {
        Ok(()) => PaymentCommand::ChargeSucceeded {
            event_id,
            report: ChargeReport::of(order_id, method, amount),
        },
        Err(reason) => PaymentCommand::ChargeResult {
            event_id,
            result: Err(reason),
        },
    }
}

/// A payment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    /// Status name.
    pub status: String,
    /// Failure reason, if failed.
    pub reason: Option<String>,
    /// Method name.
    pub method: Option<String>,
    /// Amount.
    pub amount_minor: u64,
    /// Amount refunded so far.
    pub refunded_minor: u64,
    /// The charge and the refunds, oldest first.
    pub entries: Vec<PaymentEntry>,
}

/// One money movement of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEntry {
    /// `charge` or `refund`.
    pub kind: String,
    /// `charge`, or the refund id.
    pub id: String,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Status: `processing`, `succeeded`, `failed` (charge); `pending`, `succeeded` (refund).
    pub status: String,
    /// When it was asked for.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
}

const REFUND_RETRY_MS: u64 = 10_000;
/// How long a charge waits for the gateway's answer before asking again with the same key
/// (the answer may have been lost, for example by a crash between acceptance and callback).
const CHARGE_RETRY_MS: u64 = 5_000;
/// How many times an abandoned charge is asked about again (12 × 5 s = one minute).
const MAX_CHECKS_AFTER_ABANDON: u32 = 12;

fn order(ctx: &Ctx) -> EntityRef {
    EntityRef::new(EntityKind::Order, ctx.me.id.clone())
}

/// Starts the saga's full refund: whatever was not refunded yet goes back.
fn start_refund(s: &mut PaymentState, ctx: &mut Ctx) {
    s.status = PaymentStatus::Refunding;
    s.updated_at_ms = ctx.now_ms;
    let amount_minor = s.amount_minor.saturating_sub(s.refunds_minor());
    if amount_minor == 0 {
        // Everything already went back through partial refunds.
        s.status = PaymentStatus::Refunded;
        ctx.send(
            order(ctx),
            "REFUND_ISSUED",
            Command::Order(OrderCommand::RefundCompleted),
        );
        return;
    }
    begin_refund(s, FULL_REFUND_ID.to_string(), amount_minor, ctx);
}

/// Records a new refund of `amount_minor` and asks the gateway for it.
fn begin_refund(s: &mut PaymentState, refund_id: String, amount_minor: u64, ctx: &mut Ctx) {
    let entry = RefundEntry {
        refund_id,
        amount_minor,
        succeeded: false,
        requested_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
    };
    request_refund(s, &entry, ctx, true);
    s.refunds.push(entry);
}

/// The gateway's idempotency key of a refund (the saga's full refund keeps the old key).
fn refund_key(order_id: &str, refund_id: &str) -> String {
    if refund_id == FULL_REFUND_ID {
        format!("{order_id}:refund")
    } else {
        format!("{order_id}:refund:{refund_id}")
    }
}

fn request_refund(s: &PaymentState, r: &RefundEntry, ctx: &mut Ctx, arm_timer: bool) {
    let order_id = ctx.me.id.clone();
    match s.method {
        Some(Method::Wallet) => {
            let credit = AccountCommand::CreditWallet {
                order_id,
                amount_minor: r.amount_minor,
                refund_id: r.refund_id.clone(),
            };
            let account = EntityRef::new(EntityKind::Account, s.customer.clone());
            if agora_seams::planted::is_planted(agora_seams::planted::Bug::DoubleWalletCredit) {
                ctx.send(
                    account.clone(),
                    "WALLET_CREDIT",
                    Command::Account(credit.clone()),
                );
            }
            ctx.send(account, "WALLET_CREDIT", Command::Account(credit));
        }
        _ => {
            let key = refund_key(&order_id, &r.refund_id);
            ctx.call(
                "REFUND_REQUESTED",
                ExternalCall::Refund {
                    key,
                    order_id,
                    refund_id: r.refund_id.clone(),
                    amount: Money::shop(r.amount_minor),
                },
            );
            // The gateway may lose its answer: ask again (same key) until it comes. A wallet
            // credit is an entity message, delivered exactly once, so it needs no retry.
            if arm_timer {
                ctx.timer(
                    ctx.now_ms + REFUND_RETRY_MS,
                    "REFUND_RETRY",
                    Command::Payment(PaymentCommand::RetryRefund),
                );
            }
        }
    }
}

/// Asks the gateway to charge (the key makes a repeat safe) and arms the retry timer.
fn request_charge(ctx: &mut Ctx, method: Method, amount_minor: u64) {
    let order_id = ctx.me.id.clone();
    let key = payment_id(&order_id);
    ctx.call(
        "PAYMENT_REQUESTED",
        ExternalCall::Charge {
            key,
            order_id,
            method,
            amount: Money::shop(amount_minor),
        },
    );
    ctx.timer(
        ctx.now_ms + CHARGE_RETRY_MS,
        "PAYMENT_RETRY",
        Command::Payment(PaymentCommand::RetryCharge),
    );
}

fn seen_id(events: &[String], event_id: &str) -> bool {
    events.iter().any(|e| e == event_id)
}

fn seen(s: &mut PaymentState, event_id: &str) -> bool {
    if s.events.iter().any(|e| e == event_id) {
        return true;
    }
    s.events.push(event_id.to_string());
    false
}

/// Applies a matching success report (once per event id, only while processing).
fn charge_succeeded(s: &mut PaymentState, event_id: String, ctx: &mut Ctx) {
    if seen(s, &event_id) || s.status != PaymentStatus::Processing {
        return;
    }
    s.updated_at_ms = ctx.now_ms;
    if s.abandoned {
        start_refund(s, ctx);
        return;
    }
    s.status = PaymentStatus::Succeeded;
    ctx.send(
        order(ctx),
        "PAYMENT_SUCCEEDED",
        Command::Order(OrderCommand::PaymentSucceeded),
    );
}

/// Applies a failure (once per event id, only while processing).
fn charge_failed(s: &mut PaymentState, event_id: String, reason: String, ctx: &mut Ctx) {
    if seen(s, &event_id) || s.status != PaymentStatus::Processing {
        return;
    }
    s.updated_at_ms = ctx.now_ms;
    s.status = PaymentStatus::Failed(reason.clone());
    if !s.abandoned {
        ctx.send(
            order(ctx),
            "PAYMENT_FAILED",
            Command::Order(OrderCommand::PaymentFailed { reason }),
        );
    }
}

/// Handles one command.
pub fn handle(
    s: &mut PaymentState,
    cmd: PaymentCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    match cmd {
        PaymentCommand::Authorize {
            customer,
            amount_minor,
            method,
        } => {
            if !(1..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
                return Err(crate::error::invalid(
                    "amount_minor",
                    format!("1..={MAX_AMOUNT_MINOR}"),
                ));
            }
            if s.status == PaymentStatus::None && !s.abandoned {
                s.status = PaymentStatus::Processing;
                s.requested_at_ms = ctx.now_ms;
                s.updated_at_ms = ctx.now_ms;
                s.customer = customer.clone();
                s.amount_minor = amount_minor;
                s.method = Some(method.clone());
                let order_id = ctx.me.id.clone();
                match method {
                    Method::Wallet => ctx.send(
                        EntityRef::new(EntityKind::Account, customer),
                        "WALLET_DEBIT",
                        Command::Account(AccountCommand::DebitWallet {
                            order_id,
                            amount_minor,
                        }),
                    ),
                    m => request_charge(ctx, m, amount_minor),
                }
                ctx.send(
                    order(ctx),
                    "PAYMENT_PROCESSING",
                    Command::Order(OrderCommand::PaymentStarted),
                );
            }
        }
        PaymentCommand::ChargeResult { event_id, result } => match result {
            Ok(()) => {
                return Err(report_refused(
                    &ctx.me.id,
                    &event_id,
                    &ReportMismatch::NoIntent,
                ))
            }
            Err(reason) => charge_failed(s, event_id, reason, ctx),
        },
        PaymentCommand::ChargeSucceeded { event_id, report } => {
            if let Err(m) = check_report(s, &ctx.me.id, &report) {
                return Err(report_refused(&ctx.me.id, &event_id, &m));
            }
            charge_succeeded(s, event_id, ctx);
        }
        PaymentCommand::Abandon => {
            s.abandoned = true;
            if s.status == PaymentStatus::Succeeded {
                start_refund(s, ctx);
            }
        }
        PaymentCommand::Refund => {
            s.abandoned = true;
            if s.status == PaymentStatus::Succeeded {
                start_refund(s, ctx);
            }
        }
        PaymentCommand::RefundResult {
            event_id,
            refund_id,
            result,
        } => {
            let now = ctx.now_ms;
            let pending = s
                .refunds
                .iter_mut()
                .find(|r| r.refund_id == refund_id && !r.succeeded);
            if let (false, Some(r), Ok(())) = (seen_id(&s.events, &event_id), pending, &result) {
                r.succeeded = true;
                r.updated_at_ms = now;
                s.events.push(event_id);
                s.updated_at_ms = now;
                if refund_id == FULL_REFUND_ID {
                    s.status = PaymentStatus::Refunded;
                    ctx.send(
                        order(ctx),
                        "REFUND_ISSUED",
                        Command::Order(OrderCommand::RefundCompleted),
                    );
                } else {
                    if s.refunded_minor() >= s.amount_minor {
                        s.status = PaymentStatus::Refunded;
                    }
                    ctx.send(
                        order(ctx),
                        "REFUND_SETTLED",
                        Command::Order(OrderCommand::RefundSettled { refund_id }),
                    );
                }
            }
        }
        PaymentCommand::ChargePending { event_id } => {
            // Informational, and possibly late: it never moves the status.
            if !seen(s, &event_id) && s.status == PaymentStatus::Processing {
                s.gateway_pending = true;
            }
        }
        PaymentCommand::RefundPart {
            refund_id,
            amount_minor,
        } => {
            let known = s.refunds.iter().any(|r| r.refund_id == refund_id);
            let left = s.amount_minor.saturating_sub(s.refunds_minor());
            // The Order checked the amount; this is the last line of defence.
            if !known && s.status == PaymentStatus::Succeeded && amount_minor <= left {
                begin_refund(s, refund_id, amount_minor, ctx);
            }
        }
        PaymentCommand::RetryCharge => {
            // After the order gave up, keep asking a while: if the gateway did take the money
            // and its answer was lost, the repeated key brings the answer back and the
            // payment refunds itself. A gateway that never answers is left after a bound.
            let keep_asking = !s.abandoned || s.checks_after_abandon < MAX_CHECKS_AFTER_ABANDON;
            if s.status == PaymentStatus::Processing && keep_asking {
                if let Some(m) = s.method.clone().filter(|m| *m != Method::Wallet) {
                    if s.abandoned {
                        s.checks_after_abandon += 1;
                    }
                    request_charge(ctx, m, s.amount_minor);
                }
            }
        }
        PaymentCommand::RetryRefund => {
            // Ask again for every refund still pending (each under its own key). One timer
            // per retry round is enough: the others find nothing or ask once more, harmlessly.
            // A wallet credit is an entity message, delivered exactly once: never repeated.
            let pending: Vec<RefundEntry> = s
                .refunds
                .iter()
                .filter(|r| !r.succeeded && s.method != Some(Method::Wallet))
                .cloned()
                .collect();
            if let Some((last, rest)) = pending.split_last() {
                for r in rest {
                    request_refund(s, r, ctx, false);
                }
                request_refund(s, last, ctx, true);
            }
        }
        PaymentCommand::Get => {}
    }
    while s.events.len() > 64 {
        s.events.remove(0);
    }
    reply(Reply::Payment(view(s)))
}

fn view(s: &PaymentState) -> PaymentView {
    let mut entries = Vec::new();
    if s.status != PaymentStatus::None {
        let status = match (&s.status, s.gateway_pending) {
            (PaymentStatus::Processing, true) => "pending",
            (PaymentStatus::Processing, false) => "processing",
            (PaymentStatus::Failed(_), _) => "failed",
            _ => "succeeded",
        };
        entries.push(PaymentEntry {
            kind: "charge".into(),
            id: "charge".into(),
            amount_minor: s.amount_minor,
            status: status.into(),
            created_at_ms: s.requested_at_ms,
            updated_at_ms: s.updated_at_ms.max(s.requested_at_ms),
        });
    }
    for r in &s.refunds {
        entries.push(PaymentEntry {
            kind: "refund".into(),
            id: r.refund_id.clone(),
            amount_minor: r.amount_minor,
            status: if r.succeeded { "succeeded" } else { "pending" }.into(),
            created_at_ms: r.requested_at_ms,
            updated_at_ms: r.updated_at_ms,
        });
    }
    PaymentView {
        status: s.status.name().to_string(),
        reason: match &s.status {
            PaymentStatus::Failed(r) => Some(r.clone()),
            _ => None,
        },
        method: s.method.as_ref().map(|m| m.name().to_string()),
        amount_minor: s.amount_minor,
        refunded_minor: s.refunded_minor(),
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::test_card;
    use crate::entity::DomainConfig;
    use crate::message::{Body, Destination};
    use proptest::prelude::*;

    fn run(s: &mut PaymentState, cmd: PaymentCommand) -> Vec<crate::OutboxMessage> {
        let me = EntityRef::new(EntityKind::Payment, "o1");
        let cfg = DomainConfig::default();
        let mut ctx = Ctx::new(1_000, &me, 1, &cfg);
        handle(s, cmd, &mut ctx).unwrap();
        ctx.take_outbox()
    }

    fn card_paid(amount_minor: u64) -> PaymentState {
        let mut s = PaymentState::default();
        run(
            &mut s,
            PaymentCommand::Authorize {
                customer: "u".into(),
                amount_minor,
                method: Method::Card(test_card("4242424242424242").unwrap()),
            },
        );
        run(&mut s, success("e-ok", amount_minor));
        assert_eq!(s.status, PaymentStatus::Succeeded);
        s
    }

    /// A success report of a card charge of `amount_minor` for order `o1`.
    fn success(event_id: &str, amount_minor: u64) -> PaymentCommand {
        charge_answer(
            event_id.into(),
            "o1",
            &Method::Card(test_card("4242424242424242").unwrap()),
            &Money::shop(amount_minor),
            Ok(()),
        )
    }

    #[test]
    fn amounts_beyond_the_money_bound_are_refused() {
        let mut s = PaymentState::default();
        for amount_minor in [0, MAX_AMOUNT_MINOR + 1, u64::MAX] {
            let cmd = PaymentCommand::Authorize {
                customer: "u".into(),
                amount_minor,
                method: Method::Wallet,
            };
            assert!(matches!(
                try_run(&mut s, cmd),
                Err(DomainError::Invalid { .. })
            ));
        }
        assert_eq!(s, PaymentState::default());
        // Sums of refunds saturate instead of overflowing.
        let entry = |id: &str| RefundEntry {
            refund_id: id.into(),
            amount_minor: u64::MAX,
            succeeded: true,
            requested_at_ms: 0,
            updated_at_ms: 0,
        };
        s.refunds = vec![entry("a"), entry("b")];
        assert_eq!(s.refunds_minor(), u64::MAX);
        assert_eq!(s.refunded_minor(), u64::MAX);
    }

    fn try_run(
        s: &mut PaymentState,
        cmd: PaymentCommand,
    ) -> Result<Vec<crate::OutboxMessage>, DomainError> {
        let me = EntityRef::new(EntityKind::Payment, "o1");
        let cfg = DomainConfig::default();
        let mut ctx = Ctx::new(1_000, &me, 1, &cfg);
        handle(s, cmd, &mut ctx)?;
        Ok(ctx.take_outbox())
    }

    #[test]
    fn a_success_report_that_does_not_match_the_intent_is_refused_and_changes_nothing() {
        let mut s = PaymentState::default();
        // Before any charge was asked for: nothing to match.
        assert!(matches!(
            try_run(&mut s, success("e0", 29_800)),
            Err(DomainError::Conflict(_))
        ));
        run(
            &mut s,
            PaymentCommand::Authorize {
                customer: "u".into(),
                amount_minor: 29_800,
                method: Method::Card(test_card("4000000000000119").unwrap()),
            },
        );
        let before = s.clone();
        let card = |n: &str| Method::Card(test_card(n).unwrap());
        let report = ChargeReport::of("o1", &card("4000000000000119"), &Money::shop(29_800));
        let wrong = [
            ChargeReport {
                amount: Money::shop(1),
                ..report.clone()
            },
            ChargeReport {
                amount: Money {
                    amount_minor: 29_800,
                    currency: "USD".into(),
                },
                ..report.clone()
            },
            ChargeReport {
                payment_id: "attacker-key".into(),
                ..report.clone()
            },
            ChargeReport {
                payment_id: payment_id("o2"),
                ..report.clone()
            },
            ChargeReport {
                method: MethodKind::Upi,
                ..report.clone()
            },
        ];
        for (i, report) in wrong.into_iter().enumerate() {
            let cmd = PaymentCommand::ChargeSucceeded {
                event_id: format!("e{i}"),
                report,
            };
            let r = try_run(&mut s, cmd);
            assert!(matches!(r, Err(DomainError::Conflict(_))), "{r:?}");
            assert_eq!(s, before, "a refused report changes nothing");
        }
        // A bare success (no report of what was taken) is refused too.
        let bare = PaymentCommand::ChargeResult {
            event_id: "e9".into(),
            result: Ok(()),
        };
        assert!(try_run(&mut s, bare).is_err());
        assert_eq!(s, before);
        // The matching report confirms the order, once.
        let ok = PaymentCommand::ChargeSucceeded {
            event_id: "e-ok".into(),
            report,
        };
        let out = run(&mut s, ok);
        assert_eq!(to_order(&out), vec![OrderCommand::PaymentSucceeded]);
        assert_eq!(s.status, PaymentStatus::Succeeded);
        // A mismatched report after the success is refused as well (and changes nothing).
        let late = success("e-late", 1);
        assert!(try_run(&mut s, late).is_err());
        assert_eq!(s.status, PaymentStatus::Succeeded);
    }

    fn to_order(out: &[crate::OutboxMessage]) -> Vec<OrderCommand> {
        out.iter()
            .filter_map(|m| match (&m.to, &m.body) {
                (Destination::Entity(e), Body::Command(Command::Order(c)))
                    if e.kind == EntityKind::Order =>
                {
                    Some(c.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_late_pending_or_failure_after_success_changes_nothing() {
        let mut s = card_paid(500);
        let before = s.clone();
        let out = run(
            &mut s,
            PaymentCommand::ChargePending {
                event_id: "e-pending".into(),
            },
        );
        assert!(out.is_empty());
        let out = run(
            &mut s,
            PaymentCommand::ChargeResult {
                event_id: "e-fail".into(),
                result: Err("declined".into()),
            },
        );
        assert!(out.is_empty());
        assert_eq!(s.status, before.status);
        assert_eq!(view(&s).entries[0].status, "succeeded");
    }

    #[test]
    fn partial_refunds_are_bounded_by_the_amount_paid_and_settle_once() {
        let mut s = card_paid(1_000);
        let out = run(
            &mut s,
            PaymentCommand::RefundPart {
                refund_id: "r1".into(),
                amount_minor: 600,
            },
        );
        assert!(out.iter().any(|m| matches!(
            &m.body,
            Body::External(ExternalCall::Refund { key, refund_id, .. }) if key == "o1:refund:r1" && refund_id == "r1"
        )));
        // Beyond what is left: ignored.
        let out = run(
            &mut s,
            PaymentCommand::RefundPart {
                refund_id: "r2".into(),
                amount_minor: 401,
            },
        );
        assert!(out.is_empty());
        assert_eq!(s.refunds_minor(), 600);
        let result = PaymentCommand::RefundResult {
            event_id: "e-r1".into(),
            refund_id: "r1".into(),
            result: Ok(()),
        };
        let out = run(&mut s, result.clone());
        assert_eq!(
            to_order(&out),
            vec![OrderCommand::RefundSettled {
                refund_id: "r1".into()
            }]
        );
        assert!(run(&mut s, result).is_empty(), "a duplicate settles once");
        assert_eq!(s.refunded_minor(), 600);
        // The saga's full refund takes what is left.
        run(&mut s, PaymentCommand::Refund);
        assert_eq!(s.status, PaymentStatus::Refunding);
        assert_eq!(s.refunds.last().unwrap().amount_minor, 400);
        let out = run(
            &mut s,
            PaymentCommand::RefundResult {
                event_id: "e-full".into(),
                refund_id: FULL_REFUND_ID.into(),
                result: Ok(()),
            },
        );
        assert_eq!(to_order(&out), vec![OrderCommand::RefundCompleted]);
        assert_eq!(s.status, PaymentStatus::Refunded);
        assert_eq!(s.refunded_minor(), 1_000);
    }

    fn event() -> impl Strategy<Value = PaymentCommand> {
        let id = 0u8..6;
        prop_oneof![
            id.clone().prop_map(|i| PaymentCommand::ChargePending {
                event_id: format!("e{i}")
            }),
            id.clone().prop_map(|i| success(&format!("e{i}"), 1_000)),
            id.clone().prop_map(|i| PaymentCommand::ChargeResult {
                event_id: format!("e{i}"),
                result: Err("declined".into())
            }),
            (id, 0u8..3).prop_map(|(i, r)| PaymentCommand::RefundResult {
                event_id: format!("e{i}"),
                refund_id: format!("r{r}"),
                result: Ok(())
            }),
            (0u8..3, 1u64..800).prop_map(|(r, a)| PaymentCommand::RefundPart {
                refund_id: format!("r{r}"),
                amount_minor: a
            }),
            Just(PaymentCommand::Refund),
            Just(PaymentCommand::RetryRefund),
            Just(PaymentCommand::RetryCharge),
        ]
    }

    fn rank(s: &PaymentStatus) -> u8 {
        match s {
            PaymentStatus::None => 0,
            PaymentStatus::Processing => 1,
            PaymentStatus::Succeeded | PaymentStatus::Failed(_) => 2,
            PaymentStatus::Refunding => 3,
            PaymentStatus::Refunded => 4,
        }
    }

    proptest! {
        /// Whatever events come, duplicated, late or out of order: the status never moves
        /// backwards, the first charge result decides, and refunds never exceed the amount.
        #[test]
        fn events_in_any_order_never_move_the_payment_backwards(events in prop::collection::vec(event(), 0..40)) {
            let mut s = PaymentState::default();
            run(&mut s, PaymentCommand::Authorize {
                customer: "u".into(),
                amount_minor: 1_000,
                method: Method::Card(test_card("4242424242424242").unwrap()),
            });
            let mut first_result: Option<bool> = None;
            for e in events {
                let before = s.clone();
                let decided = match &e {
                    PaymentCommand::ChargeResult { event_id, result } => Some((event_id, result.is_ok())),
                    PaymentCommand::ChargeSucceeded { event_id, .. } => Some((event_id, true)),
                    _ => None,
                };
                if let Some((event_id, ok)) = decided {
                    if first_result.is_none() && !before.events.contains(event_id) {
                        first_result = Some(ok);
                    }
                }
                let out = run(&mut s, e);
                prop_assert!(rank(&s.status) >= rank(&before.status), "{:?} -> {:?}", before.status, s.status);
                prop_assert!(s.refunds_minor() <= s.amount_minor);
                prop_assert!(s.refunded_minor() <= s.refunds_minor());
                // At most one PaymentSucceeded/PaymentFailed to the order per change.
                prop_assert!(to_order(&out).len() <= 1);
            }
            match first_result {
                Some(true) => prop_assert!(rank(&s.status) >= 2 && !matches!(s.status, PaymentStatus::Failed(_))),
                Some(false) => prop_assert!(matches!(s.status, PaymentStatus::Failed(_))),
                None => prop_assert_eq!(&s.status, &PaymentStatus::Processing),
            }
        }
    }
}
