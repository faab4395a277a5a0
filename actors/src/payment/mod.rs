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
use crate::money::{sum_minor, Money};
use crate::order::OrderCommand;
use crate::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};

mod report;
#[cfg(test)]
mod tests;

use report::report_refused;
pub use report::{check_report, ChargeReport, ReportMismatch};

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
        } => authorize(s, customer, amount_minor, method, ctx)?,
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
        PaymentCommand::Abandon | PaymentCommand::Refund => {
            s.abandoned = true;
            if s.status == PaymentStatus::Succeeded {
                start_refund(s, ctx);
            }
        }
        PaymentCommand::RefundResult {
            event_id,
            refund_id,
            result,
        } => refund_result(s, event_id, refund_id, result.is_ok(), ctx),
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
        PaymentCommand::RetryCharge => retry_charge(s, ctx),
        PaymentCommand::RetryRefund => retry_refunds(s, ctx),
        PaymentCommand::Get => {}
    }
    while s.events.len() > 64 {
        s.events.remove(0);
    }
    reply(Reply::Payment(view(s)))
}

/// The order asks for its money: a wallet debit, or a charge at the gateway.
fn authorize(
    s: &mut PaymentState,
    customer: String,
    amount_minor: u64,
    method: Method,
    ctx: &mut Ctx,
) -> Result<(), DomainError> {
    if !(1..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
        return Err(crate::error::invalid(
            "amount_minor",
            format!("1..={MAX_AMOUNT_MINOR}"),
        ));
    }
    if s.status != PaymentStatus::None || s.abandoned {
        return Ok(());
    }
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
    Ok(())
}

/// The gateway (or the wallet) answered refund `refund_id` under `event_id`; a success
/// settles it once and tells the order.
fn refund_result(
    s: &mut PaymentState,
    event_id: String,
    refund_id: String,
    succeeded: bool,
    ctx: &mut Ctx,
) {
    let now = ctx.now_ms;
    let pending = s
        .refunds
        .iter_mut()
        .find(|r| r.refund_id == refund_id && !r.succeeded);
    let (false, Some(r), true) = (seen_id(&s.events, &event_id), pending, succeeded) else {
        return;
    };
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

/// After the order gave up, keep asking a while: if the gateway did take the money and its
/// answer was lost, the repeated key brings the answer back and the payment refunds itself.
/// A gateway that never answers is left after a bound.
fn retry_charge(s: &mut PaymentState, ctx: &mut Ctx) {
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

/// Asks again for every refund still pending (each under its own key). One timer per retry
/// round is enough: the others find nothing or ask once more, harmlessly. A wallet credit is
/// an entity message, delivered exactly once: never repeated.
fn retry_refunds(s: &PaymentState, ctx: &mut Ctx) {
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
