//! Payment: the payment of one order, keyed by order id. It talks to the gateway (card, UPI)
//! or to the shopper's Account (wallet), and reports back to the Order.

use crate::account::AccountCommand;
use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::message::ExternalCall;
use crate::money::Money;
use crate::order::OrderCommand;
use crate::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};

/// How a shopper pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// A card number (the simulated gateway decides by number).
    Card {
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
}

impl Method {
    /// The method's name for the API.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Card { .. } => "card",
            Method::Upi { .. } => "upi",
            Method::Wallet => "wallet",
        }
    }
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
    /// The gateway's or wallet's answer to a charge (may come twice).
    ChargeResult {
        /// The gateway's event id.
        event_id: String,
        /// Ok, or the reason it failed.
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
        /// Ok, or the reason it failed.
        result: Result<(), String>,
    },
    /// Durable timer: ask for the refund again if it has not completed.
    RetryRefund,
    /// Durable timer: ask the gateway again (same key) if the charge's result has not come.
    RetryCharge,
    /// Read it.
    Get,
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

fn start_refund(s: &mut PaymentState, ctx: &mut Ctx) {
    s.status = PaymentStatus::Refunding;
    request_refund(s, ctx);
}

fn request_refund(s: &PaymentState, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    match s.method {
        Some(Method::Wallet) => ctx.send(
            EntityRef::new(EntityKind::Account, s.customer.clone()),
            "WALLET_CREDIT",
            Command::Account(AccountCommand::CreditWallet {
                order_id,
                amount_minor: s.amount_minor,
            }),
        ),
        _ => {
            let key = format!("{order_id}:refund");
            ctx.call(
                "REFUND_REQUESTED",
                ExternalCall::Refund {
                    key,
                    order_id,
                    amount: Money::shop(s.amount_minor),
                },
            );
            // The gateway may lose its answer: ask again (same key) until it comes. A wallet
            // credit is an entity message, delivered exactly once, so it needs no retry.
            ctx.timer(
                ctx.now_ms + REFUND_RETRY_MS,
                "REFUND_RETRY",
                Command::Payment(PaymentCommand::RetryRefund),
            );
        }
    }
}

/// Asks the gateway to charge (the key makes a repeat safe) and arms the retry timer.
fn request_charge(ctx: &mut Ctx, method: Method, amount_minor: u64) {
    let order_id = ctx.me.id.clone();
    let key = format!("{order_id}:charge");
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

fn seen(s: &mut PaymentState, event_id: &str) -> bool {
    if s.events.iter().any(|e| e == event_id) {
        return true;
    }
    s.events.push(event_id.to_string());
    false
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
            if s.status == PaymentStatus::None && !s.abandoned {
                s.status = PaymentStatus::Processing;
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
        PaymentCommand::ChargeResult { event_id, result } => {
            if !seen(s, &event_id) && s.status == PaymentStatus::Processing {
                match result {
                    Ok(()) if s.abandoned => start_refund(s, ctx),
                    Ok(()) => {
                        s.status = PaymentStatus::Succeeded;
                        ctx.send(
                            order(ctx),
                            "PAYMENT_SUCCEEDED",
                            Command::Order(OrderCommand::PaymentSucceeded),
                        );
                    }
                    Err(reason) => {
                        s.status = PaymentStatus::Failed(reason.clone());
                        if !s.abandoned {
                            ctx.send(
                                order(ctx),
                                "PAYMENT_FAILED",
                                Command::Order(OrderCommand::PaymentFailed { reason }),
                            );
                        }
                    }
                }
            }
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
        PaymentCommand::RefundResult { event_id, result } => {
            if !seen(s, &event_id) && s.status == PaymentStatus::Refunding && result.is_ok() {
                s.status = PaymentStatus::Refunded;
                ctx.send(
                    order(ctx),
                    "REFUND_ISSUED",
                    Command::Order(OrderCommand::RefundCompleted),
                );
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
            if s.status == PaymentStatus::Refunding {
                request_refund(s, ctx);
            }
        }
        PaymentCommand::Get => {}
    }
    if s.events.len() > 64 {
        s.events.remove(0);
    }
    reply(Reply::Payment(PaymentView {
        status: s.status.name().to_string(),
        reason: match &s.status {
            PaymentStatus::Failed(r) => Some(r.clone()),
            _ => None,
        },
        method: s.method.as_ref().map(|m| m.name().to_string()),
        amount_minor: s.amount_minor,
    }))
}
